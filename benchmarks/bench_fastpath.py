"""Benchmark: the fast path for repeated layers against the full simulation, in one process.

For each architecture the same point (default: GPT-3 175B prefill of 2048 tokens, TP 8,
all layers, on ``dgx-a100``, ``graph`` runtime; or ``--model``, ``--system``...) runs
alternately with the fast path (``des.fastpath``) and with ``exact=True``, ``--repeats``
times each, in this process (the mapper's cache warm after the first run, the same for
both). It prints each one's median wall time with its runs, the ratio, the relative
difference of the latencies (the fast path must equal the full run to 1e-9), whether
the fast path was taken, and the events each simulated.

Run from the repository root: ``python benchmarks/bench_fastpath.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    from des.study import PointSpec, prepare_point, simulate_point

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gpt3-175b")
    parser.add_argument("--system", default="dgx-a100")
    parser.add_argument("--archs", default="standard,parallel,kraken")
    parser.add_argument("--tp", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--phase", default="prefill", choices=("prefill", "decode"))
    parser.add_argument("--kv-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{args.model} {args.phase} on {args.system}, TP={args.tp}, all layers; {args.repeats} runs each, alternating")
    print(f"{'arch':<9} {'fast':>8} {'exact':>8} {'ratio':>6} {'latency rel diff':>17} {'fast path':>9} "
          f"{'events fast':>12} {'events exact':>13}")
    for arch in [a for a in args.archs.split(",") if a]:
        times = {True: [], False: []}
        records = {}
        for _ in range(args.repeats):
            for exact in (False, True):
                spec = PointSpec(system=args.system, model=args.model, arch=arch, tp=args.tp, batch=args.batch,
                                 seq=args.seq, phase=args.phase,
                                 kv_len=args.kv_len if args.phase == "decode" else None, exact=exact)
                start = time.perf_counter()
                record = simulate_point(prepare_point(spec)).record
                times[exact].append(time.perf_counter() - start)
                records[exact] = record
        fast, full = statistics.median(times[False]), statistics.median(times[True])
        diff = abs(records[False]["latency_s"] / records[True]["latency_s"] - 1)
        print(f"{arch:<9} {fast:>6.2f} s {full:>6.2f} s {full / fast:>5.1f}x {diff:>17.1e} "
              f"{str(records[False]['fast_path']):>9} {records[False]['events_simulated']:>12,} "
              f"{records[True]['events_simulated']:>13,}")
        print(f"{'':<9} runs fast {', '.join(f'{t:.2f}' for t in times[False])} s; "
              f"exact {', '.join(f'{t:.2f}' for t in times[True])} s")


if __name__ == "__main__":
    main()
