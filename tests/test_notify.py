"""sd_notify: real datagrams reach a socket standing in for systemd's."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from deepkeys.device.adapters import notify


@pytest.fixture
def systemd_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A datagram socket where systemd's would be; yields it with NOTIFY_SOCKET set."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_ready_watchdog_status_stopping_arrive(systemd_socket: socket.socket) -> None:
    assert notify.ready()
    assert systemd_socket.recv(4096) == b"READY=1"
    assert notify.watchdog()
    assert systemd_socket.recv(4096) == b"WATCHDOG=1"
    assert notify.status("idle genre=rock\nsecond line dropped")
    assert systemd_socket.recv(4096) == b"STATUS=idle genre=rock"
    assert notify.ready(status="listening")
    assert systemd_socket.recv(4096) == b"READY=1\nSTATUS=listening"
    assert notify.stopping()
    assert systemd_socket.recv(4096) == b"STOPPING=1"


def test_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"deepkeys-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify.ready()
        assert sock.recv(4096) == b"READY=1"


def test_no_op_without_systemd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.ready() is False
    assert notify.watchdog() is False
    # A socket that vanished is not an error either.
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert notify.watchdog() is False


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert notify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    assert notify.watchdog_interval() == 20.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval() == 20.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert notify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    for bad in ("0", "soon", ""):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert notify.watchdog_interval() is None
