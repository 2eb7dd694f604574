"""``deepkeys deploy`` / ``rollback`` over a real OpenSSH server on loopback.

The ``sshd`` fixture (conftest) starts ``sshd`` on 127.0.0.1 with throwaway host
and user keys; a temporary folder stands in for the device (its own config, state directory and
control socket), and a real daemon runs on it, so a deploy is seen on the GENRE
button without a restart.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from deepkeys.device.config import hardware_free_config

from conftest import MODELS, run_cli, wait_for

REMOTE = f"{sys.executable} -m deepkeys.device.cli"  # the venv's python: an absolute path
# A genre name is restricted to a safe set (it ends up in the file names a publish
# command gets); a crafted one is refused on both sides of a deploy.
CRAFTED_GENRE = """it's a "test" $(touch PWNED) `touch PWNED`; touch PWNED & |x| *"""
ODD_GENRE = "it-s_a-Test-2"  # the oddest a genre may be


@pytest.fixture
def device(tmp_path: Path, soundfont: Path) -> dict:
    """A temporary root standing in for the Pi: a path with a space and a quote in it."""
    root = tmp_path / "device root's"
    state = root / "var" / "lib" / "deepkeys"
    config = root / "etc" / "deepkeys" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        hardware_free_config(state, root / "run" / "control.sock", [state / "models"])
    )
    return {"root": root, "state": state, "config": config}


@pytest.fixture
def daemon(device: dict):
    """The real daemon on the stand-in device, its main loop on a thread."""
    from deepkeys.device.appliance.daemon import Daemon
    from deepkeys.device.config import load_config

    d = Daemon(load_config(device["config"]))
    d.start()
    loop = threading.Thread(target=d.run, name="test-daemon")
    loop.start()
    try:
        yield d
    finally:
        d.request_stop()
        loop.join(timeout=15)


def deploy(
    sshd: Path, device: dict, *args: str | os.PathLike[str], dest: str = "root@deepkeys-pi"
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "deploy",
        dest,
        *args,
        "-F",
        sshd,
        "--remote-deepkeys",
        REMOTE,
        "--remote-config",
        device["config"],
    )


def model_copy(folder: Path, genre: str, extra: bytes = b"", card_edit=None) -> Path:
    """The shipped chorale model as ``genre``; ``extra`` bytes make it a new version."""
    from deepkeys.device.generation.card import sha256_of

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{genre}.tflite"
    model.write_bytes((MODELS / "chorale.tflite").read_bytes() + extra)
    card = json.loads((MODELS / "chorale.json").read_text())
    card["genre"] = genre
    card["sha256"] = sha256_of(model)
    if card_edit:
        card_edit(card)
    (folder / f"{genre}.json").write_text(json.dumps(card))
    return folder


def active_sha(device: dict, genre: str) -> str | None:
    from deepkeys.device.maintenance.store import ModelStore

    return ModelStore(device["state"]).active().get(genre)


# ------------------------------------------------------------------------------ deploy
def test_deploy_reaches_the_running_daemon_without_a_restart(sshd, device, daemon, tmp_path):
    from deepkeys.device.adapters.control import ControlClient
    from deepkeys.device.generation.card import sha256_of

    assert daemon.snapshot["genres"] == []  # nothing installed on the stand-in device
    result = deploy(sshd, device, "--models", "chorale", "--from", MODELS)
    assert result.returncode == 0, result.stderr
    sha = sha256_of(MODELS / "chorale.tflite")
    assert f"genre=chorale sha256={sha} status=active" in result.stdout
    assert "daemon=reloaded genres=chorale" in result.stdout

    # A new genre, on the GENRE button at once; the daemon never restarted.
    pid_before, started = os.getpid(), daemon.started_t
    jazz = model_copy(tmp_path / "workstation models", "jazz", extra=b"v1")
    result = deploy(sshd, device, "--from", jazz)
    assert result.returncode == 0, result.stderr
    assert "daemon=reloaded genres=chorale,jazz" in result.stdout
    client = ControlClient(device["root"] / "run" / "control.sock")
    wait_for(lambda: daemon.snapshot["genres"] == ["chorale", "jazz"], what="the new genre")
    assert client.request("press", button="genre")["ok"]
    wait_for(lambda: daemon.snapshot["genre"] == "jazz", what="GENRE to reach jazz")
    assert (os.getpid(), daemon.started_t) == (pid_before, started)

    # On the device: the live folder is a symlink; each version is kept, verified.
    state = device["state"]
    assert (state / "models").is_symlink()
    assert sorted(p.name for p in (state / "models").iterdir()) == [
        "chorale.json",
        "chorale.tflite",
        "jazz.json",
        "jazz.tflite",
    ]
    assert (state / "models.d" / "versions" / "jazz" / sha256_of(jazz / "jazz.tflite")).is_dir()
    assert not list((state / "models.d").glob("incoming-*"))


def test_a_model_that_fails_on_the_device_is_never_activated(sshd, device, daemon, tmp_path):
    good = deploy(sshd, device, "--models", "chorale", "--from", MODELS)
    assert good.returncode == 0, good.stderr
    before = active_sha(device, "chorale")
    wait_for(lambda: daemon.snapshot["model_sha256"] == before, what="chorale active")

    # Right sha256, wrong tensor shapes: only the device (LiteRT) can tell.
    def wrong_shape(card: dict) -> None:
        card["shapes"]["inputs"]["melody"]["shape"][1] += 16

    bad = model_copy(tmp_path / "bad", "chorale", extra=b"v2", card_edit=wrong_shape)
    result = deploy(sshd, device, "--from", bad)
    assert result.returncode == 2
    assert "status=refused" in result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("deepkeys: root@deepkeys-pi: chorale: ")
    assert "its card says" in line and line.endswith("(not activated; the previous version stays)")
    assert active_sha(device, "chorale") == before
    assert daemon.snapshot["model_sha256"] == before

    # Bytes changed after the card was written: the device's own sha256 check refuses.
    from deepkeys.device.errors import UserError
    from deepkeys.device.maintenance.deploy import pack
    from deepkeys.device.maintenance.ssh import run_remote

    tampered = model_copy(tmp_path / "tampered", "chorale", extra=b"v3")
    data, expect = pack([tampered / "chorale.json"])
    broken = data.replace(b"v3", b"v4")  # in transit, or on a bad SD card
    with pytest.raises(UserError, match="does not match its card"):
        run_remote(
            "root@deepkeys-pi",
            [
                "receive",
                "--config",
                str(device["config"]),
                "--expect",
                f"chorale={expect['chorale']}",
            ],
            remote=REMOTE,
            ssh_config=str(sshd),
            stdin=broken,
        )
    assert active_sha(device, "chorale") == before
    assert daemon.snapshot["genres"] == ["chorale"]


def test_rollback_restores_the_previous_version(sshd, device, daemon, tmp_path):
    v1 = model_copy(tmp_path / "v1", "rock", extra=b"v1")
    v2 = model_copy(tmp_path / "v2", "rock", extra=b"v2")
    for folder in (v1, v2):
        assert deploy(sshd, device, "--from", folder).returncode == 0
    sha1 = json.loads((v1 / "rock.json").read_text())["sha256"]
    sha2 = json.loads((v2 / "rock.json").read_text())["sha256"]
    assert active_sha(device, "rock") == sha2
    wait_for(lambda: daemon.snapshot["model_sha256"] == sha2, what="v2 playing")

    result = run_cli(
        "rollback",
        "rock",
        "--host",
        "root@deepkeys-pi",
        "-F",
        sshd,
        "--remote-deepkeys",
        REMOTE,
        "--remote-config",
        device["config"],
    )
    assert result.returncode == 0, result.stderr
    assert f"genre=rock sha256={sha1} status=active" in result.stdout
    assert active_sha(device, "rock") == sha1
    wait_for(lambda: daemon.snapshot["model_sha256"] == sha1, what="v1 back in the daemon")
    # Nothing older than v1 was deployed: a second rollback says so in one line.
    again = run_cli("rollback", "rock", "--config", device["config"])
    assert again.returncode == 2
    assert again.stderr.strip() == (
        "deepkeys: cannot roll back 'rock': it has one deployed "
        "version, so there is no previous one"
    )


def test_a_card_that_does_not_match_its_model_is_never_sent(sshd, device, tmp_path):
    folder = model_copy(tmp_path / "w", "funk", extra=b"v1")
    with open(folder / "funk.tflite", "ab") as f:
        f.write(b"changed after export")
    result = deploy(sshd, device, "--from", folder)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("deepkeys: refusing to deploy 'funk': ")
    assert "does not match its card" in line
    assert not device["state"].exists()  # ssh never ran: nothing reached the device


# ------------------------------------------------------------------------------ quoting
def test_names_with_spaces_quotes_and_metacharacters_pass_safely(
    sshd, device, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a `touch PWNED` that ran anywhere would land here or in /
    folder = model_copy(tmp_path / "it's a folder $(x)", ODD_GENRE, extra=b"w")
    result = deploy(sshd, device, "--from", folder)  # the config path has a space and a quote
    assert result.returncode == 0, result.stderr
    live = device["state"] / "models"
    assert sorted(p.name for p in live.iterdir()) == [
        f"{ODD_GENRE}.json",
        f"{ODD_GENRE}.tflite",
    ]
    assert f"genre={ODD_GENRE} " in result.stdout

    # Host and user names that a shell would run: ssh gets each as one argument and
    # refuses them itself (exit 255); our code never hands them to a shell.
    for dest in (
        "root@pi;touch PWNED",
        "root@$(touch PWNED)",
        "o'brien `touch PWNED`@pi",
        'root@"pi" && touch PWNED',
    ):
        result = deploy(sshd, device, "--from", folder, dest=dest)
        assert result.returncode == 2, dest
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"deepkeys: {dest}: ssh failed: "), line
    # One that looks like an ssh option is refused before ssh runs.
    result = deploy(sshd, device, "--from", folder, dest="-oProxyCommand=touch PWNED")
    assert result.returncode == 2
    assert "bad destination" in result.stderr
    for where in (tmp_path, Path("/"), Path.home(), device["root"]):
        assert not (where / "PWNED").exists()


def test_a_crafted_genre_name_is_refused_by_deploy_and_by_the_device(
    sshd, device, tmp_path, monkeypatch
):
    from deepkeys.device.errors import UserError
    from deepkeys.device.maintenance.store import ModelStore

    monkeypatch.chdir(tmp_path)
    folder = model_copy(tmp_path / "crafted", CRAFTED_GENRE)
    refusal = (
        f"bad genre name {CRAFTED_GENRE!r}: use 1 to 64 letters, digits, '_' or '-', "
        "starting with a letter or digit"
    )
    tries: list[list[str | os.PathLike[str]]] = [
        ["--from", folder],
        ["--from", folder, "--models", CRAFTED_GENRE],
    ]
    for args in tries:
        result = deploy(sshd, device, *args)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [f"deepkeys: {refusal}"]
    assert not device["state"].exists()  # refused before ssh ran
    # A stream made by hand, without deploy's checks: the device refuses it too.
    data = (folder / f"{CRAFTED_GENRE}.json").read_bytes()
    store = ModelStore(tmp_path / "state")
    with pytest.raises(UserError, match="bad genre name"):
        store.receive(_tar([(f"{CRAFTED_GENRE}.json", tarfile.REGTYPE, data)]))
    with pytest.raises(UserError, match="bad genre name"):
        store.receive(_tar([]), {CRAFTED_GENRE: "0" * 64})
    with pytest.raises(UserError, match="bad genre name"):
        store.rollback("../escape")
    assert store.active() == {}
    assert not (tmp_path / "PWNED").exists()


def test_ssh_argv_quotes_every_remote_word():
    from deepkeys.device.maintenance.ssh import remote_command, ssh_argv

    # The remote command is shell words (so "sudo -n -u deepkeys PATH" works); the
    # arguments are data, each one quoted.
    cmd = remote_command("sudo '/opt/my dir/deepkeys'", ["receive", "--expect", "a b=$(c)"])
    assert cmd == "sudo '/opt/my dir/deepkeys' receive --expect 'a b=$(c)'"
    argv = ssh_argv("me@pi", cmd, "/tmp/ssh config")
    assert argv == ["ssh", "-F", "/tmp/ssh config", "-o", "BatchMode=yes", "--", "me@pi", cmd]


# ------------------------------------------------------------------------------ the store
def _tar(entries: list[tuple[str, bytes, bytes]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            if kind == tarfile.SYMTYPE:
                info.type, info.linkname = tarfile.SYMTYPE, data.decode()
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.mark.parametrize(
    "name, kind",
    [
        ("../escape.json", tarfile.REGTYPE),
        ("/etc/evil.json", tarfile.REGTYPE),
        ("link.json", tarfile.SYMTYPE),
        ("notes.txt", tarfile.REGTYPE),
    ],
)
def test_the_store_refuses_unsafe_tar_entries(tmp_path, name, kind):
    from deepkeys.device.errors import UserError
    from deepkeys.device.maintenance.store import ModelStore

    store = ModelStore(tmp_path / "state")
    with pytest.raises(UserError):
        store.receive(_tar([(name, kind, b"/etc/passwd")]), {"escape": "0" * 64})
    assert not (tmp_path / "escape.json").exists()
    assert store.active() == {}
    assert not list((tmp_path / "state" / "models.d").glob("incoming-*"))


def test_a_hand_made_models_folder_is_adopted_not_lost(tmp_path):
    from deepkeys.device.generation.card import sha256_of
    from deepkeys.device.maintenance.deploy import pack
    from deepkeys.device.maintenance.store import ModelStore

    state = tmp_path / "state"
    model_copy(state / "models", "blues", extra=b"hand")  # copied by hand before any deploy
    data, expect = pack([model_copy(tmp_path / "w", "pop", extra=b"p") / "pop.json"])
    results = ModelStore(state).receive(io.BytesIO(data), expect)
    assert [r.activated for r in results] == [True]
    assert (state / "models").is_symlink()
    assert sorted(p.name for p in (state / "models").iterdir()) == [
        "blues.json",
        "blues.tflite",
        "pop.json",
        "pop.tflite",
    ]
    assert ModelStore(state).active()["blues"] == sha256_of(state / "models" / "blues.tflite")


def test_deploy_never_imports_tensorflow(tmp_path):
    # A workstation without the host extra can deploy: run the whole local half of it.
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  HostName 127.0.0.1\n  Port 1\n")  # refused at once
    code = (
        "import sys\n"
        "from deepkeys.device.cli import main\n"
        "rc = main(['deploy', 'me@pi', '--models', 'chorale', "
        f"'--from', {str(MODELS)!r}, '-F', {str(config)!r}])\n"
        "print(rc, sorted(m for m in ('tensorflow', 'keras', 'music21') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split("\n")[0] == "2 []", result.stdout + result.stderr
    assert result.stderr.startswith("deepkeys: me@pi: ssh failed: ")
