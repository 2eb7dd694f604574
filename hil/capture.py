"""The rig's JACK side: a virtual keyboard port and a recorder of what the daemon plays.

:class:`VirtualKeyboard` is the USB keyboard as far as JACK can tell: a virtual
MIDI output port made with python-rtmidi's JACK API, which the daemon connects to
by name. It can be unplugged (the port disappears) and plugged back.

:class:`JackRecorder` is a JACK client (JACK-Client) with two audio inputs, where the
daemon's ALSA ``jack`` PCM connects, and one MIDI input tapped onto the keyboard
port. Its process callback runs on JACK's thread and only copies: the audio into a
preallocated buffer, and each note-on with its place in that recording. Both count
the frames JACK processed, so key-to-sound latency is a difference of two sample
indices, exact to the sample, whatever Python's own timing.

Why not JACK's frame clock: after an xrun, ``last_frame_time`` jumps by however
many frames the late cycle took, not a whole number of periods, while the recording
goes on contiguous. Keys stamped with the clock drift against the audio at every
xrun (the latency bench once saw 0 ms). Counted frames cannot drift;
:attr:`JackRecorder.clock_jumps` counts the xruns.

    >>> with JackRecorder("hil-rec", seconds=30) as rec:           # doctest: +SKIP
    ...     kb = VirtualKeyboard("hil-kbd"); rec.tap(kb.port)
    ...     kb.send([0x90, 60, 100]); time.sleep(1)
    ...     audio, key = rec.audio(), rec.tapped()[0]
    ...     onset_after(audio, key.sample, rec.rate)
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepkeys.device.adapters.audio import SWITCH_INTERVAL_S

NOTE_ON = 0x90


@dataclass(frozen=True, slots=True)
class TappedNote:
    """A note-on as it entered JACK: its sample index in the recording, pitch, velocity."""

    sample: int
    note: int
    velocity: int


class VirtualKeyboard:
    """A virtual MIDI output port over JACK, made with python-rtmidi."""

    def __init__(self, client: str, port: str = "keyboard") -> None:
        import rtmidi

        self._rtmidi = rtmidi
        self.client = client
        self.port_name = port
        self._out = None
        self.plug()

    @property
    def port(self) -> str:
        """The full JACK port name, e.g. ``hil-kbd:keyboard``."""
        return f"{self.client}:{self.port_name}"

    @property
    def plugged(self) -> bool:
        return self._out is not None

    def plug(self) -> None:
        if self._out is None:
            out = self._rtmidi.MidiOut(rtapi=self._rtmidi.API_UNIX_JACK, name=self.client)
            out.open_virtual_port(self.port_name)
            self._out = out

    def unplug(self) -> None:
        """The port disappears from JACK, as a USB keyboard's does."""
        if self._out is not None:  # a deleted rtmidi object segfaults if touched again
            out, self._out = self._out, None
            out.close_port()
            out.delete()

    def send(self, *messages: Sequence[int]) -> None:
        """Raw MIDI messages (lists of bytes); each enters JACK at the next period."""
        if self._out is None:
            raise RuntimeError("the keyboard is unplugged")
        for message in messages:
            self._out.send_message(list(message))

    def note_on(self, note: int, velocity: int = 100) -> None:
        self.send([NOTE_ON, note, velocity])

    def note_off(self, note: int) -> None:
        self.send([0x80, note, 0])

    def close(self) -> None:
        self.unplug()


class JackRecorder:
    """A JACK client that records its two audio inputs and timestamps tapped note-ons.

    ``seconds`` sizes the buffer (allocated once: the process callback never
    allocates). Recording runs from :meth:`start` on; :meth:`clear` starts over.
    """

    def __init__(
        self, name: str = "hil-rec", seconds: float = 120.0, servername: str | None = None
    ) -> None:
        import jack

        # The process callback is Python: each JACK cycle (128 frames, 2.7 ms) it needs the
        # GIL, which CPython makes it wait for up to the switch interval (5 ms by default)
        # while the test's thread runs Python. A late callback is an xrun: the recording
        # loses time, and a key in that cycle is never tapped. The daemon's audio thread
        # shortens the interval for the same reason.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self.client = jack.Client(name, no_start_server=True, servername=servername)
        self.name = self.client.name
        self.rate = self.client.samplerate
        self.period = self.client.blocksize
        self.inputs = [self.client.inports.register(f"in_{i}") for i in (1, 2)]
        self.midi = self.client.midi_inports.register("keys")
        self._buf = np.zeros((int(seconds * self.rate), 2), dtype=np.float32)
        self._n = 0  # frames recorded
        self._lock = threading.Lock()
        self._next_frame: int | None = None  # JACK's clock at the next cycle, if no xrun
        self.notes: list[TappedNote] = []
        self.cycles = 0
        self.clock_jumps = 0  # cycles whose frame clock was not where the last one ended
        self.overflow = False
        self.client.set_process_callback(self._process)
        self.client.activate()

    @property
    def port_names(self) -> list[str]:
        """The full names of the audio inputs, for the ALSA PCM's ``playback_ports``."""
        return [p.name for p in self.inputs]

    def __enter__(self) -> JackRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()

    # --- JACK's thread: copy, nothing more
    def _process(self, frames: int) -> None:
        clock = self.client.last_frame_time
        with self._lock:
            self.cycles += 1
            if self._next_frame is not None and clock != self._next_frame:
                self.clock_jumps += 1
            self._next_frame = clock + frames
            n = self._n
            if n + frames <= len(self._buf):
                self._buf[n : n + frames, 0] = self.inputs[0].get_array()
                self._buf[n : n + frames, 1] = self.inputs[1].get_array()
                self._n = n + frames
            else:
                self.overflow = True
            for offset, data in self.midi.incoming_midi_events():
                msg = bytes(data)
                if len(msg) == 3 and msg[0] & 0xF0 == NOTE_ON and msg[2]:
                    self.notes.append(TappedNote(n + offset, msg[1], msg[2]))

    # --- the test's side
    def tap(self, port: str) -> None:
        """Connect a MIDI output port (the keyboard) to our MIDI input."""
        self.client.connect(port, self.midi)

    def clear(self) -> None:
        """Forget what was recorded; the next period starts a new recording."""
        with self._lock:
            self._n = 0
            self.notes = []
            self.overflow = False
            self.clock_jumps = 0

    def wait_frames(self, frames: int, timeout: float = 60.0) -> None:
        """Block until at least ``frames`` more frames were recorded."""
        with self._lock:
            target = self._n + frames
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._n >= target:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"JACK recorded no {frames} frames within {timeout:g} s")
            time.sleep(0.005)

    def audio(self, mono: bool = True) -> np.ndarray:
        """A copy of what was recorded since :meth:`clear` (or the start)."""
        with self._lock:
            data = self._buf[: self._n].copy()
        return data.mean(axis=1) if mono else data

    def tapped(self) -> list[TappedNote]:
        with self._lock:
            return list(self.notes)

    def connections(self) -> list[str]:
        """Who is connected to our audio inputs (the daemon's ALSA PCM, once it runs)."""
        return sorted(
            {p.name for port in self.inputs for p in self.client.get_all_connections(port)}
        )
