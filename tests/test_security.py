"""Security: the daemon listens on nothing but its 0660 control socket, and the unit
runs it unprivileged with only the groups it needs."""

from __future__ import annotations

import configparser
import os
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
