"""Plain helpers shared by several test modules (``from helpers import ...``)."""

from __future__ import annotations

from des.cli import main
from des.mapper.schedule import TileSchedule, WaveGroup
from topologies import load_device

A100 = load_device("a100")


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
