"""A private JACK server with the dummy driver: the one starter the tests and the HIL rig share.

``start_jackd()`` starts ``jackd -d dummy`` under a server name of its own, waits
until a client can connect, and returns a :class:`JackServer` that stops it by
PID. When jackd cannot start it raises :class:`JackUnavailable` whose message is
the exact reason, so a test can skip with it (never pass silently).

Names come from a small pool, not one per run: jackd keeps a registry of at most
8 server names in /dev/shm, and a server that dies uncleanly leaves its entry
behind until a server of the same name starts again. A pool reuses (and so
reclaims) its entries; a name that another session is using is skipped.

    >>> server = start_jackd(period=128)              # doctest: +SKIP
    >>> server.name, server.period                    # doctest: +SKIP
    ('deepkeys-test-0', 128)
    >>> with server.environment(): ...                # clients now find it   # doctest: +SKIP
    >>> server.stop()                                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

#: libjack reads these: which server a client talks to, and never to spawn one itself.
JACK_ENV = ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")
POOL = "deepkeys-test"
POOL_SIZE = 6
START_TIMEOUT_S = 10.0


class JackUnavailable(Exception):
    """jackd could not start; ``str()`` is the reason, one line."""


@dataclass
class JackServer:
    """A running ``jackd -d dummy``; :meth:`stop` ends it by PID."""

    name: str
    proc: subprocess.Popen
    rate: int
    period: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def env(self) -> dict[str, str]:
        """What a client process needs in its environment to use this server."""
        return {"JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        """This process's clients use this server inside the block."""
        with _environ(self.env()):
            yield

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; safe to call twice."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def answers(name: str) -> bool:
    """True when a JACK server called ``name`` accepts a client now (quietly: libjack
    would print three lines for every "no")."""
    import jack

    jack.set_error_function(lambda message: None)
    try:
        jack.Client("probe", no_start_server=True, servername=name).close()
        return True
    except jack.JackOpenError:
        return False
    finally:
        jack.set_error_function()


def _die_with_parent() -> None:
    """In the child: SIGTERM when our process dies, so not even a crash leaves jackd running."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stop() still ends it


def start_jackd(
    period: int = 256, rate: int = 48000, pool: str = POOL, pool_size: int = POOL_SIZE
) -> JackServer:
    """Start ``jackd -d dummy`` on the first free name of the pool; raises JackUnavailable."""
    jackd = shutil.which("jackd")
    if jackd is None:
        raise JackUnavailable("jackd not installed (apt install jackd2)")
    reason = ""
    for slot in range(pool_size):
        name = f"{pool}-{slot}"
        if answers(name):
            reason = f"jackd could not start: server name {name} is in use"
            continue
        try:
            return _start(jackd, name, period, rate)
        except JackUnavailable as exc:
            reason = str(exc)
    raise JackUnavailable(reason)


#: JACK's real-time priority where it may have one: above the daemon's audio thread
#: (``audio.RT_PRIORITY``, 70), as on any JACK system. Otherwise that busy Python thread
#: can hold up the rig's JACK clients, and a client late for a cycle loses that
#: cycle's MIDI: CI lost a key of a take, and sysex from a burst, that way.
JACK_RT_PRIORITY = 80


def _scheduling() -> list[str]:
    """jackd's options before ``-d``: real-time above the daemon's audio thread when this
    user may (root, as in CI), else none (``-r``; ``-r`` after ``-d dummy`` is the rate)."""
    return ["-R", "-P", str(JACK_RT_PRIORITY)] if os.geteuid() == 0 else ["-r"]


def _start(jackd: str, name: str, period: int, rate: int) -> JackServer:
    """Start one jackd; return once a client can connect, else raise why it could not."""
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_AUDIO_RESERVATION": "1"}
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(
            [jackd, *_scheduling(), "-n", name, "-d", "dummy", "-r", str(rate), "-p", str(period)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        server = JackServer(name, proc, rate, period)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is None and answers(name):
                time.sleep(0.2)  # a jackd that lost a name race exits at once
                if proc.poll() is None:
                    return server
            if proc.poll() is not None:
                output.seek(0)
                lines = output.read().decode(errors="replace").strip().splitlines()
                bad = [
                    ln
                    for ln in lines
                    if any(w in ln.lower() for w in ("fail", "error", "cannot", "too many"))
                ]
                raise JackUnavailable(
                    f"jackd could not start (exit {proc.returncode}): "
                    f"{(bad or lines or ['no output'])[0]}"
                )
            time.sleep(0.1)
        server.stop()
        raise JackUnavailable(
            f"jackd could not start: no client could connect within {START_TIMEOUT_S:g} s"
        )
