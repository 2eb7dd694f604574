"""Shared test helpers: run the real CLI, write small MIDI files, read the systemd unit, a real
sshd on loopback."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import mido
import pytest

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
# Every shipped genre's name (the harmony model's card is not a genre).
SHIPPED_GENRES = sorted(p.stem for p in MODELS.glob("*.json") if p.stem != "harmony")
MELODIES = REPO / "device" / "melodies"

T = TypeVar("T")


def run_cli(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``deepkeys ARGS`` in a fresh interpreter, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "deepkeys.device.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def wait_for(check: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy (and return it), or fail after
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or check}")
        time.sleep(0.02)


def write_midi(
    path: Path, notes: Sequence[tuple[int, float, float]], bpm: float = 120, channel: int = 0
) -> Path:
    """A type-0 MIDI file from (pitch, start beat, length in beats) tuples."""
    tpb = 480
    events = []
    for pitch, start, length in notes:
        events.append(
            (
                round(start * tpb),
                1,
                mido.Message("note_on", note=pitch, velocity=90, channel=channel),
            )
        )
        events.append(
            (
                round((start + length) * tpb),
                0,
                mido.Message("note_off", note=pitch, channel=channel),
            )
        )
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))])
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    mido.MidiFile(type=0, ticks_per_beat=tpb, tracks=[track]).save(path)
    return path


class UnitParser(configparser.ConfigParser):
    """A parser for a systemd unit file: keys keep their case, values their ``%`` signs.

    >>> parser = UnitParser()
    >>> parser.read_dict({"Service": {"ExecStart": "/bin/echo 100%"}})
    >>> dict(parser["Service"])
    {'ExecStart': '/bin/echo 100%'}
    """

    def __init__(self) -> None:
        super().__init__(strict=False, interpolation=None, delimiters=("=",))

    def optionxform(self, optionstr: str) -> str:
        return optionstr  # systemd keys are case-sensitive


@pytest.fixture(scope="session")
def soundfont() -> Path:
    """The GM SoundFont; `make test` installs it, so its absence is a failure, not a skip."""
    from deepkeys.device.errors import UserError
    from deepkeys.device.soundfont import default_soundfont

    try:
        return default_soundfont()
    except UserError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def chorale_card() -> Path:
    card = MODELS / "chorale.json"
    if not card.exists():
        pytest.fail("models/chorale.json is missing: the chorale model must ship with the repo")
    return card


# --- a real OpenSSH server on loopback (deploy, hil --target) ----------------------
SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "deepkeys-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Path]:
    """A real sshd on loopback; yields the ssh_config file the client must use."""
    if not Path(SSHD).exists() or shutil.which("ssh") is None:
        pytest.skip(f"no OpenSSH server at {SSHD} or no ssh client (apt install openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("sshd needs root here (privilege separation); the tests run as root in CI")
    d = tmp_path / "ssh"
    d.mkdir()
    _keygen(d / "host_key")
    _keygen(d / "user_key")
    shutil.copy(d / "user_key.pub", d / "authorized_keys")
    port = _free_port()
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
LogLevel VERBOSE
""")
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"deepkeys-test {host_pub[0]} {host_pub[1]}\n")
    config = d / "ssh_config"
    config.write_text(f"""\
Host *
  HostName 127.0.0.1
  Port {port}
  IdentityFile {d}/user_key
  IdentitiesOnly yes
  HostKeyAlias deepkeys-test
  UserKnownHostsFile {d}/known_hosts
  StrictHostKeyChecking yes
  GlobalKnownHostsFile /dev/null
  LogLevel ERROR
""")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    with open(d / "sshd.log", "w") as log:
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=subprocess.STDOUT
        )
        try:

            def up() -> bool:
                if proc.poll() is not None:
                    return True
                with socket.socket() as s:
                    return s.connect_ex(("127.0.0.1", port)) == 0

            wait_for(up, timeout=15, what="sshd to listen")
            if proc.poll() is not None:
                log.flush()
                reason = (d / "sshd.log").read_text().strip().splitlines()[-1:] or ["no output"]
                pytest.skip(f"sshd did not start: {reason[0]}")
            yield config
        finally:
            proc.terminate()  # by PID, whatever the test did
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- parts of the install that the Pi lacks (markers in pyproject.toml) -------------------
def _missing(modules: Sequence[str], programs: Sequence[str] = ()) -> list[str]:
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None] + [
        p for p in programs if shutil.which(p) is None
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.host`` tests without the host extra and ``@pytest.mark.hil_rig``
    tests without the HIL rig, naming what is missing; ``make test`` installs both."""
    needs = {
        "host": (_missing(["tensorflow", "music21"]), "pip install 'deepkeys[host]'"),
        "hil_rig": (_missing(["jack"], ["jackd"]), "pip install 'deepkeys[hil]', apt jackd2"),
    }
    for item in items:
        for marker, (missing, fix) in needs.items():
            if missing and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=f"{', '.join(missing)} missing ({fix})"))
