"""``deepkeys doctor``: the table passes on a healthy (hardware-free) appliance with its
daemon running, and each failure is its own row with a one-line reason and exit 1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepkeys.device.config import hardware_free_config

from conftest import MODELS, run_cli, wait_for


def write_config(tmp_path: Path, models: Path = MODELS, extra: str = "") -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        hardware_free_config(tmp_path / "state", tmp_path / "ctl.sock", [models], extra=extra)
    )
    return config


def rows(stdout: str) -> dict[str, tuple[str, str]]:
    """check name -> (result, reason) from the table."""
    out = {}
    for line in stdout.splitlines()[1:-1]:
        name, rest = line[:16].strip(), line[16:].strip()
        result, _, reason = rest.partition(" ")
        out[name] = (result, reason.strip())
    return out


def test_everything_passes_with_the_daemon_running(tmp_path, soundfont):
    config = write_config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepkeys.device.cli", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: (tmp_path / "ctl.sock").exists() or proc.poll() is not None,
            timeout=30,
            what="the daemon",
        )
        result = run_cli("doctor", "--config", config)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert table["daemon"][0] == "ok" and "state=idle" in table["daemon"][1]
    assert table["audio"][0] == "ok"  # underruns vary with the machine's load
    assert table["audio"][1].startswith("null held by the daemon: 48000 Hz, period 128, ")
    assert table["model chorale"][0] == "ok"
    assert table["midi"] == ("ok", "sim: the daemon has sim keyboard")
    assert table["pins"][0] == "ok" and table["soundfont"][0] == "ok"
    assert table["disk"][0] == "ok"
    # Off a Pi these are n/a, and n/a is not a failure.
    assert table["cpu temperature"][0] in ("ok", "n/a") and table["throttling"][0] in ("ok", "n/a")
    assert result.stdout.strip().splitlines()[-1].startswith("doctor: ")
    assert " 0 failed" in result.stdout.strip().splitlines()[-1]


def test_without_the_daemon_it_opens_audio_midi_and_pins_itself(tmp_path, soundfont):
    result = run_cli("doctor", "--config", write_config(tmp_path))
    assert result.returncode == 1
    table = rows(result.stdout)
    assert table["daemon"] == (
        "FAIL",
        f"deepkeys daemon is not running (no socket at {tmp_path / 'ctl.sock'})",
    )
    assert table["audio"] == ("ok", "null: 48000 Hz, period 128")
    assert table["midi"] == ("ok", "sim: found sim keyboard")
    assert table["pins"] == ("ok", "factory MockFactory: 6 buttons, 3 LEDs claimed")
    assert [name for name, (r, _) in table.items() if r == "FAIL"] == ["daemon"]


def test_each_failure_is_a_row_with_its_reason(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(MODELS / "chorale.json", models)
    (models / "chorale.tflite").write_bytes((MODELS / "chorale.tflite").read_bytes() + b"x")
    config = write_config(tmp_path, models, extra="[player]\ntempo_bpm = 500\n")
    env = {**os.environ, "DEEPKEYS_SOUNDFONT": str(tmp_path / "missing.sf2")}
    result = run_cli("doctor", "--config", config, env=env)
    assert result.returncode == 1
    table = rows(result.stdout)
    # The config is bad, so the rest is checked with the defaults (and says so).
    assert table["config"][0] == "FAIL"
    assert "player.tempo_bpm must be an integer 40..240, got 500" in table["config"][1]
    assert table["soundfont"] == (
        "FAIL",
        f"DEEPKEYS_SOUNDFONT={tmp_path / 'missing.sf2'}: no such SoundFont file",
    )
    assert table["daemon"][0] == "FAIL"
    failed = [name for name, (r, _) in table.items() if r == "FAIL"]
    assert {"config", "soundfont", "daemon"} <= set(failed)
    assert "failed" in result.stdout.splitlines()[-1]


def test_a_model_whose_sha_does_not_match_its_card_fails_its_row(tmp_path):
    from deepkeys.device.config import load_config
    from deepkeys.device.maintenance.doctor import check_models

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(MODELS / "chorale.json", models)
    (models / "chorale.tflite").write_bytes((MODELS / "chorale.tflite").read_bytes() + b"x")
    shutil.copy(MODELS / "chorale.json", models / "good.json")
    shutil.copy(MODELS / "chorale.tflite", models / "good.tflite")
    [bad, good] = check_models(load_config(write_config(tmp_path, models)))
    assert (bad.name, bad.ok) == ("model chorale", False)
    assert "sha256" in bad.reason and bad.reason.endswith(
        f"does not match its card ({bad.reason.split('(')[-1]}"
    )
    assert (good.name, good.ok) == ("model good", True)
    empty = check_models(load_config(write_config(tmp_path, tmp_path / "none")))
    assert [(c.name, c.ok) for c in empty] == [("models", False)]


@pytest.mark.parametrize("millideg, ok", [(45123, True), (85000, False)])
def test_cpu_temperature_from_the_thermal_zone(tmp_path, millideg, ok):
    from deepkeys.device.maintenance.doctor import check_temperature

    zone = tmp_path / "sys" / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text(f"{millideg}\n")
    check = check_temperature(tmp_path)
    assert check.ok is ok and check.reason.startswith(f"{millideg / 1000:.1f} °C (cpu-thermal)")
    assert check_temperature(tmp_path / "elsewhere").ok is None


@pytest.mark.parametrize(
    "flags, ok, says",
    [
        ("0x0", True, "never throttled"),
        ("0x50000", True, "since boot: under-voltage, throttled"),
        ("0x50005", False, "under-voltage, throttled now"),
    ],
)
def test_throttling_from_vcgencmd(tmp_path, flags, ok, says):
    from deepkeys.device.maintenance.doctor import check_throttling

    # vcgencmd only exists on a Pi: a stand-in that prints what the firmware prints.
    tool = tmp_path / "vcgencmd"
    tool.write_text(f'#!/bin/sh\n[ "$1" = get_throttled ] && echo throttled={flags}\n')
    tool.chmod(0o755)
    check = check_throttling(str(tool))
    assert check.ok is ok and says in check.reason
    assert check_throttling(str(tmp_path / "absent")).ok is None
