"""``deepkeys train``, ``export`` and ``evaluate``: parsed here, run by ``deepkeys.host``.

The host commands need TensorFlow and music21, which the device install lacks; so
``deepkeys.host`` is imported only when one of them runs (or the float32 bench), and
without the host extra they say what to install instead.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from deepkeys.device.cli.options import Subcommands, add_command, add_models, temperature
from deepkeys.device.errors import UserError

HOST_EXTRA_HINT = "pip install 'deepkeys[host]'"


def add_parsers(sub: Subcommands) -> None:
    p = add_command(
        sub,
        "train",
        run_host_command,
        help="[host] train a genre model (chorale, an MMA style, or "
        "your own MIDI files with --data)",
    )
    p.add_argument("--genre", required=True)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--run-dir", type=Path, help="default: runs/<genre>")
    p.add_argument(
        "--adversarial-weight",
        type=float,
        metavar="W",
        help="weight of the critic's term in the generator's loss (default 0.05; "
        "0 trains on reconstruction alone, for the GAN ablation)",
    )
    p.add_argument(
        "--workers",
        type=_at_least_one,
        default=1,
        metavar="N",
        help="train on N local worker processes together (MultiWorkerMirroredStrategy); "
        "on a cluster, run this command on each node with its TF_CONFIG instead",
    )
    _add_data(p)

    p = add_command(
        sub,
        "prepare",
        run_host_command,
        help="[host] cut a folder of MIDI files into training shards once, on Dask "
        "(local processes, or a cluster); train --data reads the result",
    )
    p.add_argument("folder", type=Path, metavar="FOLDER", help="your MIDI files")
    p.add_argument("--out", type=Path, required=True, help="the prepared folder (reused)")
    p.add_argument(
        "--cluster",
        metavar="ADDR",
        help="a running Dask scheduler, e.g. tcp://10.0.0.1:8786 (default: "
        "$DASK_SCHEDULER_ADDRESS, else local processes)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local processes (default: one per CPU; 0: in this process, without Dask)",
    )
    p.add_argument(
        "--melody-track",
        metavar="NAME",
        help="the melody track's name (default: the top monophonic line)",
    )

    p = add_command(
        sub,
        "train-harmony",
        run_host_command,
        help="[host] train, measure and export the shared melody-to-chords model "
        "(POP909 and the chorales)",
    )
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path, default=Path("runs/harmony"))
    p.add_argument("--out", type=Path, default=Path("models"))

    p = add_command(
        sub, "export", run_host_command, help="[host] int8 LiteRT model + card from a training run"
    )
    p.add_argument("--genre", required=True)
    p.add_argument("--run-dir", type=Path, help="default: runs/<genre>")
    p.add_argument("--out", type=Path, default=Path("models"))
    _add_data(p)

    p = add_command(
        sub,
        "evaluate",
        run_host_command,
        help="[host] metrics on held-out data vs real and shuffled; "
        "several --genre also compare the genres",
    )
    p.add_argument(
        "--genre",
        required=True,
        action="append",
        help="a genre to evaluate; repeat to tell genres apart",
    )
    _add_data(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=temperature, help="default: the card's")
    add_models(p)

    p = add_command(
        sub,
        "evaluate-harmony",
        run_host_command,
        help="[host] do the parts play the song's chords? held-out phrases through each "
        "genre with the harmony model's, the rule's and the song's own chords",
    )
    p.add_argument("--genre", required=True, action="append", help="repeat for more genres")
    p.add_argument("--phrases", type=_at_least_one, default=48, help="8-bar phrases (default 48)")
    p.add_argument(
        "--source",
        action="append",
        choices=("pop909", "chorale", "folk"),
        help="whose held-out test phrases; repeat for more (default pop909)",
    )
    add_models(p)


def _at_least_one(text: str) -> int:
    """An argparse type: a count of 1 or more (argparse says so in one line, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=Path,
        metavar="FOLDER",
        help="a folder of your own MIDI files, or one 'deepkeys prepare' made "
        "(default: the genre's shipped recipe)",
    )
    p.add_argument(
        "--melody-track",
        metavar="NAME",
        help="with --data: the melody track's name (default: the top monophonic line)",
    )


def run_host_command(args: argparse.Namespace) -> int:
    """Run ``deepkeys.host.commands.<command>``, or say which host libraries are missing."""
    from deepkeys.device.generation.card import check_genre_name

    genres = getattr(args, "genre", None) or []
    for genre in genres if isinstance(genres, list) else [genres]:
        check_genre_name(genre)  # it names the run folder, the card and the model file
    missing = [m for m in ("tensorflow", "music21") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"'deepkeys {args.command}' runs on the workstation and needs "
            f"{', '.join(missing)}: {HOST_EXTRA_HINT}"
        )
    return getattr(host_commands(), args.command.replace("-", "_"))(args) or 0


def host_commands() -> ModuleType:
    """``deepkeys.host.commands``, imported with TensorFlow's start-up chatter turned down,
    since it would bury our key=value lines."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.WARNING)  # a line per checkpoint otherwise
    warnings.filterwarnings("ignore", module="tensorflow")
    warnings.filterwarnings("ignore", module="keras")
    return importlib.import_module("deepkeys.host.commands")
