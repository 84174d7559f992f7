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

from des.collectives.closed_form import pipelined_ring_time_s
from des.collectives.rings import ring_orders
from des.validate.calibration import calibration_dir, read_rows
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
    return pipelined_ring_time_s(
        "allreduce",
        ranks,
        nbytes / channels,
        efficiency * bandwidth,
        hop_latency_s + step_s,
        launch_s,
        1,
        hops,
        chunk_bytes,
    )


#: NCCL's tuning model (src/graph/tuning.cc, NCCL 2.18-2.21): base latency of a ring
#: collective per protocol, and latency per ring hop on NVLink and on the network.
NCCL_BASE_LAT_S = {"ll": 6.6e-6, "ll128": 14.0e-6, "simple": 8.4e-6}
NCCL_HW_LAT_NVLINK_S = {"ll": 0.6e-6, "ll128": 1.9e-6, "simple": 3.4e-6}
NCCL_HW_LAT_NET_S = {"ll": 2.7e-6, "ll128": 4.0e-6, "simple": 14.0e-6}
#: Data per step slot: LL 64 KiB of 16-byte lines carrying 8 data bytes each (NCCL's
#: LL buffer of 512 KiB over NCCL_STEPS = 8); LL128 and Simple as the preset's chunk.
LL_CHUNK_BYTES = 32 * 1024


def protocol_latencies(wire_s: float, launch_offset_s: float, network: bool = False) -> dict:
    """Per protocol (launch, step): launch = offset + NCCL baseLat; step + wire = NCCL hwLat."""
    table = NCCL_HW_LAT_NET_S if network else NCCL_HW_LAT_NVLINK_S
    return {
        name: (launch_offset_s + NCCL_BASE_LAT_S[name], max(0.0, table[name] - wire_s))
        for name in NCCL_BASE_LAT_S
    }


def protocol_times(data, latencies, efficiencies, chunks):
    """Per series, the least predicted time over the protocols (as des picks one)."""
    out = []
    for s, _t, n, bw, lat, hops, k in data:
        best = None
        for name, (launch, step) in latencies.items():
            time_s = pipelined_ring_s(s, n, bw, lat, hops, launch, step, efficiencies[name], chunks[name], k)
            best = time_s if best is None else np.minimum(best, time_s)
        out.append(best)
    return out


def score(data, latencies, efficiencies, chunks) -> float:
    times = protocol_times(data, latencies, efficiencies, chunks)
    return float(np.concatenate([np.abs(p / d[1] - 1) for p, d in zip(times, data, strict=True)]).mean())


def fit_protocols(name, data, chunk, network=False, launch_offset=None, rounds=4) -> None:
    """Fit a launch offset and one efficiency per protocol; latencies are NCCL's.

    Coordinate descent over grids: the launch offset (kept with ``network``) and
    each protocol's efficiency in turn, the others held, scoring the least time over
    the protocols against every row of every series together.
    """
    chunks = {"ll": LL_CHUNK_BYTES, "ll128": chunk, "simple": chunk}
    wire = data[0][4]
    efficiencies = {"ll": 0.2, "ll128": 0.5, "simple": 0.7}
    offsets = [launch_offset] if launch_offset is not None else list(np.arange(0, 50e-6, 0.5e-6))
    offset = offsets[0]
    for _ in range(rounds):
        offset = min(offsets, key=lambda o: score(data, protocol_latencies(wire, o, network), efficiencies, chunks))
        latencies = protocol_latencies(wire, offset, network)
        for proto in ("simple", "ll128", "ll"):
            # What a protocol can carry bounds it by Simple's: LL moves 8 data bytes in
            # every 16-byte line, LL128 120 in every 128 (NCCL src/device/prims_ll*.h).
            top = {"simple": 1.0, "ll128": 120 / 128 * efficiencies["simple"], "ll": 0.5 * efficiencies["simple"]}[proto]
            step = 0.005 if network else 0.01
            grid = [e for e in np.arange(step, 1.0001, step) if e <= top + 1e-9] or [top]
            best = min(grid, key=lambda e: score(data, latencies, {**efficiencies, proto: e}, chunks))
            efficiencies[proto] = float(best)
    latencies = protocol_latencies(wire, offset, network)
    print(f"{name}: launch offset {offset * 1e6:.2f} us, MAPE {score(data, latencies, efficiencies, chunks) * 100:.2f} %")
    for proto, (launch, step) in latencies.items():
        print(
            f"  {proto}: launch_latency_s {launch * 1e6:.2f} us, step_latency_s {step * 1e6:.2f} us, "
            f"bandwidth_efficiency {efficiencies[proto]:.2f}, chunk_bytes {chunks[proto]:.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inter-node", action="store_true", help="fit the inter-node step latency and efficiency")
    parser.add_argument(
        "--protocols", action="store_true", help="fit per-protocol efficiencies (LL, LL128, Simple) with NCCL's latencies"
    )
    parser.add_argument("--launch-offset-us", type=float, help="with --protocols: keep this launch offset")
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
    if args.protocols:
        simple = dict(system.collective.protocols).get("simple")
        if simple is not None:
            chunk = simple.chunk_bytes
        offset = None if args.launch_offset_us is None else args.launch_offset_us * 1e-6
        if args.inter_node:
            offset = system.collective.for_protocol("ll").launch_latency_s - NCCL_BASE_LAT_S["ll"]
        fit_protocols(args.system, data, chunk, network=args.inter_node, launch_offset=offset)
        return
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
