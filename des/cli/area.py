"""The ``des area`` command: die area and cost of a device.

``des area DEVICE [--process N7] [--memory hbm2e|hbm3|ddr5|lpddr5|gddr6] [--no-harvest]
[--yield-model murphy|poisson|negative-binomial] [--json]`` prints the area breakdown by
component, dies per wafer, yield and cost; ``--json`` prints one object with
``total_mm2``, ``breakdown_mm2``, ``cost_usd``, ``cost_breakdown_usd``, ``die_yield``,
``dies_per_wafer`` and the inputs used. DEVICE is a preset or a device YAML path. The
main parser registers it with :func:`add_command`; bad input raises
:class:`~des.errors.DesError`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``des area`` on the main parser's ``commands``."""
    from des.area import MEMORY_TECHNOLOGIES, PROCESS_NODES, YIELD_MODELS

    parser = commands.add_parser(
        "area",
        help="estimate a device's die area and cost",
        description="Die area by component (cores, L2, interconnect, DRAM and link PHYs, "
        "uncore) and cost (wafer price, dies per wafer, yield, DRAM, interposer).",
    )
    parser.add_argument("device", metavar="DEVICE", help="device preset or path to a device YAML file")
    parser.add_argument(
        "--process",
        metavar="NODE",
        help=f"process node: {', '.join(PROCESS_NODES)} (default: the product's, else N7)",
    )
    parser.add_argument(
        "--memory",
        metavar="TECH",
        help=f"DRAM technology: {', '.join(MEMORY_TECHNOLOGIES)} (default: the product's, else hbm2e)",
    )
    parser.add_argument(
        "--no-harvest",
        action="store_true",
        help="count only the enabled units, not the physical die of a harvested product",
    )
    parser.add_argument(
        "--yield-model", default="murphy", metavar="MODEL", help=f"{', '.join(YIELD_MODELS)} (default murphy)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_area)
    return parser


def run_area(args: argparse.Namespace) -> int:
    """Run ``des area``: print the breakdown or, with ``--json``, one JSON object; return 0."""
    from des.area import area_and_cost, format_area_and_cost
    from topologies import load_device

    device = load_device(args.device)
    result = area_and_cost(
        device, args.process, args.memory, harvest=not args.no_harvest, yield_model=args.yield_model
    )
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(format_area_and_cost(result))
    return 0
