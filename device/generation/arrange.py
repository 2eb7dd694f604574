"""From a melody to a composition: generate the parts, then arrange them as tracks.

``arrange`` turns generated voices into tracks the synth can play: the card's GM
programs and channels, and velocities shaped by the metre (accented downbeats).
:mod:`~deepkeys.device.generation.files` writes the result.
"""

from __future__ import annotations

import numpy as np

from deepkeys.device.chords import Chord
from deepkeys.device.encoding import STEPS_PER_BAR, STEPS_PER_BEAT, Composition, Melody, Note, Track
from deepkeys.device.generation.card import ModelCard
from deepkeys.device.generation.generator import Generator
from deepkeys.device.gm import DRUM_CHANNEL

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


def arrange(
    melody: Melody,
    parts: dict[str, list[Note]],
    card: ModelCard,
    tempo_bpm: float | None = None,
    groove: str | None = None,
    chords: list[Chord] | None = None,
) -> Composition:
    """Melody plus generated parts -> a composition, melody first; ``groove`` and the
    ``chords`` the parts play are recorded. ``tempo_bpm`` replaces the melody's opening
    tempo, and its later tempo changes in proportion."""
    playback = card.playback
    tracks = [Track("melody", playback.melody_program, list(melody.notes), channel=MELODY_CHANNEL)]
    for spec in card.tracks:
        notes = [
            Note(n.pitch, n.start, n.end, accent(n.start, spec.velocity, playback.accent))
            for n in parts[spec.name]
        ]
        tracks.append(
            Track(
                spec.name,
                spec.program,
                notes,
                is_drum=spec.is_drum,
                channel=DRUM_CHANNEL if spec.is_drum else spec.channel,
            )
        )
    # A tempo given for the piece moves its whole tempo map, so a file that speeds up still does.
    scale = (tempo_bpm or melody.tempo_bpm) / melody.tempo_bpm
    return Composition(
        tracks,
        melody.n_steps,
        melody.tempo_bpm * scale,
        swing=playback.swing,
        groove=groove,
        chords=list(chords or []),
        tempo_changes=[(step, bpm * scale) for step, bpm in melody.tempo_changes],
    )


def compose(
    melody: Melody,
    generator: Generator,
    seed: int = 0,
    tempo_bpm: float | None = None,
    temperature: float | None = None,
    chords: list[Chord] | None = None,
    hints: dict[int, Chord] | None = None,
) -> Composition:
    """Harmonize ``melody`` (or play the given ``chords``), accompany it with
    ``generator`` and arrange the result; one seed, one result."""
    made = generator.accompany(
        melody.notes,
        melody.n_steps,
        seed=seed,
        temperature=temperature,
        chords=chords,
        hints=hints,
    )
    return arrange(
        melody, made.parts, generator.card, tempo_bpm, groove=made.groove, chords=made.chords
    )
