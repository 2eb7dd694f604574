"""Publishing saved compositions: placeholders only as whole arguments (the paths are in
the environment too), crafted genre names refused where they enter, and the queue that
``deepkeys-publish.service`` drains when the daemon runs under systemd."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import threading
from pathlib import Path

import pytest

from deepkeys.device.config import PublishConfig, hardware_free_config
from deepkeys.device.encoding import Composition, Note, Track
from deepkeys.device.errors import UserError

from conftest import MODELS, run_cli, wait_for

CRAFTED = "x$(touch PWNED)"  # what a model name from a stranger's deploy could be


def _config(tmp_path: Path, command: list[str], models: list[Path] | None = None) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        hardware_free_config(
            tmp_path / "state",
            tmp_path / "ctl.sock",
            models or [MODELS],
            extra=f"[publish]\ncommand = {json.dumps(command)}\n",
        )
    )
    return path


def _composition() -> Composition:
    melody = Track("melody", 0, [Note(60 + i, i * 4, i * 4 + 4) for i in range(4)])
    return Composition([melody, Track("bass", 32, [Note(36, 0, 16)])], 16, 120.0)


@pytest.fixture
def daemon_of(tmp_path: Path, soundfont: Path, monkeypatch: pytest.MonkeyPatch):
    """Start an in-process daemon on a config; stopped at the end."""
    from deepkeys.device.appliance.daemon import Daemon
    from deepkeys.device.config import load_config

    monkeypatch.chdir(tmp_path)  # a `touch PWNED` that ran would land here
    started: list[tuple[Daemon, threading.Thread]] = []

    def start(config: Path) -> Daemon:
        daemon = Daemon(load_config(config))
        daemon.start()
        loop = threading.Thread(target=daemon.run, name="test-daemon")
        loop.start()
        started.append((daemon, loop))
        return daemon

    yield start
    for daemon, loop in started:
        daemon.request_stop()
        loop.join(timeout=15)


# --------------------------------------------------------------------------- placeholders
def test_placeholders_fill_whole_arguments_only_and_the_environment_has_the_paths():
    publish = PublishConfig(("sh", "-c", 'cp "$DEEPKEYS_MID" /srv/', "{mid}", "{json}", "a{mid}"))
    assert publish.argv("/s/a b.mid", "/s/a b.json") == [
        "sh",
        "-c",
        'cp "$DEEPKEYS_MID" /srv/',
        "/s/a b.mid",
        "/s/a b.json",
        "a{mid}",  # never filled in inside an argument
    ]
    assert publish.env("/s/a b.mid", Path("/s/a b.json")) == {
        "DEEPKEYS_MID": "/s/a b.mid",
        "DEEPKEYS_JSON": "/s/a b.json",
    }


@pytest.mark.parametrize("arg", ["cp {mid} /srv/", "--file={json}", "{mid}{json}"])
def test_a_placeholder_inside_an_argument_is_refused_in_one_line(tmp_path, arg):
    config = _config(tmp_path, ["sh", "-c", arg])
    result = run_cli("config", "--config", config)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'deepkeys: {config}: publish.command[2] may hold "{{mid}}" or "{{json}}" only as '
        'a whole argument (inside a shell command use "$DEEPKEYS_MID" and "$DEEPKEYS_JSON"), '
        f"got {json.dumps(arg)}"
    ]


# --------------------------------------------------------------------------- genre names
def _model_pair(folder: Path, genre: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".tflite"):
        shutil.copy(MODELS / f"chorale{suffix}", folder / f"{genre}{suffix}")
    return folder / f"{genre}.json"


def test_a_crafted_genre_name_is_refused_by_the_card_loader(tmp_path):
    from deepkeys.device.generation.card import load_card

    card = _model_pair(tmp_path, CRAFTED)
    with pytest.raises(UserError) as err:
        load_card(card)
    assert str(err.value) == (
        f"{card}: bad genre name {CRAFTED!r}: use 1 to 64 letters, digits, '_' or '-', "
        "starting with a letter or digit"
    )
    for fine in ("rock", "bossa-nova", "my_genre2"):
        assert load_card(_model_pair(tmp_path, fine)).sha256


def test_the_daemon_skips_a_crafted_genre_and_a_shell_command_gets_the_paths_safely(
    tmp_path, daemon_of
):
    out = tmp_path / "published"
    out.mkdir()
    models = tmp_path / "models"
    _model_pair(models, "chorale")
    _model_pair(models, CRAFTED)
    # The README's way to use a shell: the paths from the environment, quoted.
    command = ["sh", "-c", f'cp "$DEEPKEYS_MID" "$DEEPKEYS_JSON" {shlex.quote(str(out))}/']
    daemon = daemon_of(_config(tmp_path, command, [models]))
    assert list(daemon.generators) == ["chorale"]
    assert daemon.snapshot.get("genres", ["chorale"]) == ["chorale"]
    # Even a name that got past every check only ever reaches the command as data.
    daemon.do_save_composition(_composition(), CRAFTED, 7)
    published = wait_for(lambda: sorted(p.name for p in out.iterdir()), what="the copy")
    wait_for(lambda: len(list(out.iterdir())) == 2, what="both files")
    published = sorted(p.name for p in out.iterdir())
    assert [Path(p).suffix for p in published] == [".json", ".mid"]
    assert all(CRAFTED in p for p in published)
    assert daemon.counts["publish_errors"] == 0
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


# --------------------------------------------------------------------------- the queue
def test_under_systemd_the_daemon_queues_and_deepkeys_publish_runs_the_command(
    tmp_path, daemon_of, monkeypatch
):
    spool = tmp_path / "state" / "publish"
    out = tmp_path / "published"
    out.mkdir()
    command = [sys.executable, "-c", "import shutil, sys; shutil.copy(*sys.argv[1:])"]
    config = _config(tmp_path, [*command, "{mid}", str(out)])
    monkeypatch.setenv("DEEPKEYS_PUBLISH_SPOOL", str(spool))  # what deepkeys.service sets
    daemon = daemon_of(config)
    daemon.do_save_composition(_composition(), "chorale", 3)
    [request] = wait_for(lambda: list(spool.glob("*.json")), what="the publish request")
    saved = json.loads(request.read_text())
    assert Path(saved["mid"]).is_file() and Path(saved["json"]).is_file()
    assert Path(saved["mid"]).parent == tmp_path / "state" / "compositions"
    assert list(out.iterdir()) == []  # the daemon ran nothing itself
    assert not list(spool.parent.glob(".publish-*"))  # written beside, renamed in

    # A forged request for a file outside the compositions is refused, never run.
    (spool / "forged.json").write_text(json.dumps({"mid": "/etc/passwd", "json": "/etc/group"}))
    (spool / "junk.json").write_text("{ not json")
    env = {**os.environ, "DEEPKEYS_PUBLISH_SPOOL": str(spool)}
    result = run_cli("publish", "--config", config, env=env)
    assert result.returncode == 1, result.stderr
    assert [p.name for p in out.iterdir()] == [Path(saved["mid"]).name]
    assert list(spool.iterdir()) == []  # every request handled: the path unit goes quiet
    assert "event=published" in result.stderr
    assert result.stderr.count("event=publish_refused") == 2
    assert result.stdout.strip() == "publish: 1 published, 2 refused, 0 failed"

    # Nothing queued: nothing to do, and a second run is harmless.
    result = run_cli("publish", "--config", config, env=env)
    assert result.returncode == 0 and result.stdout.strip() == "publish: nothing queued"


def test_deepkeys_publish_without_a_spool_says_so_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DEEPKEYS_PUBLISH_SPOOL"}
    result = run_cli("publish", "--config", _config(tmp_path, ["true", "{mid}"]), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "deepkeys: no publish queue: DEEPKEYS_PUBLISH_SPOOL is not set (deepkeys-publish.service "
        "sets it; without systemd the daemon runs publish.command itself)"
    ]


@pytest.mark.parametrize("command", ["train", "export", "evaluate"])
def test_a_crafted_genre_name_is_refused_on_the_workstation_too(tmp_path, command):
    """It would name the run folder and the card: refused before any work (or import)."""
    result = run_cli(command, "--genre", CRAFTED)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"deepkeys: bad genre name {CRAFTED!r}: use 1 to 64 letters, digits, '_' or '-', "
        "starting with a letter or digit"
    ]
