"""A prepared folder (:mod:`deepkeys.host.data.prepare`) on disk, and reading it lazily.

The folder holds ``manifest.json`` and ``shards/``. The manifest names the preparation's
key (bars, melody track, :data:`PREP_VERSION`) and, for every MIDI file of the source
folder sorted by its path there, an :class:`Entry`: its sha256, its shard and window
count, or the reason it was skipped. A shard is one file's windows, every
:class:`~deepkeys.host.data.windows.Windows` array but the names, in an ``.npz`` named
after the file's content and the key (so a renamed file keeps its shard; the names come
from the manifest).

:func:`load_prepared` splits a prepared folder exactly as
:func:`~deepkeys.host.data.folder.load_folder` splits the source folder, from the
manifest's window counts alone. Validation and test are read into memory; the training
set stays on disk as :class:`ShardedWindows`, read a few shards at a time, so it need not
fit in memory. A corrupt shard or manifest is a one-line :class:`UserError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from deepkeys.device.atomic import atomic_write_bytes
from deepkeys.device.errors import UserError, first_line
from deepkeys.host.data.folder import report_set, split_files
from deepkeys.host.data.windows import Windows

log = logging.getLogger(__name__)

FORMAT = "deepkeys-prepared/1"  # the manifest's format tag
# Bump when read_piece or band_windows change what a file's windows hold: every shard
# name changes with it, so an older preparation is never taken for a current one.
PREP_VERSION = 1
MANIFEST = "manifest.json"
SHARDS = "shards"
FIELDS = tuple(f.name for f in fields(Windows) if f.name != "names")  # a shard's arrays
_SHARD_NAME = re.compile(r"[0-9a-f]{64}-[0-9a-f]{16}\.npz")  # never a path out of shards/


@dataclass(frozen=True)
class Entry:
    """One MIDI file of a prepared folder."""

    path: str  # relative to the source folder, with forward slashes
    sha256: str  # of the file's bytes ("" when they could not be read)
    shard: str | None  # its windows' file in shards/; None when skipped or without windows
    windows: int  # how many windows the file gives (before the cap)
    skipped: str | None = None  # why the file cannot be used (folder.SkipFile's reasons)


@dataclass
class Manifest:
    """A prepared folder's key and entries, and what the run that wrote it did."""

    key: dict[str, Any]
    entries: list[Entry]
    source: str = ""  # the folder prepared, for the logs
    reused: int = 0  # files not parsed again: a shard or a skip reason from before
    prepared: int = 0  # files parsed in this run
    seconds: float = 0.0

    @property
    def skipped(self) -> list[Entry]:
        return [e for e in self.entries if e.skipped is not None]

    @property
    def usable(self) -> list[Entry]:
        return [e for e in self.entries if e.skipped is None]

    def to_json(self) -> str:
        """The manifest file's text: the header, then one line per entry (diffable)."""
        head = json.dumps({"format": FORMAT, "key": self.key, "source": self.source})
        lines = ",\n".join(json.dumps(asdict(e)) for e in self.entries)
        return head[:-1] + f', "entries": [\n{lines}\n]}}\n'

    def write(self, folder: Path) -> None:
        atomic_write_bytes(folder / MANIFEST, self.to_json().encode())


def prep_key(bars: int, melody_track: str | None) -> dict[str, Any]:
    """What a file's windows depend on besides its bytes.

    >>> prep_key(4, None)
    {'bars': 4, 'melody_track': None, 'prep_version': 1}
    """
    return {"bars": bars, "melody_track": melody_track, "prep_version": PREP_VERSION}


def key_id(key: dict[str, Any]) -> str:
    """A short digest of a preparation key, the tail of its shards' names.

    >>> key_id(prep_key(4, None)) == key_id(prep_key(4, None)) != key_id(prep_key(8, None))
    True
    """
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def shard_name(sha256: str, key: dict[str, Any]) -> str:
    return f"{sha256}-{key_id(key)}.npz"


def is_prepared(path: str | Path) -> bool:
    """Whether ``path`` is a prepared folder (it has a manifest), not a folder of MIDI files."""
    return (Path(path) / MANIFEST).is_file()


class ForeignManifest(UserError):
    """A manifest.json that another program (or another format version) wrote."""


def read_manifest(folder: str | Path) -> Manifest:
    """A prepared folder's manifest; a one-line :class:`UserError` when it is missing or
    corrupt, :class:`ForeignManifest` when it is not a deepkeys preparation."""
    path = Path(folder) / MANIFEST
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{folder}: not a prepared folder (no {MANIFEST} in it)") from None
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise UserError(f"{path}: corrupt manifest ({first_line(exc)}); prepare again") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        tag = raw.get("format") if isinstance(raw, dict) else None
        raise ForeignManifest(
            f"{path}: not a deepkeys preparation (format {tag!r}, expected {FORMAT!r}); "
            f"prepare into another folder"
        )
    try:
        entries = [_entry(e) for e in raw["entries"]]
        key = raw["key"]
        if not isinstance(key, dict):
            raise ValueError(f"key is {key!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: corrupt manifest ({first_line(exc)}); prepare again") from None
    return Manifest(key, entries, str(raw.get("source", "")))


def _entry(raw: dict[str, Any]) -> Entry:
    entry = Entry(**raw)
    ok = (
        isinstance(entry.path, str)
        and isinstance(entry.sha256, str)
        and isinstance(entry.windows, int)
        and entry.windows >= 0
        and (entry.shard is None or bool(_SHARD_NAME.fullmatch(str(entry.shard))))
        and (entry.skipped is None or isinstance(entry.skipped, str))
        and (entry.shard is not None) == (entry.windows > 0)
    )
    if not ok:
        raise ValueError(f"bad entry {raw!r}"[:200])
    return entry


def write_shard(path: Path, windows: Windows) -> None:
    """One file's windows, every array but the names, written atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{f: getattr(windows, f) for f in FIELDS})
    atomic_write_bytes(path, buf.getvalue())


def read_shard(path: Path, name: str, windows: int | None = None) -> Windows:
    """A shard's windows, each named ``name``; every array is read (the zip's checksums
    checked). Raises :class:`UserError` for a corrupt shard, or one that does not hold
    ``windows`` windows."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {f: z[f] for f in FIELDS}
        n = len(arrays["melody_pitch"])
        if any(len(a) != n for a in arrays.values()) or n == 0:
            raise ValueError("its arrays disagree on the number of windows")
        if windows is not None and n != windows:
            raise ValueError(f"{n} windows, the manifest says {windows}")
    except FileNotFoundError:
        raise UserError(f"{path}: shard missing; prepare the folder again") from None
    except Exception as exc:  # np.load raises any of a dozen types for a damaged zip
        raise UserError(
            f"{path}: corrupt shard ({first_line(exc)}); prepare the folder again"
        ) from None
    return Windows(**arrays, names=[name] * n)


@dataclass(frozen=True)
class ShardFile:
    """One training file: its shard, its name, and the indices of the windows it keeps."""

    path: Path
    name: str
    windows: int  # in the shard
    keep: np.ndarray

    def read(self) -> Windows:
        return read_shard(self.path, self.name, self.windows).take(self.keep)


class ShardedWindows:
    """A training set on disk, one shard per file, read a few shards at a time.

    :meth:`batches` streams it in random order through a shuffle buffer of at most
    ``buffer`` windows (plus the rest of the one shard being read); :meth:`sample` and
    :meth:`materialize` read some or all of it into memory.
    """

    def __init__(self, files: list[ShardFile], buffer: int = 4096) -> None:
        self.files = files
        self.buffer = buffer
        self.peak = 0  # the most windows the buffer held in the last batches()
        self._len = sum(len(f.keep) for f in files)

    def __len__(self) -> int:
        return self._len

    def chunks(self) -> Iterator[Windows]:
        """Each file's kept windows, file by file in order."""
        for f in self.files:
            yield f.read()

    def materialize(self) -> Windows:
        """All the windows, in memory: each file's kept windows, files in name order."""
        return Windows.concat(list(self.chunks()))

    def sample(self, n: int, seed: int = 0) -> Windows:
        """``n`` windows spread evenly over the set (one at random in each of ``n`` equal
        stretches of it), reading only the shards they are in; all of them if ``n >= len``."""
        if n >= len(self):
            return self.materialize()
        rng = np.random.default_rng(seed)
        bounds = np.arange(n + 1) * len(self) // n  # no stretch is empty, as n < len
        picks = bounds[:-1] + (rng.random(n) * np.diff(bounds)).astype(int)
        starts = np.cumsum([0] + [len(f.keep) for f in self.files])
        parts = []
        for i, f in enumerate(self.files):
            mine = picks[(picks >= starts[i]) & (picks < starts[i + 1])] - starts[i]
            if len(mine):
                parts.append(f.read().take(mine))
        return Windows.concat(parts)

    def batches(self, rng: np.random.Generator, steps: int, batch_size: int) -> Iterator[Windows]:
        """``steps`` batches of exactly ``batch_size`` windows in random order.

        Each pass reads the shards in a new random order (from ``rng`` alone, so workers
        given the same generator draw the same batches) into the shuffle buffer, and
        draws each batch at random from it once it is full (or the pass has no shard
        left). A pass's windows are all drawn before the next pass's enter the buffer,
        except fewer than a batch of them; then the next pass begins.
        """
        if not self.files or len(self) < batch_size:
            raise UserError(
                f"a training set of {len(self)} windows has no batch of {batch_size} windows"
            )
        if self.buffer < batch_size:
            raise ValueError(f"the shuffle buffer ({self.buffer}) is smaller than a batch")
        held: dict[str, np.ndarray] = {}  # the buffer: the first `fill` rows of each array
        names: list[str] = []
        fill = 0
        self.peak = 0
        pending: Windows | None = None  # what is left of the shard being read
        order: list[int] = []
        done = 0
        while done < steps:
            # Fill the buffer, reading shards in this pass's order.
            while fill < self.buffer and (pending is not None or order):
                if pending is None:
                    pending = self.files[order.pop()].read()
                if not held:  # shaped as the first shard's arrays
                    for f in FIELDS:
                        a = getattr(pending, f)
                        held[f] = np.empty((self.buffer, *a.shape[1:]), a.dtype)
                    names = [""] * self.buffer
                room = min(self.buffer - fill, len(pending))
                for f in FIELDS:
                    held[f][fill : fill + room] = getattr(pending, f)[:room]
                names[fill : fill + room] = pending.names[:room]
                fill += room
                self.peak = max(self.peak, fill)
                rest = np.arange(room, len(pending))
                pending = pending.take(rest) if len(rest) else None
            if fill < batch_size:  # the pass is spent: the next one, in a new order
                order = list(rng.permutation(len(self.files))[::-1])
                continue
            pick = rng.choice(fill, batch_size, replace=False)
            batch = Windows(**{f: held[f][pick] for f in FIELDS}, names=[names[i] for i in pick])
            # The drawn rows' places are taken by the last rows not drawn.
            gone = np.zeros(fill, bool)
            gone[pick] = True
            keep_tail = np.flatnonzero(~gone[fill - batch_size :]) + fill - batch_size
            holes = np.flatnonzero(gone[: fill - batch_size])
            for f in FIELDS:
                held[f][holes] = held[f][keep_tail]
            for h, t in zip(holes, keep_tail):
                names[h] = names[t]
            fill -= batch_size
            done += 1
            yield batch


def load_prepared(path: str | Path, buffer: int = 4096, bars: int | None = None) -> dict[str, Any]:
    """Train/validation/test of a prepared folder, split as
    :func:`~deepkeys.host.data.folder.load_folder` splits its source: ``"train"`` a
    :class:`ShardedWindows` with a shuffle buffer of ``buffer`` windows, the others
    :class:`Windows` in memory. Each set is reported as load_folder reports it (which
    reads each training shard once). ``bars``, when given, must be the preparation's.
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    if bars is not None and manifest.key.get("bars") != bars:
        raise UserError(
            f"{folder}: prepared in {manifest.key.get('bars')}-bar windows, not {bars}; "
            f"prepare it again with {bars} bars"
        )
    usable = manifest.usable
    by_path = {e.path: e for e in usable}
    plan = split_files({e.path: e.windows for e in usable}, len(usable), folder)
    sets = {
        part: [
            ShardFile(folder / SHARDS / str(by_path[n].shard), n, by_path[n].windows, keep)
            for n, keep in files.items()
        ]
        for part, files in plan.items()
    }
    train = ShardedWindows(sets["train"], buffer)
    out: dict[str, Any] = {"train": train}
    report_set("train", train.chunks())
    for part in ("validation", "test"):
        out[part] = Windows.concat([f.read() for f in sets[part]])
        report_set(part, [out[part]])
    return out
