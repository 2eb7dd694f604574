"""The host pipeline on a tiny model: train with logs, checkpoints and resume, then
int8 export that the device runtime accepts. And the shipped model's int8 export
against its float weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import MODELS

tf = pytest.importorskip("tensorflow")

from deepkeys.device.generation.card import load_card, sha256_of  # noqa: E402
from deepkeys.device.generation.generator import Generator  # noqa: E402
from deepkeys.host.commands import int8_float_agreement  # noqa: E402
from deepkeys.host.data import chorales  # noqa: E402
from deepkeys.host.data.sources import load_windows  # noqa: E402
from deepkeys.host.data.windows import Windows  # noqa: E402
from deepkeys.host.export import calibration_set, export  # noqa: E402
from deepkeys.host.model import GeneratorConfig, TrainConfig  # noqa: E402
from deepkeys.host.train import Trainer, read_log  # noqa: E402

TINY = GeneratorConfig(widths=(16, 16, 16, 16), critic_widths=(8, 8, 8, 8), noise_dim=4)
LOSS_KEYS = {
    "g_loss",
    "loss",
    "ce",
    "onset_bce",
    "g_adv",
    "d_loss",
    "val_loss",
    "val_in_key",
    "val_consonance",
    "val_QN",
    "seconds",
}


@pytest.fixture(scope="module")
def tiny_data():
    split = chorales.load_split()
    train = [chorales.parse_chorale(n) for n in split["train"][:3]]
    val = [chorales.parse_chorale(n) for n in split["validation"][:1]]
    sets = {}
    for part, cs in (("train", train), ("validation", val)):
        sets[part] = Windows.voices_only(*chorales.windows(cs, bars=TINY.bars))
    return sets


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_data):
    run_dir = tmp_path_factory.mktemp("run")
    trainer = Trainer(TINY, TrainConfig(epochs=2, batch_size=8), run_dir)
    trainer.write_config("chorale", "deepkeys train --genre chorale --epochs 2 --seed 0")
    trainer.fit(tiny_data, run_dir / "log.jsonl", "test")
    return run_dir


def test_training_logs_both_losses_and_metrics_per_epoch(tiny_run):
    rows = read_log(tiny_run / "log.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert set(row) >= LOSS_KEYS
        assert all(np.isfinite(row[k]) for k in LOSS_KEYS)
    assert rows[1]["loss"] < rows[0]["loss"]  # it learns something even in two tiny epochs
    assert (tiny_run / "training.png").read_bytes()[:4] == b"\x89PNG"
    assert (tiny_run / "best.weights.h5").exists()


def test_resume_continues_from_the_last_checkpoint(tiny_run, tiny_data, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    trainer = Trainer(TINY, TrainConfig(epochs=3, batch_size=8), run_dir)
    trainer.ckpt.restore(trainer.manager.latest_checkpoint)
    assert int(trainer.epoch.numpy()) == 2
    trainer.fit(tiny_data, run_dir / "log.jsonl", "test")
    assert [r["epoch"] for r in read_log(run_dir / "log.jsonl")] == [1, 2, 3]


def test_stop_rule_ends_training_when_validation_stops_improving(tiny_data, tmp_path):
    trainer = Trainer(TINY, TrainConfig(epochs=50, batch_size=8, patience=1), tmp_path)
    trainer.best.assign(-1.0)  # nothing can beat this, so the first epoch is stale
    trainer.fit(tiny_data, tmp_path / "log.jsonl", "test")
    assert len(read_log(tmp_path / "log.jsonl")) == 1


def test_export_writes_an_int8_model_the_device_accepts(tiny_run, tiny_data, tmp_path):
    data = tiny_data["train"]
    card = export(
        tiny_run,
        "chorale",
        tmp_path,
        calibration_set(data, TINY),
        melody_center=69,
        history=read_log(tiny_run / "log.jsonl"),
        extra_provenance={},
        dataset="four chorales",
    )
    assert card.sha256 == sha256_of(tmp_path / "chorale.tflite")
    for name, spec in {**card.inputs, **card.outputs}.items():
        assert spec.shape[0] == 1, name  # batch fixed to 1
    assert card.inputs["melody"].shape == (1, 64, 84, 2)
    assert card.provenance["train_command"].startswith("deepkeys train --genre chorale")
    assert card.provenance["epochs_run"] == 2
    voices = Generator(card).accompany([], 16, seed=0).parts
    assert set(voices) == {"alto", "tenor", "bass"}


def test_shipped_model_int8_agrees_with_its_float_weights(chorale_card):
    card = load_card(chorale_card)
    f1 = int8_float_agreement(card, load_windows("chorale", bars=card.bars)["test"])
    assert f1 >= 0.95, f"int8 vs float note F1 on the test split is {f1:.3f}"


def test_shipped_card_says_how_to_reproduce_it(chorale_card):
    raw = json.loads(chorale_card.read_text())
    prov = raw["provenance"]
    assert prov["train_command"].startswith("deepkeys train --genre chorale")
    assert len(prov["code_commit"]) >= 40
    assert prov["history"] and {"g_loss", "d_loss", "val_ce"} <= set(prov["history"][0])
    assert set(prov["metrics"]["test_split"]) == {"generated", "real", "shuffled"}
    assert raw["sha256"] == sha256_of(MODELS / "chorale.tflite")


def test_evaluate_prints_the_quality_table_and_the_shipped_model_meets_the_bar(chorale_card):
    from conftest import run_cli

    result = run_cli("evaluate", "--genre", "chorale")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {
        cells[0]: dict(zip(header[1:], (float("nan") if c == "-" else float(c) for c in cells[1:])))
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])
    }
    assert set(rows) == {"generated", "real", "shuffled"}
    gen, real, shuffled = rows["generated"], rows["real"], rows["shuffled"]
    for key in ("UPC", "QN", "polyphony"):
        assert abs(gen[key] - real[key]) <= 0.2 * real[key], key
    assert gen["EB"] <= real["EB"] + 0.05
    assert gen["in_key"] >= 0.9
    assert gen["consonance"] >= shuffled["consonance"] + 0.2
