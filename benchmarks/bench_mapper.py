"""Benchmark of the mapper's search: cold (empty caches) and warm (cached) lookups.

For each of the 10 calibration GEMM shapes (M from ../shared/calibration/a100_matmul.csv,
N = K = 12288) and 8192^3 on the a100 preset: the median over ``--runs`` cold searches
(empty temporary cache directory, in-memory cache cleared), the median warm lookup
(memory hit) and disk lookup (memory cleared, file present), each against the targets of
issue 3 (cold <= 50 ms, warm <= 1 ms); and the peak traced memory of one cold search.

    python benchmarks/bench_mapper.py [--runs 7]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from des.mapper import clear_memory_cache, schedule_for  # noqa: E402
from des.operators import Matmul  # noqa: E402
from topologies import load_device  # noqa: E402

COLD_TARGET_S = 50e-3
WARM_TARGET_S = 1e-3
CALIBRATION = REPO.parent / "shared" / "calibration" / "a100_matmul.csv"
#: The M values of the calibration table, used when the table is not beside the checkout.
DEFAULT_M = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


def shapes() -> list[Matmul]:
    """The calibration GEMMs (N = K = 12288) and 8192^3."""
    if CALIBRATION.is_file():
        with CALIBRATION.open(newline="") as handle:
            ms = [int(row["m"]) for row in csv.DictReader(handle)]
    else:
        ms = list(DEFAULT_M)
    return [Matmul(m, 12288, 12288) for m in ms] + [Matmul(8192, 8192, 8192)]


def cold_s(device, op: Matmul, runs: int) -> tuple[float, float]:
    """Median search seconds and median wall seconds of ``runs`` cold lookups."""
    searches, walls = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            os.environ["DES_CACHE_DIR"] = folder
            clear_memory_cache()
            start = time.perf_counter()
            _, info = schedule_for(device, op)
            walls.append(time.perf_counter() - start)
            assert not info.cached
            searches.append(info.search_s)
    return statistics.median(searches), statistics.median(walls)


def warm_s(device, op: Matmul, runs: int) -> tuple[float, float]:
    """Median seconds of a memory hit and of a disk hit."""
    with tempfile.TemporaryDirectory() as folder:
        os.environ["DES_CACHE_DIR"] = folder
        clear_memory_cache()
        schedule_for(device, op)
        memory = []
        for _ in range(runs * 20):
            start = time.perf_counter()
            _, info = schedule_for(device, op)
            memory.append(time.perf_counter() - start)
            assert info.source == "memory"
        disk = []
        for _ in range(runs):
            clear_memory_cache()
            start = time.perf_counter()
            _, info = schedule_for(device, op)
            disk.append(time.perf_counter() - start)
            assert info.source == "disk"
    return statistics.median(memory), statistics.median(disk)


def peak_bytes(device, op: Matmul) -> int:
    """Peak traced memory of one cold search."""
    with tempfile.TemporaryDirectory() as folder:
        os.environ["DES_CACHE_DIR"] = folder
        clear_memory_cache()
        tracemalloc.start()
        try:
            schedule_for(device, op)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="cold runs per shape (median)")
    args = parser.parse_args()
    device = load_device("a100")
    saved = os.environ.get("DES_CACHE_DIR")
    import numpy  # noqa: F401  (imported once per process, not part of a search)

    start = time.perf_counter()
    cold_s(device, Matmul(100, 100, 100), 1)  # first-use costs (lazy imports)
    print(f"first search in this process (lazy imports): {(time.perf_counter() - start) * 1e3:.1f} ms")
    print(f"{'shape':<24} {'cold search':>12} {'cold wall':>10} {'/target':>8} "
          f"{'warm (mem)':>11} {'warm (disk)':>11} {'/target':>8} {'peak MB':>8}")
    worst_cold, worst_warm = 0.0, 0.0
    for op in shapes():
        search, wall = cold_s(device, op, args.runs)
        memory, disk = warm_s(device, op, args.runs)
        peak = peak_bytes(device, op)
        worst_cold, worst_warm = max(worst_cold, wall), max(worst_warm, disk)
        name = f"{op.M}x{op.K}x{op.N}"
        print(
            f"{name:<24} {search * 1e3:>9.2f} ms {wall * 1e3:>7.2f} ms"
            f" {wall / COLD_TARGET_S:>8.2f} {memory * 1e6:>8.1f} us {disk * 1e6:>8.1f} us"
            f" {disk / WARM_TARGET_S:>8.2f} {peak / 1e6:>8.1f}"
        )
    print(f"worst cold {worst_cold * 1e3:.2f} ms (target {COLD_TARGET_S * 1e3:.0f} ms), "
          f"worst warm {worst_warm * 1e6:.1f} us (target {WARM_TARGET_S * 1e6:.0f} us)")
    if saved is None:
        os.environ.pop("DES_CACHE_DIR", None)
    else:
        os.environ["DES_CACHE_DIR"] = saved


if __name__ == "__main__":
    main()
