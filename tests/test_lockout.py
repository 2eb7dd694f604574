"""The real daemon's control socket under a flood: 200 connections, 16 of them idle
forever, and ``status`` and ``reload`` (which deploy needs) still answer."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from deepkeys.device.config import hardware_free_config

from conftest import MODELS


@pytest.fixture
def running(tmp_path: Path, soundfont: Path):
    from deepkeys.device.appliance.daemon import Daemon
    from deepkeys.device.config import load_config

    config = tmp_path / "config.toml"
    config.write_text(hardware_free_config(tmp_path / "state", tmp_path / "ctl.sock", [MODELS]))
    daemon = Daemon(load_config(config))
    daemon.start()
    loop = threading.Thread(target=daemon.run, name="test-daemon")
    loop.start()
    try:
        yield tmp_path / "ctl.sock"
    finally:
        daemon.request_stop()
        loop.join(timeout=15)


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))  # blocking: waits for room in the listen backlog
    sock.settimeout(10)
    return sock


def test_status_and_reload_answer_through_a_flood(running: Path) -> None:
    from deepkeys.device.adapters.control import ControlClient

    idle = [_connect(running) for _ in range(16)]  # connect and never say a word
    opened = [len(idle)]

    def flood(n: int) -> None:
        """Connections that each sit there a while, half of them with half a request."""
        for i in range(n):
            try:
                sock = _connect(running)
                if i % 2:
                    sock.sendall(b'{"cmd": "sta')
                opened[0] += 1
                time.sleep(0.05)
                sock.close()
            except OSError:
                opened[0] += 1  # refused or hung up: the flood goes on

    floods = [threading.Thread(target=flood, args=(46,), daemon=True) for _ in range(4)]
    for thread in floods:
        thread.start()
    answers: list[tuple[str, float]] = []
    try:
        while any(t.is_alive() for t in floods) or len(answers) < 6:
            for cmd in ("status", "reload"):
                start = time.monotonic()
                reply = ControlClient(running, timeout=20).request(cmd)
                assert reply["ok"], reply
                answers.append((cmd, time.monotonic() - start))
    finally:
        for thread in floods:
            thread.join(timeout=30)
    assert opened[0] == 200
    assert {cmd for cmd, _ in answers} == {"status", "reload"}
    assert max(s for c, s in answers if c == "status") < 2.0
    # The idle ones are still connected or were hung up; they never kept anyone out.
    assert ControlClient(running).request("status")["ok"]
    for sock in idle:
        sock.close()
