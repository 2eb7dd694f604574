"""``deepkeys run``, ``status``, ``press``, ``monitor``, ``config`` and ``sim``: the daemon,
and talking to it over its control socket.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from deepkeys.device.cli.options import Subcommands, add_command, add_config
from deepkeys.device.errors import UserError

if TYPE_CHECKING:
    from deepkeys.device.adapters.control import ControlClient

# events.BUTTONS, spelled out here so that `deepkeys --help` imports nothing else.
BUTTON_NAMES = ("genre", "record", "generate", "play", "tempo_down", "tempo_up")


def add_parsers(sub: Subcommands) -> None:
    p = add_command(sub, "run", cmd_run, help="run the appliance daemon (what systemd starts)")
    add_config(p)

    p = add_command(sub, "status", cmd_status, help="what the running daemon is doing")
    _add_socket(p)

    p = add_command(sub, "press", cmd_press, help="press a panel button on the running daemon")
    p.add_argument("button", help="one of: " + ", ".join(BUTTON_NAMES))
    p.add_argument("--long", action="store_true", help="a long press (GENRE: backwards)")
    _add_socket(p)

    p = add_command(
        sub, "monitor", cmd_monitor, help="print the daemon's events live, until Ctrl-C"
    )
    _add_socket(p)

    p = add_command(sub, "config", cmd_config, help="print the effective configuration")
    add_config(p)

    p = add_command(
        sub,
        "publish",
        cmd_publish,
        help="publish the compositions the daemon queued (what deepkeys-publish.service runs)",
    )
    add_config(p)

    p = add_command(
        sub, "sim", cmd_sim, help="the daemon on a desktop, played from the computer keyboard"
    )
    add_config(p)
    p.add_argument("--wav", metavar="FILE", help="write the sound to this WAV file instead")


def _add_socket(p: argparse.ArgumentParser) -> None:
    add_config(p)
    p.add_argument("--socket", metavar="PATH", help="control socket (default: paths.socket)")


def cmd_run(args: argparse.Namespace) -> int:
    from deepkeys.device.appliance.daemon import run_daemon
    from deepkeys.device.config import load_config

    return run_daemon(load_config(args.config))


def _client(args: argparse.Namespace) -> ControlClient:
    """A client for ``--socket``, or for the configured socket."""
    from deepkeys.device.adapters.control import ControlClient
    from deepkeys.device.config import load_config

    path = args.socket or load_config(args.config).paths.socket
    return ControlClient(path)


def _ask(args: argparse.Namespace, cmd: str, **fields: Any) -> dict:
    """The daemon's reply to ``cmd``; a refusal is a :class:`UserError`."""
    reply = _client(args).request(cmd, **fields)
    if not reply.get("ok"):
        raise UserError(reply.get("error", "the daemon refused"))
    return reply


def cmd_status(args: argparse.Namespace) -> int:
    reply = _ask(args, "status")
    reply.pop("ok", None)
    for line in format_status(reply):
        print(line)
    return 0


def format_status(status: dict) -> list[str]:
    """The status dict as aligned ``key: value`` lines; nested dicts become ``a.b``.

    >>> format_status({"state": "idle", "audio": {"underruns": 0}})
    ['state           idle', 'audio.underruns 0']
    """
    flat: list[tuple[str, object]] = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict) and value and prefix != "midi.counts":
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, dict):
            flat.append((prefix, " ".join(f"{k}={v}" for k, v in value.items()) or "-"))
        elif isinstance(value, list):
            flat.append((prefix, ", ".join(map(str, value)) or "-"))
        else:
            flat.append((prefix, "-" if value is None else value))

    walk("", status)
    width = max((len(k) for k, _ in flat), default=0)
    return [f"{k:<{width}} {v}" for k, v in flat]


def cmd_press(args: argparse.Namespace) -> int:
    if args.button not in BUTTON_NAMES:
        raise UserError(f"unknown button {args.button!r} (known: {', '.join(BUTTON_NAMES)})")
    _ask(args, "press", button=args.button, kind="long" if args.long else "press")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    stream = _client(args).stream()
    try:
        for item in stream:
            print(" ".join(f"{k}={_monitor_value(v)}" for k, v in item.items()), flush=True)
    except KeyboardInterrupt:
        return 0
    finally:
        stream.close()
    raise UserError("the daemon closed the monitor stream (it stopped?)")


def _monitor_value(value: object) -> str:
    """One event field for a ``key=value`` line: floats to three decimals, text with
    spaces (or none) quoted.

    >>> [_monitor_value(v) for v in (0.25, "idle", "two words", "")]
    ['0.250', 'idle', "'two words'", "''"]
    """
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return text if text and not any(c.isspace() for c in text) else repr(text)


def cmd_config(args: argparse.Namespace) -> int:
    """Print the effective configuration; exit 2 when it names a genre not installed."""
    from deepkeys.device.appliance.state import Appliance
    from deepkeys.device.config import effective_config_text, load_config
    from deepkeys.device.generation.library import genres_in

    print(effective_config_text(args.config), end="")
    cfg = load_config(args.config)
    problem = Appliance.default_genre_problem(
        cfg.player.default_genre, list(genres_in(cfg.paths.models))
    )
    if problem:
        raise UserError(problem)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from deepkeys.device.appliance.publish import SPOOL_ENV, drain, spool_from_env
    from deepkeys.device.config import load_config

    spool = spool_from_env()
    if spool is None:
        raise UserError(
            f"no publish queue: {SPOOL_ENV} is not set (deepkeys-publish.service sets it; "
            "without systemd the daemon runs publish.command itself)"
        )
    done = drain(load_config(args.config), spool)
    print(done.line())
    return 1 if done.refused or done.failed else 0


def cmd_sim(args: argparse.Namespace) -> int:
    from deepkeys.device.appliance.sim import run_sim
    from deepkeys.device.config import load_config

    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise UserError("'deepkeys sim' needs a terminal")
    return run_sim(load_config(args.config), wav=args.wav)
