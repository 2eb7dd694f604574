"""The ``deepkeys`` command: one entry point, one subcommand per job.

Device subcommands run with the device install alone. Host subcommands (train,
export, evaluate) live in ``deepkeys.host`` and are imported only when called, so
the device never loads TensorFlow; without the host extra they say what to
install.

User errors are one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from deepkeys.device.cli import appliance, compose, host, maintenance, measure
from deepkeys.device.errors import UserError

#: The command groups, in the order ``deepkeys --help`` lists their subcommands.
GROUPS = (compose, measure, appliance, maintenance, host)


def build_parser() -> argparse.ArgumentParser:
    """Every group's subcommands; each parser's ``handler`` default is what runs it."""
    parser = argparse.ArgumentParser(prog="deepkeys", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its exit status, 2 for a user error, 130 for Ctrl-C."""
    try:
        args = build_parser().parse_args(argv)  # an argument type's UserError is one line too
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="level=%(levelname)s logger=%(name)s %(message)s",
        )
        return args.handler(args) or 0
    except UserError as exc:
        print(f"deepkeys: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
