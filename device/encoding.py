"""The music encoding every part of deepkeys shares.

Time is counted in 16th-note *steps* on a 4/4 grid (16 steps a bar). A note is a
plain value object; a monophonic *voice* is two arrays, the pitch at each step
(``REST`` for silence) and an onset flag, so that repeated notes of the same pitch
(re-attacks) survive the trip through a model.

>>> pitch, onset = notes_to_voice([Note(60, 0, 4), Note(60, 4, 6)], 8)
>>> pitch.tolist(), onset.astype(int).tolist()
([60, 60, 60, 60, 60, 60, -1, -1], [1, 0, 0, 0, 1, 0, 0, 0])
>>> voice_to_notes(pitch, onset)
[Note(pitch=60, start=0, end=4, velocity=96), Note(pitch=60, start=4, end=6, velocity=96)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from deepkeys.device.chords import Chord

STEPS_PER_BEAT = 4
BEATS_PER_BAR = 4
STEPS_PER_BAR = STEPS_PER_BEAT * BEATS_PER_BAR
CHORD_STEPS = STEPS_PER_BAR // 2  # a composition's chords: one per half bar
REST = -1
DEFAULT_VELOCITY = 96

#: A tempo change inside a piece: from this grid step on, this many BPM.
TempoChange = tuple[int, float]


class RollShape:
    """``steps`` and ``n_pitches`` of a roll ``bars`` long over ``pitch_low..pitch_high``:
    for the dataclasses that carry those three fields (a model card, the host's model
    config), so the two derive them one way.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Window(RollShape):
    ...     bars: int = 4
    ...     pitch_low: int = 24
    ...     pitch_high: int = 107
    >>> Window().steps, Window().n_pitches
    (64, 84)
    """

    __slots__ = ()  # the dataclasses that use it keep their slots
    bars: int
    pitch_low: int
    pitch_high: int

    @property
    def steps(self) -> int:
        return self.bars * STEPS_PER_BAR

    @property
    def n_pitches(self) -> int:
        return self.pitch_high - self.pitch_low + 1


# Drum parts are onsets of a few instrument classes, not of 47 GM drum notes: MMA's
# styles and users' files spell the same groove with different notes (a side-stick
# or a snare, a shaker or a cabasa). Each class lists its General MIDI notes, the
# first being the one it plays back with unless a model card says otherwise.
DRUM_CLASSES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("kick", (36, 35)),
    ("snare", (38, 37, 39, 40)),
    ("closed_hat", (42, 44)),
    ("open_hat", (46,)),
    ("ride", (51, 53, 59)),
    ("crash", (49, 52, 55, 57)),
    ("tom", (45, 41, 43, 47, 48, 50)),
    ("shaker", (70, 54, 56, 58, 69, 73, 74, 75, 76, 77, 80, 81, 82)),
    ("hand_drum", (63, 60, 61, 62, 64, 65, 66, 67, 68, 71, 72, 78, 79)),
)
DEFAULT_DRUM_NOTES = tuple(notes[0] for _, notes in DRUM_CLASSES)
_DRUM_CLASS_OF = {note: i for i, (_, notes) in enumerate(DRUM_CLASSES) for note in notes}


def drum_class_of(note: int) -> int | None:
    """The :data:`DRUM_CLASSES` index of a GM drum note, or None for one we do not model.

    >>> drum_class_of(36), drum_class_of(42), drum_class_of(20)
    (0, 2, None)
    """
    return _DRUM_CLASS_OF.get(note)


@dataclass(frozen=True, slots=True)
class Note:
    """One note on the step grid: ``start`` inclusive, ``end`` exclusive."""

    pitch: int
    start: int
    end: int
    velocity: int = DEFAULT_VELOCITY

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(slots=True)
class Track:
    """One part of a composition, with the General MIDI program that plays it."""

    name: str
    program: int
    notes: list[Note] = field(default_factory=list)
    is_drum: bool = False
    channel: int = 0


@dataclass(slots=True)
class Composition:
    """A melody and its accompaniment. ``tracks[0]`` is always the melody.

    ``swing`` is the share of each beat taken by its first 8th note: 0.5 is
    straight, about 0.67 is a triplet swing. Notes stay on the straight grid; the
    swing is applied only when steps become time (``step_to_beats``).

    ``tempo_bpm`` is the opening tempo; ``tempo_changes`` the input's later ones,
    which the file and the WAV keep (a live loop plays at the panel's one tempo).

    >>> comp = Composition([], 32, 90.0, tempo_changes=[(16, 180.0)])
    >>> comp.seconds_at(4.0), comp.seconds_at(6.0), comp.seconds
    (2.6666666666666665, 3.333333333333333, 4.0)
    """

    tracks: list[Track]
    n_steps: int
    tempo_bpm: float
    swing: float = 0.5
    groove: str | None = None  # which of a style genre's grooves accompanies it
    chords: list[Chord] = field(default_factory=list)  # one per half bar, as every part plays
    tempo_changes: list[TempoChange] = field(default_factory=list)  # by step, after step 0

    @property
    def seconds(self) -> float:
        return self.seconds_at(step_to_beats(self.n_steps, self.swing))

    def tempo_map(self) -> list[tuple[float, float]]:
        """``(beat, bpm)`` from beat 0 on, each change where its step falls once swung."""
        changes = [(step_to_beats(step, self.swing), bpm) for step, bpm in self.tempo_changes]
        return [(0.0, self.tempo_bpm), *sorted(changes)]

    def seconds_at(self, beat: float) -> float:
        """When ``beat`` sounds, in seconds from the start, through every tempo change."""
        seconds, tempo_map = 0.0, self.tempo_map()
        for (start, bpm), (end, _) in zip(tempo_map, [*tempo_map[1:], (math.inf, 0.0)]):
            seconds += (min(beat, end) - start) * 60.0 / bpm
            if beat <= end:
                break
        return seconds


@dataclass
class Melody:
    """A monophonic melody on the 16th grid, as read from a file.

    ``n_steps`` is a whole number of bars that holds every note; ``source`` is the
    name of the file it came from; ``tempo_changes`` are the file's tempo changes
    after its opening ``tempo_bpm``; ``meters`` every time signature the file
    states, in order (none stated is MIDI's default, 4/4).
    """

    notes: list[Note]
    n_steps: int
    tempo_bpm: float
    source: str
    tempo_changes: list[TempoChange] = field(default_factory=list)
    meters: list[tuple[int, int]] = field(default_factory=lambda: [(4, 4)])


def step_to_beats(step: float, swing: float = 0.5) -> float:
    """Where a grid step falls, in beats, once swing is applied.

    >>> step_to_beats(2), step_to_beats(2, swing=2 / 3), step_to_beats(4, swing=2 / 3)
    (0.5, 0.6666666666666666, 1.0)
    """
    beat, within = divmod(step, STEPS_PER_BEAT)
    half = STEPS_PER_BEAT / 2
    if within <= half:
        frac = within / half * swing
    else:
        frac = swing + (within - half) / half * (1.0 - swing)
    return beat + frac


def notes_to_voice(notes: Iterable[Note], n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Lay notes onto a monophonic voice; where notes overlap, the highest one wins.

    Returns ``(pitch, onset)``: int16 pitches with ``REST`` for silence, and a bool
    onset flag that is set where a note begins or where the top pitch changes.
    """
    pitch = np.full(n_steps, REST, dtype=np.int16)
    started = np.zeros(n_steps, dtype=bool)
    for note in sorted(notes, key=lambda n: (n.start, n.pitch)):
        lo, hi = max(note.start, 0), min(note.end, n_steps)
        if lo >= hi:
            continue
        span = pitch[lo:hi]
        higher = note.pitch >= span
        if higher[0]:
            started[lo] = True
        span[higher] = note.pitch
    onset = started & (pitch != REST)
    changed = np.zeros(n_steps, dtype=bool)
    changed[1:] = pitch[1:] != pitch[:-1]
    changed[0] = pitch[0] != REST
    onset |= changed & (pitch != REST)
    return pitch, onset


def voice_to_notes(
    pitch: np.ndarray, onset: np.ndarray, velocity: int = DEFAULT_VELOCITY
) -> list[Note]:
    """Turn a monophonic voice back into notes. A note ends at a rest, a pitch change
    or an onset."""
    notes: list[Note] = []
    start, current = 0, REST
    for t, p in enumerate(pitch.tolist()):
        if current != REST and (p != current or onset[t]):
            notes.append(Note(current, start, t, velocity))
            current = REST
        if p != REST and current == REST:
            start, current = t, p
    if current != REST:
        notes.append(Note(current, start, len(pitch), velocity))
    return notes


def notes_to_roll(notes: Iterable[Note], n_steps: int, n_pitches: int = 128) -> np.ndarray:
    """A boolean piano roll of shape (n_steps, n_pitches) where notes sound."""
    roll = np.zeros((n_steps, n_pitches), dtype=bool)
    for note in notes:
        if 0 <= note.pitch < n_pitches:
            roll[max(note.start, 0) : min(note.end, n_steps), note.pitch] = True
    return roll


def top_line(notes: list[Note], n_steps: int) -> list[Note]:
    """The highest sounding note at each step, re-attacks kept, velocities kept.

    >>> top_line([Note(60, 0, 8, 50), Note(67, 4, 6, 90), Note(67, 6, 8, 70)], 16)
    [Note(pitch=60, start=0, end=4, velocity=50), Note(pitch=67, start=4, end=6, velocity=90), \
Note(pitch=67, start=6, end=8, velocity=70)]
    """
    pitch, onset = notes_to_voice(notes, n_steps)
    by_pitch: dict[int, list[Note]] = {}
    for note in notes:
        by_pitch.setdefault(note.pitch, []).append(note)
    line = voice_to_notes(pitch, onset)
    return [Note(n.pitch, n.start, n.end, _velocity_at(by_pitch[n.pitch], n)) for n in line]


def _velocity_at(same_pitch: list[Note], top: Note) -> int:
    """The velocity of the source note (of the same pitch) that this top-line note came from."""
    covering = [n for n in same_pitch if n.start <= top.start < n.end]
    # The note struck at this very step if there is one, else the latest one still held.
    return max(covering, key=lambda n: (n.start == top.start, n.start, n.velocity)).velocity
