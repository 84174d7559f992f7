#!/usr/bin/env python3
"""Mixture-of-experts placement: TP inside the experts, or whole experts and all-to-all.

Mixtral-8x7B (``mixtral-8x7b``) and a DeepSeek-style model (``deepseek-style-16b``: 64
routed experts, 6 per token, 2 shared, the first layer dense; standard attention in place
of DeepSeek's latent attention) on one node (``dgx-h100``, TP 8) and two
(``2x-dgx-h100``: TP 16, or TP 8 x PP 2), each with the experts TP-split (EP 1) or
placed whole (EP = TP, tokens dispatched and combined by event-simulated all-to-alls),
for prefill of 2048 tokens and decode of 32 sequences against a 2048-token cache, all
layers, bf16, the ``graph`` runtime. Then the same at EP 8 on one node with a skewed
router (Zipf exponents ``--skews``, seeded): the busiest expert's rank sets the pace.

Writes to ``--out`` (default ``moe-out``): ``moe_study.csv`` (one row per point:
latency, all-to-all time and its share, memory, simulation cost), ``moe_skew.csv``,
``moe_skew.png`` (latency and all-to-all time against the skew) and
``gantt-<model>-ep<N>.png`` (one MoE layer of prefill 2048 at EP 1 and EP 8). Prints
both tables. ``--models``, ``--phases`` and ``--layers`` shrink the grid.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from des.errors import DesError, DoesNotFitError
from des.outputs import check_folder, make_folder, write_csv
from des.plot import save_png
from des.study import PointSpec, draw_point_gantt, prepare_point, run_study, simulate_point

logger = logging.getLogger("moe_study")

MODELS = ("mixtral-8x7b", "deepseek-style-16b")
#: (label, system, TP, PP, EP)
PLACEMENTS = (
    ("1 node TP8 EP1", "dgx-h100", 8, 1, 1),
    ("1 node TP8 EP8", "dgx-h100", 8, 1, 8),
    ("2 nodes TP16 EP1", "2x-dgx-h100", 16, 1, 1),
    ("2 nodes TP16 EP16", "2x-dgx-h100", 16, 1, 16),
    ("2 nodes TP8xPP2 EP8", "2x-dgx-h100", 8, 2, 8),
)
PHASES = {"prefill-2048": ("prefill", 1, 2048, None), "decode-b32": ("decode", 32, None, 2048)}
SKEWS = (0.0, 0.5, 1.0, 1.5, 2.0)
CSV_COLUMNS = ["model", "placement", "phase", "latency_s", "alltoall_s", "alltoall_share", "fits",
               "weight_bytes_per_device", "fast_path", "events", "wall_s"]
SKEW_COLUMNS = ["model", "skew", "latency_s", "alltoall_s", "slowdown"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("moe-out"), help="output folder (default moe-out)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), metavar="MODEL")
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=list(PHASES), metavar="PHASE")
    parser.add_argument("--skews", nargs="+", type=float, default=list(SKEWS), metavar="S")
    parser.add_argument("--seed", type=int, default=0, help="seed of the skewed routing (default 0)")
    parser.add_argument("--layers", type=int, help="simulate only this many layers (quick look)")
    parser.add_argument("--no-plots", action="store_true", help="write the CSVs only")
    return parser.parse_args(argv)


def spec_for(args, model, system, tp, pp, ep, phase, skew=0.0, layers=None) -> PointSpec:
    kind, batch, seq, kv_len = PHASES[phase]
    return PointSpec(system=system, model=model, arch="standard", tp=tp, pp=pp, ep=ep, batch=batch, seq=seq or 128,
                     phase=kind, kv_len=kv_len, runtime="graph", layers=layers or args.layers, moe_skew=skew,
                     moe_seed=args.seed)


def run(spec: PointSpec) -> dict | str:
    """The point's record, or why it does not run (it does not fit, or the model cannot be
    placed so: Mixtral's 8 experts over 16 ranks, DeepSeek-style's 27 layers in 2 stages)."""
    try:
        prepared = prepare_point(spec)
    except DoesNotFitError as exc:
        return f"does not fit: {exc}"
    except DesError as exc:
        if "does not divide" not in str(exc):
            raise
        return f"not placeable: {exc}"
    return simulate_point(prepared).record


def alltoall_s(record: dict) -> float:
    return float(record["per_op"].get("alltoall", 0.0))


def study(args) -> list[Path]:
    make_folder(check_folder(args.out, "--out"))
    rows = []
    for model in args.models:
        for label, system, tp, pp, ep in PLACEMENTS:
            for phase in args.phases:
                record = run(spec_for(args, model, system, tp, pp, ep, phase))
                row = {"model": model, "placement": label, "phase": phase, "fits": isinstance(record, dict)}
                if not row["fits"]:
                    row["why"] = record
                else:
                    a2a = alltoall_s(record)
                    row.update(latency_s=record["latency_s"], alltoall_s=a2a, alltoall_share=a2a / record["latency_s"],
                               weight_bytes_per_device=record["weight_bytes_per_device"],
                               fast_path=record["fast_path"], events=record["events"], wall_s=record["wall_s"])
                rows.append(row)
    print(f"{'model':<19} {'placement':<20} {'phase':<13} {'latency':>11} {'all-to-all':>11} {'share':>6} {'weights/dev':>12}")
    for row in rows:
        if not row["fits"]:
            print(f"{row['model']:<19} {row['placement']:<20} {row['phase']:<13} {row['why']}")
            continue
        print(f"{row['model']:<19} {row['placement']:<20} {row['phase']:<13} {row['latency_s'] * 1e3:>8.3f} ms "
              f"{row['alltoall_s'] * 1e3:>8.3f} ms {row['alltoall_share'] * 100:>5.1f}% "
              f"{row['weight_bytes_per_device'] / 2**30:>9.1f} GiB")
    skew_rows = []
    for model in args.models:
        base = None
        for skew in args.skews:
            record = run(spec_for(args, model, "dgx-h100", 8, 1, 8, "prefill-2048", skew))
            if not isinstance(record, dict):
                continue
            base = base or record["latency_s"]
            skew_rows.append({"model": model, "skew": skew, "latency_s": record["latency_s"],
                              "alltoall_s": alltoall_s(record), "slowdown": record["latency_s"] / base})
    print("\nrouting skew at EP 8 on one node, prefill 2048 (Zipf exponent; 0 = balanced):")
    for row in skew_rows:
        print(f"  {row['model']:<19} skew {row['skew']:>4.1f}: {row['latency_s'] * 1e3:8.3f} ms "
              f"(x{row['slowdown']:.3f}), all-to-all {row['alltoall_s'] * 1e3:.3f} ms")
    write_csv(args.out / "moe_study.csv", CSV_COLUMNS, rows)
    write_csv(args.out / "moe_skew.csv", SKEW_COLUMNS, skew_rows)
    written = [args.out / "moe_study.csv", args.out / "moe_skew.csv"]
    if not args.no_plots:
        if skew_rows:
            plot_skew(skew_rows, args.out / "moe_skew.png")
            written.append(args.out / "moe_skew.png")
        for model in args.models:
            for ep in (1, 8):
                path = args.out / f"gantt-{model}-ep{ep}.png"
                # One MoE layer (after a dense one where the model starts dense).
                spec = spec_for(args, model, "dgx-h100", 8, 1, ep, "prefill-2048", layers=2)
                if draw_point_gantt(spec, path, title=f"{model} TP 8 EP {ep}, prefill 2048: two layers"):
                    written.append(path)
    return written


def plot_skew(rows: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for model in sorted({r["model"] for r in rows}):
        points = [r for r in rows if r["model"] == model]
        ax.plot([r["skew"] for r in points], [r["slowdown"] for r in points], marker="o", label=f"{model} latency")
        ax.plot([r["skew"] for r in points], [r["alltoall_s"] / points[0]["alltoall_s"] for r in points],
                marker="x", linestyle="--", label=f"{model} all-to-all")
    ax.set_xlabel("routing skew (Zipf exponent)")
    ax.set_ylabel("relative to balanced routing")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    save_png(fig.canvas, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_study("moe_study", lambda: study(args))


if __name__ == "__main__":
    sys.exit(main())
