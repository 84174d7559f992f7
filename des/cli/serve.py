"""The ``des serve`` command: a request stream served by continuous batching.

``des serve`` makes a request stream (Poisson or Gamma arrivals at ``--rate``, or a CSV
trace), serves it with the vLLM-style scheduler of :mod:`des.serve.scheduler` over a
paged KV cache sized by the memory check, each iteration's cost simulated by the engine
(:class:`des.study.iteration.IterationCost`), and prints the latency percentiles,
throughput and the simulation's cost. ``--json`` prints one object; ``--out DIR``
writes ``requests.csv`` (one row per request), ``iterations.csv`` (batch, tokens and KV
occupancy over time), ``latency_cdf.png`` and ``occupancy.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from des.cli.args import positive_int

REQUEST_COLUMNS = ["id", "arrival_s", "prompt_tokens", "output_tokens", "ttft_s", "tpot_s", "e2e_s", "preemptions"]
ITERATION_COLUMNS = ["end_s", "seconds", "prefill_tokens", "decodes", "batch", "kv_blocks_used", "kv_occupancy", "waiting",
                     "in_system", "preempted"]


def add_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``des serve`` on the main parser's ``commands``."""
    parser = commands.add_parser(
        "serve",
        help="serve a request stream with continuous batching; latency percentiles and throughput",
        description="Serve requests arriving at a rate (or from a CSV trace) with vLLM-style continuous batching "
                    "over a paged KV cache, every iteration simulated on the system.",
    )
    parser.add_argument("--system", default="dgx-h100", help="system preset or YAML (default dgx-h100)")
    parser.add_argument("--model", default="llama-3-70b", help="dense model preset, YAML or config.json (default llama-3-70b)")
    parser.add_argument("--tp", type=positive_int, default=8, metavar="N", help="tensor parallelism (default 8)")
    parser.add_argument("--pp", type=positive_int, default=1, metavar="N",
                        help="pipeline stages of TP ranks each, kept full by N virtual engines (default 1)")
    parser.add_argument("--arch", default="standard", choices=("standard", "parallel", "ladder", "kraken"),
                        help="architecture (kraken: the Kraken model derived at degree --tp)")
    parser.add_argument("--rate", type=float, metavar="REQ_PER_S", help="arrival rate (requests per second)")
    parser.add_argument("--requests", type=positive_int, metavar="K", help="requests to generate")
    parser.add_argument("--arrivals", default="poisson", choices=("poisson", "gamma"), help="arrival process")
    parser.add_argument("--cv", type=float, default=1.0, help="Gamma arrivals' coefficient of variation (default 1)")
    parser.add_argument("--prompt-tokens", default="512-2048", metavar="P", help="tokens or LOW-HIGH (default 512-2048)")
    parser.add_argument("--output-tokens", default="128-512", metavar="O", help="tokens or LOW-HIGH (default 128-512)")
    parser.add_argument("--trace-csv", type=Path, metavar="FILE", help="requests from arrival_s,prompt_tokens,output_tokens")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stream (default 0)")
    parser.add_argument("--scheduler", default="fcfs", choices=("fcfs", "sjf"), help="waiting-queue policy (default fcfs)")
    parser.add_argument("--max-batch", type=positive_int, default=256, metavar="B", help="sequences per iteration (default 256)")
    parser.add_argument("--token-budget", type=positive_int, default=2048, metavar="T", help="tokens per iteration (default 2048)")
    parser.add_argument("--block-tokens", type=positive_int, default=16, metavar="N", help="KV-cache block (default 16)")
    parser.add_argument("--kv-blocks", type=positive_int, metavar="N", help="KV blocks (default: what the memory check leaves)")
    parser.add_argument("--runtime", default="graph", choices=("eager", "graph"))
    parser.add_argument("--ttft-slo", type=float, metavar="S", help="TTFT objective for goodput (seconds)")
    parser.add_argument("--tpot-slo", type=float, metavar="S", help="time-per-output-token objective for goodput (seconds)")
    parser.add_argument("--disaggregate", metavar="P:D",
                        help="prefill on the first P devices (TP P), decode on the next D (TP D), KV sent between")
    parser.add_argument("--exact", action="store_true", help="simulate every layer, kernel and collective of every iteration; exact KV lengths")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, metavar="DIR", help="write requests.csv and iterations.csv to DIR")
    parser.set_defaults(func=serve_command)
    return parser


def serve_command(args: argparse.Namespace) -> int:
    """Run ``des serve``; returns the exit status."""
    from des.cli.outputs import write_outputs
    from des.errors import DesError
    from des.outputs import check_folder, make_folder, write_csv
    from des.progress import Progress
    from des.serve import generate, per_request, read_trace, serve, summary
    from des.serve.plots import latency_cdfs, occupancy
    from des.study.iteration import IterationCost

    wall = time.perf_counter()
    if args.trace_csv is not None and (args.rate is not None or args.requests is not None):
        raise DesError("--trace-csv gives the requests; --rate and --requests make them instead: use one or the other")
    if args.out is not None:
        check_folder(args.out, "--out")
    if args.trace_csv is not None:
        requests = read_trace(args.trace_csv)
    elif args.rate is None or args.requests is None:
        raise DesError("des serve needs --rate and --requests, or --trace-csv")
    else:
        requests = generate(args.requests, args.rate, args.prompt_tokens, args.output_tokens, args.seed, args.arrivals,
                            args.cv)
    if args.disaggregate is None:
        cost = IterationCost(args.system, args.model, args.tp, args.arch, args.runtime, block_tokens=args.block_tokens,
                             exact=args.exact, pp=args.pp)
        blocks = args.kv_blocks if args.kv_blocks is not None else cost.kv_blocks(args.token_budget)[0]
        costs = [cost]
        with Progress("des serve", unit="requests") as progress:
            progress.start(len(requests))
            result = serve(requests, cost.cost_s, blocks, args.block_tokens, args.token_budget, args.max_batch,
                           args.scheduler, progress, stages=args.pp)
    else:
        if args.pp > 1:
            raise DesError("--disaggregate runs each group as one TP group: drop --pp")
        costs, result = _disaggregated(args, requests)
        cost = costs[0]
    record = summary(result, args.ttft_slo, args.tpot_slo)
    record.update(system=cost.system.name, model=cost.model.name, tp=args.tp, pp=args.pp, arch=args.arch,
                  scheduler=args.scheduler,
                  iterations_simulated=sum(c.simulated for c in costs), disaggregate=args.disaggregate,
                  iteration_cache_hits=sum(c.hits for c in costs), events_simulated=sum(c.events for c in costs),
                  exact=args.exact, wall_s=time.perf_counter() - wall)
    if args.json:
        print(json.dumps(record, sort_keys=True))
    else:
        print(_table(record))
    files = []
    if args.out is not None:
        make_folder(args.out)
        rows = per_request(result)
        title = f"{record['model']} {args.arch} TP={args.tp} on {record['system']}: {record['requests']} requests"
        files = [(args.out / "requests.csv", lambda path: write_csv(path, REQUEST_COLUMNS, rows)),
                 (args.out / "iterations.csv", lambda path: write_csv(path, ITERATION_COLUMNS, result.iterations)),
                 (args.out / "latency_cdf.png", lambda path: latency_cdfs(rows, path, title)),
                 (args.out / "occupancy.png", lambda path: occupancy(result.iterations, path, title))]
    return write_outputs(files, sys.stderr if args.json else sys.stdout)


def _disaggregated(args, requests):
    """Prefill on the first P devices, decode on the next D (``--disaggregate P:D``)."""
    from des.errors import DesError
    from des.progress import Progress
    from des.serve.disaggregated import serve_disaggregated
    from des.study.iteration import IterationCost, KvTransfer
    from des.study.point import build_system

    try:
        p, d = (int(part) for part in args.disaggregate.split(":"))
    except ValueError:
        raise DesError(f"--disaggregate: expected P:D, two numbers of devices, got {args.disaggregate!r}") from None
    if p < 1 or d < 1:
        raise DesError(f"--disaggregate: both groups need a device, got {args.disaggregate!r}")
    if args.scheduler != "fcfs":
        raise DesError("--disaggregate schedules first come first served (--scheduler fcfs)")
    system = build_system(args.system)
    if p + d > len(system.devices):
        raise DesError(f"--disaggregate {p}:{d} needs {p + d} devices; system '{system.name}' has {len(system.devices)}")
    prefill_devices, decode_devices = tuple(system.devices[:p]), tuple(system.devices[p:p + d])
    prefill = IterationCost(system, args.model, p, args.arch, args.runtime, block_tokens=args.block_tokens,
                            exact=args.exact, devices=prefill_devices)
    decode = IterationCost(system, args.model, d, args.arch, args.runtime, block_tokens=args.block_tokens,
                           exact=args.exact, devices=decode_devices)
    p_blocks, per_block = prefill.kv_blocks(args.token_budget)
    d_blocks = args.kv_blocks if args.kv_blocks is not None else decode.kv_blocks(args.token_budget)[0]
    # A request's whole KV is per_block / block tokens per device, times the P devices.
    transfer = KvTransfer(system, prefill_devices, decode_devices, per_block / args.block_tokens * p, args.block_tokens)
    with Progress("des serve", unit="requests") as progress:
        progress.start(len(requests))
        result = serve_disaggregated(requests, prefill.cost_s, decode.cost_s, transfer, p_blocks, d_blocks,
                                     args.block_tokens, args.token_budget, args.max_batch, progress)
    return [prefill, decode], result


def _table(r: dict) -> str:
    def pct(name):
        p = r[name]
        if p["p50"] is None:
            return f"{name:<8} -"
        return f"{name:<8} p50 {p['p50'] * 1e3:9.2f} ms  p90 {p['p90'] * 1e3:9.2f} ms  p99 {p['p99'] * 1e3:9.2f} ms  mean {p['mean'] * 1e3:9.2f} ms"

    return "\n".join([
        f"{r['model']} {r['arch']} " + (f"prefill:decode {r['disaggregate']}" if r.get("disaggregate") else f"TP={r['tp']}"
                                         + (f" PP={r['pp']}" if r.get("pp", 1) > 1 else ""))
        + f" on {r['system']}: {r['requests']} requests, scheduler {r['scheduler']}",
        pct("ttft_s"), pct("tpot_s"), pct("e2e_s"),
        f"throughput {r['throughput_requests_per_s']:.3f} requests/s, {r['throughput_tokens_per_s']:.1f} tokens/s; "
        f"goodput {r['goodput_requests_per_s']:.3f} requests/s",
        f"iterations {r['iterations']:,} (mean batch {r['batch_mean']:.1f}), preemptions {r['preemptions']}, "
        f"KV occupancy peak {r['kv_occupancy_peak'] * 100:.1f} % of {r['kv_blocks']:,} blocks",
        f"simulated {r['iterations_simulated']:,} distinct iterations ({r['iteration_cache_hits']:,} cache hits, "
        f"{r['events_simulated']:,} events), wall {r['wall_s']:.1f} s",
    ])
