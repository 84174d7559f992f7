"""Argument types and options shared by the ``des`` commands.

Each type turns one command-line word into a value or raises
:class:`argparse.ArgumentTypeError`, which argparse reports as a usage error (exit
status 2) before anything runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from des.errors import DesError


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_seconds(text: str) -> float:
    """argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def byte_size(text: str) -> int:
    """argparse type: a whole number of bytes such as ``1048576``, ``64MiB`` or ``1 GB``."""
    from des.units import parse_quantity

    try:
        value = parse_quantity(text if not text.isdigit() else int(text), "bytes")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text}")
    if value != int(value):
        raise argparse.ArgumentTypeError(f"size must be a whole number of bytes, got {text} ({value:g} B)")
    return int(value)


def output_path(text: str) -> Path:
    """argparse type for a file to write: checked writable before anything runs."""
    from des.outputs import check_writable

    try:
        return check_writable(text)
    except DesError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_fault_options(parser: argparse.ArgumentParser) -> None:
    """``--fail`` and ``--degrade`` (repeatable), shared by ``des collective`` and ``des run``."""
    parser.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="LINK_OR_NODE[@TIME_S]",
        help="remove a link (A-B, as 'des topology show' lists it) or a device or switch, "
        "before the run or at simulated time TIME_S (repeatable)",
    )
    parser.add_argument(
        "--degrade",
        action="append",
        default=[],
        metavar="LINK=FACTOR[@TIME_S]",
        help="multiply a link's bandwidth (or every link of a node) by FACTOR > 0 (repeatable)",
    )


def add_simulation_limits(parser: argparse.ArgumentParser) -> None:
    """``--max-pieces``: the most piece transfers one collective may simulate."""
    parser.add_argument(
        "--max-pieces",
        type=positive_int,
        metavar="N",
        help="most piece transfers one collective may simulate before it is refused "
        "(default: $DES_MAX_PIECE_TRANSFERS or 50,000,000)",
    )
