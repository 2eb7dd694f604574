"""The daemon end to end: real synth (null ALSA PCM), sim MIDI, mock GPIO, the shipped
chorale model, the control socket and sd_notify; plus the CLI around it and the unit file."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mido
import pytest

from deepkeys.device.config import hardware_free_config

from conftest import MODELS, REPO, SHIPPED_GENRES, UnitParser, run_cli, wait_for

UNIT = REPO / "systemd" / "deepkeys.service"


@pytest.fixture
def config_file(tmp_path: Path, soundfont: Path) -> Path:
    """A config for a machine without hardware: tempo 240, so a bar is one second."""
    path = tmp_path / "config.toml"
    path.write_text(
        hardware_free_config(
            tmp_path / "state",
            tmp_path / "ctl.sock",
            [tmp_path / "extra-models", MODELS],
            extra=f"""
[player]
tempo_bpm = 240
max_bars = 4
default_genre = "chorale"
first_seed = 1234
[publish]
command = ["{sys.executable}", "-c", "import shutil, sys; shutil.copy(*sys.argv[1:])",
           "{{mid}}", "{tmp_path / "published.mid"}"]
""",
        )
    )
    # A broken model beside the good one: skipped with a log line, never fatal.
    (tmp_path / "extra-models").mkdir()
    (tmp_path / "extra-models" / "polka.json").write_text("{ not a card")
    return path


def deepkeys_run(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "deepkeys.device.cli", "run", "--config", str(config)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# --------------------------------------------------------------------------- as systemd runs it
def test_run_notifies_ready_feeds_the_watchdog_and_stops_on_sigterm(config_file, tmp_path):
    from deepkeys.device.adapters.control import ControlClient

    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(20.0)
    proc = deepkeys_run(
        config_file, {"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"}
    )  # fed every 0.2 s
    try:
        messages: list[str] = []
        while not any(m.startswith("READY=1") for m in messages):
            messages.append(sock.recv(4096).decode())
        for _ in range(3):  # the watchdog keeps coming after READY
            assert sock.recv(4096).decode() == "WATCHDOG=1"

        status = ControlClient(tmp_path / "ctl.sock").request("status")
        assert status["ok"] and status["state"] == "idle"
        shipped = SHIPPED_GENRES
        assert status["genres"] == shipped and status["genre"] == "chorale"  # default_genre
        assert status["midi"]["ports"] == ["sim keyboard"]
        assert status["audio"]["periods_written"] > 0 and "underruns" in status["audio"]
        assert len(status["model_sha256"]) == 64

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        rest = []
        sock.settimeout(0.5)
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        assert "STOPPING=1" in rest
        assert not (tmp_path / "ctl.sock").exists()
        assert proc.stdout is not None  # deepkeys_run pipes it
        log = proc.stdout.read()
        assert "event=stopped" in log
        assert "event=model_skipped genre=polka" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_run_with_a_bad_config_key_is_one_line_and_status_2(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text("[audio]\nperiods_ = 3\n")
    result = run_cli("run", "--config", bad)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"deepkeys: {bad}: unknown key audio.periods_ (did you mean audio.periods?)"
    ]


def test_status_without_a_daemon_is_one_line_and_status_2(tmp_path):
    result = run_cli("status", "--socket", tmp_path / "none.sock")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"deepkeys: deepkeys daemon is not running (no socket at {tmp_path / 'none.sock'})"
    )


def test_config_prints_the_effective_configuration(config_file):
    result = run_cli("config", "--config", config_file)
    assert result.returncode == 0
    assert 'api = "sim"' in result.stdout and "tempo_bpm = 240" in result.stdout


# --------------------------------------------------------------------------- a whole session
def test_record_generate_play_stop(config_file, tmp_path, chorale_card):
    from deepkeys.device.adapters.control import ControlClient
    from deepkeys.device.appliance.daemon import Daemon
    from deepkeys.device.config import load_config
    from deepkeys.device.generation.card import load_card

    daemon = Daemon(load_config(config_file))
    daemon.start()
    loop = threading.Thread(target=daemon.run, name="test-daemon-loop")
    loop.start()
    client = ControlClient(tmp_path / "ctl.sock")
    seen: list[dict] = []
    stream = client.stream()

    def read_monitor() -> None:
        for item in stream:
            seen.append(item)

    reader = threading.Thread(target=read_monitor, daemon=True)
    reader.start()
    status = lambda: daemon.snapshot  # noqa: E731
    press = lambda name: client.request("press", button=name)  # noqa: E731
    keys = daemon.midi
    assert keys is not None  # the config's sim keyboard
    try:
        wait_for(lambda: status()["state"] == "idle", what="idle")
        assert press("nonsense") == {
            "ok": False,
            "error": "unknown button 'nonsense' (known: genre, record, generate, play, "
            "tempo_down, tempo_up)",
        }

        # RECORD: one bar of count-in (1 s at 240 BPM), then play a few notes.
        assert press("record")["ok"]
        wait_for(lambda: status()["state"] == "recording", what="recording")
        for pitch in (67, 69, 71, 72, 74):
            keys.send(mido.Message("note_on", note=pitch, velocity=90))
            time.sleep(0.1)
            keys.send(mido.Message("note_off", note=pitch))
        # Garbage on the wire: a stray data byte, a truncated note, sysex, running junk.
        for junk in (
            [0x45],
            [0x90, 60],
            [0xF0, 1, 2, 3, 0xF7],
            [0xFF, 0xFE, 0x80],
            list(range(0x80, 0x100, 7)),
        ):
            keys.send(junk)
        assert press("record")["ok"]
        wait_for(lambda: status()["take_notes"] >= 4 and status()["state"] == "idle", what="a take")

        # GENERATE: generating, then playing, and the files appear.
        assert press("generate")["ok"]
        wait_for(lambda: status()["state"] == "playing", what="playing")
        wait_for(lambda: status()["sequencer"]["state"] == "playing", what="the loop")
        actions = [s["action"] for s in seen if "action" in s]
        generate_at = actions.index("start_generation")
        assert actions[generate_at:].index("start_playback") > 0
        busy = [s["state"] for s in seen if s.get("action") == "set_led" and s["led"] == "busy"]
        assert busy[-2:] == ["on", "off"]

        folder = tmp_path / "state" / "compositions"
        mids = wait_for(lambda: sorted(folder.glob("*.mid")), what="a .mid")
        sidecar = wait_for(lambda: sorted(folder.glob("*.json")), what="a .json")
        assert not list(folder.glob(".*"))  # no temporary files left behind
        mid = mido.MidiFile(mids[0])
        assert len(mid.tracks) == 1 + 4  # conductor, melody, alto, tenor, bass
        meta = json.loads(sidecar[0].read_text())
        assert meta["genre"] == "chorale" and meta["seed"] == 1234  # player.first_seed
        assert meta["tempo"] == 240 and meta["model_sha256"] == load_card(chorale_card).sha256
        assert sidecar[0].stem == mids[0].stem
        assert sorted((tmp_path / "state" / "takes").glob("*.mid"))
        published = tmp_path / "published.mid"
        # cp creates the file before it has written it: wait for the whole copy.
        expected = mids[0].read_bytes()
        wait_for(
            lambda: published.exists() and published.stat().st_size == len(expected),
            what="the publish command",
        )
        assert published.read_bytes() == expected

        # The music sounds, then PLAY/STOP silences it: no stuck notes.
        keys.send(mido.Message("note_on", note=60, velocity=100))  # and a key left held
        wait_for(lambda: status()["voices"] > 0, what="voices sounding")
        assert press("play")["ok"]
        wait_for(lambda: status()["state"] == "idle", what="stopped")
        wait_for(lambda: status()["sequencer"]["state"] == "stopped", what="sequencer stopped")
        wait_for(lambda: status()["voices"] == 0, timeout=10, what="every voice released")

        s = status()
        assert s["midi"]["counts"]["invalid"] >= 1 and s["midi"]["counts"]["note_on"] >= 6
        assert s["counts"].get("action_errors", 0) == 0 and s["counts"]["saved"] == 2
        assert s["leds"] == {"rec": "off", "busy": "off", "play": "off"}
        assert s["audio"]["periods_written"] > 0
        assert loop.is_alive()
    finally:
        daemon.request_stop()
        loop.join(timeout=15)
        reader.join(timeout=5)  # the daemon hung up on the monitor
        if not reader.is_alive():
            stream.close()
    assert not loop.is_alive()
    assert not (tmp_path / "ctl.sock").exists()


def test_a_full_disk_is_logged_and_counted_never_fatal(config_file, tmp_path):
    from deepkeys.device.appliance.daemon import Daemon
    from deepkeys.device.config import load_config
    from deepkeys.device.encoding import Composition, Note, Track

    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "compositions").write_text("a file where the folder should be")
    daemon = Daemon(load_config(config_file))  # not started: only the save path is used
    comp = Composition([Track("melody", 0, [Note(60, 0, 4)])], 16, 120.0)
    daemon._save_composition(comp, "chorale", 7)
    assert daemon.counts["save_errors"] == 1 and daemon.counts["saved"] == 0
    assert not (tmp_path / "published.mid").exists()
    daemon.stop()


# --------------------------------------------------------------------------- the unit file
def test_unit_file_is_valid_and_says_what_the_daemon_needs(tmp_path):
    parser = UnitParser()
    parser.read(UNIT)
    service = parser["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "10",
        "Restart": "on-failure",
        "ExecStart": "/opt/deepkeys/.venv/bin/deepkeys run",
        "StateDirectory": "deepkeys",
        "RuntimeDirectory": "deepkeys",
        "User": "deepkeys",
        "SupplementaryGroups": "audio gpio",
        "LimitRTPRIO": "70",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "RestrictAddressFamilies": "AF_UNIX",
        "IPAddressDeny": "any",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert "LimitMEMLOCK" in service and "/var/lib/deepkeys" in service["ReadWritePaths"]
    # What would break audio or GPIO must not be there.
    for key in ("PrivateDevices", "RestrictRealtime", "DynamicUser"):
        assert key not in service
    assert parser["Install"]["WantedBy"] == "multi-user.target"

    if shutil.which("systemd-analyze") is None:
        return
    # verify also checks that ExecStart exists: point it at a binary this machine has.
    copy = tmp_path / "deepkeys.service"
    copy.write_text(UNIT.read_text().replace("/opt/deepkeys/.venv/bin/deepkeys", "/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "deepkeys.service" not in result.stderr, result.stderr


def test_keys_below_the_split_point_are_chord_hints_every_part_plays(
    config_file, tmp_path, chorale_card
):
    """player.split_note: a held left hand fixes the harmony of its half bars,
    even a chord (F# minor) the harmony model would never pick under a C major tune."""
    from deepkeys.device.adapters.control import ControlClient
    from deepkeys.device.appliance.daemon import Daemon
    from deepkeys.device.config import load_config

    config_file.write_text(
        config_file.read_text().replace("[player]\n", "[player]\nsplit_note = 55\n")
    )
    daemon = Daemon(load_config(config_file))
    daemon.start()
    loop = threading.Thread(target=daemon.run, name="test-daemon-loop")
    loop.start()
    client = ControlClient(tmp_path / "ctl.sock")
    status = lambda: daemon.snapshot  # noqa: E731
    keys = daemon.midi
    assert keys is not None
    try:
        wait_for(lambda: status()["state"] == "idle", what="idle")
        assert client.request("press", button="record")["ok"]
        wait_for(lambda: status()["state"] == "count_in", what="count-in")
        for pitch in (42, 45, 49):  # F#2 A2 C#3, held from the count-in on
            keys.send(mido.Message("note_on", note=pitch, velocity=70))
        wait_for(lambda: status()["state"] == "recording", what="recording")
        for pitch in (72, 71, 72, 76, 74, 72):
            keys.send(mido.Message("note_on", note=pitch, velocity=90))
            time.sleep(0.25)
            keys.send(mido.Message("note_off", note=pitch))
        for pitch in (42, 45, 49):
            keys.send(mido.Message("note_off", note=pitch))
        assert client.request("press", button="record")["ok"]
        wait_for(lambda: status()["take_notes"] >= 5 and status()["state"] == "idle", what="take")
        assert client.request("press", button="generate")["ok"]

        takes = wait_for(lambda: sorted((tmp_path / "state" / "takes").glob("*.json")))
        hints = json.loads(takes[0].read_text())["chord_hints"]
        assert hints and set(hints.values()) == {"F#m"}
        take_mid = mido.MidiFile(sorted((tmp_path / "state" / "takes").glob("*.mid"))[0])
        played = {m.note for m in take_mid if m.type == "note_on" and m.velocity}
        assert played and min(played) >= 55  # the left hand is not melody

        folder = tmp_path / "state" / "compositions"
        sidecar = wait_for(lambda: sorted(folder.glob("*.json")), what="a .json")
        cells = json.loads(sidecar[0].read_text())["chords_per_half_bar"]
        assert all(cells[int(cell)] == "F#m" for cell in hints)
    finally:
        daemon.request_stop()
        loop.join(timeout=15)
    assert not loop.is_alive()


def test_a_save_that_would_fill_the_card_is_skipped_and_counted(config_file, tmp_path):
    """paths.min_free_mb: below it nothing is written (the SD card never fills)."""
    import shutil

    from deepkeys.device.appliance.daemon import Daemon
    from deepkeys.device.config import load_config
    from deepkeys.device.encoding import Composition, Note, Track

    free_mb = shutil.disk_usage(tmp_path).free // 1_000_000
    cfg = load_config(config_file)
    # More than this disk has (replace() skips the config's range check, as a bigger card would).
    cfg = dataclasses.replace(cfg, paths=dataclasses.replace(cfg.paths, min_free_mb=free_mb + 1000))
    daemon = Daemon(cfg)  # not started: only the save path is used
    comp = Composition([Track("melody", 0, [Note(60, 0, 4)])], 16, 120.0)
    daemon._save_composition(comp, "chorale", 7)
    assert daemon.counts["save_skipped_low_space"] == 1 and daemon.counts["saved"] == 0
    assert not list((tmp_path / "state").rglob("*.mid"))
    daemon.stop()
