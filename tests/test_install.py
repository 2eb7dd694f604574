"""``deepkeys install``: the real plan, its file steps for real in a temporary root, the
commands that would change this machine (apt, useradd, systemctl) through a stand-in
that records them and keeps the state they would leave; a second run plans nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from deepkeys.device.maintenance.install import System

from conftest import REPO, run_cli

# Where the plan puts the code: not this checkout, which a clean clone may have in /tmp.
PREFIX = Path("/srv/deepkeys-code")


class FakeSystem(System):
    """A fresh Debian 12 as far as the install can tell: it records each command and
    updates its state as the real command would. It overrides every method of
    :class:`System` (which mypy holds to the real signatures), so none reaches the machine."""

    def __init__(self, packages: Sequence[str] = (), users: dict | None = None) -> None:
        self.packages = set(packages)
        self.groups = {"audio", "root"}
        self.users: dict[str, set[str]] = dict(users or {})
        self.venv = False
        self.unit = ("disabled", "inactive")
        self.ran: list[list[str]] = []

    def package_installed(self, name: str) -> bool:
        return name in self.packages

    def group_exists(self, name: str) -> bool:
        return name in self.groups

    def user_groups(self, name: str) -> set[str] | None:
        return set(self.users[name]) if name in self.users else None

    def unit_state(self, unit: str) -> tuple[str, str]:
        return self.unit

    def works(self, argv: Sequence[str]) -> bool:
        return self.venv

    def run(self, argv: Sequence[str]) -> None:
        argv = list(argv)
        self.ran.append(argv)
        if argv[:2] == ["apt-get", "install"]:
            self.packages |= {a for a in argv[2:] if not a.startswith("-")}
        elif argv[0] == "groupadd":
            self.groups.add(argv[-1])
        elif argv[0] in ("useradd", "usermod"):
            groups = set(argv[argv.index("--groups") + 1].split(","))
            assert groups <= self.groups, f"{argv[0]} needs the groups first"
            self.users.setdefault(argv[-1], {argv[-1]}).update(groups)
        elif argv[1:3] == ["-m", "venv"]:
            self.venv = True
        elif argv[:3] == ["systemctl", "enable", "--now"]:
            self.unit = ("enabled", "active")


def install(tmp_path: Path, system: FakeSystem, dry_run: bool = False) -> tuple[int, list[str]]:
    from deepkeys.device.maintenance.install import InstallTarget, plan, run_steps

    lines: list[str] = []
    target = InstallTarget(root=tmp_path, prefix=PREFIX, python="python3")
    changes = run_steps(plan(target, system), dry_run=dry_run, out=lines.append)
    return changes, lines


def test_a_fresh_system_then_a_second_run_that_changes_nothing(tmp_path):
    from deepkeys.device.config import Config, load_config
    from deepkeys.device.maintenance.install import APT_PACKAGES

    system = FakeSystem(packages=["gcc"])
    changes, lines = install(tmp_path, system)
    assert changes == 7 and lines[-1] == "install: 7 of 7 steps changed something"
    venv = PREFIX / ".venv"
    assert system.ran == [
        ["apt-get", "update", "-q"],
        [
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            *[p for p in APT_PACKAGES if p != "gcc"],
        ],
        ["groupadd", "--system", "gpio"],
        [
            "useradd",
            "--system",
            "--user-group",
            "--home-dir",
            "/var/lib/deepkeys",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--groups",
            "audio,gpio",
            "deepkeys",
        ],
        ["python3", "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", "-e", f"{PREFIX}[device]"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "deepkeys.service", "deepkeys-publish.path"],
        ["systemctl", "restart", "deepkeys.service"],
    ]
    assert system.users["deepkeys"] == {"deepkeys", "audio", "gpio"}
    config = tmp_path / "etc" / "deepkeys" / "config.toml"
    assert load_config(config) == Config()
    units = tmp_path / "etc" / "systemd" / "system"
    assert f"ExecStart={venv}/bin/deepkeys run\n" in (units / "deepkeys.service").read_text()
    publish = (units / "deepkeys-publish.service").read_text()
    assert f"ExecStart={venv}/bin/deepkeys publish\n" in publish
    assert f"ReadOnlyPaths=-/var/lib/deepkeys {PREFIX}\n" in publish
    for name in ("deepkeys.service", "deepkeys-publish.service", "deepkeys-publish.path"):
        assert (units / name).read_text() == (REPO / "systemd" / name).read_text().replace(
            "/opt/deepkeys", str(PREFIX)
        )
    assert sorted(p.name for p in units.iterdir()) == sorted(
        p.name for p in (REPO / "systemd").iterdir() if p.suffix in (".service", ".path")
    )
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}

    # Idempotent: a second run checks everything, does nothing, writes nothing.
    system.ran.clear()
    changes, lines = install(tmp_path, system)
    assert changes == 0 and system.ran == []
    assert lines == [
        f"ok     {name}"
        for name in (
            "apt packages",
            "gpio group",
            "service user",
            "venv",
            "config",
            "systemd units",
            "service",
        )
    ] + ["install: 0 of 7 steps changed something (nothing to do)"]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamps


def test_dry_run_prints_every_step_and_changes_nothing(tmp_path):
    system = FakeSystem()
    changes, lines = install(tmp_path, system, dry_run=True)
    assert changes == 7 and system.ran == [] and not any(tmp_path.iterdir())
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "would  apt packages",
        "would  gpio group",
        "would  service user",
        "would  venv",
        "would  config",
        "would  systemd units",
        "would  service",
    ]
    assert "useradd --system --user-group" in lines[2]
    assert "--groups audio,gpio deepkeys" in lines[2]
    assert lines[-1] == "install: 7 of 7 steps would change something"


def test_existing_config_kept_and_existing_user_only_gets_its_groups(tmp_path):
    config = tmp_path / "etc" / "deepkeys" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[audio]\ndevice = "hw:CARD=Headphones"\n')
    system = FakeSystem(users={"deepkeys": {"deepkeys", "audio"}})
    install(tmp_path, system)
    assert config.read_text() == '[audio]\ndevice = "hw:CARD=Headphones"\n'
    assert ["usermod", "--append", "--groups", "audio,gpio", "deepkeys"] in system.ran
    assert not any(argv[0] == "useradd" for argv in system.ran)


def test_code_under_home_is_refused_in_one_line(tmp_path):
    from deepkeys.device.errors import UserError
    from deepkeys.device.maintenance.install import InstallTarget, plan

    with pytest.raises(UserError, match="ProtectHome=yes hides"):
        plan(InstallTarget(root=tmp_path, prefix=Path("/home/pi/deepkeys")), FakeSystem())


@pytest.mark.parametrize("prefix", ["/tmp/deepkeys", "/var/tmp/deepkeys", "/tmp"])
def test_code_under_tmp_is_refused_in_one_line(tmp_path, prefix):
    from deepkeys.device.errors import UserError
    from deepkeys.device.maintenance.install import InstallTarget, plan

    with pytest.raises(UserError) as err:
        plan(InstallTarget(root=tmp_path, prefix=Path(prefix)), FakeSystem())
    assert str(err.value) == (
        f"the code is in {prefix}, which the unit's PrivateTmp=yes hides from the daemon: "
        "clone it to /opt/deepkeys and install from there"
    )
    # And from the command line: one line, status 2, nothing written.
    result = run_cli("install", "--dry-run", "--root", tmp_path, "--prefix", prefix)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"deepkeys: {err.value}"]
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("prefix", ["/opt/deep keys", "/opt/deepkeys%h", "/opt/a;b", "/opt/'x'"])
def test_a_prefix_the_unit_files_cannot_hold_is_refused(tmp_path, prefix):
    from deepkeys.device.errors import UserError
    from deepkeys.device.maintenance.install import InstallTarget, plan

    with pytest.raises(UserError, match="cannot go into a systemd unit"):
        plan(InstallTarget(root=tmp_path, prefix=Path(prefix)), FakeSystem())


def test_the_real_system_queries_read_this_machine():
    system = System()
    assert system.package_installed("openssh-server") is True  # make test installs it
    assert system.package_installed("deepkeys-no-such-package") is False
    assert system.group_exists("root") and not system.group_exists("deepkeys-no-such-group")
    root_groups = system.user_groups("root")
    assert root_groups is not None and "root" in root_groups
    assert system.user_groups("deepkeys-no-such-user") is None
    assert system.works([str(REPO / ".venv" / "bin" / "python"), "-c", "import deepkeys"])


def test_cli_dry_run_on_this_machine_plans_without_changing_it(tmp_path):
    from deepkeys.device.errors import UserError
    from deepkeys.device.maintenance.install import refuse_hidden_prefix

    result = run_cli("install", "--dry-run", "--root", tmp_path)
    try:
        refuse_hidden_prefix(REPO)
    except UserError as exc:  # this checkout is in /tmp, say: the units could not run it
        assert result.returncode == 2 and result.stderr.strip() == f"deepkeys: {exc}"
        return
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 8 and lines[-1].startswith("install: ")
    assert lines[0] == "ok     apt packages"  # `make test` installed the device's packages
    assert lines[3] == "ok     venv"  # and the venv this test runs in
    assert lines[4].startswith("would  config: write ") and lines[5].startswith(
        "would  systemd units: write "
    )
    if System().user_groups("deepkeys") is None:
        assert lines[2].startswith("would  service user: useradd --system")
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_the_device_extra_is_small_and_drives_a_pis_pins():
    """What ``pip install .[device]`` brings: no TensorFlow, no training libraries, and
    on an arm64 Pi the pin library gpiozero picks first (lgpio), since the venv does not
    see Debian's python3-lgpio."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    device = [Requirement(r) for r in project["optional-dependencies"]["device"]]
    names = {r.name.lower() for r in device}
    assert not names & {"tensorflow", "tensorflow-cpu", "keras", "music21", "matplotlib"}

    def on(machine: str) -> set[str]:
        env = {"platform_machine": machine, "sys_platform": "linux"}
        return {r.name for r in device if r.marker is None or r.marker.evaluate(env)}

    assert "lgpio" in on("aarch64") and "gpiozero" in on("aarch64")
    assert "lgpio" not in on("x86_64")  # a workstation or CI: mock pins, nothing to build
