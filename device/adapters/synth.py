"""The live synthesizer: FluidSynth with the General MIDI SoundFont, pulled block by block.

No audio driver runs inside FluidSynth. Our audio thread
(:mod:`~deepkeys.device.adapters.audio`) asks for one period at a time with
:meth:`Synth.render`, which is the only place where the FluidSynth engine is touched
while audio runs. Every other method only appends a small tuple to a lock-free queue
(a ``collections.deque``), so the MIDI side never blocks the audio thread and the
audio thread never waits on the MIDI side.

Channels: the keys play on ``LIVE_CHANNEL`` (0); the sequencer plays the
accompaniment on the others (drums on 9); the metronome clicks on
``CLICK_CHANNEL`` (15), which holds the percussion kit.

>>> synth = Synth()                                 # doctest: +SKIP
>>> synth.noteon(60, 100)                           # doctest: +SKIP
>>> block = synth.render(128)                       # doctest: +SKIP
>>> block.shape, block.dtype                        # doctest: +SKIP
((128, 2), dtype('int16'))

Timing is as exact as FluidSynth allows: events are applied between partial
renders at their sample offset, and FluidSynth starts them at its next internal
64-frame block (1.3 ms at 48 kHz).
"""

from __future__ import annotations

import ctypes
import os
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from deepkeys.device import events as ev
from deepkeys.device.errors import UserError
from deepkeys.device.gm import (
    ALL_NOTES_OFF,
    BEND,
    CHANNELS,
    CONTROL,
    DRUM_BANK,
    DRUM_CHANNEL,
    NOTE_OFF,
    NOTE_ON,
    PROGRAM,
    SOSTENUTO,
    SUSTAIN,
)
from deepkeys.device.soundfont import GAIN, import_fluidsynth, resolve_soundfont

if TYPE_CHECKING:
    from deepkeys.device.config import Config

LIVE_CHANNEL = 0
CLICK_CHANNEL = 15

MAX_LIVE_PER_BLOCK = 256  # a flood of MIDI must not make one block late

# An event the audio thread applies: (status, channel, data1, data2, monotonic time queued).
# Pitch bend carries its signed value (-8192..8191) in data1.
LiveEvent = tuple[int, int, int, int, float]
# An event with its place in a block: (sample offset, status, channel, data1, data2).
BlockEvent = tuple[int, int, int, int, int]


class Synth:
    """A General MIDI synth that renders int16 stereo blocks on demand.

    ``soundfont`` is a path or "auto" (see :func:`~deepkeys.device.soundfont.resolve_soundfont`);
    a missing or broken file raises :class:`UserError`. ``polyphony`` bounds the CPU cost on
    a Pi: FluidSynth steals the oldest voices beyond it.

    MIDI methods may be called from any thread. :meth:`render` must be called
    from one thread only (the audio thread).
    """

    def __init__(
        self,
        soundfont: str | os.PathLike[str] | None = None,
        rate: int = 48000,
        gain: float = GAIN,
        polyphony: int = 64,
        reverb: bool = True,
        chorus: bool = False,
        live_program: int = 0,
    ) -> None:
        fluidsynth = import_fluidsynth()
        font = resolve_soundfont(soundfont)

        self.rate = rate
        self.soundfont = font
        self._fs = fluidsynth.Synth(
            gain=float(gain),
            samplerate=float(rate),
            channels=CHANNELS,
            **{
                "synth.polyphony": int(polyphony),
                "synth.reverb.active": int(reverb),
                "synth.chorus.active": int(chorus),
                "synth.cpu-cores": 1,  # one render thread: ours
            },
        )
        self._sfid = self._fs.sfload(str(font))
        if self._sfid < 0:
            self._fs.delete()
            raise UserError(f"{font}: FluidSynth cannot load this SoundFont")
        self._fs.program_select(LIVE_CHANNEL, self._sfid, 0, live_program)
        # The click gets its own percussion channel, so the composition's drums and
        # the metronome never cut each other off. A composition's drums play on MIDI
        # channel 10 with no program change (as in a MIDI file), so that channel gets the
        # kit here: sfload leaves every channel without a preset.
        self._fs.program_select(CLICK_CHANNEL, self._sfid, DRUM_BANK, 0)
        self._fs.program_select(DRUM_CHANNEL, self._sfid, DRUM_BANK, 0)

        # The audio thread calls the C functions itself, through PyDLL: unlike
        # pyfluidsynth's CDLL, it keeps the GIL across each call. A block makes
        # dozens of calls, and with another thread busy in Python every GIL
        # re-acquisition can wait a whole switch interval.
        self._ptr = ctypes.c_void_p(self._fs.synth)
        c = _Calls(fluidsynth.lib)
        self._write, self._noteon, self._noteoff = c.write_s16, c.noteon, c.noteoff
        self._cc, self._bend, self._program = c.cc, c.pitch_bend, c.program_change

        self._queue: deque[LiveEvent] = deque()
        self.last_live: list[LiveEvent] = []  # what the last render() took from the queue
        self._buf = np.zeros((0, 2), dtype=np.int16)
        self._addr = 0
        self._ensure(1024)

    @classmethod
    def from_config(cls, cfg: Config, **options: Any) -> Synth:
        """The configured SoundFont, rate, gain and live instrument; ``options`` (polyphony,
        reverb...) go to the constructor."""
        return cls(
            cfg.audio.soundfont,
            rate=cfg.audio.rate,
            gain=cfg.synth.gain,
            live_program=cfg.synth.live_program,
            **options,
        )

    # ---------------------------------------------------------------- MIDI side
    def send(
        self, status: int, channel: int, data1: int = 0, data2: int = 0, t: float | None = None
    ) -> None:
        """Queue one channel message; it sounds at the start of the next block.

        ``t`` is when the message arrived (``time.monotonic()``), kept for latency
        measurement; it defaults to now.
        """
        if not 0 <= channel < CHANNELS:
            raise ValueError(f"MIDI channel {channel} out of range 0..{CHANNELS - 1}")
        # deque.append is atomic in CPython: no lock between threads.
        self._queue.append((status, channel, data1, data2, time.monotonic() if t is None else t))

    def noteon(
        self, note: int, velocity: int, channel: int = LIVE_CHANNEL, t: float | None = None
    ) -> None:
        """Start a note (velocity 0 is a note-off, as in MIDI)."""
        self.send(NOTE_ON, channel, _clamp(note, 0, 127), _clamp(velocity, 0, 127), t)

    def noteoff(self, note: int, channel: int = LIVE_CHANNEL, t: float | None = None) -> None:
        self.send(NOTE_OFF, channel, _clamp(note, 0, 127), 0, t)

    def cc(
        self, control: int, value: int, channel: int = LIVE_CHANNEL, t: float | None = None
    ) -> None:
        """A control change: 64 is the sustain pedal, 7 volume, 1 modulation..."""
        self.send(CONTROL, channel, _clamp(control, 0, 127), _clamp(value, 0, 127), t)

    def pitch_bend(self, value: int, channel: int = LIVE_CHANNEL, t: float | None = None) -> None:
        """Bend the channel's pitch: ``value`` from -8192 to 8191, 0 is centre
        (FluidSynth's default range is +-2 semitones)."""
        self.send(BEND, channel, _clamp(value, -8192, 8191), 0, t)

    def program_change(
        self, program: int, channel: int = LIVE_CHANNEL, t: float | None = None
    ) -> None:
        """Select a General MIDI program (0..127) on the channel."""
        self.send(PROGRAM, channel, _clamp(program, 0, 127), 0, t)

    def all_notes_off(self, channel: int | None = None) -> None:
        """Release every note on the channel (all channels if None), pedals too.

        Notes fade with their normal release, so nothing clicks.
        """
        for ch in range(CHANNELS) if channel is None else (channel,):
            # A held pedal would keep "released" notes sounding, so lift it first.
            self.send(CONTROL, ch, SUSTAIN, 0)
            self.send(CONTROL, ch, SOSTENUTO, 0)
            self.send(CONTROL, ch, ALL_NOTES_OFF, 0)

    def handle(self, event: Any, channel: int = LIVE_CHANNEL) -> bool:
        """Play a daemon event (``events.NoteOn``, ``NoteOff``, ``ControlChange``,
        ``PitchBend``); its ``t`` is kept as the arrival time. Returns False for
        events that make no sound."""
        t = event.t or None
        if isinstance(event, ev.NoteOn):
            self.noteon(event.note, event.velocity, channel, t)
        elif isinstance(event, ev.NoteOff):
            self.noteoff(event.note, channel, t)
        elif isinstance(event, ev.ControlChange):
            self.cc(event.control, event.value, channel, t)
        elif isinstance(event, ev.PitchBend):
            self.pitch_bend(event.value, channel, t)
        else:
            return False
        return True

    @property
    def pending(self) -> int:
        """Messages queued and not yet rendered."""
        return len(self._queue)

    def active_voices(self) -> int:
        return int(self._fs.get_active_voice_count())

    # ---------------------------------------------------------------- audio side
    def render(self, frames: int, events: Iterable[BlockEvent] = ()) -> np.ndarray:
        """Render ``frames`` frames as an int16 array of shape (frames, 2).

        Queued MIDI is applied first (at offset 0); then ``events`` (sorted by
        offset, as the sequencer gives them) are applied at their sample offset
        by splitting the render there. The array is reused by the next call:
        copy it to keep it.
        """
        if frames <= 0:
            raise ValueError("frames must be positive")
        self._ensure(frames)
        live = self.last_live
        live.clear()
        queue = self._queue
        while queue and len(live) < MAX_LIVE_PER_BLOCK:
            item = queue.popleft()  # one consumer (this thread), so never empty here
            self._apply(item[0], item[1], item[2], item[3])
            live.append(item)
        done = 0
        for offset, status, channel, data1, data2 in events:
            offset = frames - 1 if offset >= frames else offset
            if offset > done:
                self._render_into(done, offset)
                done = offset
            self._apply(status, channel, data1, data2)
        if done < frames:
            self._render_into(done, frames)
        return self._buf[:frames]

    def _apply(self, status: int, channel: int, data1: int, data2: int) -> None:
        ptr = self._ptr
        if status == NOTE_ON:
            self._noteon(ptr, channel, data1, data2)
        elif status == NOTE_OFF:
            self._noteoff(ptr, channel, data1)
        elif status == CONTROL:
            self._cc(ptr, channel, data1, data2)
        elif status == BEND:
            self._bend(ptr, channel, data1 + 8192)
        elif status == PROGRAM:
            self._program(ptr, channel, data1)

    def _render_into(self, start: int, stop: int) -> None:
        # Interleaved stereo straight into our buffer: left at even, right at odd
        # int16 slots, so no per-block array is allocated.
        self._write(self._ptr, stop - start, self._addr, 2 * start, 2, self._addr, 2 * start + 1, 2)

    def _ensure(self, frames: int) -> None:
        if len(self._buf) < frames:
            self._buf = np.zeros((frames, 2), dtype=np.int16)
            self._addr = self._buf.ctypes.data

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Free FluidSynth. Call only once the audio thread has stopped."""
        if self._fs is not None:
            self._fs.delete()
            self._fs = None

    def __enter__(self) -> Synth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Calls:
    """The few libfluidsynth functions the audio thread needs, GIL held."""

    def __init__(self, path: str) -> None:
        lib = ctypes.PyDLL(path)  # the same library pyfluidsynth loaded: dlopen shares it
        vp, i = ctypes.c_void_p, ctypes.c_int
        self.write_s16 = _proto(lib.fluid_synth_write_s16, vp, i, vp, i, i, vp, i, i)
        self.noteon = _proto(lib.fluid_synth_noteon, vp, i, i, i)
        self.noteoff = _proto(lib.fluid_synth_noteoff, vp, i, i)
        self.cc = _proto(lib.fluid_synth_cc, vp, i, i, i)
        self.pitch_bend = _proto(lib.fluid_synth_pitch_bend, vp, i, i)
        self.program_change = _proto(lib.fluid_synth_program_change, vp, i, i)


def _proto(func: Any, *argtypes: Any) -> Any:
    func.argtypes = argtypes
    func.restype = ctypes.c_int
    return func


def _clamp(value: int, lo: int, hi: int) -> int:
    return lo if value < lo else hi if value > hi else int(value)
