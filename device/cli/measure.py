"""``deepkeys bench`` and ``deepkeys hil``: measuring the appliance and testing it on the rig.

Each benchmark is a ``bench`` subcommand with its own handler; plain ``deepkeys bench`` runs
them all. The e2e bench and ``hil`` need the test rig (JACK, pytest), which a device
install may lack: they say what to install rather than fail on an import.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from deepkeys.device.cli.host import HOST_EXTRA_HINT, host_commands
from deepkeys.device.cli.options import Subcommands, add_command, add_models
from deepkeys.device.errors import UserError

RIG_HINT = "pip install 'deepkeys[hil]' and apt install jackd2"
#: Plain ``deepkeys bench``: every benchmark in this order; with --quick, these fewer runs.
QUICK_RUNS = {
    "generate": ["--runs", "20"],
    "latency": ["--notes", "50"],
    "synth": ["--seconds", "1"],
    "startup": ["--runs", "1"],
}


def add_parsers(sub: Subcommands) -> None:
    _add_bench(sub)
    p = add_command(
        sub,
        "hil",
        cmd_hil,
        help="[test rig] the hardware-in-the-loop suite, here or on a "
        "device over SSH; arguments after -- go to pytest",
    )
    p.add_argument("--target", metavar="ssh://USER@HOST", help="run it on this device")
    p.add_argument("-F", "--ssh-config", metavar="FILE", help="ssh_config for ssh -F")
    p.add_argument(
        "--remote-prefix",
        default="/opt/deepkeys",
        metavar="PATH",
        help="the device's deepkeys checkout (default: /opt/deepkeys)",
    )
    p.add_argument(
        "--remote-python",
        metavar="PATH",
        help="the device's Python (default: PREFIX/.venv/bin/python)",
    )
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="-- PYTEST_ARGS")


def _add_bench(sub: Subcommands) -> None:
    p = add_command(
        sub, "bench", cmd_bench_all, help="measure speed on this machine (no WHAT: all of them)"
    )
    p.add_argument(
        "--quick", action="store_true", help="with no WHAT: fewer runs of each, for a smoke test"
    )
    bench = p.add_subparsers(dest="what", required=False, metavar="WHAT")
    b = add_command(
        bench, "generate", cmd_bench_generate, help="one generation: int8 LiteRT vs float32 Keras"
    )
    b.add_argument("--genre", default="chorale")
    b.add_argument("--runs", type=int, default=200)
    b.add_argument("--threads", type=int, default=1)
    add_models(b)
    b = add_command(
        bench,
        "latency",
        cmd_bench_latency,
        help="key to audio through the synth and the audio thread",
    )
    b.add_argument("--notes", type=int, default=500)
    b.add_argument("--period", type=int, default=128, help="frames per ALSA period")
    b.add_argument("--device", default="null", help="ALSA PCM (default: null, paced)")
    b = add_command(
        bench, "startup", cmd_bench_startup, help="start to READY and memory, as systemd starts it"
    )
    b.add_argument("--runs", type=int, default=5)
    b.add_argument("--config", help="default: a hardware-free config")
    b = add_command(
        bench, "synth", cmd_bench_synth, help="synth headroom: simultaneous voices x real time"
    )
    b.add_argument("--voices", type=int, default=32)
    b.add_argument("--seconds", type=float, default=10.0)
    b = add_command(
        bench,
        "e2e",
        cmd_bench_e2e,
        help="[test rig] key into JACK -> onset in the captured audio, through the whole daemon",
    )
    b.add_argument(
        "--period",
        type=int,
        action="append",
        metavar="FRAMES",
        help="JACK period, repeatable (default: 64 and 128)",
    )
    b.add_argument("--notes", type=int, default=200)
    b.add_argument("--out", type=Path, help="also write the markdown table here")
    b = add_command(
        bench,
        "workers",
        cmd_bench_host,
        help="[host] training steps per second with 1 and 2 local workers",
    )
    b.add_argument("--workers", type=int, action="append", metavar="N", help="default: 1, 2")
    b.add_argument("--files", type=int, default=40, help="generated songs to train on")
    b.add_argument("--steps", type=int, default=30, help="steps per epoch")
    b.add_argument("--epochs", type=int, default=3, help="the first is left out (tracing)")
    b = add_command(
        bench,
        "prepare",
        cmd_bench_host,
        help="[host] data preparation of generated MIDI files with 1 and 2 local workers",
    )
    b.add_argument(
        "--files", type=int, action="append", metavar="N", help="repeatable (default: 1000)"
    )
    b.add_argument("--workers", type=int, action="append", metavar="N", help="default: 1, 2")


def cmd_bench_all(args: argparse.Namespace) -> int:
    """Plain ``deepkeys bench``: each benchmark at its defaults (or fewer runs), a blank
    line after each table."""
    parser = argparse.ArgumentParser(prog="deepkeys")
    add_parsers(parser.add_subparsers(dest="command"))
    for what, fewer in QUICK_RUNS.items():
        one = parser.parse_args(["bench", what, *(fewer if args.quick else [])])
        one.handler(one)
        print()
    return 0


def cmd_bench_generate(args: argparse.Namespace) -> int:
    """int8 LiteRT here; float32 Keras beside it where the host tools are installed."""
    from deepkeys.device.maintenance.bench import bench_generate

    result = bench_generate(args.genre, runs=args.runs, threads=args.threads, models=args.models)
    if importlib.util.find_spec("tensorflow") is not None:
        host_commands().bench_float(result, runs=args.runs)
    else:
        print(f"float32 Keras: not measured here (needs the host tools: {HOST_EXTRA_HINT})")
    return 0


def cmd_bench_host(args: argparse.Namespace) -> int:
    """A workstation benchmark (``bench workers``, ``bench prepare``): needs the host extra."""
    missing = [m for m in ("tensorflow", "music21") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"'deepkeys bench {args.what}' needs {', '.join(missing)}: {HOST_EXTRA_HINT}"
        )
    return getattr(host_commands(), f"bench_{args.what}")(args)


def cmd_bench_latency(args: argparse.Namespace) -> int:
    from deepkeys.device.maintenance.bench import bench_latency

    bench_latency(notes=args.notes, period=args.period, device=args.device)
    return 0


def cmd_bench_startup(args: argparse.Namespace) -> int:
    from deepkeys.device.maintenance.bench import bench_startup

    bench_startup(runs=args.runs, config=args.config)
    return 0


def cmd_bench_synth(args: argparse.Namespace) -> int:
    from deepkeys.device.maintenance.bench import bench_synth

    bench_synth(voices=args.voices, seconds=args.seconds)
    return 0


def cmd_bench_e2e(args: argparse.Namespace) -> int:
    """The HIL rig's latency bench; it needs jackd2 and the test extra (JACK-Client)."""
    if importlib.util.find_spec("jack") is None:
        raise UserError(f"'deepkeys bench e2e' needs the test rig: {RIG_HINT}")
    if args.notes < 1:
        raise UserError(f"--notes must be at least 1, got {args.notes}")
    from deepkeys.hil.jackd import JackUnavailable
    from deepkeys.hil.latency import bench_e2e

    try:
        bench_e2e(tuple(args.period or (64, 128)), notes=args.notes, out=args.out)
    except JackUnavailable as exc:
        raise UserError(str(exc)) from None
    return 0


def cmd_hil(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("pytest") is None and args.target is None:
        raise UserError(f"'deepkeys hil' needs the test rig: {RIG_HINT}")
    from deepkeys.hil.target import run_hil

    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    return run_hil(
        pytest_args,
        args.target,
        prefix=args.remote_prefix,
        python=args.remote_python,
        ssh_config=args.ssh_config,
    )
