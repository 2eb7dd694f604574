"""The control socket, over a real Unix socket in tmp_path."""

from __future__ import annotations

import json
import os
import queue
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deepkeys.device.adapters.control import ControlClient, ControlServer
from deepkeys.device.errors import UserError
from deepkeys.device.events import Button, NoteOn


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the deadline")
        time.sleep(0.01)


@pytest.fixture
def events() -> queue.Queue:
    return queue.Queue()


@pytest.fixture
def server(tmp_path: Path, events: queue.Queue):
    """A server in a folder that does not exist yet, wired as the daemon would wire it."""

    def press(req: dict) -> dict:
        if req.get("button") not in ("genre", "generate"):
            raise UserError(f"unknown button {req.get('button')!r}")
        events.put(Button(req["button"], req.get("kind", "press"), t=time.monotonic()))
        return {}

    def crash(req: dict) -> dict:
        raise RuntimeError("boom")

    handler = {
        "status": lambda req: {"state": "idle", "genre": "rock"},
        "press": press,
        "crash": crash,
    }
    with ControlServer(tmp_path / "run" / "deepkeys" / "control.sock", handler) as srv:
        yield srv


def raw_lines(path: Path, payload: bytes, replies: int) -> list[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(payload)
        f = sock.makefile("rb")
        return [json.loads(f.readline()) for _ in range(replies)]


def test_socket_mode_and_parent_dir(server: ControlServer) -> None:
    st = os.stat(server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert server.path.parent.is_dir()


def test_status_and_press_round_trip(server: ControlServer, events: queue.Queue) -> None:
    with ControlClient(server.path) as client:
        assert client.request("status") == {"ok": True, "state": "idle", "genre": "rock"}
        assert client.request("press", button="generate") == {"ok": True}
        got = events.get(timeout=1)
        assert (got.name, got.kind) == ("generate", "press")
        # A handler's UserError is the reply's error, and the connection stays usable.
        reply = client.request("press", button="volume")
        assert reply == {"ok": False, "error": "unknown button 'volume'"}
        assert client.request("status")["ok"] is True


def test_bad_lines_get_errors_and_server_survives(server: ControlServer) -> None:
    too_long = b'{"cmd": "status", "pad": "' + b"x" * (70 * 1024) + b'"}\n'
    replies = raw_lines(
        server.path,
        b"not json\n"
        + b'{"cmd": "dance"}\n'
        + b"[1, 2]\n"
        + b"\xff\xfe\n"
        + too_long
        + b'{"cmd": "crash"}\n'
        + b'{"cmd": "status"}\n',
        replies=7,
    )
    assert [r["ok"] for r in replies] == [False] * 6 + [True]
    assert replies[0]["error"].startswith("not a JSON line")
    assert replies[1]["error"].startswith("unknown command 'dance' (known: crash, monitor")
    assert replies[2]["error"] == 'a request is a JSON object with a "cmd" string'
    assert replies[3]["error"].startswith("not a JSON line")
    assert replies[4]["error"] == "request line longer than 65536 bytes"
    assert replies[5]["error"] == "internal error: RuntimeError: boom"
    assert replies[6]["state"] == "idle"
    # A client that hangs up mid-line does no harm either.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(server.path))
        sock.sendall(b'{"cmd": "sta')
    assert ControlClient(server.path).request("status")["ok"] is True


def test_monitor_streams_published_events(server: ControlServer) -> None:
    got: list[dict] = []

    def listen() -> None:
        for event in ControlClient(server.path).stream():
            got.append(event)
            if len(got) == 3:
                return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    wait_for(lambda: server.subscribers == 1)
    server.publish(NoteOn(60, 100, t=1.25))
    server.publish(Button("generate", "long", t=2.0))
    server.publish({"event": "state", "state": "generating"})
    thread.join(timeout=5)
    assert got == [
        {"event": "NoteOn", "note": 60, "velocity": 100, "t": 1.25},
        {"event": "Button", "name": "generate", "kind": "long", "t": 2.0},
        {"event": "state", "state": "generating"},
    ]
    wait_for(lambda: server.subscribers == 0)  # the client hung up: forgotten


def test_slow_monitor_is_dropped_without_blocking(tmp_path: Path) -> None:
    with ControlServer(tmp_path / "c.sock", {}, subscriber_queue=8, send_timeout=0.2) as srv:
        stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(str(srv.path))
        stalled.sendall(b'{"cmd": "monitor"}\n')  # and never reads again
        wait_for(lambda: srv.subscribers == 1)
        start = time.monotonic()
        for i in range(5000):
            srv.publish({"event": "NoteOn", "note": i % 128, "pad": "x" * 200})
        assert time.monotonic() - start < 1.0  # publish never waited for the reader
        wait_for(lambda: srv.subscribers == 0)
        assert srv.dropped_subscribers == 1
        stalled.close()
        # Others still get served.
        assert ControlClient(srv.path).request("nope")["ok"] is False


def test_client_errors_when_no_daemon(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    with pytest.raises(UserError) as err:
        ControlClient(path).request("status")
    assert str(err.value) == f"deepkeys daemon is not running (no socket at {path})"
    with pytest.raises(UserError, match="not running"):
        next(ControlClient(path).stream())


def test_stale_socket_replaced_live_one_kept(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # a crashed daemon's leftover: the file, nobody listening
    dead.close()
    with pytest.raises(UserError, match="stale socket"):
        ControlClient(path).request("status")
    with ControlServer(path, {"status": lambda req: {}}):
        assert ControlClient(path).request("status") == {"ok": True}
        with pytest.raises(UserError, match="another deepkeys daemon is running"):
            ControlServer(path, {})
        assert ControlClient(path).request("status") == {"ok": True}
    assert not path.exists()  # close() removes its own socket file
    path.write_text("not a socket")
    with pytest.raises(UserError, match="is not a socket"):
        ControlServer(path, {})


# --------------------------------------------------------------------------- lockout
def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(path))
    return sock


def _closed_by_server(sock: socket.socket) -> list[dict]:
    """Read until the server hangs up; the lines it sent first."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_idle_trickling_and_non_reading_clients_are_hung_up(tmp_path: Path) -> None:
    handler = {"status": lambda req: {"state": "idle", "pad": "x" * 60_000}}
    with ControlServer(tmp_path / "c.sock", handler, idle_timeout=0.5, send_timeout=0.3) as srv:
        idle = _connect(srv.path)  # sends nothing, ever
        trickle = _connect(srv.path)  # a byte every 0.1 s, never a newline
        deaf = _connect(srv.path)  # asks for big replies and never reads them
        deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        start = time.monotonic()
        try:
            while time.monotonic() - start < 1.5:
                trickle.sendall(b"x")
                time.sleep(0.1)
        except OSError:
            pass  # hung up: what we want
        for _ in range(200):
            try:
                deaf.sendall(b'{"cmd": "status"}\n')
            except OSError:
                break
        assert _closed_by_server(idle) == [
            {"ok": False, "error": "no request within 0.5 s; closing"}
        ]
        assert time.monotonic() - start < 3
        try:  # what it had sent last may be unread there: a reset is as good a hang-up
            assert _closed_by_server(trickle)[-1]["error"] == "no request within 0.5 s; closing"
        except ConnectionResetError:
            pass
        assert time.monotonic() - start < 3
        with pytest.raises(OSError):  # reset, or the end of the stream
            while deaf.recv(1 << 20):
                pass
            raise ConnectionResetError
        wait_for(lambda: srv.clients == 0)
        for sock in (idle, trickle, deaf):
            sock.close()
        assert ControlClient(srv.path).request("status")["ok"] is True


def test_idle_clients_cannot_hold_the_socket(tmp_path: Path) -> None:
    """A full house of idle clients: the newcomer is served, the longest idle one leaves."""
    with ControlServer(tmp_path / "c.sock", {"status": lambda req: {}}, max_clients=4) as srv:
        idle = [_connect(srv.path) for _ in range(4)]
        wait_for(lambda: srv.clients == 4)
        for _ in range(3):
            assert ControlClient(srv.path).request("status") == {"ok": True}
        assert _closed_by_server(idle[0]) == [
            {"ok": False, "error": "hung up to make room: send a request as soon as you connect"}
        ]
        for sock in idle:
            sock.close()


def test_monitors_have_their_own_slots(tmp_path: Path) -> None:
    """Monitors never take a request's place; a new one replaces the oldest."""
    with ControlServer(
        tmp_path / "c.sock", {"status": lambda req: {}}, max_clients=2, max_monitors=2
    ) as srv:
        streams = [ControlClient(srv.path).stream() for _ in range(3)]
        threads = []
        for count, stream in enumerate(streams, 1):
            thread = threading.Thread(target=lambda s=stream: list(s), daemon=True)
            thread.start()
            threads.append(thread)
            # One at a time, so that the first is the oldest monitor.
            expected = min(count, 2)

            def subscribed(n: int = expected) -> bool:
                return srv.subscribers == n

            wait_for(subscribed)
        threads[0].join(timeout=5)  # the oldest was hung up on
        assert not threads[0].is_alive()
        wait_for(lambda: srv.subscribers == 2)
        assert srv.clients == 0
        assert ControlClient(srv.path).request("status") == {"ok": True}
    for thread in threads:  # close() hung up on the rest
        thread.join(timeout=5)
        assert not thread.is_alive()
