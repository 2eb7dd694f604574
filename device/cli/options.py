"""What the command groups share: registering a subcommand with its handler, and the
options that several groups take (``--models``, ``--config``).

Each group module (compose, measure, appliance, maintenance, host) has ``add_parsers(sub)``,
which registers its subcommands through :func:`add_command`; ``main`` then runs
``args.handler(args)``. Nothing here imports more than argparse, so ``deepkeys --help``
stays fast.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from deepkeys.device.config import CLOCK_SEED
from deepkeys.device.errors import UserError

#: What ``add_subparsers()`` returns; argparse gives the type no public name.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
#: A subcommand's handler: the parsed arguments in, the exit status out.
Handler: TypeAlias = Callable[[argparse.Namespace], int]


def add_command(
    sub: Subcommands, name: str, handler: Handler, help: str | None = None
) -> argparse.ArgumentParser:
    """Add subcommand ``name``, run by ``handler``; without ``help`` it is left out of
    ``deepkeys --help`` (argparse lists a subcommand as soon as ``help`` is passed at all).

    >>> sub = argparse.ArgumentParser(prog="x").add_subparsers(dest="command")
    >>> p = add_command(sub, "hello", lambda args: 0, help="say hello")
    >>> p.parse_args([]).handler(argparse.Namespace())
    0
    """
    p = sub.add_parser(name, help=help) if help is not None else sub.add_parser(name)
    p.set_defaults(handler=handler)
    return p


def add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models", metavar="DIR", type=existing_folder, help="look for genre models here first"
    )


# Argument types. They raise UserError, which argparse lets through (it would turn a
# ValueError into a usage screen), so that a bad value is the CLI's usual one line, exit 2.
def existing_folder(text: str) -> Path:
    """A folder that exists.

    >>> existing_folder("/nonexistent")
    Traceback (most recent call last):
    ...
    deepkeys.device.errors.UserError: /nonexistent: no such folder
    """
    path = Path(text)
    if not path.is_dir():
        raise UserError(f"{text}: {'not a folder' if path.exists() else 'no such folder'}")
    return path


def seed(text: str) -> int:
    """``--seed``: a whole number from 0, or -1 for one from the clock.

    >>> seed("7"), seed("-1")
    (7, -1)
    >>> seed("-2")
    Traceback (most recent call last):
    ...
    deepkeys.device.errors.UserError: --seed -2: not a whole number from 0, nor -1 (from the clock)
    """
    try:
        value = int(text)
    except ValueError:
        value = CLOCK_SEED - 1
    if value < CLOCK_SEED:
        raise UserError(f"--seed {text}: not a whole number from 0, nor -1 (from the clock)")
    return value


def temperature(text: str) -> float:
    """``--temperature``: a finite number from 0 (0 = always the likeliest note).

    >>> temperature("0.8")
    0.8
    >>> temperature("nan")
    Traceback (most recent call last):
    ...
    deepkeys.device.errors.UserError: --temperature nan: not a number from 0 (0 = likeliest notes)
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise UserError(f"--temperature {text}: not a number from 0 (0 = likeliest notes)")
    return value


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $DEEPKEYS_CONFIG or /etc/deepkeys/config.toml)",
    )
