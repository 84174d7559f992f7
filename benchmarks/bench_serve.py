"""Benchmark: des serve's cost, with replays and interpolation against simulating everything.

Serves the same seeded stream (default: 100 Llama-3-70B requests at TP 8 on a DGX H100,
prompts 512-2048, outputs 128-512, 4 requests/s) with iteration costs that share one
memo (``des.memo``: replays and affine interpolation, the default), one memo without
interpolation, and no memo (every kernel and collective simulated: the baseline), each
``--repeats`` times, alternating, in this process (the mapper's cache warm after the
first run). Prints each one's median wall time, the ratio to the baseline, the events,
the distinct iterations and cache hits, and how far its mean and p99 TTFT and TPOT are
from the baseline's.

Run from the repository root: ``python benchmarks/bench_serve.py [--requests 1000]``.
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
    from des.serve import generate, serve, summary
    from des.study.iteration import IterationCost

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", default="dgx-h100")
    parser.add_argument("--model", default="llama-3-70b")
    parser.add_argument("--tp", type=int, default=8)
    parser.add_argument("--arch", default="standard")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rate", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without a memo (slow)")
    args = parser.parse_args(argv)
    requests = generate(args.requests, args.rate, "512-2048", "128-512", seed=0)
    setups = {"memo": dict(), "memo, no interpolation": dict(), "no memo": dict(replay=False)}
    if args.no_baseline:
        del setups["no memo"]
    times: dict[str, list[float]] = {name: [] for name in setups}
    out: dict[str, tuple] = {}
    for _ in range(args.repeats):
        for name, options in setups.items():
            cost = IterationCost(args.system, args.model, args.tp, args.arch, **options)
            if name == "memo, no interpolation":
                cost._memo.interpolate = False
            blocks = cost.kv_blocks(2048)[0]
            start = time.perf_counter()
            record = summary(serve(requests, cost.cost_s, blocks, cost.block_tokens))
            times[name].append(time.perf_counter() - start)
            out[name] = (record, cost.events, cost.simulated, cost.hits)
    base = "no memo" if "no memo" in setups else "memo, no interpolation"
    print(f"{args.model} {args.arch} TP={args.tp} on {args.system}: {args.requests} requests at {args.rate:g}/s; "
          f"{args.repeats} run(s) each; baseline '{base}'")
    print(f"{'setup':<24} {'median':>9} {'ratio':>6} {'events':>11} {'distinct':>9} {'hits':>7} "
          f"{'TTFT mean':>10} {'TTFT p99':>10} {'TPOT mean':>10}")
    ref = out[base][0]
    for name in setups:
        record, events, simulated, hits = out[name]
        median = statistics.median(times[name])
        rel = [record[m][k] / ref[m][k] - 1 for m, k in (("ttft_s", "mean"), ("ttft_s", "p99"), ("tpot_s", "mean"))]
        print(f"{name:<24} {median:>7.1f} s {statistics.median(times[base]) / median:>5.1f}x {events:>11,} "
              f"{simulated:>9,} {hits:>7,} {rel[0]:>+10.1e} {rel[1]:>+10.1e} {rel[2]:>+10.1e}")


if __name__ == "__main__":
    main()
