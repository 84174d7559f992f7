#!/usr/bin/env python3
"""How many requests per second a system serves, and at what latency, per architecture.

Llama-3-70B at TP 8 on a DGX H100 (``dgx-h100``), batch scheduling as ``des serve``
(continuous batching, chunked prefill, paged KV cache, FCFS), for each architecture
(``standard`` and ``ladder``; ``parallel`` on request) and each arrival rate of
``--rates`` (Poisson, ``--requests`` requests, prompts ``--prompt-tokens``, outputs
``--output-tokens``, one seed for all, so every rate serves the same requests). For each
architecture it reports the throughput-latency curve and the lowest rate whose p99 TTFT
exceeds ``--ttft-slo`` (default 2 s), beside the highest that kept it.

Writes to ``--out`` (default ``serving-out``): ``serving_study.csv`` (one row per
architecture and rate: TTFT, TPOT and end-to-end percentiles, throughput, goodput,
preemptions, iterations simulated, wall time) and ``serving_curves.png`` (p99 TTFT and
mean TPOT against the throughput reached). Co-located against disaggregated prefill and
decode is not studied yet (des serve does not disaggregate yet).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from des.outputs import check_folder, make_folder, write_csv
from des.plot import save_png
from des.serve import generate, serve, summary
from des.study import run_study
from des.study.iteration import IterationCost

RATES = (0.5, 1.0, 2.0, 4.0, 8.0)
COLUMNS = ["arch", "rate_per_s", "requests", "ttft_p50_s", "ttft_p99_s", "tpot_mean_s", "tpot_p99_s", "e2e_p99_s",
           "throughput_requests_per_s", "throughput_tokens_per_s", "goodput_requests_per_s", "preemptions",
           "iterations_simulated", "iteration_cache_hits", "wall_s"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("serving-out"))
    parser.add_argument("--system", default="dgx-h100")
    parser.add_argument("--model", default="llama-3-70b")
    parser.add_argument("--tp", type=int, default=8)
    parser.add_argument("--archs", nargs="+", default=["standard", "ladder"], choices=("standard", "parallel", "ladder"))
    parser.add_argument("--rates", nargs="+", type=float, default=list(RATES))
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--prompt-tokens", default="512-2048")
    parser.add_argument("--output-tokens", default="128-512")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ttft-slo", type=float, default=2.0, help="p99 TTFT objective, seconds (default 2)")
    parser.add_argument("--tpot-slo", type=float, default=0.1, help="TPOT objective of goodput, seconds (default 0.1)")
    parser.add_argument("--no-plots", action="store_true")
    return parser.parse_args(argv)


def study(args) -> list[Path]:
    make_folder(check_folder(args.out, "--out"))
    rows = []
    for arch in args.archs:
        cost = IterationCost(args.system, args.model, args.tp, arch)  # one cache per architecture, all rates
        blocks, _per_block = cost.kv_blocks(2048)
        for rate in sorted(args.rates):
            start = time.perf_counter()
            requests = generate(args.requests, rate, args.prompt_tokens, args.output_tokens, args.seed)
            before = (cost.simulated, cost.hits)
            record = summary(serve(requests, cost.cost_s, blocks, cost.block_tokens), args.ttft_slo, args.tpot_slo)
            rows.append({
                "arch": arch, "rate_per_s": rate, "requests": record["requests"],
                "ttft_p50_s": record["ttft_s"]["p50"], "ttft_p99_s": record["ttft_s"]["p99"],
                "tpot_mean_s": record["tpot_s"]["mean"], "tpot_p99_s": record["tpot_s"]["p99"],
                "e2e_p99_s": record["e2e_s"]["p99"], "throughput_requests_per_s": record["throughput_requests_per_s"],
                "throughput_tokens_per_s": record["throughput_tokens_per_s"],
                "goodput_requests_per_s": record["goodput_requests_per_s"], "preemptions": record["preemptions"],
                "iterations_simulated": cost.simulated - before[0], "iteration_cache_hits": cost.hits - before[1],
                "wall_s": time.perf_counter() - start,
            })
    print(f"{'arch':<9} {'rate':>6} {'TTFT p50':>10} {'TTFT p99':>10} {'TPOT mean':>10} {'tokens/s':>9} {'goodput':>8}")
    for r in rows:
        print(f"{r['arch']:<9} {r['rate_per_s']:>6.2f} {r['ttft_p50_s'] * 1e3:>7.1f} ms {r['ttft_p99_s'] * 1e3:>7.1f} ms "
              f"{r['tpot_mean_s'] * 1e3:>7.2f} ms {r['throughput_tokens_per_s']:>9.1f} {r['goodput_requests_per_s']:>8.3f}")
    print()
    for arch in args.archs:
        ours = [r for r in rows if r["arch"] == arch]
        kept = [r["rate_per_s"] for r in ours if r["ttft_p99_s"] <= args.ttft_slo]
        broken = [r["rate_per_s"] for r in ours if r["ttft_p99_s"] > args.ttft_slo]
        print(f"{arch}: p99 TTFT <= {args.ttft_slo:g} s up to {max(kept) if kept else '-'} requests/s; "
              f"exceeded from {min(broken) if broken else 'none of the rates'}"
              + (" requests/s" if broken else ""))
    write_csv(args.out / "serving_study.csv", COLUMNS, rows)
    written = [args.out / "serving_study.csv"]
    if not args.no_plots:
        plot(rows, args.archs, args.out / "serving_curves.png", args.ttft_slo)
        written.append(args.out / "serving_curves.png")
    return written


def plot(rows, archs, path: Path, slo: float) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for arch in archs:
        ours = [r for r in rows if r["arch"] == arch]
        left.plot([r["throughput_tokens_per_s"] for r in ours], [r["ttft_p99_s"] for r in ours], marker="o", label=arch)
        right.plot([r["throughput_tokens_per_s"] for r in ours], [r["tpot_mean_s"] * 1e3 for r in ours], marker="o",
                   label=arch)
    left.axhline(slo, color="grey", linestyle="--", linewidth=0.8, label=f"SLO {slo:g} s")
    left.set_xlabel("throughput (tokens/s)")
    left.set_ylabel("p99 TTFT (s)")
    right.set_xlabel("throughput (tokens/s)")
    right.set_ylabel("mean time per output token (ms)")
    left.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    save_png(fig.canvas, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_study("serving_study", lambda: study(args))


if __name__ == "__main__":
    sys.exit(main())
