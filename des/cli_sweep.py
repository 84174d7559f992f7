"""The ``des sweep`` command: many ``des run`` points from one sweep file, into a table.

``des sweep SWEEP.yaml`` reads the sweep (:mod:`des.sweep.spec`), builds every point's
system and model to check each axis value before anything runs, then runs the points
(:mod:`des.sweep.runner`: local processes, or a Dask cluster with ``--scheduler``) and
writes one CSV row per point in point order (:mod:`des.sweep.output`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from des.errors import DesError

#: Seconds between two redraws of the progress line.
PROGRESS_EVERY_S = 0.2


def add_sweep_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``des sweep`` on the main CLI's ``subparsers``."""
    from des.cli_args import output_path, positive_int, positive_seconds
    from des.sweep.runner import DEFAULT_TIMEOUT_S

    parser = subparsers.add_parser(
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
    parser.add_argument("--dry-run", action="store_true", help="check every point and print how many; run none")
    parser.add_argument("--no-parquet", action="store_true", help="write no Parquet copy")
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    return parser


# --------------------------------------------------------------------------- checks


def _point_spec(run: dict[str, Any], system: tuple, model: tuple):
    from des.cli_run import PointSpec

    return PointSpec(**run, system_overrides=tuple(system), model_overrides=tuple(model))


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


class _Checker:
    """Builds systems and models once per distinct (file, overrides)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def check(self, spec) -> None:
        from des.cli_run import point_model, point_system

        system_key = _key("system", spec.system, spec.system_overrides)
        if system_key not in self.seen:
            point_system(spec)
            self.seen.add(system_key)
        model_key = _key("model", spec.model, spec.model_overrides)
        if model_key not in self.seen:
            point_model(spec)
            self.seen.add(model_key)


def point_specs(sweep) -> list:
    """Every point's :class:`~des.cli_run.PointSpec`, each system and model built once.

    Checks the base alone, then each axis value on the base alone (so an error names the
    axis and the value), then every point (naming the point and its axis values).

    Raises
    ------
    DesError
        For an unknown field (with the nearest name), a value of the wrong type, an
        unknown preset or a combination that cannot be built.
    """
    checker = _Checker()
    try:
        checker.check(_spec_of(_base_point(sweep), sweep))
    except DesError as exc:
        raise DesError(f"{sweep.source}: base: {exc}") from None
    for position, axis in enumerate(sweep.axes):
        for value in axis.values:
            single = _base_point(sweep, position, value)
            try:
                checker.check(_spec_of(single, sweep))
            except DesError as exc:
                raise DesError(f"{sweep.source}: axis '{axis.path}' value {value!r}: {exc}") from None
    specs = []
    for point in sweep.points():
        spec = _spec_of(point, sweep)
        try:
            checker.check(spec)
        except DesError as exc:
            values = ", ".join(f"{p}={v!r}" for p, v in zip(sweep.axis_paths, point.values, strict=True))
            raise DesError(f"{sweep.source}: point {point.index} ({values}): {exc}") from None
        specs.append(spec)
    return specs


def _base_point(sweep, position: int | None = None, value: Any = None):
    """The base scenario alone, or with one axis set to ``value``."""
    from des.sweep.spec import SweepSpec

    axes = () if position is None else (dataclasses.replace(sweep.axes[position], values=(value,)),)
    return SweepSpec(sweep.source, sweep.base_dir, sweep.base, axes, "grid").points()[0]


def _spec_of(point, sweep):
    from des.sweep.spec import run_options

    return _point_spec(run_options(point, sweep.base_dir), point.system_overrides, point.model_overrides)


# --------------------------------------------------------------------------- progress


class _Progress:
    """One self-overwriting line on stderr: points done, errors, rate, time left."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.done = 0
        self.errors = 0
        self.start = time.perf_counter()
        self.drawn = 0.0

    def update(self, ok: bool) -> None:
        self.done += 1
        self.errors += not ok
        now = time.perf_counter()
        if self.enabled and (now - self.drawn >= PROGRESS_EVERY_S or self.done == self.total):
            self.drawn = now
            rate = self.done / max(now - self.start, 1e-9)
            left = (self.total - self.done) / rate
            sys.stderr.write(f"\rdes sweep: {self.done}/{self.total} points, {self.errors} errors, "
                             f"{rate:.1f} points/s, about {left:.0f} s left  ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            sys.stderr.write("\n")
            sys.stderr.flush()


# --------------------------------------------------------------------------- command


def sweep_command(args) -> int:
    """Run ``des sweep`` from parsed arguments; returns the exit status."""
    from des.cli_run import PointSpec
    from des.sweep.output import (
        PARAM_COLUMNS,
        RESULT_COLUMNS,
        OrderedCsvWriter,
        cell,
        columns,
        read_done,
        result_cells,
        write_parquet,
        write_sidecar,
    )
    from des.sweep.runner import run_points
    from des.sweep.spec import load_sweep

    sweep = load_sweep(args.sweep)
    out = args.out if args.out is not None else Path(args.sweep.stem + ".csv")
    if out.suffix == ".parquet":
        raise DesError(f"--out {out}: give a .csv file; the Parquet copy is written beside it")
    specs = point_specs(sweep)
    points = sweep.points()
    if args.dry_run:
        print(f"{sweep.source}: {len(points)} points over {len(sweep.axes)} axes ({sweep.mode}), all built and checked")
        return 0
    header = columns(sweep)
    kept: list[list[str]] = []
    if args.resume and out.exists():
        index_of = {tuple(cell(v) for v in p.values): p.index for p in points}
        width = len(sweep.axes)
        kept = [row for row in read_done(out, sweep) if index_of.get(tuple(row[1:1 + width])) == int(row[0])]
    done = {int(row[0]) for row in kept}
    pending = [p for p in points if p.index not in done]
    defaults = {name: getattr(PointSpec(), name) for name in PARAM_COLUMNS}

    def on_result(position: int, result: dict[str, Any]) -> None:
        point = pending[position]
        params = {**defaults, **point.run}
        row = [point.index, *point.values, result["status"], result["error"], *(params[n] for n in PARAM_COLUMNS)]
        record = result["record"]
        metrics = result_cells(record) if record is not None else {}
        row += [metrics.get(name) for name in RESULT_COLUMNS]
        row.append(result["wall_s"])
        writer.add(point.index, [cell(v) for v in row])
        progress.update(result["status"] == "ok")

    write_sidecar(out, sweep)
    writer = OrderedCsvWriter(out, header, kept, [p.index for p in pending])
    progress = _Progress(len(pending), enabled=not args.quiet and sys.stderr.isatty())
    start = time.perf_counter()
    try:
        run_points([specs[p.index] for p in pending], on_result, jobs=args.jobs,
                   scheduler=args.scheduler, timeout_s=args.timeout_s)
    finally:
        progress.close()
        writer.close()
    wall_s = time.perf_counter() - start
    parquet = None if args.no_parquet else write_parquet(out)
    where = f"on {args.scheduler}" if args.scheduler else f"on {min(args.jobs, max(len(pending), 1))} process(es)"
    resumed = f", {len(kept)} already done" if kept else ""
    print(f"{len(pending)} points run {where} in {wall_s:.2f} s ({progress.done - progress.errors} ok, "
          f"{progress.errors} errors{resumed}); wrote {out}" + (f" and {parquet}" if parquet else ""))
    return 0
