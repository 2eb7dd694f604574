"""The in-process MIDI backend: named sources fed by ``send()``, plugged and unplugged at will."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from deepkeys.device.adapters.midi.backends import Closer, RawCallback

SIM_PORT = "sim keyboard"


class SimPorts:
    """The in-process backend: named sources that ``send()`` feeds synchronously.

    ``plug()`` and ``unplug()`` play the USB cable, so the watcher's reconnection
    logic runs without hardware.

    >>> sim = SimPorts()
    >>> sim.sources()
    ['sim keyboard']
    """

    def __init__(self, ports: Iterable[str] = (SIM_PORT,)) -> None:
        self._lock = threading.Lock()
        self._plugged: dict[str, list[RawCallback]] = {name: [] for name in ports}
        self._virtual: dict[str, list[RawCallback]] = {}

    def sources(self) -> list[str]:
        with self._lock:
            return list(self._plugged)

    def plug(self, name: str) -> None:
        with self._lock:
            self._plugged.setdefault(name, [])

    def unplug(self, name: str) -> None:
        """Remove a source; whoever was connected to it hears nothing more."""
        with self._lock:
            self._plugged.pop(name, None)

    def open(self, port: str, callback: RawCallback) -> Closer:
        with self._lock:
            if port not in self._plugged:
                raise OSError(f"unknown port {port!r}")
            listeners = self._plugged[port]
            listeners.append(callback)
        return lambda: self._remove(listeners, callback)

    def open_virtual(self, name: str, callback: RawCallback) -> Closer:
        with self._lock:
            listeners = self._virtual.setdefault(name, [])
            listeners.append(callback)
        return lambda: self._remove(listeners, callback)

    def drain(self, limit: int = 256, wait: bool = True) -> bool:
        """Nothing ever waits here: ``send()`` delivers at once."""
        return False

    def _remove(self, listeners: list[RawCallback], callback: RawCallback) -> None:
        with self._lock:
            if callback in listeners:
                listeners.remove(callback)

    def send(self, data: Sequence[int], port: str = SIM_PORT) -> int:
        """Deliver raw bytes from ``port`` (a source or a virtual port); returns listeners."""
        with self._lock:
            listeners = list(self._plugged.get(port) or self._virtual.get(port) or ())
        for callback in listeners:
            callback(data)
        return len(listeners)

    def close(self) -> None:
        pass
