"""The control socket: JSON lines over a Unix stream socket, for the ``deepkeys`` CLI.

Each request is one line, ``{"cmd": "status"}`` or ``{"cmd": "press", "button":
"generate"}``, and gets one reply line: the handler's dict with ``"ok": true``, or
``{"ok": false, "error": "..."}`` for a line that is not JSON, an unknown command,
a line over 64 KiB, or a handler that raised. The server keeps running whatever
a client sends.

``{"cmd": "monitor"}`` turns the connection into a live stream: one line per
``publish()``-ed event until the client hangs up. A subscriber that falls
``subscriber_queue`` lines behind, or stops reading for ``send_timeout``
seconds, is dropped: the daemon never waits for a monitor.

No client can hold the socket (anyone in the socket's group can connect):

- a connection gets ``idle_timeout`` seconds (``IDLE_TIMEOUT_S``, 10 s) from
  connecting, or from its last reply, to send a whole request line; one that
  sends nothing, or trickles bytes without a newline, is then hung up on;
- a reply that the client does not read within ``send_timeout`` hangs it up;
- when all ``max_clients`` request slots are taken, the newcomer is served and
  the connection idle the longest is hung up on to make room (only connections
  inside a request are never dropped);
- monitors have ``max_monitors`` slots of their own, so they never keep a request
  out; a new monitor beyond them replaces the oldest.

The handler runs on the connection's thread, not on the main loop: it should only
read a snapshot the loop publishes, or put an event on the main queue.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "control.sock")
    >>> with ControlServer(path, {"status": lambda req: {"state": "idle"}}):
    ...     ControlClient(path).request("status")
    {'ok': True, 'state': 'idle'}
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepkeys.device.errors import UserError
from deepkeys.device.log import kv

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from deepkeys.device.config import Config

DEFAULT_PATH = "/run/deepkeys/control.sock"
MAX_LINE = 64 * 1024
#: Seconds a connection may sit without a whole request line (the CLI sends at once).
IDLE_TIMEOUT_S = 10.0

Request = dict[str, Any]
Handler = Callable[[Request], dict] | Mapping[str, Callable[[Request], dict]]


def _line(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), default=_jsonable) + "\n").encode()


def _jsonable(value: Any) -> Any:
    """What json cannot encode (a Composition, a Path) becomes a short string."""
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return f"<{type(value).__name__}>"


def event_dict(event: Any) -> dict[str, Any]:
    """An event or action from ``events.py`` as a monitor line's dict.

    >>> from deepkeys.device.events import NoteOn
    >>> event_dict(NoteOn(60, 90, t=1.5))
    {'event': 'NoteOn', 'note': 60, 'velocity': 90, 't': 1.5}
    """
    if isinstance(event, Mapping):
        return dict(event)
    out: dict[str, Any] = {"event": type(event).__name__}
    for f in dataclasses.fields(event):
        out[f.name] = getattr(event, f.name)
    return out


class _Subscriber:
    def __init__(self, conn: socket.socket, size: int) -> None:
        self.conn = conn
        self.lines: queue.Queue[bytes] = queue.Queue(maxsize=size)


class _Client:
    """A request connection: ``busy`` inside a request, ``since`` its last reply."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.busy = False
        self.since = time.monotonic()


class ControlServer:
    """Serve ``handler`` on a Unix socket at ``path`` (mode 0660) from a thread.

    ``handler`` is a dict of command name -> function(request) -> reply dict, or
    one function(request) -> reply dict that raises ``UserError`` for what it does
    not know. "monitor" is the server's own command.
    """

    def __init__(
        self,
        path: str | os.PathLike = DEFAULT_PATH,
        handler: Handler | None = None,
        *,
        mode: int = 0o660,
        max_line: int = MAX_LINE,
        max_clients: int = 16,
        max_monitors: int = 8,
        subscriber_queue: int = 256,
        send_timeout: float = 2.0,
        idle_timeout: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.handler: Handler = handler if handler is not None else {}
        self.max_line = max_line
        self.max_clients = max_clients
        self.max_monitors = max_monitors
        self.subscriber_queue = subscriber_queue
        self.send_timeout = send_timeout
        self.idle_timeout = idle_timeout
        self.dropped_subscribers = 0
        self._lock = threading.Lock()
        self._conns: dict[socket.socket, _Client] = {}
        self._subs: dict[_Subscriber, None] = {}  # insertion-ordered: the oldest first
        self._closed = False

        self._prepare()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(str(self.path))
            # Nobody can connect before listen(), so chmod-then-listen leaves no window.
            os.chmod(self.path, mode)
            self._inode = os.stat(self.path).st_ino
            # A flood must not fill the backlog: a client with a timeout gets EAGAIN then.
            self._sock.listen(socket.SOMAXCONN)
        except OSError as exc:
            self._sock.close()
            raise UserError(
                f"cannot create the control socket {self.path}: {exc.strerror or exc}"
            ) from exc
        self._thread = threading.Thread(target=self._accept, name="control", daemon=True)
        self._thread.start()
        log.info(kv(event="control_listening", path=self.path, mode=oct(mode)))

    def _prepare(self) -> None:
        """Create the parent folder; replace a stale socket, refuse a live one."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create {self.path.parent}: {exc.strerror or exc}") from exc
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise UserError(f"{self.path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            log.info(kv(event="control_stale_socket_removed", path=self.path))
            self.path.unlink(missing_ok=True)
            return
        except OSError:
            pass  # busy or odd: treat it as alive rather than steal it
        finally:
            probe.close()
        raise UserError(f"another deepkeys daemon is running (it answers at {self.path})")

    # --- lifetime
    @classmethod
    def from_config(cls, cfg: Config, handler: Handler, **options: Any) -> ControlServer:
        """Serve ``handler`` on the configured socket; ``options`` go to the constructor."""
        return cls(cfg.paths.socket, handler, **options)

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, hang up on every client and remove the socket file."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
        with self._lock:
            conns = [*self._conns, *(sub.conn for sub in self._subs)]
        for conn in conns:
            _hang_up(conn)
        try:  # only our own file: a newer daemon may have replaced it
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        except OSError:
            pass

    # --- serving
    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(0.05)  # out of descriptors, say: no busy loop
                continue
            client = _Client(conn)
            with self._lock:
                victim = self._make_room()
                full = len(self._conns) >= self.max_clients
                if not full:
                    self._conns[conn] = client
            if victim is not None:
                log.warning(kv(event="control_client_dropped", reason="room"))
                _say_and_hang_up(
                    victim,
                    "hung up to make room: send a request as soon as you connect",
                )
            if full:  # every slot is inside a request: real load, not idling
                _say_and_hang_up(conn, "too many clients, all busy; try again")
                conn.close()
                continue
            threading.Thread(
                target=self._serve, args=(client,), name="control-conn", daemon=True
            ).start()

    def _make_room(self) -> socket.socket | None:
        """At capacity (lock held): forget the connection idle the longest, not one inside
        a request nor one whose request is already waiting to be read."""
        if len(self._conns) < self.max_clients:
            return None
        idle = [c for c in self._conns.values() if not c.busy and not _has_input(c.conn)]
        if not idle:
            return None
        victim = min(idle, key=lambda c: c.since)
        del self._conns[victim.conn]
        return victim.conn

    @property
    def clients(self) -> int:
        """Request connections open now (monitors not counted)."""
        with self._lock:
            return len(self._conns)

    def _serve(self, client: _Client) -> None:
        conn = client.conn
        try:
            self._read_requests(client)
        except OSError:
            pass  # the client went away, or stopped reading its replies
        except Exception:
            log.exception(kv(event="control_connection_failed"))
        finally:
            with self._lock:
                if self._conns.get(conn) is client:
                    del self._conns[conn]
            conn.close()

    def _read_requests(self, client: _Client) -> None:
        conn = client.conn
        buf = b""
        skipping = False  # inside an over-long line: drop bytes up to its newline
        while not self._closed:
            # The deadline runs from the last reply, not the last byte: trickling
            # a byte at a time buys nothing.
            left = client.since + self.idle_timeout - time.monotonic()
            if left <= 0:
                log.info(kv(event="control_client_dropped", reason="idle"))
                _say_and_hang_up(conn, f"no request within {self.idle_timeout:g} s; closing")
                return
            conn.settimeout(left)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue  # the deadline check above says so and hangs up
            if not chunk:
                return
            conn.settimeout(self.send_timeout)  # a client that reads no replies is dropped
            buf += chunk
            while True:
                end = buf.find(b"\n")
                if end < 0:
                    if len(buf) > self.max_line:
                        if not skipping:
                            conn.sendall(_line(self._too_long()))
                        skipping, buf = True, b""
                    break
                line, buf = buf[:end], buf[end + 1 :]
                if skipping:
                    skipping = False
                    continue
                if len(line) > self.max_line:
                    conn.sendall(_line(self._too_long()))
                    continue
                if not line.strip():
                    continue
                with self._lock:
                    if self._conns.get(conn) is not client:
                        return  # hung up on to make room meanwhile
                    client.busy = True
                try:
                    request, reply = self._dispatch(line)
                    if request is not None and request.get("cmd") == "monitor":
                        self._monitor(client)
                        return
                    conn.sendall(_line(reply))
                finally:
                    with self._lock:
                        client.busy = False
                        client.since = time.monotonic()

    def _too_long(self) -> dict[str, Any]:
        return {"ok": False, "error": f"request line longer than {self.max_line} bytes"}

    def _dispatch(self, line: bytes) -> tuple[Request | None, dict[str, Any]]:
        try:
            request = json.loads(line)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            return None, {"ok": False, "error": f"not a JSON line: {exc}"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return None, {"ok": False, "error": 'a request is a JSON object with a "cmd" string'}
        cmd = request["cmd"]
        if cmd == "monitor":
            return request, {}
        if isinstance(self.handler, Mapping):
            func = self.handler.get(cmd)
            if func is None:
                known = ", ".join(sorted([*self.handler, "monitor"]))
                return request, {"ok": False, "error": f"unknown command {cmd!r} (known: {known})"}
        else:
            func = self.handler
        try:
            reply = func(request)
        except UserError as exc:
            return request, {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception(kv(event="control_handler_failed", cmd=cmd))
            return request, {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        if not isinstance(reply, dict):
            return request, {"ok": False, "error": f"internal error: {cmd!r} gave no dict"}
        return request, {"ok": True, **reply}

    # --- monitor
    def _monitor(self, client: _Client) -> None:
        conn = client.conn
        sub = _Subscriber(conn, self.subscriber_queue)
        conn.settimeout(self.send_timeout)  # a reader that stalls this long is dropped
        with self._lock:
            # It leaves the request slots for a monitor slot, the oldest monitor
            # making room: a flood of monitors keeps no request out.
            if self._conns.get(conn) is client:
                del self._conns[conn]
            oldest = next(iter(self._subs)) if len(self._subs) >= self.max_monitors else None
            self._subs[sub] = None  # before the ack: events after it are never missed
        if oldest is not None:
            self._drop(oldest, "room")
        try:
            conn.sendall(_line({"ok": True, "cmd": "monitor"}))
            while not self._closed:
                try:
                    line = sub.lines.get(timeout=0.5)
                except queue.Empty:
                    if _peer_gone(conn):
                        return
                    continue
                conn.sendall(line)
        except TimeoutError:
            self._drop(sub, "blocked")
        finally:
            with self._lock:
                self._subs.pop(sub, None)

    def publish(self, event: Any) -> None:
        """Send an event (a dict, or an ``events.py`` dataclass) to every monitor.

        Never blocks: a subscriber whose queue is full is hung up on.
        """
        with self._lock:
            subs = list(self._subs)
        if not subs:
            return
        line = _line(event_dict(event))
        for sub in subs:
            try:
                sub.lines.put_nowait(line)
            except queue.Full:
                self._drop(sub, "behind")

    def _drop(self, sub: _Subscriber, why: str) -> None:
        with self._lock:
            if sub not in self._subs:
                return
            del self._subs[sub]
            self.dropped_subscribers += 1
        log.warning(kv(event="control_monitor_dropped", reason=why))
        _hang_up(sub.conn)  # the writer's next send fails and its thread ends

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)


def _hang_up(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _say_and_hang_up(conn: socket.socket, error: str) -> None:
    """Tell a client why, if that costs no wait, and hang up on it."""
    try:
        conn.send(_line({"ok": False, "error": error}), socket.MSG_DONTWAIT)
    except OSError:
        pass
    _hang_up(conn)


def _has_input(conn: socket.socket) -> bool:
    """Bytes (or the end) are waiting to be read: a request on its way, not idling."""
    poller = select.poll()  # not select(): a daemon may hold descriptors over 1024
    poller.register(conn, select.POLLIN)
    return bool(poller.poll(0))


def _peer_gone(conn: socket.socket) -> bool:
    """True once a monitor client has hung up (its input is otherwise ignored)."""
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(4096, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _connect_patiently(sock: socket.socket, path: str, timeout: float | None) -> None:
    """``connect``, retried while the listen backlog is full: a Unix socket with a
    timeout fails at once with EAGAIN there, where a TCP one would wait."""
    deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the daemon's backlog stayed full for {timeout:g} s") from None
            time.sleep(0.01)


class ControlClient:
    """Talk to the daemon: ``request(cmd, **args)`` and ``stream()``.

    Each request uses a connection of its own, except inside a ``with`` block,
    where they share one.

    >>> ControlClient("/nonexistent/control.sock").request("status")
    Traceback (most recent call last):
    ...
    deepkeys.device.errors.UserError: deepkeys daemon is not running (no socket at /nonexistent/...)
    """

    def __init__(self, path: str | os.PathLike = DEFAULT_PATH, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._keep = False

    def __enter__(self) -> ControlClient:
        self._keep = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._keep = False
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._file.close()
            self._sock.close()
            self._sock = self._file = None

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            _connect_patiently(sock, str(self.path), timeout)
        except FileNotFoundError:
            sock.close()
            raise UserError(f"deepkeys daemon is not running (no socket at {self.path})") from None
        except ConnectionRefusedError:
            sock.close()
            raise UserError(
                f"deepkeys daemon is not running (stale socket at {self.path})"
            ) from None
        except PermissionError:
            sock.close()
            raise UserError(
                f"no permission to use {self.path} (join its group, or use sudo)"
            ) from None
        except OSError as exc:
            sock.close()
            raise UserError(f"cannot reach the deepkeys daemon at {self.path}: {exc}") from None
        return sock

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """One request, one reply dict (look at ``reply["ok"]``)."""
        if cmd == "monitor":
            raise ValueError("use stream() for monitor")
        if self._sock is None:
            self._sock = self._connect(self.timeout)
            self._file = self._sock.makefile("rb")
        try:
            self._sock.sendall(_line({"cmd": cmd, **args}))
            line = self._file.readline()
        except TimeoutError:
            self.close()
            raise UserError(f"deepkeys daemon did not answer within {self.timeout:g} s") from None
        except OSError as exc:
            self.close()
            raise UserError(f"lost the connection to the deepkeys daemon: {exc}") from None
        if not self._keep:
            self.close()
        if not line:
            self.close()
            raise UserError("deepkeys daemon closed the connection")
        return json.loads(line)

    def stream(self) -> Generator[dict[str, Any], None, None]:
        """Yield the daemon's events, one dict each, until it hangs up.

        Uses its own connection; closing the generator closes it.
        """
        sock = self._connect(self.timeout)
        try:
            sock.sendall(_line({"cmd": "monitor"}))
            lines = sock.makefile("rb")
            ack = json.loads(lines.readline() or b"{}")
            if not ack.get("ok"):
                raise UserError(f"monitor refused: {ack.get('error', 'no answer')}")
            sock.settimeout(None)  # events may be minutes apart
            for line in lines:
                yield json.loads(line)
        finally:
            sock.close()
