"""``deepkeys install``: make a fresh Raspberry Pi OS (Debian 12) into the appliance.

The install is a list of :class:`Step`\\ s. Each one checks whether its work is
already done and only then does it, so running the install twice changes nothing
the second time, and ``--dry-run`` prints exactly what a real run would do:

1. apt packages (audio, synth, SoundFont, a compiler for pyalsaaudio);
2. a ``gpio`` group (Raspberry Pi OS has one; plain Debian does not);
3. the ``deepkeys`` service user, in the audio and gpio groups, no login shell;
4. the venv at ``PREFIX/.venv`` with the device extra;
5. ``/etc/deepkeys/config.toml``, every key at its default, only if absent;
6. the systemd units (the daemon, and the publish service with the path unit that
   starts it), with ``ExecStart`` pointing into ``PREFIX``;
7. the daemon and the publish path unit enabled and started (the daemon restarted if
   step 6 changed its units).

Machine state is read and changed through a :class:`System`; the files go under
``root`` (``/`` on the Pi, a temporary folder in the tests).

    >>> target = InstallTarget(root=Path("/"), prefix=Path("/opt/deepkeys"))
    >>> run_steps(plan(target, System()), dry_run=True)  # doctest: +SKIP
"""

from __future__ import annotations

import re
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
#: publish.command runs there, in a sandbox with network (see appliance.publish).
PUBLISH_PATH_UNIT = "deepkeys-publish.path"
UNIT_NAMES = (UNIT_NAME, "deepkeys-publish.service", PUBLISH_PATH_UNIT)
SHIPPED_PREFIX = "/opt/deepkeys"  # what the shipped unit's ExecStart names
SERVICE_USER = "deepkeys"
SERVICE_GROUPS = ("audio", "gpio")  # the only groups it needs: sound card and GPIO
STATE_DIR = "/var/lib/deepkeys"
#: The device's apt packages: the same as the Makefile's APT_DEVICE.
APT_PACKAGES = (
    "python3-venv",
    "python3-dev",
    "gcc",
    "libasound2-dev",
    "libasound2-plugins",
    "libfluidsynth3",
    "timgm6mb-soundfont",
)


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
class InstallTarget:
    """Where the install puts things. ``root`` prefixes every file written; ``prefix`` is
    the code. (Not ``config.Paths``, which is where the running daemon keeps its files.)"""

    root: Path = Path("/")
    prefix: Path = REPO
    python: str = sys.executable if sys.prefix == sys.base_prefix else "python3"

    def under_root(self, absolute: str | Path) -> Path:
        return self.root / str(absolute).lstrip("/")

    @property
    def venv(self) -> Path:
        return self.prefix / ".venv"

    @property
    def venv_bin(self) -> Path:
        return self.venv / "bin"

    @property
    def config_file(self) -> Path:
        return self.under_root(DEFAULT_PATH)

    def unit_file(self, name: str = UNIT_NAME) -> Path:
        return self.under_root(f"/etc/systemd/system/{name}")


@dataclass
class Step:
    """One idempotent piece of the install: ``done()`` is True once ``do()`` has run."""

    name: str
    what: Callable[[], str]  # what do() would do, for --dry-run and the log
    done: Callable[[], bool]
    do: Callable[[], None]


@dataclass
class UnitChange:
    """Whether this run rewrote the systemd unit: the service step then restarts the
    daemon, since ``enable --now`` leaves a running one on the old unit."""

    changed: bool = False


def unit_text(prefix: Path, name: str = UNIT_NAME) -> str:
    """A shipped unit with ``ExecStart`` (and its docs link) pointing into ``prefix``."""
    return (REPO / "systemd" / name).read_text().replace(SHIPPED_PREFIX, str(prefix))


def config_text() -> str:
    return (
        "# deepkeys configuration: every key with its default; change what you need.\n"
        "# `deepkeys config` prints the effective values, `deepkeys doctor` checks them.\n\n"
        + Config().to_toml()
    )


def plan(target: InstallTarget, system: System) -> list[Step]:
    """The install's steps, in order."""
    refuse_hidden_prefix(target.prefix)
    unit = UnitChange()
    return [
        packages_step(system),
        gpio_group_step(system),
        user_step(system),
        venv_step(target, system),
        config_step(target),
        unit_step(target, system, unit),
        service_step(system, unit),
    ]


#: Folders the units hide from the daemon, and the setting that hides each.
HIDDEN = {
    "/home": "ProtectHome",
    "/root": "ProtectHome",
    "/tmp": "PrivateTmp",
    "/var/tmp": "PrivateTmp",
}
#: What a path in a unit file may hold: systemd splits on spaces and expands '%'.
UNIT_PATH = re.compile(r"/[A-Za-z0-9._+@/-]*")


def refuse_hidden_prefix(prefix: Path) -> None:
    """Refuse code the units hide from the daemon (ProtectHome=yes: /home and /root;
    PrivateTmp=yes: /tmp and /var/tmp), or whose path a unit file cannot hold.

    >>> refuse_hidden_prefix(Path("/opt/deepkeys"))
    >>> refuse_hidden_prefix(Path("/home/pi/deepkeys"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    deepkeys.device.errors.UserError: the code is in /home/pi/deepkeys, which ...
    """
    for hidden, setting in HIDDEN.items():
        if prefix == Path(hidden) or Path(hidden) in prefix.parents:
            raise UserError(
                f"the code is in {prefix}, which the unit's {setting}=yes hides "
                f"from the daemon: clone it to {SHIPPED_PREFIX} and install from there"
            )
    if not UNIT_PATH.fullmatch(str(prefix)):
        raise UserError(
            f"the code is in {str(prefix)!r}, which cannot go into a systemd unit "
            "(letters, digits and . _ + @ - / only): clone it to "
            f"{SHIPPED_PREFIX} and install from there"
        )


def _commands(argvs: list[list[str]]) -> str:
    """Several commands as one line of shell, for --dry-run and the log.

    >>> _commands([["apt-get", "update"], ["echo", "two words"]])
    "apt-get update; echo 'two words'"
    """
    return "; ".join(shlex.join(a) for a in argvs)


def _run_all(system: System, argvs: list[list[str]]) -> None:
    for argv in argvs:
        system.run(argv)


def packages_step(system: System) -> Step:
    """1. The apt packages that are not installed yet (the list is read when the step runs)."""

    def missing() -> list[str]:
        return [p for p in APT_PACKAGES if not system.package_installed(p)]

    def apt_argvs() -> list[list[str]]:
        return [
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing()],
        ]

    return Step(
        "apt packages",
        lambda: _commands(apt_argvs()),
        lambda: not missing(),
        lambda: _run_all(system, apt_argvs()),
    )


def gpio_group_step(system: System) -> Step:
    """2. The ``gpio`` group, which plain Debian lacks, before the user joins it."""
    argv = ["groupadd", "--system", "gpio"]
    return Step(
        "gpio group",
        lambda: shlex.join(argv),
        lambda: system.group_exists("gpio"),
        lambda: system.run(argv),
    )


def user_step(system: System) -> Step:
    """3. The service user: created, or (if it exists) added to the groups it lacks."""

    def argv() -> list[str]:
        groups = ",".join(SERVICE_GROUPS)
        if system.user_groups(SERVICE_USER) is None:
            return [
                "useradd",
                "--system",
                "--user-group",
                "--home-dir",
                STATE_DIR,
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--groups",
                groups,
                SERVICE_USER,
            ]
        return ["usermod", "--append", "--groups", groups, SERVICE_USER]

    def done() -> bool:
        groups = system.user_groups(SERVICE_USER)
        return groups is not None and set(SERVICE_GROUPS) <= groups

    return Step("service user", lambda: shlex.join(argv()), done, lambda: system.run(argv()))


def venv_step(target: InstallTarget, system: System) -> Step:
    """4. The venv with the device extra; done once its Python imports the CLI."""
    argvs = [
        [target.python, "-m", "venv", str(target.venv)],
        [str(target.venv_bin / "pip"), "install", "-q", "-e", f"{target.prefix}[device]"],
    ]
    probe = [str(target.venv_bin / "python"), "-c", "import deepkeys.device.cli"]
    return Step(
        "venv",
        lambda: _commands(argvs),
        lambda: system.works(probe),
        lambda: _run_all(system, argvs),
    )


def config_step(target: InstallTarget) -> Step:
    """5. The config file with every key at its default; an existing one is kept."""
    path = target.config_file

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, config_text().encode())

    return Step("config", lambda: f"write {path} (all defaults)", path.exists, write)


def unit_step(target: InstallTarget, system: System, unit: UnitChange) -> Step:
    """6. The systemd units pointing into the prefix; rewriting one marks ``unit`` changed."""

    def stale() -> list[str]:
        return [
            name
            for name in UNIT_NAMES
            if not target.unit_file(name).is_file()
            or target.unit_file(name).read_text() != unit_text(target.prefix, name)
        ]

    def write() -> None:
        for name in stale():
            path = target.unit_file(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, unit_text(target.prefix, name).encode())
        unit.changed = True
        system.run(["systemctl", "daemon-reload"])

    def what() -> str:
        paths = ", ".join(str(target.unit_file(name)) for name in stale())
        return (
            f"write {paths} (ExecStart={target.venv_bin}/deepkeys run|publish); "
            "systemctl daemon-reload"
        )

    return Step("systemd units", what, lambda: not stale(), write)


def service_step(system: System, unit: UnitChange) -> Step:
    """7. The daemon and the publish path unit enabled and started, and the daemon
    restarted if step 6 changed the units."""

    def argvs() -> list[list[str]]:
        start = [["systemctl", "enable", "--now", UNIT_NAME, PUBLISH_PATH_UNIT]]
        return start + [["systemctl", "restart", UNIT_NAME]] if unit.changed else start

    def done() -> bool:
        running = all(
            system.unit_state(name) == ("enabled", "active")
            for name in (UNIT_NAME, PUBLISH_PATH_UNIT)
        )
        return running and not unit.changed

    return Step("service", lambda: _commands(argvs()), done, lambda: _run_all(system, argvs()))


def run_steps(steps: list[Step], dry_run: bool = False, out: Callable[[str], None] = print) -> int:
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
    out(
        f"install: {changes} of {len(steps)} steps {verb} something"
        + ("" if changes else " (nothing to do)")
    )
    return changes
