"""Security: the daemon listens on nothing but its 0660 control socket, and the unit
runs it unprivileged with only the groups it needs; publishing has a sandbox of its own,
and `systemd-analyze` verifies the units and scores their exposure."""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from deepkeys.device.config import hardware_free_config

from conftest import MODELS, REPO, UnitParser, wait_for

UNIT = REPO / "systemd" / "deepkeys.service"
INET_TABLES = ("tcp", "tcp6", "udp", "udp6", "raw", "raw6", "udplite", "udplite6")


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _table_inodes(pid: int, table: str) -> set[str]:
    path = Path(f"/proc/{pid}/net/{table}")
    if not path.exists():
        return set()
    rows = path.read_text().splitlines()[1:]
    return {row.split()[9] for row in rows if len(row.split()) > 9}


def _unix_listeners(pid: int, inodes: set[str]) -> list[str]:
    """Paths of the process's listening Unix sockets (flag __SO_ACCEPTCON)."""
    out = []
    for row in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        cols = row.split()
        if len(cols) >= 7 and cols[6] in inodes and int(cols[3], 16) & 0x10000:
            out.append(cols[7] if len(cols) > 7 else "(unnamed)")
    return out


@pytest.fixture
def daemon_proc(tmp_path: Path, soundfont: Path):
    config = tmp_path / "config.toml"
    config.write_text(
        hardware_free_config(tmp_path / "state", tmp_path / "run" / "control.sock", [MODELS])
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepkeys.device.cli", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from deepkeys.device.adapters.control import ControlClient
        from deepkeys.device.errors import UserError

        def answers() -> bool:
            try:
                return ControlClient(tmp_path / "run" / "control.sock").request("status")["ok"]
            except UserError:
                assert proc.poll() is None, "the daemon exited"
                return False

        wait_for(answers, timeout=30, what="the daemon to answer")
        yield proc, tmp_path / "run" / "control.sock"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_the_daemon_opens_no_network_socket(daemon_proc):
    proc, sock_path = daemon_proc
    mine = _socket_inodes(proc.pid)
    assert mine, "the daemon holds at least its control socket"
    for table in INET_TABLES:
        assert not mine & _table_inodes(proc.pid, table), f"a {table} socket is open"
    # Its only listening socket is the control socket.
    assert _unix_listeners(proc.pid, mine) == [str(sock_path)]


def test_the_control_socket_is_0660_and_owned_by_the_service_group(daemon_proc):
    proc, sock_path = daemon_proc
    st = os.stat(sock_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    # The daemon's own group (Group=deepkeys under systemd) owns it: maintainers in that
    # group may talk to it, nobody else may.
    status = Path(f"/proc/{proc.pid}/status").read_text()
    egid = int(next(line for line in status.splitlines() if line.startswith("Gid:")).split()[2])
    assert st.st_gid == egid


def _service() -> configparser.SectionProxy:
    parser = UnitParser()
    parser.read(UNIT)
    return parser["Service"]


def test_the_unit_runs_unprivileged_with_only_audio_and_gpio():
    from deepkeys.device.maintenance.install import SERVICE_GROUPS, SERVICE_USER

    service = _service()
    assert service["User"] == SERVICE_USER == "deepkeys" and service["Group"] == "deepkeys"
    assert set(service["SupplementaryGroups"].split()) == set(SERVICE_GROUPS) == {"audio", "gpio"}
    # No capabilities at all, and no way to gain any.
    assert service["CapabilityBoundingSet"] == "" and service["AmbientCapabilities"] == ""
    assert service["NoNewPrivileges"] == "yes" and service["RestrictSUIDSGID"] == "yes"
    # The socket's folder lets only the daemon's group in; nothing on the network.
    assert service["RuntimeDirectoryMode"] == "0750"
    assert service["RestrictAddressFamilies"] == "AF_UNIX" and service["IPAddressDeny"] == "any"
    assert not list(UNIT.parent.glob("*.socket"))  # no socket activation listening either


# --------------------------------------------------------------------------- publishing
PUBLISH_UNIT = REPO / "systemd" / "deepkeys-publish.service"
PUBLISH_PATH = REPO / "systemd" / "deepkeys-publish.path"
SPOOL = "/var/lib/deepkeys/publish"


def _environment(unit: Path) -> dict[str, str]:
    """Every ``Environment=`` assignment of a unit (UnitParser keeps only the last line)."""
    env: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            for word in line.split("=", 1)[1].split():
                key, _, value = word.partition("=")
                env[key] = value
    return env


def test_publishing_runs_in_a_sandbox_of_its_own_with_network_and_a_read_only_state():
    parser = UnitParser()
    parser.read(PUBLISH_UNIT)
    publish = parser["Service"]
    assert publish["ExecStart"] == "/opt/deepkeys/.venv/bin/deepkeys publish"
    assert publish["Type"] == "oneshot"
    assert publish["User"] == "deepkeys" and "SupplementaryGroups" not in publish
    # The network, which rsync and scp need, and nothing else the daemon lacks.
    assert set(publish["RestrictAddressFamilies"].split()) >= {"AF_INET", "AF_INET6"}
    assert "IPAddressDeny" not in publish
    assert publish["CapabilityBoundingSet"] == "" and publish["NoNewPrivileges"] == "yes"
    # The state and the code read-only; only the queue writable, to remove what is done.
    assert publish["ProtectSystem"] == "full"
    assert publish["ReadOnlyPaths"].split() == ["-/var/lib/deepkeys", "/opt/deepkeys"]
    assert publish["ReadWritePaths"] == f"-{SPOOL}"
    assert publish["ProtectHome"] == "yes" and publish["PrivateTmp"] == "yes"
    assert "RemoveIPC" not in publish  # it would take the daemon's (same user) with it
    # One queue: the daemon writes it, the path unit watches it, the service drains it.
    assert _environment(UNIT)["DEEPKEYS_PUBLISH_SPOOL"] == SPOOL
    assert _environment(PUBLISH_UNIT)["DEEPKEYS_PUBLISH_SPOOL"] == SPOOL
    path = UnitParser()
    path.read(PUBLISH_PATH)
    assert path["Path"]["DirectoryNotEmpty"] == SPOOL
    assert path["Path"]["Unit"] == PUBLISH_UNIT.name
    # The daemon's own sandbox is as tight as before.
    daemon = _service()
    assert daemon["RestrictAddressFamilies"] == "AF_UNIX" and daemon["IPAddressDeny"] == "any"
    assert daemon["ProtectSystem"] == "strict" and daemon["ReadWritePaths"] == "/var/lib/deepkeys"


def _exposure(unit: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert f"Overall exposure level for {unit.name}:" in last, result.stdout + result.stderr
    return float(last.split(":")[1].split()[0])


def test_the_units_verify_and_their_exposure_is_low(tmp_path):
    """`systemd-analyze verify` on the three units together, and `security` on both
    services; the scores are in the README (0 is best, 10 is no sandbox at all)."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: `make test` installs the systemd package")
    copies = []
    for unit in (UNIT, PUBLISH_UNIT, PUBLISH_PATH):
        copy = tmp_path / unit.name  # verify checks ExecStart exists: one this machine has
        copy.write_text(unit.read_text().replace("/opt/deepkeys/.venv/bin/deepkeys", "/bin/true"))
        copies.append(copy)
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, copies)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "deepkeys" not in result.stderr, result.stderr
    daemon, publish = _exposure(copies[0]), _exposure(copies[1])
    assert daemon <= 3.2, daemon
    assert publish <= 2.0, publish
