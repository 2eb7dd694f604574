"""A genre model on LiteRT: a melody in, accompaniment voices out.

The generator loads a model card, refuses a model whose sha256, tensor names,
shapes or int8 parameters differ from the card, and runs phrase by phrase:

- a melody shorter than the model's phrase is looped to fill it, and the output cut
  back to the melody's length;
- a longer one is accompanied phrase after phrase; a last, partial phrase is run on
  the final full-length window so it still sees a whole phrase of context;
- a melody far from the register the model learned is moved by whole octaves for
  the model and its accompaniment moved back, so any key and register works.

Variation comes from the seed: it draws the noise input and the temperature
sampling of each note (see ``decode``). The same seed gives the same output.

>>> gen = Generator(load_card("models/chorale.json"))         # doctest: +SKIP
>>> result = gen.accompany(melody.notes, melody.n_steps, seed=1)  # doctest: +SKIP
>>> sorted(result.parts), result.groove                          # doctest: +SKIP
(['alto', 'bass', 'tenor'], None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from deepkeys.device.chords import Chord, chord_steps
from deepkeys.device.encoding import REST, Note, notes_to_voice
from deepkeys.device.errors import UserError
from deepkeys.device.generation.card import ModelCard, load_card
from deepkeys.device.generation.decode import decode_track
from deepkeys.device.generation.harmony import CELL_STEPS, Harmonizer, load_harmony_card
from deepkeys.device.generation.library import harmony_card_path
from deepkeys.device.generation.litert import LiteModel

Voice = tuple[np.ndarray, np.ndarray]  # a melody window: (pitch, onset) over steps


class Generator:
    """A genre model and the harmony step that gives it chords.

    ``harmonizer`` defaults to the installed harmony model (the genre card's folder
    first, then the model folders), or the rule harmonizer when none is installed.
    """

    def __init__(
        self, card: ModelCard, threads: int = 1, harmonizer: Harmonizer | None = None
    ) -> None:
        self.card = card
        self.model = LiteModel(card.model_path, card.inputs, card.outputs, threads)
        self.harmonizer = harmonizer or default_harmonizer(card.path.parent if card.path else None)

    @classmethod
    def from_card(cls, card_path: str | Path, threads: int = 1) -> Generator:
        return cls(load_card(card_path), threads)

    # --- one phrase -------------------------------------------------------------------
    def infer(
        self,
        melody_pitch: np.ndarray,
        melody_onset: np.ndarray,
        noise: np.ndarray,
        chords: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """One phrase: melody voice (steps,) and chord input (steps, 37) -> dequantized
        outputs, batch removed. A card without a chord input ignores ``chords``."""
        card = self.card
        roll = np.zeros((card.steps, card.n_pitches, 2), dtype=np.float32)
        t = np.flatnonzero((melody_pitch >= card.pitch_low) & (melody_pitch <= card.pitch_high))
        roll[t, melody_pitch[t] - card.pitch_low, 0] = 1.0
        roll[t, melody_pitch[t] - card.pitch_low, 1] = melody_onset[t]
        feeds = {"melody": roll, "noise": noise}
        if "chords" in card.inputs:
            if chords is None:
                raise ValueError(f"the {card.genre} model plays given chords; none were given")
            feeds["chords"] = chords
        return {k: v[0] for k, v in self.model.run(feeds).items()}

    @property
    def plays_chords(self) -> bool:
        """Whether the model takes the harmony step's chords (every current card does)."""
        return "chords" in self.card.inputs

    # --- a whole melody ---------------------------------------------------------------
    def accompany(
        self,
        melody: Sequence[Note],
        n_steps: int,
        seed: int = 0,
        temperature: float | None = None,
        groove: int | None = None,
        chords: Sequence[Chord] | None = None,
        hints: Mapping[int, Chord] | None = None,
    ) -> Accompaniment:
        """The chords, the notes of every track of the card within ``n_steps``, and the
        groove played.

        ``chords`` (one per half bar) are played as given; without them the harmony
        step writes them, drawn with the seed, keeping ``hints`` (half bar -> chord).
        Every part plays the same chords. A style genre plays one of its grooves
        throughout: ``groove`` (an index into ``card.grooves``) or, by default, one
        the seed picks.
        """
        card = self.card
        temperature = card.playback.temperature if temperature is None else temperature
        rng = np.random.default_rng(seed)
        if card.grooves:
            groove = int(rng.integers(len(card.grooves))) if groove is None else groove
            if not 0 <= groove < len(card.grooves):
                raise UserError(f"groove {groove} is not one of {len(card.grooves)}")
        groove_name = card.grooves[groove] if card.grooves and groove is not None else None
        pitch, onset = notes_to_voice(melody, n_steps)
        if chords is None:
            chords = self.harmonizer.harmonize(
                pitch,
                onset,
                temperature=None,
                source=card.harmony_source,
                hints=hints,
                quality_bias=card.quality_bias,
                rng=rng,
            )
        chords = list(chords)
        shift = self._octave_shift(pitch)
        pitch = np.where(pitch == REST, REST, pitch + shift).astype(np.int16)
        chord_rows = chord_input(chords, n_steps) if self.plays_chords else None

        parts: dict[str, list[Note]] = {t.name: [] for t in card.tracks}
        for start, take_from in _phrases(n_steps, card.steps):
            window_pitch, window_onset = _window(pitch, onset, start, card.steps)
            noise = noise_vector(
                int(np.prod(card.inputs["noise"].shape)), len(card.grooves), groove, rng
            )
            window_chords = (
                None if chord_rows is None else _window_rows(chord_rows, start, card.steps)
            )
            out = self.infer(window_pitch, window_onset, noise, window_chords)
            stop = min(start + card.steps, n_steps)
            for track in card.tracks:
                notes = decode_track(
                    track.kind,
                    out[track.output],
                    out.get(track.onset_output),
                    card.pitch_low,
                    temperature,
                    rng,
                    track.drum_notes,
                    track.threshold,
                )
                back = 0 if track.kind == "drums" else -shift  # drums have no register
                parts[track.name].extend(_take(notes, start, take_from, stop, back))
        return Accompaniment(parts, groove_name, chords)

    def _octave_shift(self, pitch: np.ndarray) -> int:
        """Whole octaves that bring the melody's median to the model's learned centre."""
        sounding = pitch[pitch != REST]
        if not len(sounding):
            return 0
        return round((self.card.melody_center - float(np.median(sounding))) / 12.0) * 12


@dataclass(frozen=True)
class Accompaniment:
    """What :meth:`Generator.accompany` made: the notes of each track, by the card's track
    names, the groove they play (None for a genre without grooves) and the chords."""

    parts: dict[str, list[Note]]
    groove: str | None = None
    chords: list[Chord] = field(default_factory=list)  # one per half bar


@lru_cache(maxsize=4)
def default_harmonizer(first: Path | None = None) -> Harmonizer:
    """The installed harmony model (one per folder, loaded once), else the rule."""
    path = harmony_card_path(first)
    return Harmonizer(load_harmony_card(path)) if path else Harmonizer.rule()


def noise_vector(
    size: int, n_grooves: int = 0, groove: int | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The model's noise input: a one-hot groove selector in the first ``n_grooves``
    values, standard normal noise in the rest. Training draws it the same way.

    >>> noise_vector(5, 2, 1, np.random.default_rng(0))[:2].tolist()
    [0.0, 1.0]
    """
    rng = rng or np.random.default_rng(0)
    noise = rng.standard_normal(size).astype(np.float32)
    if n_grooves:
        noise[:n_grooves] = 0.0
        noise[groove or 0] = 1.0
    return noise


def _phrases(n_steps: int, phrase: int) -> list[tuple[int, int]]:
    """(window start, first step to keep) for each model call.

    >>> _phrases(32, 64), _phrases(128, 64), _phrases(96, 64)
    ([(0, 0)], [(0, 0), (64, 64)], [(0, 0), (32, 64)])
    """
    if n_steps <= phrase:
        return [(0, 0)]
    calls = [(s, s) for s in range(0, n_steps - phrase + 1, phrase)]
    covered = calls[-1][0] + phrase
    if covered < n_steps:
        calls.append((n_steps - phrase, covered))
    return calls


def _take(notes: list[Note], offset: int, take_from: int, stop: int, transpose: int) -> list[Note]:
    """A phrase's notes moved to the melody's time and register, kept within
    [take_from, stop): a note cut at a phrase seam starts again there.

    >>> _take([Note(60, 0, 8), Note(62, 8, 20)], 64, 72, 80, -12)
    [Note(pitch=50, start=72, end=80, velocity=96)]
    """
    kept = []
    for n in notes:
        begin, end = max(n.start + offset, take_from), min(n.end + offset, stop)
        pitch = n.pitch + transpose
        if begin < end and 0 <= pitch <= 127:
            kept.append(Note(pitch, begin, end, n.velocity))
    return kept


def _window(pitch: np.ndarray, onset: np.ndarray, start: int, steps: int) -> Voice:
    """``steps`` steps from ``start``; a melody shorter than that is looped."""
    n = len(pitch)
    idx = (start + np.arange(steps)) % n if n < steps else start + np.arange(steps)
    p, o = pitch[idx].copy(), onset[idx].copy()
    if n < steps:  # the loop's seams start new notes
        seams = np.arange(n, steps, n)
        o[seams] |= p[seams] != REST
    return p, o


def chord_input(chords: Sequence[Chord], n_steps: int) -> np.ndarray:
    """One chord per half bar -> the model's per-step chord rows (n_steps, 37)."""
    cells = -(-n_steps // CELL_STEPS)
    if len(chords) < cells:
        raise ValueError(f"{len(chords)} chords for {cells} half bars")
    tokens = np.array([c.token for c in chords[:cells]])
    bass = np.array([-1 if c.bass is None else c.bass for c in chords[:cells]])
    return chord_steps(tokens, bass, CELL_STEPS)[:n_steps]


def _window_rows(rows: np.ndarray, start: int, steps: int) -> np.ndarray:
    """``steps`` rows from ``start``, looped as :func:`_window` loops the melody."""
    n = len(rows)
    idx = (start + np.arange(steps)) % n if n < steps else start + np.arange(steps)
    return rows[idx]
