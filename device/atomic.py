"""Atomic file writes: a power cut leaves the old file or the new one, never half of one;
and the free space a write needs, looked at before it begins."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a binary file for writing that appears at ``path`` only when complete.

    The data goes to a hidden temporary file in the same folder, is fsynced, then
    renamed over ``path``. If the block raises, the temporary file is removed and
    ``path`` is untouched.

    >>> with atomic_open("/tmp/deepkeys-doctest.bin") as f:
    ...     _ = f.write(b"whole")
    >>> open("/tmp/deepkeys-doctest.bin", "rb").read()
    b'whole'
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; compositions are meant to be copied off
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path) as f:
        f.write(data)


def remove_partials(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete what writes cut short (a power cut, a SIGKILL) left in ``folder``:
    the hidden ``.NAME.*.part`` files of :func:`atomic_open`. Returns them.

    >>> remove_partials("/nonexistent")
    []
    """
    gone = []
    for part in sorted(Path(folder).glob(".*.part")):
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
            gone.append(part)
    return gone


def fsync_dir(folder: Path) -> None:
    # The rename itself is only durable once the directory entry is on disk.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def free_megabytes(folder: Path) -> int | None:
    """Free megabytes on the filesystem of ``folder`` (or its nearest existing parent);
    None when that cannot be read (the write then goes ahead and its own errors count).

    >>> free_megabytes(Path("/nonexistent/folder")) is not None    # the root's
    True
    """
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free // 1_000_000
            except OSError:
                return None
    return None
