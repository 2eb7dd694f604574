"""C libraries' lines on stderr, held at the file descriptor.

LiteRT announces its XNNPACK delegate and ALSA explains a missing sound card by
writing to fd 2 from C, below Python: neither ``logging`` nor
``contextlib.redirect_stderr`` can hold such lines back, and in ``deepkeys sim`` they
land on top of the curses screen. :func:`stderr_into` points fd 2 at a file for a
block; :func:`captured_stderr` points it at a temporary file, then writes back every
line that ``keep`` accepts and hands all of them to the caller. Lines that other
threads write meanwhile are caught too and written back, so nothing of theirs is
lost, only delayed to the end of the block (keep such blocks short).

>>> with captured_stderr(keep=lambda line: False) as caught:
...     _ = os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
>>> caught.lines
['INFO: Created TensorFlow Lite XNNPACK delegate for CPU.']
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

# Captures one at a time: two threads swapping fd 2 would restore each other's file.
# Re-entrant: a capture holds it for its block and swaps fd 2 inside.
_LOCK = threading.RLock()


@dataclass
class Caught:
    """What a :func:`captured_stderr` block wrote to fd 2, one string a line, filled in
    when the block ends."""

    lines: list[str] = field(default_factory=list)


def _flush_python_stderr() -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):  # closed, or a broken pipe: nothing to keep in order
        pass


@contextmanager
def stderr_into(file: IO[bytes] | IO[str]) -> Iterator[None]:
    """fd 2 writes into ``file`` (open for writing) until the block ends. Without an fd 2
    (a daemon started with it closed) the block simply runs.

    Only the swaps hold the lock, so a long block (the sim's whole session) does not
    stop :func:`captured_stderr` in other threads; a capture inside restores this file.
    """
    with _LOCK:
        _flush_python_stderr()
        try:
            saved = os.dup(2)
        except OSError:
            saved = -1
        else:
            os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        if saved >= 0:
            with _LOCK:
                _flush_python_stderr()
                os.dup2(saved, 2)
                os.close(saved)


@contextmanager
def captured_stderr(keep: Callable[[str], bool] = lambda line: True) -> Iterator[Caught]:
    """Hold fd 2's lines for the block; write back those ``keep`` accepts at its end."""
    caught = Caught()
    with _LOCK, tempfile.TemporaryFile() as tmp:
        try:
            with stderr_into(tmp):
                yield caught
        finally:
            tmp.seek(0)
            caught.lines = tmp.read().decode(errors="replace").splitlines()
            kept = [line for line in caught.lines if keep(line)]
            if kept:
                try:
                    os.write(2, ("\n".join(kept) + "\n").encode())
                except OSError:
                    pass
