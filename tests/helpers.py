"""Plain helpers shared by several test modules (``from helpers import ...``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from des.cli import main
from des.errors import DesError
from des.mapper.schedule import TileSchedule, WaveGroup
from des.validate.calibration import calibration_dir, default_calibration_dir
from topologies import load_device

A100 = load_device("a100")
#: Every how many all-reduce calibration rows the suite simulates (all of them take
#: about 40 s on 2 cores; ``des validate collectives`` compares every row).
VALIDATION_STRIDE = 4


def calibration_path() -> Path:
    """The calibration folder as des finds it, or where it would be (it may be absent)."""
    try:
        return calibration_dir()
    except DesError:
        return default_calibration_dir()


def calibration_folder() -> Path:
    """The calibration folder as des finds it; skips the test, saying where it looked, if absent."""
    try:
        return calibration_dir()
    except DesError as exc:
        pytest.skip(str(exc))


def call(capsys, *argv):
    """Run ``des`` with ``argv``; (exit status, stdout, stderr), argparse exits included."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def schedule(*groups: WaveGroup, op_class: str = "matmul") -> TileSchedule:
    """A synthetic A100 tile schedule of ``groups``, its standalone time their replay."""
    return TileSchedule(
        operator="synthetic",
        device="a100",
        op_class=op_class,
        groups=tuple(groups),
        tiles=sum(g.count * g.units for g in groups),
        standalone_s=sum(g.count * g.wave_s(A100.dram_bandwidth_bytes_per_s) for g in groups),
    )
