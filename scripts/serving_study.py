#!/usr/bin/env python3
"""How many requests per second a system serves, and at what latency, per architecture.

Llama-3-70B at TP 8 on a DGX H100 (``dgx-h100``), batch scheduling as ``des serve``
(continuous batching, chunked prefill, paged KV cache, FCFS), for each architecture
(``standard``, ``kraken`` and ``ladder``; ``parallel`` on request) and each arrival rate of
``--rates`` (Poisson, ``--requests`` requests, prompts ``--prompt-tokens``, outputs
``--output-tokens``, one seed for all, so every rate serves the same requests). For each
architecture it reports the throughput-latency curve and the lowest rate whose p99 TTFT
exceeds ``--ttft-slo`` (default 2 s), beside the highest that kept it.

Then, on two nodes (``--two-node-system``, default ``2x-dgx-h100``), the standard
model served by two co-located replicas of TP ``--tp`` (each request to a replica in
turn) against prefill on the first node and decode on the second (``des serve
--disaggregate``), at the same rates.

Writes to ``--out`` (default ``serving-out``): ``serving_study.csv`` (one row per
architecture, or two-node setup, and rate: TTFT, TPOT and end-to-end percentiles,
throughput, goodput, preemptions, iterations simulated, wall time) and
``serving_curves.png`` (p99 TTFT and mean TPOT against the throughput reached).
``--no-two-node`` skips the second part.
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

RATES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
COLUMNS = ["arch", "rate_per_s", "requests", "ttft_p50_s", "ttft_p99_s", "tpot_mean_s", "tpot_p99_s", "e2e_p99_s",
           "throughput_requests_per_s", "throughput_tokens_per_s", "goodput_requests_per_s", "preemptions",
           "iterations_simulated", "iteration_cache_hits", "wall_s"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("serving-out"))
    parser.add_argument("--system", default="dgx-h100")
    parser.add_argument("--model", default="llama-3-70b")
    parser.add_argument("--tp", type=int, default=8)
    parser.add_argument("--archs", nargs="+", default=["standard", "kraken", "ladder"],
                        choices=("standard", "parallel", "kraken", "ladder"))
    parser.add_argument("--rates", nargs="+", type=float, default=list(RATES))
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--prompt-tokens", default="512-2048")
    parser.add_argument("--output-tokens", default="128-512")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ttft-slo", type=float, default=2.0, help="p99 TTFT objective, seconds (default 2)")
    parser.add_argument("--tpot-slo", type=float, default=0.1, help="TPOT objective of goodput, seconds (default 0.1)")
    parser.add_argument("--two-node-system", default="2x-dgx-h100")
    parser.add_argument("--no-two-node", action="store_true", help="skip co-located against disaggregated")
    parser.add_argument("--no-plots", action="store_true")
    return parser.parse_args(argv)


def _row(label, rate, record, simulated, hits, wall):
    return {
        "arch": label, "rate_per_s": rate, "requests": record["requests"],
        "ttft_p50_s": record["ttft_s"]["p50"], "ttft_p99_s": record["ttft_s"]["p99"],
        "tpot_mean_s": record["tpot_s"]["mean"], "tpot_p99_s": record["tpot_s"]["p99"],
        "e2e_p99_s": record["e2e_s"]["p99"], "throughput_requests_per_s": record["throughput_requests_per_s"],
        "throughput_tokens_per_s": record["throughput_tokens_per_s"],
        "goodput_requests_per_s": record["goodput_requests_per_s"], "preemptions": record["preemptions"],
        "iterations_simulated": simulated, "iteration_cache_hits": hits, "wall_s": wall,
    }


def two_nodes(args) -> list[dict]:
    """Two co-located replicas against prefill on one node and decode on the other."""
    from des.serve import ServeResult
    from des.serve.disaggregated import serve_disaggregated
    from des.study.iteration import KvTransfer
    from des.study.point import build_system

    system = build_system(args.two_node_system)
    if len(system.devices) < 2 * args.tp:
        from des.errors import DesError

        raise DesError(f"--two-node-system {system.name} has {len(system.devices)} devices; two groups of TP "
                       f"{args.tp} need {2 * args.tp}")
    first, second = tuple(system.devices[:args.tp]), tuple(system.devices[args.tp:2 * args.tp])
    replica = IterationCost(system, args.model, args.tp, "standard", devices=first)
    prefill = IterationCost(system, args.model, args.tp, "standard", devices=first)
    decode = IterationCost(system, args.model, args.tp, "standard", devices=second)
    blocks, per_block = replica.kv_blocks(2048)
    transfer = KvTransfer(system, first, second, per_block / replica.block_tokens * args.tp, replica.block_tokens)
    rows = []
    for rate in sorted(args.rates):
        requests = generate(args.requests, rate, args.prompt_tokens, args.output_tokens, args.seed)
        start, before = time.perf_counter(), (replica.simulated, replica.hits)
        halves = [serve(requests[k::2], replica.cost_s, blocks, replica.block_tokens) for k in (0, 1)]
        merged = ServeResult(halves[0].requests + halves[1].requests, halves[0].iterations + halves[1].iterations,
                             halves[0].preemptions + halves[1].preemptions, blocks)
        record = summary(merged, args.ttft_slo, args.tpot_slo)
        rows.append(_row("2 replicas", rate, record, replica.simulated - before[0], replica.hits - before[1],
                         time.perf_counter() - start))
        start = time.perf_counter()
        before = (prefill.simulated + decode.simulated, prefill.hits + decode.hits)
        result = serve_disaggregated(requests, prefill.cost_s, decode.cost_s, transfer, blocks, blocks,
                                     replica.block_tokens)
        record = summary(result, args.ttft_slo, args.tpot_slo)
        rows.append(_row("disaggregated", rate, record, prefill.simulated + decode.simulated - before[0],
                         prefill.hits + decode.hits - before[1], time.perf_counter() - start))
    return rows


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
            rows.append(_row(arch, rate, record, cost.simulated - before[0], cost.hits - before[1],
                             time.perf_counter() - start))
    labels = list(args.archs)
    if not args.no_two_node:
        rows += two_nodes(args)
        labels += ["2 replicas", "disaggregated"]
    print(f"{'setup':<14} {'rate':>6} {'TTFT p50':>10} {'TTFT p99':>10} {'TPOT mean':>10} {'tokens/s':>9} {'goodput':>8}")
    for r in rows:
        print(f"{r['arch']:<14} {r['rate_per_s']:>6.2f} {r['ttft_p50_s'] * 1e3:>7.1f} ms {r['ttft_p99_s'] * 1e3:>7.1f} ms "
              f"{r['tpot_mean_s'] * 1e3:>7.2f} ms {r['throughput_tokens_per_s']:>9.1f} {r['goodput_requests_per_s']:>8.3f}")
    print()
    for arch in labels:
        ours = [r for r in rows if r["arch"] == arch]
        kept = [r["rate_per_s"] for r in ours if r["ttft_p99_s"] <= args.ttft_slo]
        broken = [r["rate_per_s"] for r in ours if r["ttft_p99_s"] > args.ttft_slo]
        print(f"{arch}: p99 TTFT <= {args.ttft_slo:g} s up to {max(kept) if kept else '-'} requests/s; "
              f"exceeded from {min(broken) if broken else 'none of the rates'}"
              + (" requests/s" if broken else ""))
    write_csv(args.out / "serving_study.csv", COLUMNS, rows)
    written = [args.out / "serving_study.csv"]
    if not args.no_plots:
        plot(rows, labels, args.out / "serving_curves.png", args.ttft_slo)
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
