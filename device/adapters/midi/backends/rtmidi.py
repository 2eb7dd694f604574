"""python-rtmidi on one API (ALSA or JACK), drained by a reader thread of our own."""

from __future__ import annotations

import threading
from typing import Any

from deepkeys.device.adapters.midi.backends import Closer, RawCallback
from deepkeys.device.errors import UserError


class RtMidiPorts:
    """python-rtmidi on one API: list the sources, open one ``MidiIn`` per source.

    rtmidi's own callbacks are not used: they run Python on JACK's process thread
    (or ALSA's input thread) and python-rtmidi holds the GIL while closing a port,
    so closing a busy port could deadlock (seen here under a flood), and cancelling
    a callback in flight frees what that thread is about to use. Instead rtmidi
    queues each port's messages and one reader thread of ours drains them every
    ``poll_s`` (1 ms: small beside a 5.3 ms audio period), so no Python ever runs
    on rtmidi's threads and closing is always safe.
    """

    def __init__(self, api_name: str, client_name: str, poll_s: float = 0.001) -> None:
        import rtmidi

        self._rtmidi = rtmidi
        self.api = getattr(rtmidi, f"API_{api_name}")
        self.client_name = client_name
        self.poll_s = poll_s
        self._lister = self._new()  # raises UserError when the API is unusable
        self._lock = threading.Lock()  # the readers, and every rtmidi call on them
        self._readers: dict[int, tuple[Any, RawCallback]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.read_errors = 0

    def _new(self) -> Any:
        try:
            # rtmidi's queue between its thread and our reader: 4096 messages is
            # seconds of any keyboard, and its overflow is a drop, never a block.
            return self._rtmidi.MidiIn(rtapi=self.api, name=self.client_name, queue_size_limit=4096)
        except self._rtmidi.RtMidiError as exc:
            hint = {
                self._rtmidi.API_LINUX_ALSA: " (no ALSA sequencer: is /dev/snd/seq there?"
                " the 'jack' and 'sim' backends need none)",
                self._rtmidi.API_UNIX_JACK: " (start jackd, or use the 'alsa' or 'sim' backend)",
            }.get(self.api, "")
            raise UserError(f"MIDI input unavailable: {exc}{hint}") from exc

    def sources(self) -> list[str]:
        return list(self._lister.get_ports())

    def open(self, port: str, callback: RawCallback) -> Closer:
        midi_in = self._new()
        try:
            index = midi_in.get_ports().index(port)  # ValueError: it vanished meanwhile
            # Keep sysex (we count it); clock and active sensing never reach Python.
            midi_in.ignore_types(sysex=False, timing=True, active_sense=True)
            midi_in.open_port(index, name="in")
        except BaseException:
            midi_in.delete()
            raise
        return self._add(midi_in, callback)

    def open_virtual(self, name: str, callback: RawCallback) -> Closer:
        midi_in = self._new()
        try:
            midi_in.ignore_types(sysex=False, timing=True, active_sense=True)
            midi_in.open_virtual_port(name)
        except self._rtmidi.RtMidiError as exc:
            midi_in.delete()
            raise UserError(f"cannot create the virtual MIDI port {name!r}: {exc}") from exc
        return self._add(midi_in, callback)

    def _add(self, midi_in: Any, callback: RawCallback) -> Closer:
        with self._lock:
            self._readers[id(midi_in)] = (midi_in, callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._read, name="midi-in", daemon=True)
                self._thread.start()
        return lambda: self._remove(midi_in)

    def _remove(self, midi_in: Any) -> None:
        with self._lock:  # never while the reader is inside get_message()
            if self._readers.pop(id(midi_in), None) is not None:
                midi_in.close_port()
                midi_in.delete()

    def drain(self, limit: int = 256, wait: bool = True) -> bool:
        """Hand each port's queued messages, at most ``limit`` a port, to its callback.

        True if any came. With ``wait=False`` it gives up at once when another thread
        holds the ports (a port being opened or closed, or the reader draining).
        """
        if not self._lock.acquire(blocking=wait):
            return False
        busy = False
        try:
            for midi_in, callback in self._readers.values():
                for _ in range(limit):  # a flooding port cannot starve the others
                    try:
                        message = midi_in.get_message()
                    except Exception:
                        self.read_errors += 1
                        break
                    if message is None:
                        break
                    busy = True
                    callback(message[0])
        finally:
            self._lock.release()
        return busy

    def _read(self) -> None:
        while not self._stop.is_set():
            if not self.drain():
                self._stop.wait(self.poll_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for midi_in, _ in self._readers.values():
                midi_in.close_port()
                midi_in.delete()
            self._readers.clear()
        self._lister.delete()
