"""Chords: the vocabulary every model, file and player shares.

A chord is a root pitch class and one of eight qualities, or no chord at all. The
harmony model predicts one per half bar, the genre models play them, the files name
them, and a player may type them (``deepkeys generate --chords``) or finger them
below the split point. One token per chord: ``root * len(QUALITIES) + quality``, and
:data:`NO_CHORD` last.

>>> Chord.parse("F#m7")
Chord(root=6, quality='min7', bass=None)
>>> Chord.parse("Bb/D").name, Chord.parse("Bb/D").bass
('Bb/D', 2)
>>> Chord.from_token(Chord.parse("Am").token).name
'Am'
>>> sorted(Chord.parse("G7").pitch_classes)
[2, 5, 7, 11]
>>> [c.name for c in parse_progression("C | G | Am F | F G")]
['C', 'C', 'G', 'G', 'Am', 'F', 'F', 'G']
>>> Chord.parse("H7")
Traceback (most recent call last):
...
deepkeys.device.errors.UserError: not a chord name: 'H7' (try C, Am, G7, Fmaj7, Dm7, Bdim, Gsus4, N)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from deepkeys.device.errors import UserError

# Intervals above the root, in the order of the tokens. sus2 is its own class: POP909
# uses it for 4 % of its chord time, more than maj7 and 7 together.
QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10),
    "dim": (0, 3, 6),
    "sus4": (0, 5, 7),
    "sus2": (0, 2, 7),
}
QUALITY_NAMES = tuple(QUALITIES)
# What a reading pays, per unit of note weight, for needing more than a triad, so that
# a passing note does not turn every triad into a seventh.
PENALTY = {"maj": 0.0, "min": 0.0, "7": 0.15, "maj7": 0.15, "min7": 0.15, "dim": 0.1}
PENALTY |= {"sus4": 0.1, "sus2": 0.1}
SUFFIX = {"maj": "", "min": "m", "7": "7", "maj7": "maj7", "min7": "m7", "dim": "dim"}
SUFFIX |= {"sus4": "sus4", "sus2": "sus2"}
ROOT_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
N_QUALITIES = len(QUALITIES)
NO_CHORD = 12 * N_QUALITIES  # the last token
N_TOKENS = NO_CHORD + 1

_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# What people write after the root, folded onto the eight qualities: sixths and
# added tones onto their triad, ninths onto their seventh, half- and fully
# diminished sevenths onto dim, augmented onto major (0.1 % of POP909's chords).
_SPELLINGS: dict[str, str] = {
    "": "maj", "maj": "maj", "M": "maj", "6": "maj", "add9": "maj", "aug": "maj", "+": "maj",
    "m": "min", "min": "min", "-": "min", "m6": "min", "madd9": "min", "mmaj7": "min",
    "7": "7", "9": "7", "13": "7", "dom7": "7", "7sus4": "sus4",
    "maj7": "maj7", "M7": "maj7", "maj9": "maj7", "^7": "maj7",
    "m7": "min7", "min7": "min7", "-7": "min7", "m9": "min7",
    "dim": "dim", "o": "dim", "°": "dim", "dim7": "dim", "o7": "dim", "m7b5": "dim", "ø": "dim",
    "sus4": "sus4", "sus": "sus4", "sus2": "sus2",
}  # fmt: skip
_NAME = re.compile(r"^([A-G])([#b]?)([^/]*)(?:/([A-G][#b]?))?$")
_NO_CHORD_NAMES = {"N", "NC", "N.C.", "-"}


def pitch_class(name: str) -> int:
    """``"Bb"`` -> 10. Raises UserError for anything that is not a note name."""
    if not name or name[0] not in _LETTER or name[1:] not in ("", "#", "b"):
        raise UserError(f"not a note name: {name!r}")
    shift = {"": 0, "#": 1, "b": -1}[name[1:]]
    return (_LETTER[name[0]] + shift) % 12


@dataclass(frozen=True)
class Chord:
    """A root (pitch class 0-11) and a quality, or no chord (root None).

    ``bass`` is a slash chord's bass pitch class; None means the root.
    """

    root: int | None
    quality: str = "maj"
    bass: int | None = None

    @classmethod
    def parse(cls, name: str) -> Chord:
        """A chord symbol as people write it: C, Am, F#m7, Bbmaj7, G7, Bdim, Dsus4, C/E, N."""
        text = name.strip()
        if text in _NO_CHORD_NAMES:
            return NONE
        match = _NAME.match(text)
        if not match or match.group(3) not in _SPELLINGS:
            raise UserError(
                f"not a chord name: {name!r} (try C, Am, G7, Fmaj7, Dm7, Bdim, Gsus4, N)"
            )
        letter, accidental, suffix, bass = match.groups()
        root = pitch_class(letter + accidental)
        bass_pc = pitch_class(bass) if bass else None
        return cls(root, _SPELLINGS[suffix], None if bass_pc == root else bass_pc)

    @classmethod
    def from_token(cls, token: int) -> Chord:
        if not 0 <= token < N_TOKENS:
            raise ValueError(f"chord token {token} out of range 0..{N_TOKENS - 1}")
        if token == NO_CHORD:
            return NONE
        return cls(token // N_QUALITIES, QUALITY_NAMES[token % N_QUALITIES])

    @property
    def token(self) -> int:
        if self.root is None:
            return NO_CHORD
        return self.root * N_QUALITIES + QUALITY_NAMES.index(self.quality)

    @property
    def name(self) -> str:
        if self.root is None:
            return "N"
        slash = f"/{ROOT_NAMES[self.bass]}" if self.bass is not None else ""
        return ROOT_NAMES[self.root] + SUFFIX[self.quality] + slash

    @property
    def pitch_classes(self) -> frozenset[int]:
        """The chord tones (the slash bass included)."""
        if self.root is None:
            return frozenset()
        tones = {(self.root + i) % 12 for i in QUALITIES[self.quality]}
        return frozenset(tones | ({self.bass} if self.bass is not None else set()))

    @property
    def bass_class(self) -> int | None:
        """The pitch class the bass plays: the slash bass, else the root."""
        return self.bass if self.bass is not None else self.root

    def transposed(self, semitones: int) -> Chord:
        if self.root is None:
            return self
        bass = None if self.bass is None else (self.bass + semitones) % 12
        return Chord((self.root + semitones) % 12, self.quality, bass)


NONE = Chord(None)


def parse_progression(text: str, cells_per_bar: int = 2) -> list[Chord]:
    """Bars split by ``|``; a bar holds one chord (it fills the bar) or ``cells_per_bar``.

    Returns one chord per cell (half bar in 4/4). One line of UserError on a bad bar.
    """
    bars = [bar.split() for bar in text.split("|")]
    if not any(bars):
        raise UserError("no chords given (write bars split by |, e.g. 'C | G | Am F | F G')")
    cells: list[Chord] = []
    for number, names in enumerate(bars, start=1):
        if not names:
            raise UserError(f"bar {number} of the chords is empty")
        if len(names) not in (1, cells_per_bar):
            raise UserError(
                f"bar {number} of the chords has {len(names)} chords; "
                f"give 1 or {cells_per_bar} a bar"
            )
        chords = [Chord.parse(n) for n in names]
        cells.extend(chords * (cells_per_bar // len(chords)))
    return cells


def progression_text(cells: Sequence[Chord], cells_per_bar: int = 2) -> str:
    """The inverse of :func:`parse_progression`, one chord per bar where both halves agree.

    >>> progression_text([Chord.parse(n) for n in "C C G7 Am".split()])
    'C | G7 Am'
    """
    bars = []
    for start in range(0, len(cells), cells_per_bar):
        names = [c.name for c in cells[start : start + cells_per_bar]]
        bars.append(names[0] if len(set(names)) == 1 else " ".join(names))
    return " | ".join(bars)


def chord_of_weights(
    weights: Sequence[float] | np.ndarray,
    bass: int | None = None,
    qualities: Sequence[str] = QUALITY_NAMES,
) -> Chord:
    """The chord that best explains how long each pitch class sounds.

    A reading scores the weight its tones cover, minus half the weight they leave out,
    minus its :data:`PENALTY`, plus a bonus when ``bass`` (the lowest voice's pitch
    class) is its root; a bass that is a chord tone but not the root makes a slash
    chord. No chord for silence.

    >>> chord_of_weights([2, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0], bass=0).name
    'C'
    >>> chord_of_weights([1, 0, 0, 0, 2, 0, 0, 1, 0, 0, 0, 0], bass=4).name
    'C/E'
    """
    w = np.asarray(weights, np.float64)
    total = float(w.sum())
    if total <= 0:
        return NONE
    best, best_score = NONE, -np.inf
    for root in range(12):
        for quality in qualities:
            members = [(root + i) % 12 for i in QUALITIES[quality]]
            covered = float(w[members].sum())
            score = covered - 0.5 * (total - covered) - PENALTY[quality] * total
            score += 0.25 * total if bass == root else 0.0
            if score > best_score:
                slash = bass if bass is not None and bass != root and bass in members else None
                best, best_score = Chord(root, quality, slash), score
    return best


def fingered(pitches: Iterable[int]) -> Chord:
    """The chord a hand holds, as an arranger keyboard reads it; the lowest key is the bass.

    >>> fingered([57, 60, 64]).name, fingered([52, 55, 60]).name, fingered([60, 64, 67, 70]).name
    ('Am', 'C/E', 'C7')
    >>> fingered([60]).name, fingered([]).name
    ('C', 'N')
    """
    held = sorted(set(pitches))
    if not held:
        return NONE
    weights = np.zeros(12)
    weights[[p % 12 for p in held]] = 1.0
    return chord_of_weights(weights, bass=held[0] % 12)


# Per token: its root one-hot, its tones, and the no-chord flag (see chord_steps).
_ROOTS = np.zeros((N_TOKENS, 12), np.float32)
_TONES = np.zeros((N_TOKENS, 12), np.float32)
for _token in range(NO_CHORD):
    _chord = Chord.from_token(_token)
    _ROOTS[_token, _chord.root] = 1.0
    _TONES[_token, sorted(_chord.pitch_classes)] = 1.0
CHORD_FEATURES = 12 * 3 + 1


def chord_steps(tokens: np.ndarray, bass: np.ndarray, cell_steps: int) -> np.ndarray:
    """Chord tokens per cell (..., C) -> the genre models' chord input (..., C * cell_steps, 37).

    Per step: the root (one-hot), the chord tones (multi-hot), the bass pitch class
    (one-hot; ``bass`` -1 means the root) and a no-chord flag.

    >>> x = chord_steps(np.array([Chord.parse("Am").token]), np.array([-1]), 2)
    >>> x.shape, np.flatnonzero(x[0]).tolist()
    ((2, 37), [9, 12, 16, 21, 33])
    """
    tokens = np.asarray(tokens, np.int64)
    bass = np.asarray(bass, np.int64)
    roots = _ROOTS[tokens]
    bass_onehot = np.where((bass >= 0)[..., None], np.eye(12, dtype=np.float32)[bass % 12], roots)
    none = (tokens == NO_CHORD)[..., None].astype(np.float32)
    cells = np.concatenate([roots, _TONES[tokens], bass_onehot, none], axis=-1)
    return np.repeat(cells, cell_steps, axis=-2)
