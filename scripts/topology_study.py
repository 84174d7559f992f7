#!/usr/bin/env python3
"""Topology study: how a model's latency changes with the interconnect.

For one model, prompt and tensor-parallel degree (default GPT-3 13B, prefill of 2048
tokens, TP 8) and each architecture (default standard and Kraken), three sweeps:

(a) **families**: five topologies of the same 8 A100s. The rule: every GPU has the
    same NVLink budget, the A100's 12 links x 25 GB/s = 300 GB/s per direction, split
    evenly over its links: ``switch`` (NVSwitch, the ``dgx-a100`` preset: one 300 GB/s
    port), ``ring`` (2 neighbours, 150 GB/s each), ``torus`` (2 x 4, 3 neighbours,
    100 GB/s each), ``fully_connected`` (7 peers, 300/7 GB/s each) and ``2_nodes`` (2
    machines of 4 GPUs on NVSwitch, 300 GB/s ports, joined by the ``2x-dgx-a100``
    preset's network: one 25 GB/s InfiniBand HDR NIC per GPU into a leaf switch). A
    direct link costs 0.7 us, a GPU-switch edge 0.35 us (half a switched hop), as in
    the presets. Every family uses the ``dgx-a100`` preset's calibrated collective
    parameters (``2x-dgx-a100``'s, with their inter-node fields, for two machines), so
    only the graph differs.
(b) **scaling**: the ``--system`` preset (default ``dgx-a100``) with every link's
    bandwidth, then every link's latency, multiplied by each of ``--scales``.
(c) **faults**: each family with one link failed before the run (the first link of
    gpu0 as ``des topology show`` lists it). Where that cuts a GPU off (a switch port),
    the row says so instead of a latency.

Prints the table and writes to ``--out`` (default ``topology-out``):
``topology_study.csv`` (one row per point: ``sweep, topology, arch, bandwidth_scale,
latency_scale, fault, latency_s``, then the breakdown, or ``error``),
``latency_vs_bandwidth.png`` and ``latency_vs_link_latency.png`` (one line per
architecture), ``families.png`` (latency per family, with and without the failed link)
and ``gantt-<family>.png`` (two layers of the last architecture on each family).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from des.errors import DesError, DoesNotFitError
from des.faults import FaultError, link_name
from des.metrics import BREAKDOWN_CATEGORIES
from des.outputs import check_folder, make_folder, write_csv
from des.plot import save_png
from des.specs import LinkSpec
from des.study import PointSpec, draw_point_gantt, prepare_point, run_study, simulate_point
from des.units import format_count
from topologies import (
    fully_connected,
    load_system,
    multi_node,
    ring,
    system_from_graph,
    torus2d,
)

logger = logging.getLogger("topology_study")

ARCHS = ("standard", "kraken")
#: Bandwidth and latency multipliers of sweep (b).
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
#: NVLink bandwidth of one A100 per direction (12 NVLink3 links x 25 GB/s), the budget
#: every family splits evenly over a GPU's links.
GPU_LINK_BUDGET_BYTES_PER_S = 300e9
#: One direct GPU-to-GPU NVLink hop; a GPU-switch edge carries half of it.
DIRECT_LATENCY_S = 0.7e-6
SWITCH_EDGE_LATENCY_S = 0.35e-6
#: Presets the families take their device, collective parameters and network from.
SWITCH_PRESET = "dgx-a100"
TWO_NODE_PRESET = "2x-dgx-a100"
FAMILIES = ("switch", "ring", "torus", "fully_connected", "2_nodes")
CSV_COLUMNS = ["sweep", "topology", "arch", "bandwidth_scale", "latency_scale", "fault", "latency_s"] + [
    f"{c}_s" for c in BREAKDOWN_CATEGORIES
] + ["events", "wall_s", "error"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gpt3-13b", help="model preset or YAML (default gpt3-13b)")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=("standard", "parallel", "kraken"), metavar="ARCH")
    parser.add_argument("--seq", type=int, default=2048, help="prompt length (default 2048)")
    parser.add_argument("--tp", type=int, default=8, help="tensor-parallel degree, at most 8 (default 8)")
    parser.add_argument("--layers", type=int, help="simulate only this many layers (quick look)")
    parser.add_argument("--system", default=SWITCH_PRESET, help=f"preset scaled in sweep (b) (default {SWITCH_PRESET})")
    parser.add_argument("--scales", nargs="+", type=float, default=list(SCALES), metavar="X", help="multipliers of sweep (b)")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES, metavar="FAMILY")
    parser.add_argument("--out", type=Path, default=Path("topology-out"), help="output folder (default topology-out)")
    parser.add_argument("--no-plots", action="store_true", help="write the CSV only")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- systems


def family_system(family: str):
    """The 8-GPU system of one family, built under the equal NVLink budget rule."""
    base = load_system(SWITCH_PRESET)
    if family == "switch":
        return base
    device = base.device_spec(base.devices[0])

    def direct(degree: int) -> LinkSpec:
        return LinkSpec(GPU_LINK_BUDGET_BYTES_PER_S / degree, DIRECT_LATENCY_S)

    if family == "ring":
        graph = ring(8, direct(2))
    elif family == "torus":
        graph = torus2d(2, 4, direct(3))  # a dimension of 2 has one edge: 3 neighbours
    elif family == "fully_connected":
        graph = fully_connected(8, direct(7))
    elif family == "2_nodes":
        network = load_system(TWO_NODE_PRESET)
        nic = network.graph.edges["gpu0", "leaf0"]
        graph = multi_node(
            2, 4, {"builder": "switch", "link": LinkSpec(GPU_LINK_BUDGET_BYTES_PER_S, SWITCH_EDGE_LATENCY_S)},
            LinkSpec(nic["bandwidth_bytes_per_s"], nic["latency_s"]),
        )
        return system_from_graph(f"2x4-{family}", graph, device, network.collective, "2 machines of 4 A100s")
    else:
        raise DesError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return system_from_graph(f"8-{family}", graph, device, base.collective, f"8 A100s, {family}")


def scaled_system(name: str, bandwidth_scale: float = 1.0, latency_scale: float = 1.0):
    """A preset with every link's bandwidth and latency multiplied."""
    system = load_system(name)
    graph = system.graph.copy()
    for _u, _v, attrs in graph.edges(data=True):
        attrs["bandwidth_bytes_per_s"] *= bandwidth_scale
        attrs["latency_s"] *= latency_scale
    return system_from_graph(
        f"{system.name} bw x{bandwidth_scale:g} lat x{latency_scale:g}", graph, None, system.collective, system.description
    )


def first_link(system) -> str:
    """gpu0's first link, as ``des topology show`` lists it."""
    graph = system.graph
    names = sorted(link_name(graph, "gpu0", peer) for peer in graph.neighbors("gpu0"))
    return names[0]


# --------------------------------------------------------------------------- runs


def run_one(spec: PointSpec, **labels) -> dict:
    """One point as a CSV row; a point a fault breaks or that does not fit has an error."""
    row = dict(labels, arch=spec.arch, fault=" ".join(spec.faults))
    try:
        point = simulate_point(prepare_point(spec))
    except (FaultError, DoesNotFitError) as exc:
        logger.info("%s %s: %s", labels, spec.arch, exc)
        row.update(latency_s=None, error=str(exc))
        return row
    record = point.record
    row.update(latency_s=record["latency_s"], events=record["events"], wall_s=record["wall_s"])
    for category in BREAKDOWN_CATEGORIES:
        row[f"{category}_s"] = record["breakdown_s"].get(category, 0.0)
    logger.info("%s %s: %.3f ms", labels, spec.arch, record["latency_s"] * 1e3)
    return row


def run_sweeps(args) -> list[dict]:
    point = PointSpec(model=args.model, tp=args.tp, seq=args.seq, layers=args.layers)
    rows = []
    systems = {family: family_system(family) for family in args.families}
    for family, system in systems.items():
        for arch in args.archs:
            rows.append(run_one(dataclasses.replace(point, system=system, arch=arch), sweep="family", topology=family))
    for what in ("bandwidth", "latency"):
        for scale in args.scales:
            system = scaled_system(args.system, **{f"{what}_scale": scale})
            for arch in args.archs:
                rows.append(run_one(
                    dataclasses.replace(point, system=system, arch=arch), sweep=what, topology=args.system,
                    bandwidth_scale=scale if what == "bandwidth" else 1.0, latency_scale=scale if what == "latency" else 1.0,
                ))
    for family, system in systems.items():
        fault = first_link(system)
        for arch in args.archs:
            rows.append(run_one(dataclasses.replace(point, system=system, arch=arch, faults=(fault,)), sweep="fault", topology=family))
    return rows


# --------------------------------------------------------------------------- outputs


def format_table(rows: list[dict], archs) -> str:
    def cell(row) -> str:
        if row is None:
            return "-"
        return "cut off" if row["latency_s"] is None else f"{row['latency_s'] * 1e3:.3f}"

    def label(row) -> str:
        if row["sweep"] == "bandwidth":
            return f"{row['topology']} bandwidth x{row['bandwidth_scale']:g}"
        if row["sweep"] == "latency":
            return f"{row['topology']} latency x{row['latency_scale']:g}"
        if row["sweep"] == "fault":
            return f"{row['topology']} without {row['fault']}"
        return row["topology"]

    by_key: dict[tuple, dict] = {}
    order: list[str] = []
    for row in rows:
        key = label(row)
        if key not in order:
            order.append(key)
        by_key[(key, row["arch"])] = row
    width = max(len(key) for key in order) + 2
    lines = [f"{'point':<{width}}" + "".join(f"{arch + ' (ms)':>16}" for arch in archs)]
    for key in order:
        lines.append(f"{key:<{width}}" + "".join(f"{cell(by_key.get((key, arch))):>16}" for arch in archs))
    return "\n".join(lines)


def _figure(width: float = 6.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_scaling(rows: list[dict], archs, sweep: str, path: Path, system: str) -> None:
    """Latency against the bandwidth (or latency) multiplier, one line per architecture."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    key = "bandwidth_scale" if sweep == "bandwidth" else "latency_scale"
    for arch in archs:
        points = sorted((r[key], r["latency_s"]) for r in rows if r["sweep"] == sweep and r["arch"] == arch and r["latency_s"] is not None)
        ax.plot([x for x, _ in points], [y * 1e3 for _, y in points], marker="o", label=arch)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"link {sweep} multiplier ({system})")
    ax.set_ylabel("latency (ms)")
    ax.legend(frameon=False)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    save_png(fig.canvas, path)


def plot_families(rows: list[dict], archs, families, path: Path) -> None:
    """Latency per family and architecture, healthy and with one link failed (hatched)."""
    fig = _figure(7.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    bars = 2 * len(archs)
    width = 0.8 / bars
    for a, arch in enumerate(archs):
        for f, sweep in enumerate(("family", "fault")):
            values = []
            for family in families:
                row = next((r for r in rows if (r["sweep"], r["topology"], r["arch"]) == (sweep, family, arch)), None)
                values.append(0.0 if row is None or row["latency_s"] is None else row["latency_s"] * 1e3)
            offset = (2 * a + f) * width - 0.4 + width / 2
            ax.bar([i + offset for i in range(len(families))], values, width, color=f"C{a}",
                   hatch="//" if sweep == "fault" else None, label=f"{arch}" + (", one link failed" if sweep == "fault" else ""))
    ax.set_xticks(range(len(families)))
    ax.set_xticklabels(families)
    ax.set_ylabel("latency (ms); no bar: a GPU cut off")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    save_png(fig.canvas, path)


def draw_gantts(args, out: Path) -> list[Path]:
    """Two layers of the last architecture on each family."""
    arch = args.archs[-1]
    written = []
    for family in args.families:
        system = family_system(family)
        spec = PointSpec(system=system, model=args.model, arch=arch, tp=args.tp, seq=args.seq, layers=2)
        path = out / f"gantt-{family}.png"
        if draw_point_gantt(spec, path, title=f"{args.model} {arch} TP={args.tp} seq {args.seq} on {system.name}: two layers"):
            written.append(path)
    return written


def study(args) -> list[Path]:
    """Run the three sweeps, print the table, write the CSV and charts; the files written."""
    if not 2 <= args.tp <= 8:
        raise DesError(f"--tp must be between 2 and 8 (the families have 8 GPUs), got {args.tp}")
    make_folder(check_folder(args.out, "--out"))
    rows = run_sweeps(args)
    print(f"{args.model}, prefill seq {args.seq}, TP={args.tp}" + (f", {format_count(args.layers, 'layer')}" if args.layers else ""))
    print(format_table(rows, args.archs))
    write_csv(args.out / "topology_study.csv", CSV_COLUMNS, rows)
    written = [args.out / "topology_study.csv"]
    if not args.no_plots:
        for sweep, name in (("bandwidth", "latency_vs_bandwidth.png"), ("latency", "latency_vs_link_latency.png")):
            plot_scaling(rows, args.archs, sweep, args.out / name, args.system)
            written.append(args.out / name)
        plot_families(rows, args.archs, args.families, args.out / "families.png")
        written.append(args.out / "families.png")
        written += draw_gantts(args, args.out)
    return written


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_study("topology_study", lambda: study(args))


if __name__ == "__main__":
    sys.exit(main())
