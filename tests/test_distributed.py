"""Training on several workers: real MultiWorkerMirroredStrategy workers on 127.0.0.1.

Two workers, each training on half of every batch, must reach the weights one worker
reaches on the whole batch with the same seed; a worker killed mid-run is replaced
and training resumes from the last checkpoint without losing or repeating an epoch.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

import numpy as np
import pytest

from deepkeys.device.errors import UserError

from conftest import run_cli

pytestmark = pytest.mark.host
tf = pytest.importorskip("tensorflow")
from deepkeys.host.data.synthetic import write_band_folder  # noqa: E402
from deepkeys.host.distributed import Cluster  # noqa: E402
from deepkeys.host.model import GeneratorConfig, TrainConfig  # noqa: E402
from deepkeys.host.train import Trainer, read_log, train  # noqa: E402

EPOCHS = 3
TINY = {
    "widths": [16, 16, 16, 16],
    "critic_widths": [8, 8, 8, 8],
    "noise_dim": 4,
    "dropout": 0.0,  # dropout masks are drawn per replica; everything else is given to it
}
SETTINGS = {"batch_size": 8, "steps_per_epoch": 12}


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("songs")
    write_band_folder(folder, 8, seed=0, broken=0)
    return folder


def run(songs, run_dir, workers: int):
    return train(
        "tiny",
        run_dir,
        EPOCHS,
        0,
        False,
        "test",
        tcfg_overrides=SETTINGS,
        data_folder=songs,
        cfg_overrides=TINY,
        workers=workers,
    )


def weights(run_dir) -> dict[str, np.ndarray]:
    """Every network variable (and optimizer slot) of a run's last checkpoint."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(run_dir / "ckpt"))
    names = [
        n
        for n in reader.get_variable_to_shape_map()
        if n.startswith(("g_opt/", "d_opt/")) and "VARIABLE_VALUE" in n
    ]
    return {n: reader.get_tensor(n) for n in names}


def assert_same_weights(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and len(wa) > 20
    for name in wa:
        np.testing.assert_allclose(wa[name], wb[name], atol=2e-5, err_msg=name)


def no_worker_left(run_dir) -> None:
    for pid_file in (run_dir / "workers").glob("*.pid"):
        pid = int(pid_file.read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture(scope="module")
def one_and_two(songs, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run(songs, root / "one", workers=1)
    run(songs, root / "two", workers=2)
    return root / "one", root / "two"


def test_two_workers_reach_the_weights_of_one_with_the_same_global_batch(one_and_two):
    one, two = one_and_two
    assert_same_weights(one, two)
    # The chief alone wrote the log and the plot, once per epoch.
    assert [r["epoch"] for r in read_log(two / "log.jsonl")] == list(range(1, EPOCHS + 1))
    assert (two / "training.png").exists() and (two / "best.weights.h5").exists()
    assert not list(two.glob(".ckpt-worker-*"))  # the other worker's scratch checkpoints
    rows_one, rows_two = read_log(one / "log.jsonl"), read_log(two / "log.jsonl")
    for a, b in zip(rows_one, rows_two, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    spec = json.loads((two / "workers.json").read_text())
    assert spec["cfg_overrides"] == TINY
    no_worker_left(two)


def test_a_killed_worker_is_replaced_and_training_resumes_where_it_was(
    songs, one_and_two, tmp_path, caplog
):
    run_dir = tmp_path / "killed"
    caplog.set_level(logging.INFO, "deepkeys.train")
    failure: list[BaseException] = []

    def training() -> None:
        try:
            run(songs, run_dir, workers=2)
        except BaseException as exc:  # the test reports it
            failure.append(exc)

    thread = threading.Thread(target=training)
    thread.start()
    log_path = run_dir / "log.jsonl"
    deadline = time.monotonic() + 240
    while not (log_path.exists() and read_log(log_path)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log_path.exists(), "the first epoch never finished"
    victim = int((run_dir / "workers" / "worker-1.pid").read_text())
    os.kill(victim, signal.SIGKILL)  # in the second epoch: the first one's row is written
    thread.join(timeout=300)
    assert not thread.is_alive() and not failure, failure

    assert [r["epoch"] for r in read_log(log_path)] == list(range(1, EPOCHS + 1))
    restarts = [r.getMessage() for r in caplog.records if "restart=" in r.getMessage()]
    assert len(restarts) == 1 and restarts[0].startswith("worker=1 exit=-9")
    chief_log = (run_dir / "workers" / "worker-0.log").read_text()
    assert "resume=" in chief_log and "epoch=1\n" in chief_log
    # Nothing lost, nothing repeated: the weights of the run that was never interrupted.
    assert_same_weights(one_and_two[1], run_dir)
    no_worker_left(run_dir)


def test_a_bad_folder_under_workers_is_one_line_and_no_restarts(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli(
        "train",
        "--genre",
        "mine",
        "--data",
        tmp_path / "empty",
        "--workers",
        "2",
        "--run-dir",
        tmp_path / "run",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"deepkeys: {tmp_path / 'empty'}: no .mid or .midi files in it"
    )
    assert "restart=" not in result.stderr
    no_worker_left(tmp_path / "run")


def test_tf_config_is_read_or_refused_in_one_line():
    assert Cluster.from_tf_config(
        '{"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]}, '
        '"task": {"type": "worker", "index": 1}}'
    ) == Cluster(workers=3, rank=2)
    for bad in (
        "not json",
        '{"cluster": {}}',
        '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
    ):
        with pytest.raises(UserError, match="TF_CONFIG"):
            Cluster.from_tf_config(bad)


def test_a_batch_that_does_not_split_over_the_workers_is_refused(songs, tmp_path):
    with pytest.raises(UserError, match="does not split evenly over 3 workers"):
        Trainer(GeneratorConfig(), TrainConfig(batch_size=8), tmp_path, Cluster(3, 0))


def test_a_prepared_folder_trains_on_two_workers_and_exports(songs, tmp_path):
    prepared = tmp_path / "prepared"
    done = run_cli("prepare", songs, "--out", prepared, "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert "files=8 reused=0 prepared=8 skipped=0" in done.stdout
    again = run_cli("prepare", songs, "--out", prepared, "--workers", "2")
    assert "reused=8 prepared=0" in again.stdout

    run_dir = tmp_path / "run"
    run(prepared, run_dir, workers=2)  # the training set read shard by shard
    assert [r["epoch"] for r in read_log(run_dir / "log.jsonl")] == list(range(1, EPOCHS + 1))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["generator"]["widths"] == TINY["widths"]
    exported = run_cli(
        "export", "--genre", "tiny", "--run-dir", run_dir, "--data", prepared,
        "--out", tmp_path / "models",
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    card = json.loads((tmp_path / "models" / "tiny.json").read_text())
    assert card["genre"] == "tiny" and (tmp_path / "models" / "tiny.tflite").stat().st_size > 0
