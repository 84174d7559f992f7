"""``des collective KIND``: one collective alone on an idle system.

``des collective allreduce|allgather|reducescatter [--system S] [--ranks N]
[--ranks-per-node G] [--bytes B] [--algorithm ring|hierarchical|auto] [--json]
[--trace FILE] [--gantt FILE] [--fail ...] [--degrade ...] [--max-pieces N]`` prints the
latency, algorithm and bus bandwidths (nccl-tests' definitions). The buffers must fit
each rank's DRAM and the call must stay within the piece-transfer limit; both are
checked before anything runs. A long call shows a progress bar on a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from des.cli.args import (
    add_fault_options,
    add_simulation_limits,
    byte_size,
    output_path,
    positive_int,
)
from des.cli.outputs import write_outputs
from des.specs import LIBRARIES
from des.units import GIGA, MiB

#: Collective kinds and their help.
KINDS = (
    ("allreduce", "ring all-reduce (reduce-scatter then all-gather)"),
    ("allgather", "ring all-gather"),
    ("reducescatter", "ring reduce-scatter"),
)
DEFAULT_SYSTEM = "dgx-a100"
DEFAULT_BYTES = 64 * MiB


def add_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``des collective`` on the main parser's ``commands``."""
    collective = commands.add_parser("collective", help="simulate one collective")
    kinds = collective.add_subparsers(dest="kind", metavar="KIND", parser_class=type(collective))
    kinds.required = True
    for kind, text in KINDS:
        sub = kinds.add_parser(kind, help=text)
        sub.add_argument("--system", default=DEFAULT_SYSTEM, metavar="SYSTEM", help=f"preset name or YAML path (default: {DEFAULT_SYSTEM})")
        sub.add_argument("--ranks", type=positive_int, metavar="N", help="number of ranks (default: every device)")
        sub.add_argument("--ranks-per-node", type=positive_int, metavar="G", help="spread the ranks G per machine")
        sub.add_argument("--bytes", type=byte_size, default=DEFAULT_BYTES, metavar="B", help="message size, e.g. 1048576 or 64MiB (default: 64MiB)")
        sub.add_argument(
            "--algorithm",
            choices=("ring", "hierarchical", "auto", "tree", "nvls", "nvls_tree"),
            help="force the algorithm: ring, tree or nvls (nccl); ring, hierarchical or auto (fixed); "
            "default: the library's choice",
        )
        sub.add_argument(
            "--comm-library",
            choices=LIBRARIES,
            help="communication library: nccl, trtllm, vllm or fixed (default: the system's)",
        )
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        sub.add_argument("--trace", type=output_path, metavar="FILE", help="write a Chrome/Perfetto trace (JSON)")
        sub.add_argument("--gantt", type=output_path, metavar="FILE", help="draw a Gantt chart (PNG)")
        add_fault_options(sub)
        add_simulation_limits(sub)
        sub.set_defaults(func=run_collective)
    return collective


def run_collective(args: argparse.Namespace) -> int:
    """Simulate the collective and print its summary (or one JSON object); return 0 or 2."""
    from des.engine import simulate_collective
    from des.faults import describe, parse_faults
    from des.progress import Progress
    from des.spans import Trace
    from des.units import format_bytes, format_seconds
    from topologies import load_system

    system = load_system(args.system)
    group = system.select_ranks(args.ranks, args.ranks_per_node)
    faults = parse_faults(system, args.fail, args.degrade)
    trace = Trace(enabled=bool(args.trace or args.gantt))
    with Progress("des collective", unit="pieces") as progress:
        result = simulate_collective(
            system, args.kind, group, args.bytes, trace, algorithm=args.algorithm, faults=faults,
            progress=progress, max_piece_transfers=args.max_pieces, comm_library=args.comm_library,
        )
    if args.json:
        print(
            json.dumps(
                {
                    "collective": args.kind,
                    "library": result.library,
                    "algorithm": result.algorithm,
                    "protocol": result.protocol,
                    "system": system.name,
                    "ranks": len(group),
                    "devices": list(group),
                    "bytes": args.bytes,
                    "latency_s": result.latency_s,
                    "algbw_bytes_per_s": result.algbw_bytes_per_s,
                    "busbw_bytes_per_s": result.busbw_bytes_per_s,
                    "channels": result.channels,
                    "pieces_per_step": result.pieces_per_step,
                    "bytes_sent_per_rank": result.bytes_sent_per_rank,
                    "faults": [fault.as_dict() for fault in faults],
                },
                sort_keys=True,
            )
        )
    else:
        how = ", ".join(part for part in (result.library, result.algorithm, result.protocol) if part)
        print(f"{args.kind} of {format_bytes(args.bytes)} over {len(group)} ranks of {system.name} ({how})")
        print(f"  latency   {format_seconds(result.latency_s)}")
        print(f"  algbw     {result.algbw_bytes_per_s / GIGA:.2f} GB/s")
        print(f"  busbw     {result.busbw_bytes_per_s / GIGA:.2f} GB/s")
        print(f"  channels  {result.channels}")
        if result.rings:
            print(f"  rings     {len(result.rings)} x {' -> '.join(result.rings[0])}")
        print(f"  pieces    {result.pieces_per_step} per step")
        for fault in faults:
            print(f"  fault     {describe(fault)}")
    title = f"{args.kind} {format_bytes(args.bytes)} on {len(group)} ranks of {system.name}"
    files = [(args.trace, lambda path: _write_trace(trace, path)), (args.gantt, lambda path: _draw(trace, path, title))]
    return write_outputs(files, sys.stderr if args.json else sys.stdout)


def _write_trace(trace: Any, path: Any) -> None:
    from des.trace import write_chrome_trace

    write_chrome_trace(trace.spans, path)


def _draw(trace: Any, path: Any, title: str) -> None:
    from des.plot import gantt

    gantt(trace.spans, path, title=title)
