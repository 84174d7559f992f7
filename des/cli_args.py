"""Argument types and options shared by the ``des`` commands.

Each type turns one command-line word into a value or raises
:class:`argparse.ArgumentTypeError`, which argparse reports as a usage error (exit
status 2) before anything runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


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


def byte_size(text: str) -> float:
    """argparse type: a byte count such as ``1048576``, ``64MiB`` or ``1 GB``."""
    from des.units import parse_quantity

    try:
        value = parse_quantity(text if not text.isdigit() else int(text), "bytes")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text}")
    return value


def output_path(text: str) -> Path:
    """argparse type for a file to write: its folder must exist (checked before running)."""
    path = Path(text)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: folder {parent} does not exist")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: it is a directory")
    return path


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
