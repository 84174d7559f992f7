#!/usr/bin/env python3
"""Which layer arrangement hides tensor-parallel communication: standard, parallel, Kraken, Ladder.

Llama-3-70B (``workloads/models/llama-3-70b.yaml``) at TP 8 on 8x H100 (``dgx-h100``) and
8x A100 (``dgx-a100``), all 80 layers, batch 1, bf16, the ``graph`` runtime (CUDA graphs,
the engines' one-shot / two-shot all-reduce, NCCL above their range), fused attention:

- prefill of 128 and 2048 tokens (time to first token) and decode of one token against
  a 2048-token KV cache (time per output token);
- the four architectures: ``standard`` (Megatron: two blocking all-reduces per layer),
  ``parallel`` (attention beside the FFN, one all-reduce), ``kraken`` (TP sub-layers,
  the width rule of ``workloads/kraken_rule.py``) and ``ladder`` (Ladder Residual: each
  module's all-reduce runs beside the next module's compute, the same weights).

Writes to ``--out`` (default ``overlap-out``): ``overlap_study.csv`` (one row per point:
latency, breakdown, memory, simulation cost), ``overlap_speedup.png`` (each
architecture's speed-up over standard per point), ``overlap_breakdown.png`` (stacked
breakdown normalised by standard) and ``gantt-<arch>.png`` (two layers of prefill 2048
on the first system). Prints the table and, per architecture, the geometric-mean
speed-up over standard with its least and greatest point; for Ladder, beside the 29 %
its paper reports for a 70B model at TP 8 (gpt-fast, CUDA graphs; Zhang et al., "Ladder
Residual", ICML 2025). ``--systems``, ``--phases``, ``--archs`` and ``--layers`` shrink
the grid.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from des.errors import DoesNotFitError
from des.metrics import BREAKDOWN_CATEGORIES
from des.outputs import check_folder, make_folder, write_csv
from des.plot import save_png
from des.specs import LIBRARIES
from des.study import PointSpec, draw_point_gantt, prepare_point, run_study, simulate_point

logger = logging.getLogger("overlap_study")

MODEL = "llama-3-70b"
SYSTEMS = ("dgx-h100", "dgx-a100")
#: (name, phase, prompt tokens, KV-cache length)
PHASES = {"prefill-128": ("prefill", 128, None), "prefill-2048": ("prefill", 2048, None),
          "decode-2048": ("decode", None, 2048)}
ARCHS = ("standard", "parallel", "kraken", "ladder")
TP = 8
#: Ladder Residual's reported end-to-end speed-up of a 70B model at TP 8 (its abstract).
LADDER_PUBLISHED = 0.29
CSV_COLUMNS = ["system", "phase", "arch", "latency_s", "fits", "memory_bytes_per_device"] + [
    f"{c}_s" for c in BREAKDOWN_CATEGORIES
] + ["overlap_s", "fast_path", "events", "events_simulated", "wall_s"]
COLOURS = {"standard": "#7f7f7f", "parallel": "#1f77b4", "kraken": "#ff7f0e", "ladder": "#2ca02c"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("overlap-out"), help="output folder (default overlap-out)")
    parser.add_argument("--model", default=MODEL, help=f"model preset, YAML or config.json (default {MODEL})")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), metavar="SYSTEM")
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=list(PHASES), metavar="PHASE")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS, metavar="ARCH")
    parser.add_argument("--tp", type=int, default=TP)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runtime", default="graph", choices=("eager", "graph"))
    parser.add_argument("--comm-library", choices=LIBRARIES, help="communication library (default: the runtime's)")
    parser.add_argument("--layers", type=int, help="simulate only this many layers (quick look)")
    parser.add_argument("--exact", action="store_true", help="no fast path for repeated layers")
    parser.add_argument("--no-plots", action="store_true", help="write the CSV only")
    return parser.parse_args(argv)


def point_spec(args, system: str, phase: str, arch: str, layers: int | None = None) -> PointSpec:
    kind, seq, kv_len = PHASES[phase]
    return PointSpec(system=system, model=args.model, arch=arch, tp=args.tp, batch=args.batch,
                     seq=seq or 128, phase=kind, kv_len=kv_len, runtime=args.runtime,
                     comm_library=args.comm_library, layers=layers or args.layers, exact=args.exact)


def run_one(args, system: str, phase: str, arch: str) -> dict:
    row = {"system": system, "phase": phase, "arch": arch}
    try:
        prepared = prepare_point(point_spec(args, system, phase, arch))
    except DoesNotFitError as exc:
        row.update(latency_s=None, fits=False, error=str(exc))
        return row
    record = simulate_point(prepared).record
    row.update(latency_s=record["latency_s"], fits=True, memory_bytes_per_device=record["memory_bytes_per_device"]["total"],
               overlap_s=record["overlap_s"], fast_path=record["fast_path"], events=record["events"],
               events_simulated=record["events_simulated"], wall_s=record["wall_s"], breakdown_s=record["breakdown_s"])
    for category in BREAKDOWN_CATEGORIES:
        row[f"{category}_s"] = record["breakdown_s"].get(category, 0.0)
    logger.info("%s %s %s: %.3f ms", system, phase, arch, record["latency_s"] * 1e3)
    return row


def speedups(rows: list[dict]) -> dict[str, dict[tuple, float]]:
    """Per architecture, ``T_standard / T_arch`` at each (system, phase) where both ran."""
    times = {(r["system"], r["phase"], r["arch"]): r["latency_s"] for r in rows}
    out: dict[str, dict[tuple, float]] = {}
    for (system, phase, arch), value in times.items():
        base = times.get((system, phase, "standard"))
        if arch != "standard" and value and base:
            out.setdefault(arch, {})[(system, phase)] = base / value
    return out


def geometric_mean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def format_table(rows: list[dict], archs) -> str:
    times = {(r["system"], r["phase"], r["arch"]): r["latency_s"] for r in rows}
    points = sorted({(r["system"], r["phase"]) for r in rows}, key=lambda p: (p[0], list(PHASES).index(p[1])))
    lines = [f"{'system':<10} {'phase':<13} " + " ".join(f"{a + ' (ms)':>15}" for a in archs) + f" {'fastest':>9}"]
    for system, phase in points:
        cells = []
        for arch in archs:
            value = times.get((system, phase, arch))
            cells.append(f"{'does not fit' if value is None else f'{value * 1e3:.3f}':>15}")
        ran = {a: times[(system, phase, a)] for a in archs if times.get((system, phase, a))}
        lines.append(f"{system:<10} {phase:<13} " + " ".join(cells) + f" {min(ran, key=ran.get) if ran else '-':>9}")
    return "\n".join(lines)


def summary_lines(table: dict[str, dict[tuple, float]]) -> list[str]:
    lines = [""]
    for arch, points in table.items():
        mean = geometric_mean(points.values())
        low, high = min(points, key=points.get), max(points, key=points.get)
        line = (f"{arch}: geomean speed-up over standard {(mean - 1) * 100:+.1f} % over {len(points)} points; "
                f"least {(points[low] - 1) * 100:+.1f} % ({' '.join(low)}), greatest {(points[high] - 1) * 100:+.1f} % "
                f"({' '.join(high)})")
        if arch == "ladder":
            line += f"; its paper: {LADDER_PUBLISHED * 100:.0f} % end to end for a 70B model at TP 8"
        lines.append(line)
    return lines


def plot_speedups(table: dict[str, dict[tuple, float]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = sorted({p for t in table.values() for p in t}, key=lambda p: (p[0], list(PHASES).index(p[1])))
    fig = Figure(figsize=(max(6.0, 1.2 * len(points) + 2), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(table))
    for i, (arch, values) in enumerate(table.items()):
        ax.bar([j + i * width for j in range(len(points))], [values.get(p, 0.0) for p in points], width=width,
               color=COLOURS.get(arch, "#333333"), label=arch)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(points))])
    ax.set_xticklabels([f"{s}\n{p}" for s, p in points], fontsize=8)
    ax.set_ylabel("speed-up over standard")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    save_png(fig.canvas, path)


def plot_breakdown(rows: list[dict], archs, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ran = [r for r in rows if r["latency_s"] is not None]
    ran.sort(key=lambda r: (r["system"], list(PHASES).index(r["phase"]), archs.index(r["arch"])))
    base = {(r["system"], r["phase"]): r["latency_s"] for r in ran if r["arch"] == "standard"}
    fig = Figure(figsize=(max(8.0, 0.45 * len(ran) + 3), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    bottoms = [0.0] * len(ran)
    for category in BREAKDOWN_CATEGORIES:
        heights = [r["breakdown_s"].get(category, 0.0) / base.get((r["system"], r["phase"]), r["latency_s"]) for r in ran]
        if not any(heights):
            continue
        ax.bar(range(len(ran)), heights, bottom=bottoms, label=category, width=0.8)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.set_xticks(range(len(ran)))
    ax.set_xticklabels([f"{r['system']} {r['phase']} {r['arch']}" for r in ran], fontsize=6, rotation=90)
    ax.set_ylabel("latency / standard latency")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    save_png(fig.canvas, path)


def study(args) -> list[Path]:
    make_folder(check_folder(args.out, "--out"))
    rows = [run_one(args, system, phase, arch) for system in args.systems for phase in args.phases for arch in args.archs]
    print(format_table(rows, args.archs))
    table = speedups(rows)
    for line in summary_lines(table):
        print(line)
    for row in rows:
        if row["latency_s"] is None:
            print(f"does not fit: {row['system']} {row['phase']} {row['arch']}: {row['error']}")
    write_csv(args.out / "overlap_study.csv", CSV_COLUMNS, rows)
    written = [args.out / "overlap_study.csv"]
    if not args.no_plots:
        if table:
            plot_speedups(table, args.out / "overlap_speedup.png")
            written.append(args.out / "overlap_speedup.png")
        plot_breakdown(rows, args.archs, args.out / "overlap_breakdown.png")
        written.append(args.out / "overlap_breakdown.png")
        phase = "prefill-2048" if "prefill-2048" in args.phases else args.phases[0]
        for arch in args.archs:
            path = args.out / f"gantt-{arch}.png"
            spec = point_spec(args, args.systems[0], phase, arch, layers=2)
            if draw_point_gantt(spec, path, title=f"{args.model} {arch} TP={args.tp} {phase}: two layers"):
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_study("overlap_study", lambda: study(args))


if __name__ == "__main__":
    sys.exit(main())
