"""Benchmark: sweep throughput, local worker processes against serial.

A 200-point sweep of single-layer runs (GPT-3 1.3B prefill on a DGX A100: 25 prompt
lengths x TP 1, 2, 4, 8 x standard and Kraken) run by ``des sweep`` with ``--jobs 1``
(every point in the one process) and with ``--jobs N`` (a pool of N worker processes),
alternately, ``--repeats`` times each. Every run is a fresh ``python -m des sweep``
process with a fresh, empty ``DES_CACHE_DIR``, so each starts with cold mapper caches.
It reports points per second end to end (process start to exit: imports, checking all
points, the pool's start-up) and for the running phase alone (the time ``des sweep``
prints), medians over the repeats, the ratio pool / serial, and checks that both give
the same rows (apart from ``wall_s``).

Run from the repository root: ``python benchmarks/bench_sweep.py`` (see
benchmarks/README.md for options).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Prompt lengths: 25 of them, so 25 x 4 TP degrees x 2 architectures = 200 points.
SEQS = [64 * k for k in range(1, 26)]
TPS = [1, 2, 4, 8]
ARCHS = ["standard", "kraken"]
_RUN_TIME = re.compile(r" in ([0-9.]+) s ")


def sweep_document(points: int) -> dict:
    """The benchmark sweep, cut to ``points`` points (zip of the first ``points`` of the grid)."""
    grid = [(seq, tp, arch) for seq in SEQS for tp in TPS for arch in ARCHS]
    while len(grid) < points:
        grid += grid
    grid = grid[:points]
    return {
        "base": {"system": "dgx-a100", "model": "gpt3-1.3b", "layers": 1, "phase": "prefill"},
        "mode": "zip",
        "axes": {"seq": [g[0] for g in grid], "tp": [g[1] for g in grid], "arch": [g[2] for g in grid]},
    }


def run_once(sweep: Path, out: Path, jobs: int) -> tuple[float, float]:
    """One ``des sweep`` process: (end-to-end seconds, running-phase seconds)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="des-bench-cache-") as cache:
        env["DES_CACHE_DIR"] = cache
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "des", "sweep", str(sweep), "--out", str(out), "--jobs", str(jobs),
             "--quiet", "--no-parquet"],
            env=env, capture_output=True, text=True, check=False,
        )
        total_s = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"des sweep failed ({done.returncode}): {done.stderr.strip()}")
    match = _RUN_TIME.search(done.stdout)
    return total_s, float(match.group(1)) if match else float("nan")


def table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(handle)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200, help="points in the sweep (default 200)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the pool run (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mode (default 3; medians printed)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    times: dict[str, list[tuple[float, float]]] = {"serial": [], "pool": []}
    with tempfile.TemporaryDirectory(prefix="des-bench-sweep-") as folder:
        sweep = Path(folder) / "bench.yaml"
        sweep.write_text(yaml.safe_dump(sweep_document(args.points)))
        outs = {"serial": Path(folder) / "serial.csv", "pool": Path(folder) / "pool.csv"}
        for _ in range(args.repeats):
            times["serial"].append(run_once(sweep, outs["serial"], 1))
            times["pool"].append(run_once(sweep, outs["pool"], args.jobs))
        serial_rows, pool_rows = table(outs["serial"]), table(outs["pool"])
        same = serial_rows == pool_rows
        ok = sum(row["status"] == "ok" for row in pool_rows)

    def rate(mode: str, which: int) -> float:
        return args.points / statistics.median(t[which] for t in times[mode])

    result = {
        "points": args.points,
        "ok_points": ok,
        "jobs": args.jobs,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "same_rows": same,
        "serial_points_per_s": rate("serial", 0),
        "pool_points_per_s": rate("pool", 0),
        "serial_run_points_per_s": rate("serial", 1),
        "pool_run_points_per_s": rate("pool", 1),
        "runs_s": {mode: [[round(a, 3), round(b, 3)] for a, b in runs] for mode, runs in times.items()},
    }
    result["ratio"] = result["pool_points_per_s"] / result["serial_points_per_s"]
    result["run_ratio"] = result["pool_run_points_per_s"] / result["serial_run_points_per_s"]
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0 if same else 1
    print(f"sweep of {args.points} single-layer points (gpt3-1.3b prefill, dgx-a100, seq 64..1600, TP 1-8, "
          f"standard and kraken; {ok} ok); cpus: {os.cpu_count()}; each run a fresh process, cold caches")
    print(f"{'mode':<18}{'end to end':>14}{'running':>14}   runs (end to end / running, s)")
    for mode, label in (("serial", "serial (--jobs 1)"), ("pool", f"pool (--jobs {args.jobs})")):
        runs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in times[mode])
        print(f"{label:<18}{rate(mode, 0):>10.1f} p/s{rate(mode, 1):>10.1f} p/s   {runs}")
    print(f"ratio pool / serial: {result['ratio']:.2f} end to end, {result['run_ratio']:.2f} running "
          f"(medians of {args.repeats})")
    print(f"same rows (apart from wall_s): {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
