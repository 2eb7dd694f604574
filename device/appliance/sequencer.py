"""Loop playback of a composition, in samples, driven by the audio thread.

The transport keeps its position in *beats*, never in seconds, so a tempo change
takes effect at the next block without a jump: the position is re-anchored to
the block where the new tempo starts. Each block the audio thread asks
:meth:`Sequencer.events_for_block` for the events that fall inside it, with their
sample offsets, and hands them to :meth:`Synth.render`.

Grid steps become beats through :func:`~deepkeys.device.timeline.composition_events`
(so swing, event order and drum channels are exactly those of the MIDI file).

>>> from deepkeys.device.encoding import Note, Track
>>> seq = Sequencer(rate=48000, tempo_bpm=120.0)    # 24,000 samples a beat
>>> comp = Composition([Track("m", 0, [Note(60, 0, 4), Note(62, 8, 12)])], 16, 120.0)
>>> seq.play(comp)
>>> [(off, hex(st), ch, note) for off, st, ch, note, _ in seq.events_for_block(0, 48000)]
[(0, '0xc0', 1, 0), (0, '0x90', 1, 60), (24000, '0x80', 1, 60)]

(The melody moved from channel 0 to 1: channel 0 belongs to the keys.)
>>> seq.position()
(0, 0)

The main thread calls :meth:`play`, :meth:`queue`, :meth:`count_in`,
:meth:`stop` and :meth:`set_tempo`; each only appends a command to a lock-free
queue that the audio thread reads at the start of its next block.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deepkeys.device.adapters.synth import CLICK_CHANNEL, LIVE_CHANNEL, BlockEvent
from deepkeys.device.encoding import BEATS_PER_BAR, STEPS_PER_BAR, STEPS_PER_BEAT, Composition
from deepkeys.device.gm import (
    ALL_NOTES_OFF,
    CHANNELS,
    CONTROL,
    DRUM_CHANNEL,
    NOTE_ON,
    PROGRAM,
    SUSTAIN,
)
from deepkeys.device.timeline import composition_events, track_channel

# The metronome: high wood block on beat 1, low wood block on the others (GM percussion).
CLICK_ACCENT = (76, 127)
CLICK_BEAT = (77, 90)

STOPPED, COUNT_IN, PLAYING = "stopped", "count_in", "playing"


@dataclass(frozen=True)
class Pattern:
    """A composition made ready to loop: events in beats, sorted, within one loop.

    ``events`` are ``(beat, status, channel, data1, data2)``. Notes that would
    ring past the loop end are cut at it, so no note ever hangs across a loop
    or a switch. Channels that the keys or the click use are moved to free ones.
    """

    events: tuple[tuple[float, int, int, int, int], ...]
    length: float  # beats in one loop
    swing: float
    channels: tuple[int, ...]

    @classmethod
    def from_composition(
        cls, comp: Composition, avoid: tuple[int, ...] = (LIVE_CHANNEL, CLICK_CHANNEL)
    ) -> Pattern:
        if comp.n_steps <= 0:
            raise ValueError("a composition to loop needs at least one step")
        length = comp.n_steps / STEPS_PER_BEAT  # swing never moves a whole beat
        remap = _channel_map(comp, avoid)
        out: list[tuple[float, int, int, int, int]] = []
        for beat, status, channel, data1, data2 in composition_events(comp):
            channel = remap.get(channel, channel)
            if status == PROGRAM:
                out.append((beat, status, channel, data1, 0))
            elif status == NOTE_ON:
                if beat < length:
                    out.append((beat, status, channel, data1, data2))
            else:
                out.append((min(beat, length), status, channel, data1, 0))
        out.sort(key=lambda e: e[0])  # stable: the MIDI order at equal beats survives
        channels = tuple(sorted({e[2] for e in out}))
        return cls(tuple(out), length, comp.swing, channels)


def _channel_map(comp: Composition, avoid: tuple[int, ...]) -> dict[int, int]:
    """Move tracks off the channels in ``avoid`` onto channels no track uses."""
    used = {track_channel(comp, i) for i in range(len(comp.tracks))}
    free = [c for c in range(CHANNELS) if c not in used and c not in avoid and c != DRUM_CHANNEL]
    remap: dict[int, int] = {}
    for channel in sorted(used):
        if channel in avoid:
            if not free:
                raise ValueError("too many tracks: no free MIDI channel left")
            remap[channel] = free.pop(0)
    return remap


class Sequencer:
    """Loops a composition and clicks a metronome, in samples at a live tempo.

    ``on_loop(loop, sample)`` is called from the audio thread whenever the
    transport reaches beat 0 of a loop (start, end of count-in, every wrap), with
    the stream sample where that happens. It must not block: put it on a queue.
    """

    def __init__(
        self,
        rate: int = 48000,
        tempo_bpm: float = 120.0,
        on_loop: Callable[[int, int], Any] | None = None,
    ) -> None:
        if tempo_bpm <= 0:
            raise ValueError("tempo must be positive")
        self.rate = rate
        self.on_loop = on_loop
        self.metronome = False  # click on every beat while playing (a count-in always clicks)
        self.loops = 0  # loop boundaries passed since the last play()
        self._commands: deque[tuple[Any, ...]] = deque()
        self._tempo = float(tempo_bpm)  # in force on the audio thread
        self._requested_tempo = self._tempo
        self._spb = rate * 60.0 / self._tempo  # samples per beat
        self._state = STOPPED
        self._pattern: Pattern | None = None  # None while playing: free-running clicks only
        self._next: Pattern | None = None  # switches in at the next boundary
        self._anchor_sample = 0
        self._anchor_beats = 0.0
        self._index = 0  # next event of the pattern
        self._next_click = 0  # next whole beat to click
        self._beats = 0.0  # where the last block started, for position()
        self._out: list[BlockEvent] = []

    # ---------------------------------------------------------------- main thread
    def play(self, comp: Composition) -> None:
        """Start looping ``comp`` from its beginning at the next block.

        The tempo is not changed: call :meth:`set_tempo` (e.g. with
        ``comp.tempo_bpm``) as you wish.
        """
        self._commands.append(("play", Pattern.from_composition(comp)))

    def queue(self, comp: Composition) -> None:
        """Play ``comp`` next: exactly at the next loop boundary, or at once if stopped."""
        self._commands.append(("queue", Pattern.from_composition(comp)))

    def count_in(self, bars: int = 1, then: Composition | None = None) -> None:
        """Click ``bars`` bars (accent on beat 1), then play ``then`` from beat 0,
        or, if None, run on at the tempo (clicking if :attr:`metronome`) with the
        position counting up from bar 0: what recording a melody needs."""
        if bars < 0:
            raise ValueError("bars must be >= 0")
        pattern = Pattern.from_composition(then) if then is not None else None
        self._commands.append(("count_in", bars, pattern))

    def stop(self) -> None:
        """Stop at the next block and release every note the sequencer started."""
        self._commands.append(("stop",))

    def set_tempo(self, bpm: float) -> None:
        """Change the tempo from the next block on; the position does not jump."""
        if bpm <= 0:
            raise ValueError("tempo must be positive")
        self._requested_tempo = float(bpm)
        self._commands.append(("tempo", float(bpm)))

    @property
    def tempo(self) -> float:
        """The tempo last set (the audio thread takes it up at its next block)."""
        return self._requested_tempo

    @property
    def state(self) -> str:
        """ "stopped", "count_in" or "playing"."""
        return self._state

    @property
    def beats(self) -> float:
        """The position at the start of the last block, in beats (negative in a count-in)."""
        return self._beats

    def position(self) -> tuple[int, int]:
        """(bar, step within the bar) at the last block, for the UI. A count-in
        shows negative bars; swung steps are read back onto the straight grid."""
        beats = self._beats
        pattern = self._pattern
        swing = pattern.swing if pattern is not None and self._state == PLAYING else 0.5
        step = math.floor(_beats_to_step(beats, swing) + 1e-6)
        bar, within = divmod(step, STEPS_PER_BAR)
        return bar, within

    # ---------------------------------------------------------------- audio thread
    def events_for_block(self, start_sample: int, frames: int) -> list[BlockEvent]:
        """The events in samples ``[start_sample, start_sample + frames)``, as
        ``(offset, status, channel, data1, data2)`` sorted by offset.

        ``start_sample`` is the stream position and must advance by ``frames``
        each call. The returned list is reused by the next call.
        """
        out = self._out
        out.clear()
        while self._commands:
            self._command(self._commands.popleft(), start_sample)
        if self._state == STOPPED:
            self._beats = 0.0
            return out
        self._beats = self._beat_at(start_sample)
        end = start_sample + frames
        while True:
            end_beat = self._segment_end()
            boundary = None if end_beat is None else self._sample_at(end_beat)
            if boundary is not None and boundary < end:
                # Everything left in this loop (or count-in) sounds at the boundary at the latest.
                self._emit(start_sample, boundary, end_beat, flush=True)
                self._cross(boundary)
                continue
            self._emit(start_sample, end, end_beat, flush=False)
            return out

    def _emit(self, start: int, limit: int, end_beat: float | None, flush: bool) -> None:
        out = self._out
        pattern = self._pattern if self._state == PLAYING else None
        if pattern is not None:
            events = pattern.events
            while self._index < len(events):
                beat, status, channel, data1, data2 = events[self._index]
                sample = self._sample_at(beat)
                if sample >= limit and not flush:
                    break
                out.append((max(min(sample, limit) - start, 0), status, channel, data1, data2))
                self._index += 1
        if self._state == COUNT_IN or self.metronome:
            while end_beat is None or self._next_click < end_beat:
                sample = self._sample_at(self._next_click)
                if sample >= limit and not flush:
                    break
                note, velocity = (
                    CLICK_ACCENT if self._next_click % BEATS_PER_BAR == 0 else CLICK_BEAT
                )
                offset = max(min(sample, limit) - start, 0)
                _insert(out, (offset, NOTE_ON, CLICK_CHANNEL, note, velocity))
                self._next_click += 1
        else:
            # Keep the click in step, so turning the metronome on never clicks late.
            self._next_click = max(self._next_click, math.ceil(self._beat_at(limit) - 1e-9))

    def _cross(self, boundary: int) -> None:
        """Beat 0 of a loop: wrap, switch to a queued pattern, tell on_loop."""
        if self._state == COUNT_IN:
            self._state = PLAYING
            self._pattern, self._next = self._next, None
            self.loops = 0
        else:
            if self._next is not None:
                self._pattern, self._next = self._next, None
            self.loops += 1
        self._anchor_sample, self._anchor_beats = boundary, 0.0
        self._index = 0
        self._next_click = 0
        if self.on_loop is not None:
            self.on_loop(self.loops, boundary)

    def _segment_end(self) -> float | None:
        if self._state == COUNT_IN:
            return 0.0
        return self._pattern.length if self._pattern is not None else None

    def _command(self, command: tuple[Any, ...], start: int) -> None:
        kind = command[0]
        if kind == "tempo":
            if self._state != STOPPED:
                self._anchor_beats = self._beat_at(start)
                self._anchor_sample = start
            self._tempo = command[1]
            self._spb = self.rate * 60.0 / self._tempo
        elif kind == "stop":
            self._release(start)
            self._state, self._pattern, self._next = STOPPED, None, None
        elif (kind == "queue" and self._state == PLAYING and self._pattern is not None) or (
            kind == "queue" and self._state == COUNT_IN
        ):
            self._next = command[1]
        elif kind in ("play", "queue"):
            self._release(start)
            self._begin(start, command[1], 0.0)
            self._state = PLAYING
            self.loops = 0
            if self.on_loop is not None:
                self.on_loop(0, start)
        elif kind == "count_in":
            self._release(start)
            self._begin(start, None, -float(command[1] * BEATS_PER_BAR))
            self._state = COUNT_IN
            self._next = command[2]

    def _begin(self, start: int, pattern: Pattern | None, beats: float) -> None:
        self._pattern, self._next = pattern, None
        self._anchor_sample, self._anchor_beats = start, beats
        self._index = 0
        self._next_click = math.ceil(beats)

    def _release(self, start: int) -> None:
        """Note-offs for everything we may have started: pedal up, all notes off."""
        if self._state == STOPPED:
            return
        channels = self._pattern.channels if self._pattern is not None else ()
        for channel in (*channels, CLICK_CHANNEL):
            self._out.append((0, CONTROL, channel, SUSTAIN, 0))
            self._out.append((0, CONTROL, channel, ALL_NOTES_OFF, 0))

    def _sample_at(self, beat: float) -> int:
        # Round half up, from an anchor: exact integers at tempos like 120 bpm.
        return self._anchor_sample + math.floor((beat - self._anchor_beats) * self._spb + 0.5)

    def _beat_at(self, sample: int) -> float:
        return self._anchor_beats + (sample - self._anchor_sample) / self._spb


def _insert(out: list[BlockEvent], event: BlockEvent) -> None:
    """Insert keeping ``out`` sorted by offset (clicks merge into the pattern's events)."""
    i = len(out)
    while i and out[i - 1][0] > event[0]:
        i -= 1
    out.insert(i, event)


def _beats_to_step(beats: float, swing: float = 0.5) -> float:
    """The inverse of :func:`encoding.step_to_beats`: where a beat falls on the grid.

    >>> _beats_to_step(0.6666666666666666, 2 / 3), _beats_to_step(1.5)
    (2.0, 6.0)
    """
    beat = math.floor(beats)
    frac = beats - beat
    half = STEPS_PER_BEAT / 2
    if frac <= swing:
        within = frac / swing * half
    else:
        within = half + (frac - swing) / (1.0 - swing) * half
    return beat * STEPS_PER_BEAT + within
