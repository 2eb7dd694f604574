"""Data preparation on Dask (issue 14): a generated folder of 300 small songs, some broken,
prepared serially, on two local worker processes and on a ``distributed`` cluster, gives
load_folder's windows exactly; a second run parses only what changed; the training set is
streamed through a bounded shuffle buffer; damage is one line, never a traceback."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, wait_for

pytestmark = pytest.mark.host
dask = pytest.importorskip("dask")

from deepkeys.device.errors import UserError  # noqa: E402
from deepkeys.host.data import prepare as prepare_module  # noqa: E402
from deepkeys.host.data.band import band_windows  # noqa: E402
from deepkeys.host.data.folder import CAP_MIN, load_folder, read_piece  # noqa: E402
from deepkeys.host.data.prepare import prepare_folder  # noqa: E402
from deepkeys.host.data.shards import (  # noqa: E402
    MANIFEST,
    SHARDS,
    ShardedWindows,
    is_prepared,
    load_prepared,
    read_shard,
)
from deepkeys.host.data.synthetic import BROKEN, band_song, write_band_folder  # noqa: E402
from deepkeys.host.data.windows import Windows  # noqa: E402

N_FILES, N_BROKEN = 300, 12
ARRAYS = [f.name for f in fields(Windows) if f.name != "names"]


class Lines(logging.Handler):
    """The messages of one logger while in a ``with`` block (caplog is per test)."""

    def __init__(self, logger: str) -> None:
        super().__init__(logging.INFO)
        self.logger = logging.getLogger(logger)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> Lines:
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level)


def assert_same(got: Windows, want: Windows) -> None:
    assert got.names == want.names
    for name in ARRAYS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name


def split_log(lines: list[str]) -> tuple[list[str], list[str]]:
    """The capping lines (in any order) and the sets' report lines (in order)."""
    return sorted(m for m in lines if m.startswith("capped ")), [
        m for m in lines if m.startswith("split ")
    ]


def rows(windows: Windows) -> list[tuple[str, bytes]]:
    """Each window as a hashable (name, content) pair."""
    return [
        (windows.names[i], b"".join(getattr(windows, f)[i].tobytes() for f in ARRAYS))
        for i in range(len(windows))
    ]


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("songs") / "my songs"
    write_band_folder(root, N_FILES, seed=7, broken=N_BROKEN, bars=(4, 6))
    return root


@pytest.fixture(scope="module")
def reference(songs: Path) -> tuple[dict[str, Windows], dict[str, str], list[str]]:
    """load_folder's sets, its skip reasons by path, and its split's log lines."""
    with Lines("deepkeys.host.data.folder") as log:
        sets = load_folder(songs)
    reasons = {}
    for line in log.lines:
        if line.startswith("skipped file="):
            path, why = line[len("skipped file=") :].split(" reason=", 1)
            reasons[Path(path).relative_to(songs).as_posix()] = why
    return sets, reasons, [m for m in log.lines if m.startswith(("split ", "capped "))]


@pytest.fixture(scope="module")
def prepared(songs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The folder prepared in this process and on two local Dask worker processes."""
    root = tmp_path_factory.mktemp("prepared")
    out = {"serial": root / "serial", "dask": root / "dask"}
    prepare_folder(songs, out["serial"], workers=0)
    prepare_folder(songs, out["dask"], workers=2)
    return out


def test_serial_and_dask_preparations_give_exactly_load_folders_sets(
    songs: Path, reference: tuple[dict[str, Windows], dict[str, str], list[str]], prepared
) -> None:
    sets, reasons, split_lines = reference
    assert (prepared["serial"] / MANIFEST).read_text() == (prepared["dask"] / MANIFEST).read_text()
    assert sorted(p.name for p in (prepared["serial"] / SHARDS).iterdir()) == sorted(
        p.name for p in (prepared["dask"] / SHARDS).iterdir()
    )
    # every broken kind is there, with load_folder's very reason
    assert len(reasons) == N_BROKEN
    for why in BROKEN.values():
        assert any(r.startswith(why) for r in reasons.values()), why
    for engine, out in prepared.items():
        assert is_prepared(out) and not is_prepared(songs)
        with Lines("deepkeys.host.data.folder") as log:
            got = load_prepared(out)
        assert isinstance(got["train"], ShardedWindows), engine
        assert_same(got["train"].materialize(), sets["train"])
        assert len(got["train"]) == len(sets["train"])
        assert_same(got["validation"], sets["validation"])
        assert_same(got["test"], sets["test"])
        assert split_log(log.lines) == split_log(split_lines)
        manifest = prepare_module.read_manifest(out)
        assert {e.path: e.skipped for e in manifest.skipped} == reasons
    # the long files were thinned to the cap, and kept load_folder's windows (equal above)
    per_file = Counter(n for w in sets.values() for n in w.names)
    long = [e for e in manifest.entries if e.windows > CAP_MIN]
    assert long and all(per_file[e.path] == CAP_MIN for e in long)


def test_a_second_run_parses_nothing_and_a_changed_or_new_file_alone(
    songs: Path, prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    again = prepare_folder(songs, prepared["dask"], workers=2)
    assert (again.reused, again.prepared) == (N_FILES, 0)

    folder, out = tmp_path / "songs", tmp_path / "prepared"
    shutil.copytree(songs, folder)
    shutil.copytree(prepared["serial"], out)
    changed = folder / "set 1" / "song 0001.mid"
    old_shard = next(e.shard for e in again.entries if e.path == "set 1/song 0001.mid")
    band_song(changed, seed=12345, bars=5)
    band_song(folder / "set 2" / "new song.mid", seed=54321, bars=6)
    (folder / "song 0003.mid").rename(folder / "renamed.mid")  # same bytes, new name
    with Lines("deepkeys.host.data.prepare") as log:
        third = prepare_folder(folder, out, workers=2)
    assert (third.reused, third.prepared) == (N_FILES - 1, 2)
    assert len(third.skipped) == N_BROKEN
    summary = next(m for m in log.lines if m.startswith("prepared folder="))
    assert f"files={N_FILES + 1} reused={N_FILES - 1} prepared=2 skipped={N_BROKEN}" in summary
    assert not (out / SHARDS / str(old_shard)).exists()  # the changed file's old windows are gone
    by_path = {e.path: e for e in third.entries}
    was = next(e for e in again.entries if e.path == "song 0003.mid")
    assert by_path["renamed.mid"].shard == was.shard and "song 0003.mid" not in by_path
    for rel in ("set 1/song 0001.mid", "set 2/new song.mid"):
        piece = read_piece(folder / rel, None, 4)
        piece.name = rel
        shard = read_shard(out / SHARDS / str(by_path[rel].shard), rel)
        assert_same(shard, band_windows([piece], 4))

    # in this process, the parser itself shows that nothing is read twice
    def parse(*args: object) -> None:
        raise AssertionError(f"parsed again: {args[0]}")

    monkeypatch.setattr(prepare_module, "read_piece", parse)
    fourth = prepare_folder(folder, out, workers=0)
    assert (fourth.reused, fourth.prepared) == (N_FILES + 1, 0)
    assert fourth.entries == third.entries


def test_batches_are_full_stay_within_the_buffer_and_cover_every_window(prepared) -> None:
    train = load_prepared(prepared["dask"], buffer=64)["train"]
    everything = Counter(rows(train.materialize()))
    assert sum(everything.values()) == len(train)
    size = 16
    passes = len(train) // size
    batches = list(train.batches(np.random.default_rng(3), 3 * passes, size))
    assert len(batches) == 3 * passes and all(len(b) == size for b in batches)
    assert 0 < train.peak <= 64
    first = Counter(r for b in batches[:passes] for r in rows(b))
    # the first pass draws each window at most once, all but fewer than a batch of them
    assert not first - everything and len(train) - first.total() < size
    assert set(everything) == {r for b in batches for r in rows(b)}
    # from the generator alone: workers given the same one draw the same batches
    replay = train.batches(np.random.default_rng(3), 3, size)
    for a, b in zip(replay, batches):
        assert_same(a, b)
    sample = train.sample(40, seed=1)
    assert len(sample) == 40 and not Counter(rows(sample)) - everything
    assert len(set(sample.names)) >= 30  # spread over the set, not one file's windows
    assert_same(train.sample(len(train) + 1), train.materialize())


def _one_line(exc: pytest.ExceptionInfo[UserError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_damaged_shards_and_manifests_are_one_line_and_a_run_mends_them(
    songs: Path, prepared, tmp_path: Path
) -> None:
    out = tmp_path / "prepared"
    shutil.copytree(prepared["serial"], out)
    manifest = prepare_module.read_manifest(out)
    shards = [out / SHARDS / str(e.shard) for e in manifest.usable if e.shard]
    shards[0].write_bytes(shards[0].read_bytes()[:100])  # cut short
    data = bytearray(shards[1].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the zip's checksum catches it
    shards[1].write_bytes(bytes(data))
    with pytest.raises(UserError) as exc:
        load_prepared(out)
    assert "corrupt shard" in _one_line(exc) and "prepare the folder again" in str(exc.value)
    mended = prepare_folder(songs, out, workers=0)
    assert mended.prepared == 2
    load_prepared(out)
    shards[2].unlink()
    with pytest.raises(UserError) as exc:
        load_prepared(out)
    assert _one_line(exc).endswith("shard missing; prepare the folder again")

    (out / MANIFEST).write_text('{"format": "deepkeys-prepared/1", "entries": [{"pa')
    with pytest.raises(UserError) as exc:
        load_prepared(out)
    assert "corrupt manifest" in _one_line(exc)
    # a corrupt manifest is ours, cut short: a run checks every file again (the skipped
    # ones are parsed again, as their reasons were in it) and writes a good one
    rerun = prepare_folder(songs, out, workers=0)
    assert (rerun.prepared, rerun.reused) == (N_BROKEN + 1, N_FILES - N_BROKEN - 1)
    assert_same(load_prepared(out)["test"], load_prepared(prepared["serial"])["test"])
    (out / MANIFEST).write_text('{"format": "someone else\'s", "entries": []}')
    for attempt in (lambda: load_prepared(out), lambda: prepare_folder(songs, out, workers=0)):
        with pytest.raises(UserError) as exc:
            attempt()
        assert "not a deepkeys preparation" in _one_line(exc)
    with pytest.raises(UserError) as exc:
        load_prepared(songs)
    assert _one_line(exc) == f"{songs}: not a prepared folder (no manifest.json in it)"
    with pytest.raises(UserError) as exc:
        load_prepared(prepared["serial"], bars=8)
    assert "prepared in 4-bar windows, not 8" in _one_line(exc)


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A real Dask cluster on 127.0.0.1: ``dask scheduler`` and ``dask worker`` (two worker
    processes), as a cluster runs them; its address. Stopped after the test, nothing left.

    It runs outside the test process, and so does the client (``deepkeys prepare`` in a
    subprocess): distributed keeps an event-loop thread in any process that ran a client,
    and in the test process that thread made the HIL rig's Python JACK callback late.
    """
    pytest.importorskip("distributed")
    dask_cli = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{_free_port()}"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs = []
    try:
        with open(logs / "scheduler.log", "w") as out:
            procs.append(subprocess.Popen(
                [dask_cli, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                 "--no-dashboard"], stdout=out, stderr=subprocess.STDOUT,
            ))  # fmt: skip
        with open(logs / "worker.log", "w") as out:
            procs.append(subprocess.Popen(
                [dask_cli, "worker", address, "--nworkers", "2", "--nthreads", "1",
                 "--no-dashboard"], stdout=out, stderr=subprocess.STDOUT,
            ))  # fmt: skip
        wait_for(
            lambda: (logs / "scheduler.log").read_text().count("Register worker") >= 2,
            timeout=60,
            what="two Dask workers registered with the scheduler",
        )
        yield address
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert all(proc.poll() is not None for proc in procs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_distributed_cluster_gives_the_same_manifest(
    songs: Path, prepared, dask_cluster: str, tmp_path: Path
) -> None:
    address = dask_cluster
    out = tmp_path / "prepared"
    done = run_cli("prepare", songs, "--out", out, "--cluster", address)
    assert done.returncode == 0, done.stderr
    assert f"engine={address} files={N_FILES} reused=0 prepared={N_FILES}" in done.stderr
    assert (out / MANIFEST).read_text() == (prepared["serial"] / MANIFEST).read_text()
    # DASK_SCHEDULER_ADDRESS, as distributed.Client reads it, instead of --cluster.
    again = run_cli(
        "prepare", songs, "--out", out, env={**os.environ, "DASK_SCHEDULER_ADDRESS": address}
    )
    assert again.returncode == 0, again.stderr
    assert f"engine={address} files={N_FILES} reused={N_FILES} prepared=0" in again.stderr


def test_no_scheduler_at_the_address_is_one_line(songs: Path, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
    done = run_cli("prepare", songs, "--out", tmp_path / "nowhere", "--cluster", address, env=env)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"deepkeys: no Dask scheduler at {address} (")
    )
