"""The rig: the real daemon as a separate process, played and listened to through JACK.

A :class:`Rig` owns, and stops by PID, everything it starts:

- a :class:`~.capture.JackRecorder` JACK client that records what the daemon plays
  and timestamps the keys in JACK frames;
- a :class:`~.capture.VirtualKeyboard` (python-rtmidi's JACK API) that the daemon
  connects to by name, and that can be unplugged;
- a private ALSA config whose ``hil`` PCM is the ``jack`` plugin (Debian's
  ``libasound2-plugins``) wired to the recorder, so the daemon's audio runs at real
  time through JACK; the daemon finds it through ``ALSA_CONFIG_PATH``, and no
  system file is touched;
- a notify socket (as systemd's) that collects ``READY=1`` and ``WATCHDOG=1``;
- ``deepkeys run --config FILE`` itself, and a monitor stream of its events.

The JACK server is the caller's (``jackd.start_jackd``), so one server serves
many rigs.

    >>> server = start_jackd(period=128)                          # doctest: +SKIP
    >>> with Rig(server, Path("/tmp/rig")) as rig:                # doctest: +SKIP
    ...     rig.keyboard.note_on(60); time.sleep(0.5)
    ...     rig.recorder.audio()
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .capture import JackRecorder, VirtualKeyboard
from .jackd import JackServer

REPO = Path(__file__).resolve().parent.parent
ALSA_CONF = Path("/usr/share/alsa/alsa.conf")
READY_TIMEOUT_S = 30.0

# Loaded by the daemon's interpreter when the rig asks for a fault (PYTHONPATH): a slow
# disk (every fsync waits), and a main loop that can be stalled from outside (SIGUSR1
# runs its handler on the main thread, which is the daemon's loop).
FAULTS_SITECUSTOMIZE = """\
import os, signal, time
_slow = float(os.environ.get("HIL_SLOW_FSYNC_S") or 0)
if _slow:
    _fsync = os.fsync
    def _slow_fsync(fd, _fsync=_fsync):
        time.sleep(_slow)
        return _fsync(fd)
    os.fsync = _slow_fsync
_stall = float(os.environ.get("HIL_STALL_S") or 0)
if _stall:
    signal.signal(signal.SIGUSR1, lambda signum, frame: time.sleep(_stall))
"""


@dataclass
class RigOptions:
    """What the daemon's config and environment say; defaults suit the scenarios."""

    tempo_bpm: int = 120
    max_bars: int = 4
    count_in_bars: int = 1
    first_seed: int = -1  # -1: from the clock, as on a device
    metronome: bool = False  # clicks only in the count-in: the take's audio stays clean
    periods: int = 2
    live_program: int = 0
    watchdog_usec: int = 0  # 0: no watchdog
    slow_fsync_s: float = 0.0
    stall_s: float = 0.0
    models: tuple[Path, ...] = (REPO / "models",)
    extra_env: dict[str, str] = field(default_factory=dict)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def asoundrc(ports: list[str]) -> str:
    """A PCM ``hil``: ALSA's jack plugin, its two channels wired to ``ports``.

    >>> print(asoundrc(["rec:in_1", "rec:in_2"]).splitlines()[2])
        playback_ports { 0 "rec:in_1" 1 "rec:in_2" }
    """
    wired = " ".join(f'{i} "{p}"' for i, p in enumerate(ports))
    return f"pcm.hil {{\n    type jack\n    playback_ports {{ {wired} }}\n}}\n"


class Rig:
    """The daemon under test and its surroundings; see the module docstring."""

    def __init__(
        self,
        server: JackServer,
        workdir: Path,
        options: RigOptions | None = None,
        name: str = "hil",
    ) -> None:
        self.server = server
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.options = options or RigOptions()
        self.name = name
        self.socket = self.dir / "ctl.sock"
        self.state_dir = self.dir / "state"
        self.log_path = self.dir / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.notes_seen: list[tuple[float, str]] = []  # (monotonic, datagram)
        self.events: list[dict[str, Any]] = []  # the monitor stream, with "_t" added
        self._events_lock = threading.Lock()
        self._notify: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._monitor_sock: Any = None
        self._closed = False
        with server.environment():
            self.recorder = JackRecorder(f"{name}-rec")
            self.keyboard = VirtualKeyboard(f"{name}-kbd")
            self.recorder.tap(self.keyboard.port)
        self.config_path = self._write_config()

    # ---------------------------------------------------------------- files
    def _write_config(self) -> Path:
        o = self.options
        (self.dir / "asound.conf").write_text(asoundrc(self.recorder.port_names))
        models = ", ".join(json.dumps(str(m)) for m in o.models)
        text = f"""\
[midi]
api = "jack"
input_ports = ["{self.keyboard.client}"]
virtual_port_name = "{self.name}-daemon-in"
[audio]
device = "plug:hil"
period = {self.server.period}
periods = {o.periods}
[synth]
live_program = {o.live_program}
[panel]
pin_factory = "mock"
[player]
tempo_bpm = {o.tempo_bpm}
max_bars = {o.max_bars}
count_in_bars = {o.count_in_bars}
first_seed = {o.first_seed}
metronome = {"true" if o.metronome else "false"}
[paths]
state_dir = "{self.state_dir}"
socket = "{self.socket}"
models = [{models}]
"""
        path = self.dir / "config.toml"
        path.write_text(text)
        return path

    def daemon_env(self) -> dict[str, str]:
        """The daemon's environment: our JACK server, our ALSA config, our notify socket."""
        o = self.options
        env = {
            **os.environ,
            **self.server.env(),
            "ALSA_CONFIG_PATH": f"{ALSA_CONF}:{self.dir / 'asound.conf'}",
            "NOTIFY_SOCKET": str(self.dir / "notify.sock"),
            "PYTHONUNBUFFERED": "1",
            **o.extra_env,
        }
        env.pop("WATCHDOG_PID", None)
        env.pop("WATCHDOG_USEC", None)
        if o.watchdog_usec:
            env["WATCHDOG_USEC"] = str(o.watchdog_usec)
        if o.slow_fsync_s or o.stall_s:
            faults = self.dir / "faults"
            faults.mkdir(exist_ok=True)
            (faults / "sitecustomize.py").write_text(FAULTS_SITECUSTOMIZE)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(faults), env.get("PYTHONPATH")]))
            env["HIL_SLOW_FSYNC_S"] = str(o.slow_fsync_s)
            env["HIL_STALL_S"] = str(o.stall_s)
        return env

    # ---------------------------------------------------------------- the daemon
    def start(self) -> Rig:
        """Start ``deepkeys run`` and wait for READY=1, its audio wired to the recorder."""
        if self._notify is None:
            self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._notify.bind(str(self.dir / "notify.sock"))
            self._notify.settimeout(0.2)
            self._spawn(self._read_notify, "hil-notify")
        ready_before = self.count_notify("READY=1")
        # The daemon holds its own copy of the descriptor; ours closes at once.
        with open(self.log_path, "ab") as log:
            self.proc = proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "deepkeys.device.cli",
                    "run",
                    "--config",
                    str(self.config_path),
                ],
                env=self.daemon_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        self.wait_for(
            lambda: self.count_notify("READY=1") > ready_before or proc.poll(),
            READY_TIMEOUT_S,
            "the daemon's READY=1",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"deepkeys run exited {proc.returncode}:\n{self.log_tail()}")
        self.wait_for(
            lambda: len(self.recorder.connections()) == 2,
            10,
            "the daemon's ALSA jack PCM connecting to the recorder",
        )
        self.wait_for(
            lambda: self.status().get("midi", {}).get("ports"),
            10,
            "the daemon connecting to the keyboard port",
        )
        self._start_monitor()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop_daemon(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the daemon (by PID) and reap it; SIGKILL if it does not go in time."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._stop_monitor()
        return proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def replug_keyboard(self) -> None:
        """Plug the keyboard back in (a new JACK port of the same name) and tap it again."""
        with self.server.environment():
            self.keyboard.plug()
        self.recorder.tap(self.keyboard.port)

    # ---------------------------------------------------------------- talking to it
    def press(self, button: str, kind: str = "press") -> dict[str, Any]:
        """A panel button through the control socket, as ``deepkeys press`` sends it."""
        from deepkeys.device.adapters.control import ControlClient

        reply = ControlClient(self.socket).request("press", button=button, kind=kind)
        if not reply.get("ok"):
            raise RuntimeError(f"press {button}: {reply}")
        return reply

    def status(self) -> dict[str, Any]:
        from deepkeys.device.adapters.control import ControlClient

        try:
            return ControlClient(self.socket, timeout=2.0).request("status")
        except Exception:  # not up yet, or gone: the caller polls
            return {}

    def _start_monitor(self) -> None:
        from deepkeys.device.adapters.control import ControlClient

        stream = ControlClient(self.socket).stream()
        first = threading.Event()

        def read() -> None:
            try:
                first.set()
                for item in stream:
                    item["_t"] = time.monotonic()
                    with self._events_lock:
                        self.events.append(item)
            except Exception:  # the daemon went away
                pass
            finally:
                first.set()

        self._monitor_stream: Generator[dict[str, Any], None, None] | None = stream
        self._spawn(read, "hil-monitor")
        first.wait(5)
        # The generator connects lazily: wait until the daemon counts us as a subscriber.
        time.sleep(0.1)

    def _stop_monitor(self) -> None:
        stream = getattr(self, "_monitor_stream", None)
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
            self._monitor_stream = None

    def wait_event(
        self,
        pred: Callable[[dict[str, Any]], bool],
        timeout: float = 30.0,
        what: str = "an event",
        after: int = 0,
    ) -> dict[str, Any]:
        """The first monitor event (from index ``after`` on) that ``pred`` accepts."""

        def found() -> dict[str, Any] | None:
            with self._events_lock:
                return next((e for e in self.events[after:] if pred(e)), None)

        return self.wait_for(found, timeout, what)

    def mark(self) -> int:
        """The index of the next monitor event, for ``wait_event(after=...)``."""
        with self._events_lock:
            return len(self.events)

    # ---------------------------------------------------------------- notify socket
    def _read_notify(self) -> None:
        notify = self._notify
        assert notify is not None  # bound before this thread starts
        while not self._closed:
            try:
                data = notify.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode(errors="replace").splitlines():
                self.notes_seen.append((time.monotonic(), line))

    def count_notify(self, line: str) -> int:
        return sum(1 for _, m in list(self.notes_seen) if m == line)

    def notify_times(self, line: str) -> list[float]:
        return [t for t, m in list(self.notes_seen) if m == line]

    # ---------------------------------------------------------------- helpers
    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait_for(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"timed out after {timeout:g} s waiting for {what}\n"
                    f"daemon log:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def compositions(self) -> list[Path]:
        return sorted((self.state_dir / "compositions").glob("*.mid"))

    # ---------------------------------------------------------------- lifetime
    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the daemon, then our JACK clients and sockets. Safe twice."""
        if self._closed:
            return
        with contextlib.suppress(Exception):
            self.stop_daemon(signal.SIGTERM, timeout=10)
        self._closed = True
        with contextlib.suppress(Exception):
            self.keyboard.close()
        with contextlib.suppress(Exception):
            self.recorder.close()
        if self._notify is not None:
            self._notify.close()
        for thread in self._threads:
            thread.join(timeout=2)


@contextlib.contextmanager
def running(
    server: JackServer, workdir: Path, options: RigOptions | None = None, name: str = "hil"
) -> Iterator[Rig]:
    """A started rig, closed whatever happens."""
    rig = Rig(server, workdir, options, name)
    try:
        yield rig.start()
    finally:
        rig.close()
