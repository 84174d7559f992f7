"""How much a GEMM and a concurrent all-reduce slow each other, on a 13B layer's shapes.

Every rank of the system runs one of a GPT-3 13B layer's tensor-parallel GEMMs while the
layer's all-reduce (tokens x hidden x 2 bytes over all ranks) runs on the communication
stream, both issued at time zero; each is also run alone. Printed per GEMM and prompt
length: the GEMM's time alone and beside the all-reduce, the all-reduce's likewise, and
the slowdowns (together / alone). The all-reduce holds its channels' SMs for its whole
run and its reduction reads and writes DRAM, so the GEMM gets fewer units (its tiles
dispatch as units free up) and less DRAM bandwidth; the all-reduce's pieces wait for DRAM
behind the GEMM's traffic. Published measurements of overlapped compute and
communication on A100 / H100 / MI250 / MI210 (arXiv 2507.03114) put the compute slowdown
at 18.9 % on average and at most 40 %.

    python3 scripts/interference_study.py [--system dgx-a100] [--tp 8] [--seqs 128 2048]
"""

from __future__ import annotations

import argparse
import logging
import sys

from des.engine import Engine
from des.errors import DesError
from des.operators import Matmul
from des.runtime import runtime_launch, runtime_profile
from des.taskgraph import CollectiveTask, KernelTask, TaskGraph
from topologies import load_system
from workloads import load_model


def gemms(model, tp: int, tokens: int) -> list[tuple[str, Matmul]]:
    """The layer's four tensor-parallel GEMMs of one rank (Megatron's split)."""
    h, f = model.hidden, model.ffn_hidden
    return [
        ("qkv", Matmul(tokens, h, 3 * h // tp)),
        ("out-proj", Matmul(tokens, h // tp, h)),
        ("ffn-up", Matmul(tokens, h, f // tp)),
        ("ffn-down", Matmul(tokens, f // tp, h)),
    ]


def run(system, devices, gemm: Matmul | None, allreduce_bytes: float | None, runtime: str):
    """(GEMM seconds, all-reduce seconds) of one run; ``None`` for what did not run."""
    profile = runtime_profile(runtime)
    engine = Engine(system, launch_fn=runtime_launch(runtime), comm_library=profile.comm_library,
                    comm_launch_s=profile.comm_launch_s)
    graph = TaskGraph()
    if allreduce_bytes is not None:
        graph.add(CollectiveTask("ar", "allreduce", tuple(devices), allreduce_bytes))
    if gemm is not None:
        for device in devices:
            graph.add(KernelTask(f"gemm-{device}", device, operator=gemm))
    result = engine.run(graph)
    gemm_s = None
    if gemm is not None:
        gemm_s = max(result.task_end_s[f"gemm-{d}"] - result.task_start_s[f"gemm-{d}"] for d in devices)
    ar_s = result.collectives["ar"].latency_s if allreduce_bytes is not None else None
    return gemm_s, ar_s


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="dgx-a100")
    parser.add_argument("--model", default="gpt3-13b")
    parser.add_argument("--tp", type=int, default=8)
    parser.add_argument("--seqs", type=int, nargs="+", default=[128, 2048])
    parser.add_argument("--runtime", default="eager", choices=["eager", "graph"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        system = load_system(args.system)
        model = load_model(args.model)
        devices = system.select_ranks(args.tp)
        print(f"{args.model} layer, TP {args.tp} on {args.system}, {args.runtime} runtime")
        print(f"{'seq':>5} {'gemm':<9} {'gemm alone':>11} {'beside':>9} {'slowdown':>9} "
              f"{'ar alone':>10} {'beside':>9} {'slowdown':>9}")
        for seq in args.seqs:
            nbytes = seq * model.hidden * 2
            _, ar_alone = run(system, devices, None, nbytes, args.runtime)
            for name, gemm in gemms(model, args.tp, seq):
                alone, _ = run(system, devices, gemm, None, args.runtime)
                beside, ar_beside = run(system, devices, gemm, nbytes, args.runtime)
                print(f"{seq:>5} {name:<9} {alone * 1e6:>9.1f}us {beside * 1e6:>7.1f}us {beside / alone:>8.2f}x "
                      f"{ar_alone * 1e6:>8.1f}us {ar_beside * 1e6:>7.1f}us {ar_beside / ar_alone:>8.2f}x")
    except DesError as error:
        print(f"interference_study: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
