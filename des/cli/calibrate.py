"""The ``des calibrate`` command: fit a device's efficiencies on its microbenchmarks.

``des calibrate DEVICE --data DIR_OR_FILE [...] [--out FILE] [--json]`` reads the
device's tables (``<device>_<op>.csv``, :mod:`des.calibrate`), fits what its kernels
achieve against its datasheet and writes the device YAML with a ``fitted:`` block (the
datasheet figures and their comments untouched) to ``--out`` (default
``<device>-calibrated.yaml``). It prints the fit, the error per file before and after,
warnings for parameters on their bounds and the files it ignored.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``des calibrate`` on the main parser's ``commands``."""
    parser = commands.add_parser(
        "calibrate",
        help="fit a device's achieved efficiencies and launch overheads on its microbenchmarks",
        description="Fit the fraction of its matrix and DRAM peaks a device's kernels reach and the "
        "eager runtime's launch overhead per operator class, from microbenchmark CSV files, and "
        "write the device YAML with them.",
    )
    parser.add_argument("device", metavar="DEVICE", help="device preset or path to a device YAML file")
    parser.add_argument("--data", nargs="+", required=True, metavar="PATH",
                        help="folders holding <device>_<op>.csv tables, or table files")
    parser.add_argument("--out", metavar="FILE", help="device YAML to write (default <device>-calibrated.yaml)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_calibrate)
    return parser


def run_calibrate(args: argparse.Namespace) -> int:
    """Run the fit, print it, write the YAML; return 0 (2 if the file cannot be written)."""
    from des.calibrate import calibrate, find_tables, fitted_yaml, format_result
    from des.cli.outputs import write_outputs
    from des.outputs import check_writable, write_text
    from des.specs import resolve_preset
    from topologies import DEVICE_DIR, load_device

    device = load_device(args.device)
    path = resolve_preset(args.device, DEVICE_DIR, "device")
    out = check_writable(args.out or f"{device.name}-calibrated.yaml", "--out")
    tables, ignored = find_tables(device.name, args.data)
    progress = (lambda line: print(f"des calibrate: {line}", file=sys.stderr)) if sys.stderr.isatty() else None
    result = calibrate(device, tables, ignored, progress=progress)
    if args.json:
        print(json.dumps({
            "device": result.device, "fitted": result.fitted.as_mapping(), "files": list(result.files),
            "ignored": list(result.ignored), "mape_before_pct": result.mape_before_pct,
            "mape_after_pct": result.mape_after_pct, "warnings": list(result.warnings), "notes": list(result.notes),
            "out": str(out),
        }, sort_keys=True))
    else:
        print(format_result(result))
    text = fitted_yaml(path.read_text(encoding="utf-8"), result)
    return write_outputs([(out, lambda target: write_text(target, text))], sys.stderr if args.json else sys.stdout)
