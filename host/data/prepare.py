"""Preparing a folder of MIDI files once, on Dask: one task per file, on a laptop or a cluster.

:func:`prepare_folder` reads every file of a folder as
:func:`~deepkeys.host.data.folder.load_folder` does (the same
:func:`~deepkeys.host.data.folder.read_piece` and
:func:`~deepkeys.host.data.band.band_windows`, one file at a time) and writes each file's
windows to a shard named after the file's content and the preparation key
(:mod:`deepkeys.host.data.shards`), then the manifest. Training reads the result with
:func:`~deepkeys.host.data.shards.load_prepared`, which splits it exactly as
``load_folder`` splits the folder.

Where the tasks run:

- by default, on Dask's local multiprocessing scheduler: ``workers`` processes (every
  CPU by default) on this machine, no service to start;
- ``cluster="tcp://host:8786"``, or the ``DASK_SCHEDULER_ADDRESS`` environment variable,
  on a running ``distributed`` scheduler's workers. The source and output folders must
  then be on a filesystem that every worker and this machine see at the same path (NFS,
  a cluster filesystem): the workers read the MIDI files and write the shards there, and
  each worker needs deepkeys with the host extra installed (the tasks are its functions);
- ``workers=0``: in this process, without Dask (the reference the others are tested
  against).

A second run over the same folder parses only what changed: a file whose shard (its
content's sha256 and the key) is already there is not parsed again, and a skipped file
with its bytes unchanged keeps its reason. The run logs how many files it reused,
prepared and skipped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepkeys.device.atomic import remove_partials
from deepkeys.device.errors import UserError, first_line
from deepkeys.host.data.band import band_windows
from deepkeys.host.data.folder import SkipFile, midi_files, read_piece
from deepkeys.host.data.shards import (
    MANIFEST,
    SHARDS,
    Entry,
    ForeignManifest,
    Manifest,
    key_id,
    prep_key,
    read_manifest,
    read_shard,
    shard_name,
    write_shard,
)

__all__ = ["Manifest", "bench_prepare", "prepare_file", "prepare_folder"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One task: a file to prepare, and where (absolute paths: a worker's working folder
    is not this process's)."""

    folder: str
    path: str  # relative to folder
    out: str
    key: dict[str, Any]
    remembered: Entry | None  # this path's entry from the last run, if it was not a shard


def prepare_file(job: Job) -> tuple[Entry, bool]:
    """Prepare one file, or reuse what a run before prepared for its bytes: its entry,
    and whether it was parsed."""
    path = Path(job.folder) / job.path
    try:
        data: bytes | None = path.read_bytes()
    except OSError:
        data = None  # read_piece gives the reason, as load_folder would
    sha = hashlib.sha256(data).hexdigest() if data is not None else ""
    old = job.remembered
    if old is not None and data is not None and old.sha256 == sha and old.shard is None:
        return old, False
    shard = Path(job.out) / SHARDS / shard_name(sha, job.key)
    if data is not None and shard.exists():
        try:
            return Entry(job.path, sha, shard.name, len(read_shard(shard, job.path))), False
        except UserError as exc:  # damaged: prepared again, over it
            log.warning("shard=%s unreadable, preparing again: %s", shard, exc)
    bars, melody_track = job.key["bars"], job.key["melody_track"]
    try:
        piece = read_piece(path, melody_track, bars, data)
    except SkipFile as exc:
        return Entry(job.path, sha, None, 0, str(exc)), True
    piece.name = job.path
    try:
        windows = band_windows([piece], bars)
    except ValueError:  # usable, but no window has melody in it (load_folder counts it)
        return Entry(job.path, sha, None, 0), True
    try:
        write_shard(shard, windows)
    except OSError as exc:
        raise UserError(f"{shard}: cannot write the shard ({first_line(exc)})") from None
    return Entry(job.path, sha, shard.name, len(windows)), True


def prepare_folder(
    folder: str | Path,
    out: str | Path,
    *,
    bars: int = 4,
    melody_track: str | None = None,
    cluster: str | None = None,
    workers: int | None = None,
) -> Manifest:
    """Prepare every MIDI file under ``folder`` into ``out`` (see the module docstring):
    on ``workers`` local processes (default: one per CPU; 0: in this process), or on the
    Dask cluster whose scheduler is at ``cluster`` (default: ``$DASK_SCHEDULER_ADDRESS``,
    if set; ``workers`` is then the cluster's). Returns the manifest written to
    ``out/manifest.json``, with this run's counts."""
    started = time.monotonic()
    if workers is not None and workers < 0:
        raise UserError(f"workers={workers}: give 0 (in this process) or more")
    source = Path(folder).resolve()
    target = Path(out).resolve()
    files = midi_files(source)
    key = prep_key(bars, melody_track)
    try:
        (target / SHARDS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output folder ({first_line(exc)})") from None
    remembered = _remembered(target, key)
    for partials in (target, target / SHARDS):
        remove_partials(partials)  # what a run cut short left
    jobs = [
        Job(str(source), rel, str(target), key, remembered.get(rel))
        for rel in (p.relative_to(source).as_posix() for p in files)
    ]
    address = cluster or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    engine = "serial" if workers == 0 and address is None else address or "local"
    results = _run(jobs, address, workers)
    entries = sorted((entry for entry, _ in results), key=lambda e: e.path)
    prepared = sum(parsed for _, parsed in results)
    manifest = Manifest(key, entries, str(source), len(results) - prepared, prepared)
    manifest.write(target)
    removed = _remove_unlisted(target, manifest)
    manifest.seconds = round(time.monotonic() - started, 2)
    for e in manifest.skipped:
        log.warning("skipped file=%s reason=%s", source / e.path, e.skipped)
    log.info(
        "prepared folder=%s out=%s engine=%s files=%d reused=%d prepared=%d skipped=%d "
        "windows=%d removed_shards=%d seconds=%.1f",
        source,
        target,
        engine,
        len(entries),
        manifest.reused,
        manifest.prepared,
        len(manifest.skipped),
        sum(e.windows for e in entries),
        removed,
        manifest.seconds,
    )
    return manifest


def _run(jobs: list[Job], address: str | None, workers: int | None) -> list[tuple[Entry, bool]]:
    """Every job's result, in order: in this process, on local processes, or on a cluster."""
    if address is None and workers == 0:
        return [prepare_file(job) for job in jobs]
    import dask

    # Named keys: dask would otherwise hash every job's arguments to name its task; unique
    # to this run, as a cluster's scheduler shares results between clients by key.
    run = uuid.uuid4().hex
    tasks = [
        dask.delayed(prepare_file)(job, dask_key_name=f"prepare-{run}-{i}")
        for i, job in enumerate(jobs)
    ]
    if address is None:
        n = workers if workers is not None else os.cpu_count() or 1
        return list(dask.compute(*tasks, scheduler="processes", num_workers=n))
    from distributed import Client

    try:
        client = Client(address)  # waits distributed.comm.timeouts.connect (30 s)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UserError(f"no Dask scheduler at {address} ({first_line(exc)})") from None
    with client:
        return list(dask.compute(*tasks, scheduler=client))


def _remembered(out: Path, key: dict[str, Any]) -> dict[str, Entry]:
    """The last run's entries for files without a shard (skipped, or without windows), by
    path, when it had this key: a skipped file is not parsed again while its bytes stay
    the same. A corrupt manifest is forgotten (everything is checked again); a foreign one
    is refused, as ``out`` is then not ours to write to."""
    if not (out / MANIFEST).exists():
        return {}
    try:
        manifest = read_manifest(out)
    except ForeignManifest:
        raise
    except UserError as exc:
        log.warning("manifest=%s unreadable, every file is checked again: %s", out, exc)
        return {}
    if manifest.key != key:
        return {}
    return {e.path: e for e in manifest.entries if e.shard is None}


def _remove_unlisted(out: Path, manifest: Manifest) -> int:
    """Delete this key's shards that the manifest no longer names (files changed or gone);
    the shards of other keys stay, for a run with those settings."""
    listed = {e.shard for e in manifest.entries}
    removed = 0
    for shard in (out / SHARDS).glob(f"*-{key_id(manifest.key)}.npz"):
        if shard.name not in listed:
            shard.unlink(missing_ok=True)
            removed += 1
    return removed


def bench_prepare(
    n_files: int, workers_list: list[int], folder: str | Path | None = None
) -> list[dict[str, Any]]:
    """Time a fresh preparation (nothing to reuse) of ``n_files`` generated songs
    (:func:`~deepkeys.host.data.synthetic.write_band_folder`, written to ``folder`` or a
    temporary one) with each number of local workers: one row each, with ``files``,
    ``workers``, ``seconds`` and ``files_per_second``."""
    from deepkeys.host.data.synthetic import write_band_folder

    rows = []
    with tempfile.TemporaryDirectory(prefix="deepkeys-bench-prepare-") as tmp:
        songs = Path(folder) if folder is not None else Path(tmp) / "songs"
        write_band_folder(songs, n_files, seed=0)
        for i, workers in enumerate(workers_list):
            out = Path(tmp) / f"prepared-{i}"  # a fresh one each time: nothing to reuse
            started = time.perf_counter()
            prepare_folder(songs, out, workers=workers)
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "files": n_files,
                    "workers": workers,
                    "seconds": round(seconds, 2),
                    "files_per_second": round(n_files / seconds, 1),
                }
            )
            log.info("bench prepare files=%d workers=%d seconds=%.2f", n_files, workers, seconds)
    return rows
