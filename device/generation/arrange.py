"""From a melody to a finished composition: generate, arrange, save.

``arrange`` turns generated voices into tracks the synth can play: the card's GM
programs and channels, and velocities shaped by the metre (accented downbeats).
``save`` writes the MIDI, WAV and PNG of a composition; each file is written
atomically, and the MIDI first, so a failure never leaves a half file behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepkeys.device.generation.card import ModelCard
from deepkeys.device.encoding import STEPS_PER_BAR, STEPS_PER_BEAT, Composition, Note, Track
from deepkeys.device.generation.generator import Generator
from deepkeys.device.generation.midifile import Melody, write_composition

MELODY_CHANNEL = 0


def accent(step: int, base: int, amount: float) -> int:
    """Velocity for a note starting at ``step``: downbeats loudest, then beat 3, then beats.

    >>> accent(0, 80, 0.2), accent(8, 80, 0.2), accent(4, 80, 0.2), accent(2, 80, 0.2)
    (96, 88, 84, 80)
    """
    if step % STEPS_PER_BAR == 0:
        factor = 1 + amount
    elif step % (STEPS_PER_BAR // 2) == 0:
        factor = 1 + amount / 2
    elif step % STEPS_PER_BEAT == 0:
        factor = 1 + amount / 4
    else:
        factor = 1.0
    return int(np.clip(round(base * factor), 1, 127))


def arrange(melody: Melody, parts: dict[str, list[Note]], card: ModelCard,
            tempo_bpm: float | None = None) -> Composition:
    """Melody plus generated parts -> a composition, melody first."""
    playback = card.playback
    tracks = [Track("melody", playback.melody_program, list(melody.notes),
                    channel=MELODY_CHANNEL)]
    for spec in card.tracks:
        notes = [Note(n.pitch, n.start, n.end, accent(n.start, spec.velocity, playback.accent))
                 for n in parts[spec.name]]
        tracks.append(Track(spec.name, spec.program, notes, is_drum=spec.is_drum,
                            channel=9 if spec.is_drum else spec.channel))
    return Composition(tracks, melody.n_steps, tempo_bpm or melody.tempo_bpm,
                       swing=playback.swing)


def compose(melody: Melody, generator: Generator, seed: int = 0, tempo_bpm: float | None = None,
            temperature: float | None = None) -> Composition:
    parts = generator.accompany(melody.notes, melody.n_steps, seed=seed, temperature=temperature)
    comp = arrange(melody, parts, generator.card, tempo_bpm)
    comp.groove = generator.last_groove
    return comp


def save(comp: Composition, out_dir: Path, stem: str, wav: bool = True,
         png: bool = True) -> dict[str, Path]:
    """Write ``stem``.mid (and .wav, .png) into ``out_dir``; return the paths."""
    from deepkeys.device.generation.pianoroll import write_png
    from deepkeys.device.generation.render import render_wav

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"mid": out_dir / f"{stem}.mid"}
    write_composition(comp, paths["mid"])
    if wav:
        paths["wav"] = out_dir / f"{stem}.wav"
        render_wav(comp, paths["wav"])
    if png:
        paths["png"] = out_dir / f"{stem}.png"
        write_png(comp, paths["png"])
    return paths
