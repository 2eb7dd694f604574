"""The recording clock and the take: keys played in real time become a melody on the grid.

No I/O and no threads: the caller hands in ``time.monotonic()`` times. A recorder
is made when RECORD is pressed; it knows the count-in, when recording starts,
which bar a moment falls in and when ``max_bars`` are full. It collects note-ons
and note-offs and, at :meth:`TakeRecorder.stop`, turns them into a :class:`Take`,
which is a :class:`~deepkeys.device.encoding.Melody` on the 16th grid.

At 100 BPM a beat is 0.6 s, a 16th 0.15 s and a bar 2.4 s:

>>> rec = TakeRecorder(tempo_bpm=100, start_t=0.0, count_in_bars=1, max_bars=8)
>>> rec.record_t, round(rec.end_t, 3)
(2.4, 21.6)
>>> rec.note_on(60, 90, 2.43); rec.note_off(60, 2.68)   # a little late, a little short
>>> take = rec.stop(4.0)
>>> take.notes, take.n_steps
([Note(pitch=60, start=0, end=2, velocity=90)], 16)

With a split point (``player.split_note``), the keys below it are not melody but
chord hints, read per half bar as an arranger keyboard reads a hand (the keys held
for at least half of it; the lowest is the bass):

>>> rec = TakeRecorder(100, start_t=0.0, count_in_bars=0, split_note=60)
>>> for pitch in (45, 48, 52):
...     rec.note_on(pitch, 80, 0.0)
>>> rec.note_on(72, 90, 0.0); rec.note_off(72, 0.5)
>>> take = rec.stop(2.4)
>>> [n.pitch for n in take.notes], {cell: chord.name for cell, chord in take.hints.items()}
([72], {0: 'Am', 1: 'Am'})
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from deepkeys.device.chords import Chord, fingered
from deepkeys.device.encoding import (
    BEATS_PER_BAR,
    STEPS_PER_BAR,
    STEPS_PER_BEAT,
    Melody,
    Note,
    top_line,  # the same reduction to one line that files get
)
from deepkeys.device.events import NoteOff, NoteOn
from deepkeys.device.generation.harmony import CELL_STEPS
from deepkeys.device.gm import NOTE_OFF, NOTE_ON, PROGRAM
from deepkeys.device.timeline import TimedEvent, sort_events

_TIE = 1e-9  # a time exactly halfway between two steps goes to the later one, despite float error


@dataclass(frozen=True, slots=True)
class RawNote:
    """A played note as it happened: seconds from the start of bar 0 (negative = count-in)."""

    pitch: int
    on: float
    off: float
    velocity: int


@dataclass
class Take(Melody):
    """A recorded melody: a :class:`Melody` on the grid, plus how it was really played.

    ``notes`` are always on the 16th grid, because that is what a model reads.
    ``raw`` keeps the performance's own times (seconds from bar 0); when
    ``rhythm_assist`` was off, the take is saved with those rather than the grid
    (:meth:`performance_events`).
    ``dropped`` counts notes outside the recorded bars (begun in the count-in or
    after the end), ``orphan_offs`` note-offs that had no note-on. ``hints`` are the
    chords fingered below the split point: half-bar cell -> chord.
    """

    raw: list[RawNote] = field(default_factory=list)
    hints: dict[int, Chord] = field(default_factory=dict)
    rhythm_assist: bool = True
    dropped: int = 0
    orphan_offs: int = 0

    def performance_events(self, channel: int = 0, program: int = 0) -> list[TimedEvent]:
        """The take as it was played, in beats: what a file of it holds without rhythm assist.

        >>> take = Take([Note(60, 0, 2)], 16, 120.0, "take", raw=[RawNote(60, 0.02, 0.27, 90)])
        >>> [(round(beat, 2), hex(status)) for beat, status, *_ in take.performance_events()]
        [(0.0, '0xc0'), (0.04, '0x90'), (0.54, '0x80')]
        """
        beats_per_second = self.tempo_bpm / 60.0
        length = self.n_steps / STEPS_PER_BEAT
        events: list[TimedEvent] = [(0.0, PROGRAM, channel, program, 0)]
        for note in self.raw:
            on = min(max(note.on * beats_per_second, 0.0), length)
            off = min(max(note.off * beats_per_second, on), length)
            events.append((on, NOTE_ON, channel, note.pitch, note.velocity))
            events.append((off, NOTE_OFF, channel, note.pitch, 0))
        return sort_events(events)


class TakeRecorder:
    """One take, from the first count-in click to stop."""

    def __init__(
        self,
        tempo_bpm: float,
        start_t: float,
        count_in_bars: int = 1,
        max_bars: int = 8,
        rhythm_assist: bool = True,
        split_note: int = 0,
    ) -> None:
        if tempo_bpm <= 0 or count_in_bars < 0 or max_bars < 1:
            raise ValueError("tempo_bpm must be > 0, count_in_bars >= 0 and max_bars >= 1")
        self.tempo_bpm = tempo_bpm
        self.start_t = start_t
        self.count_in_bars = count_in_bars
        self.max_bars = max_bars
        self.rhythm_assist = rhythm_assist
        self.split_note = split_note  # keys below it are chord hints; 0 = no split
        self.beat_s = 60.0 / tempo_bpm
        self.step_s = self.beat_s / STEPS_PER_BEAT
        self.bar_s = self.beat_s * BEATS_PER_BAR
        self.record_t = start_t + count_in_bars * self.bar_s  # bar 0, beat 1
        self.end_t = self.record_t + max_bars * self.bar_s  # max_bars are full
        self.orphan_offs = 0
        self.stopped = False
        self._held: dict[int, tuple[float, int]] = {}  # pitch -> (on time, velocity)
        self._played: list[tuple[int, float, float, int]] = []  # (pitch, on, off, velocity)
        self._hint_held: dict[int, float] = {}  # pitch -> on time, below the split
        self._hint_played: list[tuple[int, float, float]] = []  # (pitch, on, off)

    # --- the clock --------------------------------------------------------------------
    def bar_at(self, t: float) -> int:
        """The bar at time ``t``: 0 is the first recorded bar, the count-in bars are negative.

        >>> rec = TakeRecorder(100, start_t=10.0)
        >>> rec.bar_at(10.0), rec.bar_at(12.4), rec.bar_at(14.79), rec.bar_at(14.8)
        (-1, 0, 0, 1)
        """
        return math.floor((t - self.record_t) / self.bar_s + _TIE)

    def phase(self, t: float) -> str:
        """ "count_in" before bar 0, "recording" during the bars, "full" once max_bars are over."""
        if t < self.record_t:
            return "count_in"
        return "recording" if t < self.end_t else "full"

    def _hints(self, n_steps: int) -> dict[int, Chord]:
        """The chord fingered in each half-bar cell: the keys held for half of it or more."""
        cell_s = CELL_STEPS * self.step_s
        hints = {}
        for cell in range(n_steps // CELL_STEPS):
            lo = self.record_t + cell * cell_s
            held = [
                pitch
                for pitch, on, off in self._hint_played
                if min(off, lo + cell_s) - max(on, lo) >= cell_s / 2 - _TIE
            ]
            if held:
                hints[cell] = fingered(held)
        return hints

    # --- the notes --------------------------------------------------------------------
    def note_on(self, pitch: int, velocity: int, t: float) -> None:
        if velocity == 0:  # running status: a note-on with velocity 0 is a note-off
            self.note_off(pitch, t)
            return
        if self.stopped or not self.start_t <= t < self.end_t:
            return
        if pitch < self.split_note:
            self._hint_held.setdefault(pitch, t)
            return
        if pitch in self._held:  # struck again while still down: the first one ends here
            self.note_off(pitch, t)
        self._held[pitch] = (t, velocity)

    def note_off(self, pitch: int, t: float) -> None:
        if self.stopped:
            return
        if pitch < self.split_note:
            if pitch in self._hint_held:
                self._hint_played.append((pitch, self._hint_held.pop(pitch), min(t, self.end_t)))
            return
        if pitch not in self._held:
            self.orphan_offs += 1  # released before we saw it struck, or a duplicate off
            return
        on, velocity = self._held.pop(pitch)
        self._played.append((pitch, on, min(t, self.end_t), velocity))

    def feed(self, event: NoteOn | NoteOff) -> None:
        """Take a :class:`NoteOn` or :class:`NoteOff` event, at the time it carries."""
        if isinstance(event, NoteOn):
            self.note_on(event.note, event.velocity, event.t)
        else:
            self.note_off(event.note, event.t)

    @property
    def played(self) -> int:
        """Notes struck so far, held ones included (what a screen shows while recording)."""
        return len(self._played) + len(self._held)

    # --- the take ---------------------------------------------------------------------
    def stop(self, t: float) -> Take | None:
        """End the take at ``t`` (clamped to the recorded bars); ``None`` if nothing was played.

        Notes still held end at ``t``. The take lasts the bars recorded: ``t`` rounded
        to the nearest bar (a slightly late stop does not add an empty bar), but at
        least up to the bar of the last note, at least 1 and at most ``max_bars``.
        """
        t = min(max(t, self.record_t), self.end_t)
        for pitch in [*self._held, *self._hint_held]:
            self.note_off(pitch, t)
        self.stopped = True

        notes: list[Note] = []
        raw: list[RawNote] = []
        dropped = 0
        max_steps = self.max_bars * STEPS_PER_BAR
        for pitch, on, off, velocity in sorted(self._played, key=lambda p: (p[1], p[0])):
            start = self._step(on)
            if not 0 <= start < max_steps:
                dropped += 1  # begun in the count-in (more than half a 16th early) or too late
                continue
            notes.append(Note(pitch, start, max(self._step(off), start + 1), velocity))
            raw.append(RawNote(pitch, on - self.record_t, off - self.record_t, velocity))
        if not notes:
            return None

        by_time = math.floor((t - self.record_t) / self.bar_s + 0.5 + _TIE)
        by_notes = max(n.start for n in notes) // STEPS_PER_BAR + 1
        n_steps = min(max(by_time, by_notes, 1), self.max_bars) * STEPS_PER_BAR
        notes = [Note(n.pitch, n.start, min(n.end, n_steps), n.velocity) for n in notes]
        return Take(
            top_line(notes, n_steps),
            n_steps,
            float(self.tempo_bpm),
            "take",
            raw=raw,
            rhythm_assist=self.rhythm_assist,
            dropped=dropped,
            orphan_offs=self.orphan_offs,
            hints=self._hints(n_steps),
        )

    def _step(self, t: float) -> int:
        """The nearest 16th step to time ``t`` (step 0 = the start of bar 0)."""
        return math.floor((t - self.record_t) / self.step_s + 0.5 + _TIE)
