"""Fit a system's collective parameters to measured all-reduce latencies.

Usage::

    python scripts/calibrate_collectives.py dgx-a100 a100:2:2 a100:4:4
    python scripts/calibrate_collectives.py hgx-a100-4 nvlink

    python scripts/calibrate_collectives.py --inter-node 2x-dgx-a100 a100:2:1

Each SERIES is ``GPU:RANKS:RANKS_PER_NODE`` (rows of dgx_allreduce.csv) or ``nvlink``
(a100x4_nvlink_allreduce.csv). The search is a grid over launch latency, step latency
and bandwidth efficiency (chunk size, channels and the topology stay as the preset
says), minimising the mean absolute relative error over all rows together. It scores
the grid with the simulator's own pipelined-ring time, which reproduces the event
simulation of an idle system (check the result with ``des validate collectives``).

With ``--inter-node`` the series must have one rank per machine, so that every ring
hop crosses the network: the launch latency stays as the preset says (the same
software stack as inside a machine) and the grid is over
``inter_node_step_latency_s`` and ``inter_node_bandwidth_efficiency`` instead.
"""

from __future__ import annotations

import argparse
import math

import networkx as nx
import numpy as np

from des.calibration import calibration_dir, read_rows
from des.collectives.rings import ring_orders
from topologies import load_system


def pipelined_ring_s(
    nbytes,
    ranks,
    bandwidth,
    hop_latency_s,
    hops,
    launch_s,
    step_s,
    efficiency,
    chunk_bytes,
    channels,
):
    """Idle-system ring all-reduce time with pieces pipelined across steps."""
    share = nbytes / channels / ranks
    pieces = np.maximum(1, np.ceil(share / chunk_bytes))
    piece = share / pieces
    rate = efficiency * bandwidth
    alpha = hop_latency_s + step_s + (hops - 1) * piece / rate
    steps = 2 * (ranks - 1)
    return (
        launch_s
        + (steps - 1) * np.maximum(pieces * piece / rate, alpha + piece / rate)
        + alpha
        + pieces * piece / rate
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inter-node", action="store_true", help="fit the inter-node step latency and efficiency")
    parser.add_argument("system")
    parser.add_argument("series", nargs="+")
    args = parser.parse_args()
    system = load_system(args.system)
    folder = calibration_dir()
    data = []
    for series in args.series:
        if series == "nvlink":
            rows = read_rows(folder / "a100x4_nvlink_allreduce.csv")
            sizes = np.array([float(r["bytes"]) for r in rows])
            times = np.array([float(r["latency_s"]) for r in rows])
            ranks, per_node = 4, 4
        else:
            gpu, ranks, per_node = series.split(":")
            ranks, per_node = int(ranks), int(per_node)
            rows = [
                r
                for r in read_rows(folder / "dgx_allreduce.csv")
                if (r["gpu"], int(r["ranks"]), int(r["ranks_per_node"])) == (gpu, ranks, per_node)
            ]
            sizes = np.array([float(r["bytes"]) for r in rows])
            times = np.array([float(r["median_s"]) for r in rows])
        group = system.select_ranks(ranks, per_node if per_node != ranks else None)
        rings = ring_orders(system.graph, group, system.collective.channels)
        path = nx.shortest_path(system.graph, rings[0][0], rings[0][1])
        edges = [system.graph.edges[a, b] for a, b in zip(path, path[1:], strict=False)]
        # Rings sharing a link share its bandwidth.
        load = {}
        for ring in rings:
            for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
                load[(a, b)] = load.get((a, b), 0) + 1
        bandwidth = (
            min(e["bandwidth_bytes_per_s"] for e in edges) / max(load.values()) * len(rings)
            if len(path) == 2
            else min(e["bandwidth_bytes_per_s"] for e in edges)
        )
        data.append(
            (
                sizes,
                times,
                ranks,
                bandwidth / len(rings),
                sum(e["latency_s"] for e in edges),
                len(path) - 1,
                len(rings),
            )
        )
    chunk = system.collective.chunk_bytes
    if args.inter_node:
        if any(series == "nvlink" or not series.endswith(":1") for series in args.series):
            parser.error("--inter-node needs series with one rank per machine (GPU:RANKS:1)")
        fit_inter_node(args.system, system.collective.launch_latency_s, chunk, data)
        return
    best = (math.inf,)
    for launch in np.arange(0, 60e-6, 1e-6):
        for step in np.arange(0, 12e-6, 0.25e-6):
            for eff in np.arange(0.1, 1.0001, 0.01):
                errors = np.concatenate(
                    [
                        np.abs(
                            pipelined_ring_s(s, n, bw, lat, hops, launch, step, eff, chunk, k) / t
                            - 1
                        )
                        for s, t, n, bw, lat, hops, k in data
                    ]
                )
                score = float(errors.mean())
                if score < best[0]:
                    best = (score, launch, step, eff)
    score, launch, step, eff = best
    print(
        f"{args.system}: launch_latency_s {launch * 1e6:.2f} us, step_latency_s {step * 1e6:.2f} us, "
        f"bandwidth_efficiency {eff:.2f}  (MAPE {score * 100:.2f} % over {sum(len(d[0]) for d in data)} rows)"
    )


def fit_inter_node(name, launch, chunk, data) -> None:
    """Grid over the inter-node step latency and efficiency at a fixed launch latency."""
    best = (math.inf,)
    for step in np.arange(0, 30e-6, 0.25e-6):
        for eff in np.arange(0.05, 1.0001, 0.005):
            errors = np.concatenate(
                [
                    np.abs(pipelined_ring_s(s, n, bw, lat, hops, launch, step, eff, chunk, k) / t - 1)
                    for s, t, n, bw, lat, hops, k in data
                ]
            )
            score = float(errors.mean())
            if score < best[0]:
                best = (score, step, eff)
    score, step, eff = best
    print(
        f"{name}: launch_latency_s {launch * 1e6:.2f} us (kept), inter_node_step_latency_s "
        f"{step * 1e6:.2f} us, inter_node_bandwidth_efficiency {eff:.3f}  "
        f"(MAPE {score * 100:.2f} % over {sum(len(d[0]) for d in data)} rows)"
    )


if __name__ == "__main__":
    main()
