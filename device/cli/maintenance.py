"""Maintenance over SSH on the device (``doctor``, ``logs``, ``tone``, ``buttons``,
``install``) and models from the workstation (``deploy``, ``rollback``, and ``receive``,
the hidden device end of ``deploy``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from deepkeys.device.cli.options import Subcommands, add_command, add_config
from deepkeys.device.errors import UserError

if TYPE_CHECKING:
    from deepkeys.device.config import Config


def add_parsers(sub: Subcommands) -> None:
    _add_checks(sub)
    _add_setup(sub)


def _add_checks(sub: Subcommands) -> None:
    """The commands that check a device in place."""
    p = add_command(
        sub,
        "doctor",
        cmd_doctor,
        help="check the appliance: a pass/fail table, exit 1 on a failure",
    )
    add_config(p)

    p = add_command(sub, "logs", cmd_logs, help="the daemon's journal (journalctl)")
    p.add_argument("--since", metavar="WHEN", help='e.g. "1 hour ago", "today", "2025-01-31"')
    p.add_argument("-n", "--lines", type=int, metavar="N", help="only the last N lines")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")

    p = add_command(
        sub, "tone", cmd_tone, help="play a test chord through the configured audio output"
    )
    add_config(p)
    p.add_argument("--device", metavar="PCM", help="ALSA PCM (default: audio.device)")
    p.add_argument("--seconds", type=float, default=1.5)

    p = add_command(
        sub, "buttons", cmd_buttons, help="light each LED in turn, then show each button pressed"
    )
    add_config(p)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for presses")


def _add_setup(sub: Subcommands) -> None:
    """The commands that put code and models on a device."""
    p = add_command(
        sub, "install", cmd_install, help="set up this Pi: packages, user, venv, config, service"
    )
    p.add_argument("--dry-run", action="store_true", help="print what it would do, change nothing")
    p.add_argument("--prefix", type=Path, help="the code folder (default: this checkout)")
    p.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)

    p = add_command(
        sub, "deploy", cmd_deploy, help="copy models to a device over SSH, verify, activate, reload"
    )
    p.add_argument("dest", metavar="USER@HOST")
    p.add_argument("--models", nargs="+", metavar="GENRE", help="default: every card in --from")
    p.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=Path("models"),
        help="folder with <genre>.json + <genre>.tflite (default: models)",
    )
    _add_remote(p)

    p = add_command(
        sub, "rollback", cmd_rollback, help="make the previous deployed version of a genre active"
    )
    p.add_argument("genre")
    p.add_argument("--host", metavar="USER@HOST", help="roll back on this device over SSH")
    add_config(p)
    _add_remote(p)

    # Hidden: the device end of `deploy`, fed a tar of models on stdin over ssh.
    p = add_command(sub, "receive", cmd_receive)
    add_config(p)
    p.add_argument("--expect", action="append", default=[], metavar="GENRE=SHA256")


def _add_remote(p: argparse.ArgumentParser) -> None:
    p.add_argument("-F", "--ssh-config", metavar="FILE", help="ssh_config for ssh -F")
    p.add_argument(
        "--remote-deepkeys",
        metavar="CMD",
        help="how to run deepkeys on the device (default: $DEEPKEYS_REMOTE or "
        "'sudo -n -u deepkeys /opt/deepkeys/.venv/bin/deepkeys')",
    )
    p.add_argument("--remote-config", metavar="PATH", help="the device's config file")


def cmd_doctor(args: argparse.Namespace) -> int:
    from deepkeys.device.maintenance.doctor import format_table, run_checks

    rows = run_checks(args.config)
    print(format_table(rows))
    return 1 if any(r.ok is False for r in rows) else 0


def cmd_logs(args: argparse.Namespace) -> int:
    from deepkeys.device.maintenance.logs import show_logs

    return show_logs(since=args.since, follow=args.follow, lines=args.lines)


def cmd_tone(args: argparse.Namespace) -> int:
    from deepkeys.device.config import load_config
    from deepkeys.device.maintenance.tone import CHORD, play_tone

    stats = play_tone(load_config(args.config), device=args.device, seconds=args.seconds)
    print(
        f"tone: notes={','.join(map(str, CHORD))} device={stats.device} rate={stats.rate} "
        f"period={stats.period} periods_written={stats.periods_written} "
        f"underruns={stats.underruns} errors={stats.errors}"
    )
    return 0 if stats.errors == 0 else 1


def cmd_buttons(args: argparse.Namespace) -> int:
    from deepkeys.device.adapters.control import ControlClient
    from deepkeys.device.config import load_config
    from deepkeys.device.events import BUTTONS
    from deepkeys.device.maintenance.buttons import panel_test

    cfg = load_config(args.config)
    try:
        ControlClient(cfg.paths.socket, timeout=2.0).request("status")
    except UserError:
        pass  # not running: the pins are free
    else:
        raise UserError(
            "the daemon holds the panel's pins: stop it first "
            "(sudo systemctl stop deepkeys), then run this again"
        )
    missing = [b for b in BUTTONS if b not in panel_test(cfg, timeout=args.timeout)]
    if missing:
        print(f"buttons: not pressed within {args.timeout:g} s: {', '.join(missing)}")
        return 1
    print("buttons: every button works")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    import os

    from deepkeys.device.maintenance.install import InstallTarget, System, plan, run_steps
    from deepkeys.device.resources import REPO

    if not args.dry_run and args.root == Path("/") and os.geteuid() != 0:
        raise UserError(
            "'deepkeys install' changes the system: run it with sudo "
            "(or see what it would do with --dry-run)"
        )
    target = InstallTarget(root=args.root, prefix=(args.prefix or REPO).resolve())
    run_steps(plan(target, System()), dry_run=args.dry_run)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from deepkeys.device.maintenance.deploy import deploy

    print(
        deploy(
            args.dest,
            args.models,
            args.source,
            remote=args.remote_deepkeys,
            remote_config=args.remote_config,
            ssh_config=args.ssh_config,
        ),
        end="",
    )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    if args.host:
        from deepkeys.device.maintenance.ssh import run_remote

        extra = ["--config", args.remote_config] if args.remote_config else []
        print(
            run_remote(
                args.host,
                ["rollback", args.genre, *extra],
                remote=args.remote_deepkeys,
                ssh_config=args.ssh_config,
            ),
            end="",
        )
        return 0
    from deepkeys.device.config import load_config
    from deepkeys.device.maintenance.store import ModelStore

    cfg = load_config(args.config)
    sha = ModelStore(cfg.paths.state_dir).rollback(args.genre)
    print(f"genre={args.genre} sha256={sha} status=active")
    _reload_daemon(cfg)
    return 0


def cmd_receive(args: argparse.Namespace) -> int:
    from deepkeys.device.config import load_config
    from deepkeys.device.maintenance.store import ModelStore

    cfg = load_config(args.config)
    expect = _parse_expect(args.expect)
    results = ModelStore(cfg.paths.state_dir).receive(sys.stdin.buffer, expect)
    for r in results:
        status = "active" if r.activated else "refused"
        print(
            f"genre={r.genre} sha256={r.sha256 or '-'} status={status}"
            + (f" error={json.dumps(r.error)}" if r.error else "")
        )
    if any(r.activated for r in results):
        _reload_daemon(cfg)
    refused = [r for r in results if not r.activated]
    if refused:
        raise UserError(
            "; ".join(f"{r.genre}: {r.error}" for r in refused)
            + " (not activated; the previous version stays)"
        )
    return 0


def _parse_expect(items: list[str]) -> dict[str, str]:
    """``receive --expect GENRE=SHA256`` options as {genre: sha256}; the last ``=`` splits.

    >>> _parse_expect(["chorale=ab12", "a=b=cd34"])
    {'chorale': 'ab12', 'a=b': 'cd34'}
    """
    expect = {}
    for item in items:
        genre, sep, sha = item.rpartition("=")
        if not sep or not genre:
            raise UserError(f"--expect {item!r}: expected GENRE=SHA256")
        expect[genre] = sha
    return expect


def _reload_daemon(cfg: Config) -> None:
    """Ask the running daemon to rescan its models; fine if it is not running."""
    from deepkeys.device.adapters.control import ControlClient

    try:
        reply = ControlClient(cfg.paths.socket, timeout=30.0).request("reload")
    except UserError as exc:
        print(
            f"daemon=not_reloaded reason={json.dumps(str(exc))} "
            "(it loads the models when it starts)"
        )
        return
    if not reply.get("ok"):
        raise UserError(f"the daemon refused to reload: {reply.get('error')}")
    print(f"daemon=reloaded genres={','.join(reply['genres']) or '-'}")
    for genre, error in reply.get("errors", {}).items():
        print(f"daemon_error genre={genre} error={json.dumps(error)}")
