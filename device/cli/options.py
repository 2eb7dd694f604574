"""What the command groups share: registering a subcommand with its handler, and the
options that several groups take (``--models``, ``--config``).

Each group module (compose, measure, appliance, maintenance, host) has ``add_parsers(sub)``,
which registers its subcommands through :func:`add_command`; ``main`` then runs
``args.handler(args)``. Nothing here imports more than argparse, so ``deepkeys --help``
stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

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
    p.add_argument("--models", metavar="DIR", help="look for genre models here first")


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $DEEPKEYS_CONFIG or /etc/deepkeys/config.toml)",
    )
