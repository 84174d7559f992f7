"""The ``des sweep`` command: many ``des run`` points from one sweep file, into a table.

``des sweep SWEEP.yaml`` reads the sweep (:mod:`des.sweep.spec`), builds every point's
system and model to check each axis value before anything runs
(:mod:`des.sweep.check`), then runs the points (:mod:`des.sweep.runner`: local
processes, or a Dask cluster with ``--scheduler``) and writes one CSV row per point in
point order (:mod:`des.sweep.output`). The output file is created, or an existing one
replaced, only when the first point has a result: a sweep that cannot start (no
scheduler, no worker, a malformed address) leaves it exactly as it was.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from des.cli.args import output_path, positive_int, positive_seconds
from des.errors import DesError


def add_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``des sweep`` on the main parser's ``commands``."""
    from des.sweep.runner import DEFAULT_STALL_TIMEOUT_S, DEFAULT_TIMEOUT_S

    parser = commands.add_parser(
        "sweep",
        help="run many points (a grid or zip of spec fields) into a CSV table",
        description=(
            "Run every point of a sweep file (a base des run scenario plus axes of dotted spec "
            "fields) on local processes or a Dask cluster; one CSV row per point."
        ),
    )
    parser.add_argument("sweep", type=Path, metavar="SWEEP.yaml", help="the sweep file")
    parser.add_argument("--out", type=output_path, metavar="FILE.csv",
                        help="results table (default: the sweep file's name with .csv, in the working directory); "
                             "a Parquet copy FILE.parquet is written beside it when pyarrow is installed")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                        help="local worker processes (default: the CPU count; 1 runs in this process)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on the Dask distributed scheduler at ADDRESS (e.g. tcp://10.0.0.5:8786) instead")
    parser.add_argument("--resume", action="store_true", help="skip the points already in --out and append the rest")
    parser.add_argument("--timeout-s", type=positive_seconds, default=DEFAULT_TIMEOUT_S, metavar="T",
                        help=f"seconds to wait for the scheduler, and for its first worker (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--stall-timeout-s", type=positive_seconds, default=DEFAULT_STALL_TIMEOUT_S, metavar="T",
                        help="on Dask, stop when no point finishes for T seconds (every worker lost); "
                             f"rows done are kept for --resume (default {DEFAULT_STALL_TIMEOUT_S:g})")
    parser.add_argument("--dry-run", action="store_true", help="check every point and print how many; run none")
    parser.add_argument("--no-parquet", action="store_true", help="write no Parquet copy")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=sweep_command)
    return parser


class _LazyTable:
    """The output table, created (with its sidecar) when the first row arrives."""

    def __init__(self, out: Path, sweep: Any, header: list[str], kept: list, pending: list[int]) -> None:
        self.out, self.sweep, self.header, self.kept, self.pending = out, sweep, header, kept, pending
        self.writer = None

    def add(self, index: int, row: list[str]) -> None:
        from des.sweep.output import OrderedCsvWriter, write_sidecar

        if self.writer is None:
            write_sidecar(self.out, self.sweep)
            self.writer = OrderedCsvWriter(self.out, self.header, self.kept, self.pending)
        self.writer.add(index, row)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def sweep_command(args: argparse.Namespace) -> int:
    """Run ``des sweep`` from parsed arguments; returns the exit status."""
    from des.outputs import check_writable
    from des.progress import Progress
    from des.study import PointSpec
    from des.sweep.check import point_specs
    from des.sweep.output import (
        cell,
        columns,
        param_columns,
        read_done,
        result_cells,
        result_columns,
        write_parquet,
    )
    from des.sweep.runner import check_address, run_points
    from des.sweep.spec import load_sweep
    from des.units import format_count

    sweep = load_sweep(args.sweep)
    out = args.out if args.out is not None else check_writable(args.sweep.stem + ".csv", "--out")
    if out.suffix == ".parquet":
        raise DesError(f"--out {out}: give a .csv file; the Parquet copy is written beside it")
    if args.scheduler:
        check_address(args.scheduler)
    specs = point_specs(sweep)
    points = sweep.points()
    if args.dry_run:
        print(f"{sweep.source}: {format_count(len(points), 'point')} over {format_count(len(sweep.axes), 'axis', 'axes')} ({sweep.mode}), all built and checked")
        return 0
    header = columns(sweep)
    kept: list[list[str]] = []
    if args.resume and out.exists():
        index_of = {tuple(cell(v) for v in p.values): p.index for p in points}
        width = len(sweep.axes)
        kept = [row for row in read_done(out, sweep) if index_of.get(tuple(row[1:1 + width])) == int(row[0])]
    done = {int(row[0]) for row in kept}
    pending = [p for p in points if p.index not in done]
    if not pending:
        print(f"0 points run: all {len(kept)} points are already in {out}, left as it was")
        return 0
    from des.serve.point import SERVE_DEFAULTS

    params_of, results_of = param_columns(sweep), result_columns(sweep)
    defaults = {name: getattr(PointSpec(), name) for name in params_of if "." not in name}
    defaults.update({f"serve.{name}": value for name, value in SERVE_DEFAULTS.items()})
    table = _LazyTable(out, sweep, header, kept, [p.index for p in pending])
    counts = {"ok": 0, "error": 0}

    def on_result(position: int, result: dict[str, Any]) -> None:
        point = pending[position]
        # The tokens as the phase uses them: decode ignores seq (PointSpec.tokens).
        params = {**defaults, **point.run, **specs[point.index].tokens,
                  **{f"serve.{name}": value for name, value in point.serve}}
        row = [point.index, *point.values, result["status"], result["error"], *(params[n] for n in params_of)]
        record = result["record"]
        metrics = result_cells(record) if record is not None else {}
        row += [metrics.get(name) for name in results_of]
        row.append(result["wall_s"])
        table.add(point.index, [cell(v) for v in row])
        counts[result["status"]] += 1
        progress.advance()

    start = time.perf_counter()
    progress = Progress("des sweep", unit="points", enabled=False if args.quiet else None)
    progress.start(len(pending))
    try:
        run_points([specs[p.index] for p in pending], on_result, jobs=args.jobs, scheduler=args.scheduler,
                   timeout_s=args.timeout_s, stall_timeout_s=args.stall_timeout_s)
    finally:
        progress.close()
        table.close()
    wall_s = time.perf_counter() - start
    parquet = None if args.no_parquet else write_parquet(out)
    where = f"on {args.scheduler}" if args.scheduler else f"on {format_count(min(args.jobs, max(len(pending), 1)), 'process', 'processes')}"
    resumed = f", {len(kept)} already done" if kept else ""
    print(f"{format_count(len(pending), 'point')} run {where} in {wall_s:.2f} s ({counts['ok']} ok, "
          f"{format_count(counts['error'], 'error')}{resumed}); wrote {out}" + (f" and {parquet}" if parquet else ""))
    return 0
