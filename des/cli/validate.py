"""``des validate collectives|operators``: the simulator against real measurements.

``des validate collectives [--stride K] [--verbose] [--json]`` simulates every
all-reduce row of the calibration tables that a preset system reproduces and prints
simulated against measured with the error per table and size band, and each table's
noise floor (``--verbose``: each call's algorithm, protocol and channels); ``des validate
operators [--device D] [--data PATH ...] [--runtime R] [--json]`` compares a device's
own operator tables with the mapper, per file and per operator family
(:mod:`des.validate`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from des.cli.args import positive_int


def add_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``des validate`` on the main parser's ``commands``."""
    validate = commands.add_parser("validate", help="compare the simulator with real measurements")
    what = validate.add_subparsers(dest="what", metavar="WHAT", parser_class=type(validate))
    what.required = True
    collectives = what.add_parser("collectives", help="all-reduce latency vs the calibration tables")
    collectives.add_argument("--stride", type=positive_int, default=1, metavar="K", help="compare every K-th row only (default 1: all)")
    collectives.add_argument("--verbose", action="store_true", help="also show each call's algorithm, protocol and channels")
    collectives.add_argument("--json", action="store_true", help="print one JSON object")
    collectives.set_defaults(func=run_collectives)
    operators = what.add_parser("operators", help="compare the mapper with a device's operator measurements")
    operators.add_argument(
        "--data", "--calibration-dir", dest="calibration_dir", nargs="+", default=None, metavar="PATH",
        help="folders holding <device>_<op>.csv tables, or table files (default: $DES_CALIBRATION_DIR"
        " or ../shared/calibration beside the checkout)",
    )
    operators.add_argument("--device", default="a100", help="device preset or YAML (default a100)")
    operators.add_argument("--runtime", default="eager", help="runtime profile (default eager)")
    operators.add_argument("--json", action="store_true", help="print one JSON object")
    operators.set_defaults(func=run_operators)
    return validate


def run_collectives(args: argparse.Namespace) -> int:
    """Print every compared row and the error per table; return 0."""
    from dataclasses import asdict

    from des.validate.collectives import SIZE_BANDS, format_report, validate_collectives
    from topologies import load_system

    report = validate_collectives(load_system, stride=args.stride)
    if args.json:
        bands = [label for label, _low, _high in SIZE_BANDS]

        def summary(dataset, measure=report.mape):
            by_band = {band: measure(dataset, band) for band in bands}
            return {"all": measure(dataset), "bands": {k: v for k, v in by_band.items() if v == v}}

        print(json.dumps({"rows": [dict(asdict(row), band=row.band) for row in report.rows],
                          "mape": {name: summary(name) for name in report.datasets()},
                          "mape_all": summary(None),
                          "floor": {name: summary(name, report.floor) for name in report.datasets()},
                          "floor_all": summary(None, report.floor),
                          "skipped": report.skipped}, sort_keys=True))
    else:
        print(format_report(report, verbose=args.verbose))
    return 0


def run_operators(args: argparse.Namespace) -> int:
    """Print the table and the MAPE per file (or one JSON object); return 0."""
    from dataclasses import asdict

    from des.validate.operators import format_validation, validate_operators
    from topologies import load_device

    device = load_device(args.device)
    report = validate_operators(device, args.calibration_dir, args.runtime)
    if args.json:
        print(json.dumps(asdict(report), sort_keys=True))
    else:
        print(format_validation(report))
    return 0
