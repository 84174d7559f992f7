"""The ``des`` command: the parser, and dispatch to the command each subparser names.

Every command lives in its own module of :mod:`des.cli` with an ``add_command``
function that registers its parser and sets ``func`` to the function that runs it;
this module only builds the parser from them and calls ``args.func(args)``. Commands
parse and print; the work is done by the layers below (:mod:`des.study`,
:mod:`des.engine`, :mod:`des.sweep`...). Heavy modules are imported inside each
command, so start-up stays fast (matplotlib only when drawing).

Bad input raises :class:`~des.errors.DesError`, which becomes one line on stderr and
exit status 2; Ctrl-C stops cleanly with exit status 130; nothing half-written is left.
"""

from __future__ import annotations

import argparse
import logging
import sys

from des.cli import area, calibrate, collective, op, run, serve, sweep, topology, validate
from des.errors import DesError

logger = logging.getLogger("des")

EXIT_BAD_INPUT = 2
#: 128 + SIGINT, as shells report a program stopped by Ctrl-C.
EXIT_INTERRUPTED = 130

#: The command modules, in ``des --help`` order.
COMMANDS = (run, collective, topology, op, validate, calibrate, sweep, area, serve)


class _Parser(argparse.ArgumentParser):
    """argparse with our one-line error format (still exit status 2)."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(EXIT_BAD_INPUT, f"des: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser of ``des``."""
    parser = _Parser(
        prog="des",
        description="Discrete-event simulation of LLM inference on several accelerators.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeat for debug)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for module in COMMANDS:
        module.add_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``des`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="des: %(levelname)s: %(message)s")
    try:
        return args.func(args)
    except DesError as exc:
        print(f"des: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ndes: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
