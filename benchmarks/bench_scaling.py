"""Benchmark: how the cost of simulating a ring all-reduce grows with the number of devices.

A 64 MiB ring all-reduce (one channel, 256 KiB pieces, tracing off) on 64, 256 and 1024
devices, on two families:

* ``torus``: a square 2D torus (8x8, 16x16, 32x32) of A100s with 100 GB/s links;
* ``multinode``: machines of 8 A100s on an NVSwitch (the dgx-a100 fabric), one HDR NIC
  per GPU into one leaf switch (8, 32 and 128 machines).

Each point runs in its own Python process (so peak memory is that run's alone) and
reports the wall time of building and running the simulation, the simulated latency,
the SimPy events scheduled, the link transfers (pieces x hops) and the peak resident
memory of the process (``ru_maxrss``), next to the resident memory after the imports.
Wall time should track link transfers: a ring all-reduce over n ranks runs 2(n-1)
steps of n sends each, so the transfers grow as n^2 for a fixed message while the
pieces per step shrink to one.

Run from the repository root: ``python benchmarks/bench_scaling.py`` (see
benchmarks/README.md for options).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MESSAGE_BYTES = 64 * 2**20
CHUNK_BYTES = 256 * 2**10
DEVICES_PER_MACHINE = 8
FAMILIES = ("torus", "multinode")


def _rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(family: str, devices: int):
    """The system of one benchmark point."""
    from des.specs import CollectiveParams, LinkSpec
    from topologies import load_device, multi_node, system_from_graph, torus2d

    params = CollectiveParams(
        launch_latency_s=10e-6,
        step_latency_s=0.5e-6,
        bandwidth_efficiency=0.7,
        chunk_bytes=CHUNK_BYTES,
        compute_units=8,
        channels=1,
        inter_node_step_latency_s=2.7e-6,
        inter_node_bandwidth_efficiency=0.8,
    )
    if family == "torus":
        side = math.isqrt(devices)
        graph = torus2d(side, side, LinkSpec(100e9, 0.7e-6))
    else:
        graph = multi_node(
            devices // DEVICES_PER_MACHINE,
            DEVICES_PER_MACHINE,
            {"builder": "switch", "link": LinkSpec(300e9, 0.35e-6)},
            LinkSpec(25e9, 0.5e-6),
        )
    return system_from_graph(f"{family}-{devices}", graph, load_device("a100"), params)


def child(family: str, devices: int) -> None:
    """Run one point and print its measurements as one JSON line."""
    from des.engine import Engine
    from des.taskgraph import CollectiveTask, TaskGraph
    from des.trace import Trace

    base = _rss_mib()
    start = time.perf_counter()
    system = build(family, devices)
    engine = Engine(system, trace=Trace(enabled=False))
    graph = TaskGraph()
    graph.add(CollectiveTask("ar", "allreduce", system.devices, MESSAGE_BYTES))
    result = engine.run(graph)
    wall = time.perf_counter() - start
    collective = result.collectives["ar"]
    steps = 2 * (devices - 1)
    hops = sum(
        len(engine.network.route(ring[i], ring[(i + 1) % devices])) for ring in collective.rings for i in range(devices)
    )
    print(
        json.dumps(
            {
                "wall_s": wall,
                "latency_s": collective.latency_s,
                "events": result.events,
                "pieces_per_step": collective.pieces_per_step,
                "transfers": steps * collective.pieces_per_step * hops,
                "rss_base_mib": base,
                "rss_peak_mib": _rss_mib(),
            }
        )
    )


def measure(family: str, devices: int, repeats: int) -> list[dict]:
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, __file__, "--child", family, str(devices)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[64, 256, 1024], help="device counts (squares)")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--repeats", type=int, default=3, help="runs per point below 1024 devices (median)")
    parser.add_argument("--repeats-large", type=int, default=1, help="runs per point at 1024 devices or more")
    parser.add_argument("--child", nargs=2, metavar=("FAMILY", "DEVICES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    print(f"ring all-reduce of {MESSAGE_BYTES / 2**20:g} MiB, one channel, {CHUNK_BYTES // 1024} KiB pieces, tracing off")
    header = (
        f"{'family':<10} {'devices':>7} {'runs':>4} {'wall s':>8} {'sim latency':>12} {'pieces':>6} "
        f"{'transfers':>10} {'events':>10} {'us/transfer':>11} {'rss MiB':>8} {'(base)':>7}"
    )
    print(header)
    for family in args.families:
        for devices in args.devices:
            repeats = args.repeats if devices < 1024 else args.repeats_large
            runs = measure(family, devices, repeats)
            wall = statistics.median(run["wall_s"] for run in runs)
            last = runs[-1]
            print(
                f"{family:<10} {devices:>7} {repeats:>4} {wall:>8.2f} {last['latency_s'] * 1e3:>9.3f} ms "
                f"{last['pieces_per_step']:>6} {last['transfers']:>10} {last['events']:>10} "
                f"{wall / last['transfers'] * 1e6:>11.2f} {max(r['rss_peak_mib'] for r in runs):>8.0f} "
                f"{last['rss_base_mib']:>7.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
