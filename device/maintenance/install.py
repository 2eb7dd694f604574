"""``deepkeys install``: make a fresh Raspberry Pi OS (Debian 12) into the appliance.

The install is a list of :class:`Step`\\ s. Each one checks whether its work is
already done and only then does it, so running the install twice changes nothing
the second time, and ``--dry-run`` prints exactly what a real run would do:

1. apt packages (audio, synth, SoundFont, a compiler for pyalsaaudio);
2. a ``gpio`` group (Raspberry Pi OS has one; plain Debian does not);
3. the ``deepkeys`` service user, in the audio and gpio groups, no login shell;
4. the venv at ``PREFIX/.venv`` with the device extra;
5. ``/etc/deepkeys/config.toml``, every key at its default, only if absent;
6. the systemd unit, with ``ExecStart`` pointing into ``PREFIX``;
7. the unit enabled and started (restarted if step 6 changed it).

Machine state is read and changed through a :class:`System`; the files go under
``root`` (``/`` on the Pi, a temporary folder in the tests).

    >>> steps = plan(Paths(root=Path("/"), prefix=Path("/opt/deepkeys")), System())  # doctest: +SKIP
    >>> run_steps(steps, dry_run=True)                                              # doctest: +SKIP
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepkeys.device.atomic import atomic_write_bytes
from deepkeys.device.config import DEFAULT_PATH, Config
from deepkeys.device.errors import UserError
from deepkeys.device.resources import REPO

UNIT_NAME = "deepkeys.service"
SHIPPED_UNIT = REPO / "systemd" / UNIT_NAME
SHIPPED_PREFIX = "/opt/deepkeys"  # what the shipped unit's ExecStart names
SERVICE_USER = "deepkeys"
SERVICE_GROUPS = ("audio", "gpio")  # the only groups it needs: sound card and GPIO
STATE_DIR = "/var/lib/deepkeys"
#: The device's apt packages: the same as the Makefile's APT_DEVICE.
APT_PACKAGES = ("python3-venv", "python3-dev", "gcc", "libasound2-dev", "libasound2-plugins",
                "libfluidsynth3", "timgm6mb-soundfont")


class System:
    """The machine: read-only queries, and ``run`` for the commands that change it."""

    def _ok(self, argv: Sequence[str]) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, text=True, check=False)

    def package_installed(self, name: str) -> bool:
        out = self._ok(["dpkg-query", "-W", "-f", "${Status}", name])
        return out.returncode == 0 and out.stdout.strip() == "install ok installed"

    def group_exists(self, name: str) -> bool:
        return self._ok(["getent", "group", name]).returncode == 0

    def user_groups(self, name: str) -> set[str] | None:
        """The user's groups, or None when there is no such user."""
        out = self._ok(["id", "-nG", "--", name])
        return set(out.stdout.split()) if out.returncode == 0 else None

    def unit_state(self, unit: str) -> tuple[str, str]:
        """(``systemctl is-enabled``, ``systemctl is-active``), e.g. ("enabled", "active")."""
        enabled = self._ok(["systemctl", "is-enabled", unit]).stdout.strip() or "unknown"
        active = self._ok(["systemctl", "is-active", unit]).stdout.strip() or "unknown"
        return enabled, active

    def works(self, argv: Sequence[str]) -> bool:
        """A harmless probe (``python -c 'import ...'``) succeeds."""
        try:
            return self._ok(argv).returncode == 0
        except OSError:
            return False

    def run(self, argv: Sequence[str]) -> None:
        """Run a command that changes the machine; a failure is one line."""
        try:
            out = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        except OSError as exc:
            raise UserError(f"{shlex.join(argv)}: {exc.strerror or exc}") from None
        if out.returncode != 0:
            tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"{shlex.join(argv)} failed ({out.returncode}): {tail[0]}")


@dataclass(frozen=True)
class Paths:
    """Where things go. ``root`` prefixes every file written; ``prefix`` is the code."""

    root: Path = Path("/")
    prefix: Path = REPO
    python: str = sys.executable if sys.prefix == sys.base_prefix else "python3"

    def under_root(self, absolute: str | Path) -> Path:
        return self.root / str(absolute).lstrip("/")

    @property
    def venv(self) -> Path:
        return self.prefix / ".venv"


@dataclass
class Step:
    """One idempotent piece of the install: ``done()`` is True once ``do()`` has run."""

    name: str
    what: Callable[[], str]  # what do() would do, for --dry-run and the log
    done: Callable[[], bool]
    do: Callable[[], None]


def unit_text(prefix: Path) -> str:
    """The shipped unit with ``ExecStart`` (and its docs link) pointing into ``prefix``."""
    return SHIPPED_UNIT.read_text().replace(SHIPPED_PREFIX, str(prefix))


def config_text() -> str:
    return ("# deepkeys configuration: every key with its default; change what you need.\n"
            "# `deepkeys config` prints the effective values, `deepkeys doctor` checks them.\n\n"
            + Config().to_toml())


def plan(paths: Paths, system: System) -> list[Step]:
    """The install's steps, in order."""
    prefix = paths.prefix
    for hidden in ("/home", "/root"):
        if prefix == Path(hidden) or Path(hidden) in prefix.parents:
            raise UserError(f"the code is in {prefix}, which the unit's ProtectHome=yes hides "
                            f"from the daemon: clone it to {SHIPPED_PREFIX} and install from there")
    changed_unit: list[bool] = []

    def missing_packages() -> list[str]:
        return [p for p in APT_PACKAGES if not system.package_installed(p)]

    def apt_argv() -> list[list[str]]:
        return [["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                 *missing_packages()]]

    def install_packages() -> None:
        for argv in apt_argv():
            system.run(argv)

    def user_argv() -> list[str]:
        groups = ",".join(SERVICE_GROUPS)
        if system.user_groups(SERVICE_USER) is None:
            return ["useradd", "--system", "--user-group", "--home-dir", STATE_DIR,
                    "--no-create-home", "--shell", "/usr/sbin/nologin", "--groups", groups,
                    SERVICE_USER]
        return ["usermod", "--append", "--groups", groups, SERVICE_USER]

    def user_done() -> bool:
        groups = system.user_groups(SERVICE_USER)
        return groups is not None and set(SERVICE_GROUPS) <= groups

    venv_bin = paths.venv / "bin"
    venv_argv = [[paths.python, "-m", "venv", str(paths.venv)],
                 [str(venv_bin / "pip"), "install", "-q", "-e", f"{prefix}[device]"]]

    def make_venv() -> None:
        for argv in venv_argv:
            system.run(argv)

    config_file = paths.under_root(DEFAULT_PATH)
    unit_file = paths.under_root(f"/etc/systemd/system/{UNIT_NAME}")

    def write_config() -> None:
        config_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(config_file, config_text().encode())

    def write_unit() -> None:
        unit_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(unit_file, unit_text(prefix).encode())
        changed_unit.append(True)
        system.run(["systemctl", "daemon-reload"])

    def unit_current() -> bool:
        return unit_file.is_file() and unit_file.read_text() == unit_text(prefix)

    def start_argv() -> list[list[str]]:
        argv = [["systemctl", "enable", "--now", UNIT_NAME]]
        return argv + [["systemctl", "restart", UNIT_NAME]] if changed_unit else argv

    def start() -> None:
        for argv in start_argv():
            system.run(argv)

    def _cmds(argvs: list[list[str]]) -> str:
        return "; ".join(shlex.join(a) for a in argvs)

    return [
        Step("apt packages", lambda: _cmds(apt_argv()), lambda: not missing_packages(),
             install_packages),
        Step("gpio group", lambda: "groupadd --system gpio", lambda: system.group_exists("gpio"),
             lambda: system.run(["groupadd", "--system", "gpio"])),
        Step("service user", lambda: shlex.join(user_argv()), user_done,
             lambda: system.run(user_argv())),
        Step("venv", lambda: _cmds(venv_argv),
             lambda: system.works([str(venv_bin / "python"), "-c", "import deepkeys.device.cli"]),
             make_venv),
        Step("config", lambda: f"write {config_file} (all defaults)", config_file.exists,
             write_config),
        Step("systemd unit", lambda: f"write {unit_file} (ExecStart={venv_bin}/deepkeys run); "
                                     "systemctl daemon-reload",
             unit_current, write_unit),
        Step("service", lambda: _cmds(start_argv()),
             lambda: system.unit_state(UNIT_NAME) == ("enabled", "active") and not changed_unit,
             start),
    ]


def run_steps(steps: list[Step], dry_run: bool = False,
              out: Callable[[str], None] = print) -> int:
    """Check each step and do those not done (``dry_run``: only say so). The number of
    steps that changed, or would change, something."""
    changes = 0
    for step in steps:
        if step.done():
            out(f"ok     {step.name}")
            continue
        changes += 1
        if dry_run:
            out(f"would  {step.name}: {step.what()}")
            continue
        what = step.what()
        step.do()
        out(f"did    {step.name}: {what}")
    verb = "would change" if dry_run else "changed"
    out(f"install: {changes} of {len(steps)} steps {verb} something"
        + ("" if changes else " (nothing to do)"))
    return changes
