"""The daemon's ``reload`` request: rescan the model folders without a restart, keep a
working model when its replacement is broken, and give the GENRE button the new list."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from deepkeys.device.config import hardware_free_config

from conftest import MODELS, wait_for


@pytest.fixture
def running(tmp_path: Path, soundfont: Path):
    from deepkeys.device.adapters.control import ControlClient
    from deepkeys.device.appliance.daemon import Daemon
    from deepkeys.device.config import load_config

    models = tmp_path / "models"
    models.mkdir()
    for suffix in (".json", ".tflite"):
        shutil.copy(MODELS / f"chorale{suffix}", models / f"chorale{suffix}")
    config = tmp_path / "config.toml"
    config.write_text(
        hardware_free_config(
            tmp_path / "state", tmp_path / "ctl.sock", [models], panel="genre_leds = [23, 24]"
        )
    )
    daemon = Daemon(load_config(config))
    daemon.start()
    loop = threading.Thread(target=daemon.run, name="test-daemon")
    loop.start()
    try:
        yield daemon, ControlClient(tmp_path / "ctl.sock"), models
    finally:
        daemon.request_stop()
        loop.join(timeout=15)


def test_reload_adds_keeps_and_removes_genres(running):
    daemon, client, models = running
    chorale = daemon.generators["chorale"]
    for suffix in (".json", ".tflite"):
        shutil.copy(models / f"chorale{suffix}", models / f"jazz{suffix}")

    reply = client.request("reload")
    assert reply["ok"] and reply["genres"] == ["chorale", "jazz"]
    assert reply["changed"] == ["jazz"] and reply["removed"] == [] and reply["errors"] == {}
    assert daemon.generators["chorale"] is chorale  # unchanged: not loaded again
    wait_for(lambda: daemon.snapshot["genres"] == ["chorale", "jazz"], what="the snapshot")
    assert client.request("press", button="genre")["ok"]
    wait_for(lambda: daemon.snapshot["genre"] == "jazz", what="GENRE on the new genre")
    wait_for(lambda: daemon.panel.leds["genre1"] == "on", what="the genre LED")

    # The selected genre disappears: the button falls back to what is left.
    (models / "jazz.json").unlink()
    reply = client.request("reload")
    assert reply["genres"] == ["chorale"] and reply["removed"] == ["jazz"]
    wait_for(lambda: daemon.snapshot["genre"] == "chorale", what="back to chorale")


def test_a_broken_replacement_never_replaces_the_working_model(running):
    daemon, client, models = running
    chorale = daemon.generators["chorale"]
    with open(models / "chorale.tflite", "ab") as f:
        f.write(b"half a deploy")  # the card's sha256 no longer matches

    reply = client.request("reload")
    assert reply["ok"] and reply["genres"] == ["chorale"] and reply["changed"] == []
    assert "does not match its card" in reply["errors"]["chorale"]
    assert daemon.generators["chorale"] is chorale  # still loaded, still playing
    assert (
        daemon.snapshot["model_sha256"]
        == json.loads((MODELS / "chorale.json").read_text())["sha256"]
    )

    # A genre that never worked is left out, with its one-line reason.
    (models / "funk.json").write_text("{ not a card")
    reply = client.request("reload")
    assert reply["genres"] == ["chorale"] and "funk" in reply["errors"]
