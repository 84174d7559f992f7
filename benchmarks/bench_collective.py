"""Benchmark: des's event-simulated ring all-reduce against a bare-SimPy equivalent.

Two measurements, both printed:

1. Simulation speed. A 64-rank ring all-reduce of 64 MiB cut into 64 KiB pieces (16
   pieces per step, 126 steps, 129,024 link transfers) on an ideal ring, run by des
   (``RingCollective`` with tracing disabled) and by a bare-SimPy script in this file
   that issues the same transfers with the same resources: one ``simpy.Resource`` of
   capacity 1 per directed link, one process per rank that, for every step and piece,
   waits for the predecessor's piece, requests the link, holds it for bytes/bandwidth,
   releases it and delivers the piece after the link latency plus the step latency.
   des also moves every piece through each device's DRAM; bare SimPy does not, so des
   runs with a DRAM bandwidth so large that it never binds, and both must report the
   same latency. Each is repeated (interleaved) in one process; medians and the ratio
   des / bare are printed. Target: des within 2x of bare SimPy.

2. Start-up. Process start to first output of
   ``des collective allreduce --system dgx-a100 --ranks 8 --bytes 1048576 --json``,
   median of 10 runs, if the ``des`` console script is on PATH. Target: <= 0.5 s.

Run from the repository root: ``python benchmarks/bench_collective.py`` (see
benchmarks/README.md for options).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import simpy

# The repository root, so the script runs from a checkout without installing des.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from des.collectives import RingCollective, ring_bandwidth_bound_s  # noqa: E402
from des.hardware import Network  # noqa: E402
from des.specs import CollectiveParams, LinkSpec  # noqa: E402
from des.trace import Trace  # noqa: E402
from topologies import load_device, ring, system_from_graph  # noqa: E402

#: Ideal ring link: 100 GB/s per direction, 1 us latency.
LINK_BANDWIDTH_BYTES_PER_S = 100e9
LINK_LATENCY_S = 1e-6
#: Software latency per ring step (pipelined, like the link latency).
STEP_LATENCY_S = 2e-6
#: DRAM so fast it never binds: des's DRAM traffic then costs events but no time.
HUGE_DRAM_BYTES_PER_S = 1e18
CLI_COMMAND = [
    "collective",
    "allreduce",
    "--system",
    "dgx-a100",
    "--ranks",
    "8",
    "--bytes",
    "1048576",
    "--json",
]


# --------------------------------------------------------------------------- des


def run_des(ranks: int, nbytes: float, chunk_bytes: float) -> tuple[float, int]:
    """Build and run the all-reduce with des; return (latency, pieces per step)."""
    device = dataclasses.replace(
        load_device("a100"), dram_bandwidth_bytes_per_s=HUGE_DRAM_BYTES_PER_S
    )
    params = CollectiveParams(step_latency_s=STEP_LATENCY_S, chunk_bytes=chunk_bytes, channels=1)
    graph = ring(ranks, LinkSpec(LINK_BANDWIDTH_BYTES_PER_S, LINK_LATENCY_S))
    system = system_from_graph("bench-ring", graph, device, params)
    env = simpy.Environment()
    network = Network(env, system)
    collective = RingCollective(
        network, "allreduce", system.devices, nbytes, params, Trace(enabled=False)
    )
    process = env.process(collective.run())
    env.run()
    return process.value.latency_s, collective.pieces


# --------------------------------------------------------------------------- bare SimPy


def run_bare(ranks: int, nbytes: float, chunk_bytes: float) -> tuple[float, int]:
    """The same ring all-reduce in plain SimPy; return (latency, pieces per step)."""
    env = simpy.Environment()
    steps = 2 * (ranks - 1)
    share = nbytes / ranks
    pieces = max(1, math.ceil(share / chunk_bytes))
    piece_bytes = share / pieces
    hold_s = piece_bytes / LINK_BANDWIDTH_BYTES_PER_S
    delay_s = LINK_LATENCY_S + STEP_LATENCY_S
    # links[r] is the directed link from rank r to rank r + 1.
    links = [simpy.Resource(env, capacity=1) for _ in range(ranks)]
    # arrived[r][s]: pieces of step s that have reached rank r; waiting[r]: the one
    # (step, piece, event) rank r's sender is blocked on.
    arrived = [[0] * steps for _ in range(ranks)]
    waiting: list[tuple[int, int, simpy.Event] | None] = [None] * ranks

    def deliver(receiver: int, step: int):
        def on_arrival(_event: simpy.Event) -> None:
            counts = arrived[receiver]
            counts[step] += 1
            waiter = waiting[receiver]
            if waiter is not None and waiter[0] == step and counts[step] > waiter[1]:
                waiting[receiver] = None
                waiter[2].succeed()

        return on_arrival

    def wait_for(rank: int, step: int, piece: int):
        if arrived[rank][step] > piece:
            return None
        event = env.event()
        waiting[rank] = (step, piece, event)
        return event

    def rank_process(rank: int):
        successor = (rank + 1) % ranks
        link = links[rank]
        for step in range(steps):
            on_arrival = deliver(successor, step)
            for piece in range(pieces):
                if step > 0:
                    event = wait_for(rank, step - 1, piece)
                    if event is not None:
                        yield event
                with link.request() as request:
                    yield request
                    yield env.timeout(hold_s)
                env.timeout(delay_s).callbacks.append(on_arrival)
        event = wait_for(rank, steps - 1, pieces - 1)
        if event is not None:
            yield event

    processes = [env.process(rank_process(rank)) for rank in range(ranks)]
    env.run(simpy.AllOf(env, processes))
    return env.now, pieces


# --------------------------------------------------------------------------- timing


def time_call(function, *args) -> tuple[float, tuple]:
    start = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - start, value


def bench_simulation(ranks: int, nbytes: float, chunk_bytes: float, repeats: int) -> None:
    print(
        f"ring all-reduce: {ranks} ranks, {nbytes / 2**20:g} MiB, chunk {chunk_bytes / 2**10:g} KiB, "
        f"link {LINK_BANDWIDTH_BYTES_PER_S / 1e9:g} GB/s + {LINK_LATENCY_S * 1e6:g} us, "
        f"step latency {STEP_LATENCY_S * 1e6:g} us"
    )
    print(
        f"des runs with DRAM at {HUGE_DRAM_BYTES_PER_S:g} B/s so its DRAM traffic never binds "
        "(bare SimPy does not model DRAM)"
    )
    des_times, bare_times = [], []
    des_latency = bare_latency = math.nan
    pieces = 0
    # Interleaved, so drift in machine load affects both alike.
    for _ in range(repeats):
        took, (des_latency, pieces) = time_call(run_des, ranks, nbytes, chunk_bytes)
        des_times.append(took)
        took, (bare_latency, bare_pieces) = time_call(run_bare, ranks, nbytes, chunk_bytes)
        bare_times.append(took)
        assert bare_pieces == pieces
    transfers = ranks * 2 * (ranks - 1) * pieces
    bound = ring_bandwidth_bound_s("allreduce", ranks, nbytes, LINK_BANDWIDTH_BYTES_PER_S)
    print(f"pieces per step: {pieces}; link transfers: {transfers}")
    print(f"simulated latency  des:  {des_latency:.9e} s")
    print(f"simulated latency  bare: {bare_latency:.9e} s")
    relative = abs(des_latency - bare_latency) / bare_latency
    print(
        f"latency agreement: relative difference {relative:.2e} ({'same' if relative < 1e-9 else 'DIFFERENT'})"
    )
    print(f"bandwidth bound: {bound:.6e} s")
    des_median = statistics.median(des_times)
    bare_median = statistics.median(bare_times)
    print(f"wall time, median of {repeats}  des:  {des_median:.3f} s  (runs: {_list(des_times)})")
    print(f"wall time, median of {repeats}  bare: {bare_median:.3f} s  (runs: {_list(bare_times)})")
    ratio = des_median / bare_median
    print(f"ratio des / bare: {ratio:.2f} (target <= 2: {'met' if ratio <= 2 else 'NOT met'})")


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def bench_startup(runs: int) -> None:
    executable = shutil.which("des")
    if executable is None:
        print("start-up: skipped, no 'des' console script on PATH (pip install . first)")
        return
    command = [executable, *CLI_COMMAND]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = process.stdout.read(1)
        took = time.perf_counter() - start
        _rest, error = process.communicate()
        if process.returncode != 0 or not first:
            message = error.decode(errors="replace").strip().splitlines()
            print(
                f"start-up: 'des {' '.join(CLI_COMMAND)}' failed (exit {process.returncode}): "
                f"{message[-1] if message else 'no output'}"
            )
            return
        times.append(took)
    median = statistics.median(times)
    print(f"start-up: des {' '.join(CLI_COMMAND)}")
    print(
        f"start-up, process start to first output, median of {runs}: {median:.3f} s "
        f"(runs: {_list(times)}; target <= 0.5 s: {'met' if median <= 0.5 else 'NOT met'})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=64)
    parser.add_argument(
        "--bytes", type=float, default=64 * 2**20, help="message size (default 64 MiB)"
    )
    parser.add_argument(
        "--chunk", type=float, default=64 * 2**10, help="chunk bytes (default 64 KiB)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs of each simulator (default 5)")
    parser.add_argument(
        "--startup-runs", type=int, default=10, help="CLI start-up runs (default 10)"
    )
    parser.add_argument("--skip-startup", action="store_true", help="do not time the CLI")
    args = parser.parse_args(argv)
    bench_simulation(args.ranks, args.bytes, args.chunk, args.repeats)
    if not args.skip_startup:
        bench_startup(args.startup_runs)


if __name__ == "__main__":
    main()
