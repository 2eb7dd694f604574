"""The lifetime that the MIDI input and the panel share: one background thread, and a
close that stops it and then releases the hardware.

A subclass calls ``super().__init__()`` first, starts ``self._thread`` if it wants
one (its loop ends when ``self._stop`` is set), and puts its own clean-up in
:meth:`Worker._release`. ``close()`` may be called twice, from the part's own
thread too, and by ``with``.

>>> class Ticker(Worker):
...     def _release(self) -> None:
...         print("released")
>>> with Ticker() as t:
...     pass
released
>>> t.closed, t.close()
(True, None)
"""

from __future__ import annotations

import threading
from typing import Self

JOIN_TIMEOUT_S = 5.0  # a thread stuck in a driver call must not hang shutdown


class Worker:
    """A part with a background thread; see the module docstring."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the thread, then release what the part holds. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=JOIN_TIMEOUT_S)
        self._release()

    def _release(self) -> None:
        """The part's own clean-up, once its thread has stopped."""
