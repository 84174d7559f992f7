#!/usr/bin/env python3
"""Kraken's time-to-first-token study (Prabhakar et al., NeurIPS 2024), simulated on the paper's setup.

The grid and machine of the paper's latency study (../shared/reference/kraken.md): GPT-3
1.3B, 6.7B, 13B, 65B and 175B, with 65B and 175B cut to a quarter of their layers as
the paper did (``--full-depth`` keeps them whole); prompts of 128 and 2048 tokens;
tensor-parallel degree 4 and 8; the standard (Megatron), parallel attention + FFN and
Kraken architectures; batch 1, fp16, vocabulary 51,200, on an HGX A100 40 GB
(``hgx-a100-40gb-8``) with the ``graph`` runtime profile: a TensorRT-LLM-like engine
replaying CUDA graphs, whose all-reduce plugin runs its one-shot / two-shot kernels
(library ``trtllm``, NCCL above their range), and fused attention. Points whose
weights, KV cache and activations do not fit a device are reported as such, not timed.

Writes to ``--out`` (default ``kraken-out``):

- ``kraken_ttft.csv``: one row per point (``model, seq, tp, arch, ttft_s`` - empty
  where the point does not fit - then the breakdown, memory and simulation cost);
- ``kraken_speedup.png``: Kraken's speed-up over standard per point;
- ``kraken_breakdown.png``: stacked runtime breakdown per point and architecture, in the
  paper's categories (norm, GEMM, overlapped GEMM, attention, LM head, all-reduce);
- ``gantt-<arch>.png``: two layers of one configuration per architecture, where the
  all-reduce beside attention (Kraken) or between kernels (standard) is visible.

Prints the TTFT table, then the geometric-mean speed-up ``T_standard / T_kraken - 1``
and the geometric-mean latency reduction ``1 - T_kraken / T_standard``, each named,
their least and greatest point, and whether Kraken is the fastest of the architectures
at every 8-way point. ``--models``, ``--seqs``, ``--tps`` and ``--layers`` shrink the grid.
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

logger = logging.getLogger("kraken_ttft")

MODELS = ("gpt3-1.3b", "gpt3-6.7b", "gpt3-13b", "gpt3-65b", "gpt3-175b")
SEQS = (128, 2048)
TPS = (4, 8)
ARCHS = ("standard", "parallel", "kraken")
#: The published result this study is compared with (kraken.md): a geomean speed-up
#: T_standard / T_kraken - 1 of 35.6 %, single points 10.9 % to 63.7 %.
PUBLISHED_SPEEDUP = 0.356
PUBLISHED_RANGE = (0.109, 0.637)
#: The paper's engines: vocabulary 51,200; 65B and 175B at a quarter of their layers.
PAPER_VOCAB = 51_200
QUARTER_DEPTH = {"gpt3-65b": 80 // 4, "gpt3-175b": 96 // 4}
DEFAULT_SYSTEM = "hgx-a100-40gb-8"
#: Configuration drawn as Gantt charts (two layers each).
GANTT_MODEL, GANTT_SEQ, GANTT_TP = "gpt3-13b", 2048, 8
#: Categories of the paper's breakdown chart, and the breakdown keys each sums.
PAPER_CATEGORIES = {
    "Norm": ("norm",),
    "GEMM": ("gemm",),
    "Overlapped GEMM": ("overlapped_gemm",),
    "Attention": ("attention",),
    "LM Head": ("lm_head",),
    "AllReduce": ("exposed_allreduce",),
    "Other": ("elementwise", "launch", "idle"),
}
CSV_COLUMNS = ["model", "seq", "tp", "arch", "ttft_s", "fits", "memory_bytes_per_device", "memory_capacity_bytes"] + [
    f"{c}_s" for c in BREAKDOWN_CATEGORIES
] + ["overlap_s", "events", "wall_s"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("kraken-out"), help="output folder (default kraken-out)")
    parser.add_argument("--system", default=DEFAULT_SYSTEM, help=f"system preset or YAML (default {DEFAULT_SYSTEM})")
    parser.add_argument("--full-depth", action="store_true", help="keep 65B and 175B at all their layers")
    parser.add_argument("--comm-library", choices=LIBRARIES,
                        help="communication library (default: the runtime's: graph -> trtllm, eager -> nccl)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), metavar="MODEL")
    parser.add_argument("--seqs", nargs="+", type=int, default=list(SEQS), metavar="S")
    parser.add_argument("--tps", nargs="+", type=int, default=list(TPS), metavar="N")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS, metavar="ARCH")
    parser.add_argument("--runtime", default="graph", choices=("eager", "graph"))
    parser.add_argument("--attention", default="fused", choices=("fused", "unfused"))
    parser.add_argument("--layers", type=int, help="simulate only this many layers per model (quick look)")
    parser.add_argument("--no-plots", action="store_true", help="write the CSV only")
    return parser.parse_args(argv)


def run_grid(args) -> list[dict]:
    """Every point of the grid: a CSV row each (``ttft_s`` None where it does not fit)."""
    rows = []
    for model in args.models:
        for seq in args.seqs:
            for tp in args.tps:
                for arch in args.archs:
                    overrides = [("vocab_size", PAPER_VOCAB)]
                    if not args.full_depth and model in QUARTER_DEPTH:
                        overrides.append(("layers", QUARTER_DEPTH[model]))
                    spec = PointSpec(
                        system=args.system, model=model, arch=arch, tp=tp, batch=1, seq=seq,
                        attention=args.attention, runtime=args.runtime, layers=args.layers,
                        model_overrides=tuple(overrides), comm_library=args.comm_library,
                    )
                    rows.append(run_one(spec))
    return rows


def run_one(spec: PointSpec) -> dict:
    row = {"model": spec.model, "seq": spec.seq, "tp": spec.tp, "arch": spec.arch}
    try:
        prepared = prepare_point(spec)
    except DoesNotFitError as exc:
        logger.info("%s %s TP=%d seq %d does not fit: %s", spec.model, spec.arch, spec.tp, spec.seq, exc)
        row.update(ttft_s=None, fits=False, error=str(exc))
        return row
    point = simulate_point(prepared)
    record = point.record
    row.update(
        ttft_s=record["latency_s"],
        fits=True,
        memory_bytes_per_device=record["memory_bytes_per_device"]["total"],
        memory_capacity_bytes=record["memory_capacity_bytes"],
        overlap_s=record["overlap_s"],
        events=record["events"],
        wall_s=record["wall_s"],
    )
    for category in BREAKDOWN_CATEGORIES:
        row[f"{category}_s"] = record["breakdown_s"].get(category, 0.0)
    row["breakdown_s"] = record["breakdown_s"]
    logger.info("%s %s TP=%d seq %d: %.3f ms", spec.model, spec.arch, spec.tp, spec.seq, record["latency_s"] * 1e3)
    return row


def speedups(rows: list[dict], arch: str = "kraken", base: str = "standard") -> dict[tuple, float]:
    """Speed-up of ``arch`` over ``base`` at every (model, seq, tp) where both ran."""
    times = {(r["model"], r["seq"], r["tp"], r["arch"]): r["ttft_s"] for r in rows}
    result = {}
    for (model, seq, tp, name), value in times.items():
        if name != arch or value is None:
            continue
        other = times.get((model, seq, tp, base))
        if other is not None:
            result[(model, seq, tp)] = other / value
    return result


def geometric_mean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def summary_lines(rows: list[dict], table: dict[tuple, float], archs) -> list[str]:
    """The study's summary: both geomean metrics, named, their extremes, the 8-way rule."""
    if not table:
        return []
    mean = geometric_mean(table.values())
    low = min(table, key=table.get)
    high = max(table, key=table.get)

    def point(key):
        return f"{key[0]} seq {key[1]} TP {key[2]}"

    lines = [
        "",
        f"geomean speed-up T_standard / T_kraken - 1: {(mean - 1) * 100:.1f} % over {len(table)} points "
        f"(published {PUBLISHED_SPEEDUP * 100:.1f} %, points {PUBLISHED_RANGE[0] * 100:.1f} - {PUBLISHED_RANGE[1] * 100:.1f} %)",
        f"geomean latency reduction 1 - T_kraken / T_standard: {(1 - 1 / mean) * 100:.1f} %",
        f"speed-up per point: least {(table[low] - 1) * 100:.1f} % ({point(low)}), "
        f"greatest {(table[high] - 1) * 100:.1f} % ({point(high)})",
    ]
    times = {(r["model"], r["seq"], r["tp"], r["arch"]): r["ttft_s"] for r in rows}
    eight = sorted({(m, s, t) for m, s, t, _a in times if t == 8})
    if eight and len(archs) > 1:
        fastest = 0
        for key in eight:
            ran = {a: times.get((*key, a)) for a in archs}
            ran = {a: v for a, v in ran.items() if v is not None}
            fastest += bool(ran) and min(ran, key=ran.get) == "kraken"
        verdict = "yes" if fastest == len(eight) else "no"
        lines.append(f"Kraken fastest of {', '.join(archs)} at every 8-way point: {verdict} ({fastest} of {len(eight)})")
    return lines


def format_table(rows: list[dict], archs) -> str:
    points = sorted({(r["model"], r["seq"], r["tp"]) for r in rows}, key=lambda p: (MODELS.index(p[0]) if p[0] in MODELS else 99, p[0], p[1], p[2]))
    times = {(r["model"], r["seq"], r["tp"], r["arch"]): r["ttft_s"] for r in rows}
    header = f"{'model':<11} {'seq':>5} {'tp':>3} " + " ".join(f"{a + ' (ms)':>16}" for a in archs)
    if "kraken" in archs and "standard" in archs:
        header += f" {'kraken speed-up':>16} {'fastest':>9}"
    lines = [header]
    for model, seq, tp in points:
        cells = []
        for arch in archs:
            value = times.get((model, seq, tp, arch))
            cells.append(f"{'does not fit' if value is None else f'{value * 1e3:.3f}':>16}")
        line = f"{model:<11} {seq:>5} {tp:>3} " + " ".join(cells)
        if "kraken" in archs and "standard" in archs:
            std, kr = times.get((model, seq, tp, "standard")), times.get((model, seq, tp, "kraken"))
            ran = {a: times[(model, seq, tp, a)] for a in archs if times.get((model, seq, tp, a)) is not None}
            fastest = min(ran, key=ran.get) if ran else "-"
            line += f" {f'{std / kr:.3f}x' if std and kr else '-':>16} {fastest:>9}"
        lines.append(line)
    return "\n".join(lines)


def plot_speedups(table: dict[tuple, float], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = sorted(table, key=lambda k: (MODELS.index(k[0]) if k[0] in MODELS else 99, k[1], k[2]))
    fig = Figure(figsize=(max(6.0, 0.45 * len(keys) + 2), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colours = {4: "#1f77b4", 8: "#ff7f0e"}
    ax.bar(range(len(keys)), [table[k] for k in keys], color=[colours.get(k[2], "#7f7f7f") for k in keys])
    ax.axhline(1.0, color="black", linewidth=0.8)
    published = 1.0 + PUBLISHED_SPEEDUP
    ax.axhline(published, color="grey", linestyle="--", linewidth=0.8, label=f"published mean ({published:.2f}x)")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{m.removeprefix('gpt3-')}\ns{s} tp{t}" for m, s, t in keys], fontsize=7)
    ax.set_ylabel("Kraken TTFT speed-up over standard")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    save_png(fig.canvas, path)


def plot_breakdown(rows: list[dict], archs, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ran = [r for r in rows if r["ttft_s"] is not None]
    ran.sort(key=lambda r: (MODELS.index(r["model"]) if r["model"] in MODELS else 99, r["seq"], r["tp"], archs.index(r["arch"])))
    fig = Figure(figsize=(max(8.0, 0.3 * len(ran) + 3), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colours = ("#2ca02c", "#1f77b4", "#aec7e8", "#ff7f0e", "#393b79", "#9467bd", "#c7c7c7")
    bottoms = [0.0] * len(ran)
    for (label, keys), colour in zip(PAPER_CATEGORIES.items(), colours, strict=True):
        # Each bar is normalised by the standard architecture's TTFT at the same point.
        heights = []
        for row in ran:
            base = next((r["ttft_s"] for r in ran if (r["model"], r["seq"], r["tp"], r["arch"]) == (row["model"], row["seq"], row["tp"], "standard")), row["ttft_s"])
            heights.append(sum(row["breakdown_s"].get(k, 0.0) for k in keys) / base)
        ax.bar(range(len(ran)), heights, bottom=bottoms, color=colour, label=label, width=0.8)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.set_xticks(range(len(ran)))
    ax.set_xticklabels([f"{r['model'].removeprefix('gpt3-')} s{r['seq']} tp{r['tp']} {r['arch'][0].upper()}" for r in ran], fontsize=6, rotation=90)
    ax.set_ylabel("TTFT / standard TTFT")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Runtime breakdown (S = standard, P = parallel, K = Kraken)")
    fig.tight_layout()
    save_png(fig.canvas, path)


def draw_gantts(args, out: Path) -> list[Path]:
    """Two layers of one configuration per architecture (the first of the grid's models
    if the default configuration is not in it)."""
    model = GANTT_MODEL if GANTT_MODEL in args.models else args.models[0]
    seq = GANTT_SEQ if GANTT_SEQ in args.seqs else args.seqs[0]
    tp = GANTT_TP if GANTT_TP in args.tps else args.tps[0]
    written = []
    for arch in args.archs:
        spec = PointSpec(system=args.system, model=model, arch=arch, tp=tp, seq=seq,
                         attention=args.attention, runtime=args.runtime, layers=2,
                         model_overrides=(("vocab_size", PAPER_VOCAB),), comm_library=args.comm_library)
        path = out / f"gantt-{arch}.png"
        if draw_point_gantt(spec, path, title=f"{model} {arch} TP={tp} seq {seq}: two layers"):
            written.append(path)
    return written


def study(args) -> list[Path]:
    """Run the grid, print its table and speed-ups, write the CSV and charts; the files written."""
    make_folder(check_folder(args.out, "--out"))
    rows = run_grid(args)
    print(format_table(rows, args.archs))
    table = speedups(rows)
    for line in summary_lines(rows, table, args.archs):
        print(line)
    skipped = [r for r in rows if r["ttft_s"] is None]
    for row in skipped:
        print(f"does not fit: {row['model']} {row['arch']} TP={row['tp']} seq {row['seq']}: {row['error']}")
    write_csv(args.out / "kraken_ttft.csv", CSV_COLUMNS, rows)
    written = [args.out / "kraken_ttft.csv"]
    if not args.no_plots:
        if table:
            plot_speedups(table, args.out / "kraken_speedup.png")
            written.append(args.out / "kraken_speedup.png")
        plot_breakdown(rows, args.archs, args.out / "kraken_breakdown.png")
        written.append(args.out / "kraken_breakdown.png")
        written += draw_gantts(args, args.out)
    return written


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_study("kraken_ttft", lambda: study(args))


if __name__ == "__main__":
    sys.exit(main())
