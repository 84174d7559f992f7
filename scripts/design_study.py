#!/usr/bin/env python3
"""Hardware-design study in the manner of LLMCompass: performance per cost around an A100.

Starting from the ``a100`` preset in a DGX-style system (8 devices on one NVSwitch-like
switch, the ``dgx-a100`` links and collective parameters), each design changes one or
two things - compute units, systolic-array size, global buffer, DRAM technology and
bandwidth - and is simulated running GPT-3 175B with tensor parallelism 8:

- prefill: batch 1, a 2048-token prompt -> TTFT and prompt tokens per second;
- decode: batch 8, one token against a 2048-token KV cache -> time per output token
  and generated tokens per second.

Each design's die area and cost come from :mod:`des.area` (the A100's product facts -
process, links, harvesting ratio - with the design's counts and DRAM technology); the
system cost is 8 devices' die, DRAM and packaging cost (the rest of a server is left
out). Performance per cost is throughput per dollar, normalised to the A100.

Writes to ``--out`` (default ``design-out``): ``design_study.csv`` (one row per design,
``ttft_s``/``tpot_s`` empty where the model does not fit the design's memory) and
``design_pareto.png`` (cost against decode and prefill throughput, the Pareto front
marked). Prints the table and whether the LLMCompass finding holds here: designs with
less compute, or DRAM instead of HBM, give better decode performance per cost than the
A100 (LLMCompass reports up to 3.41x).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from des.area import area_and_cost
from des.errors import DoesNotFitError
from des.outputs import check_folder, make_folder, write_csv
from des.plot import save_png
from des.study import PointSpec, prepare_point, run_study, simulate_point
from des.units import GIGA, GiB, MiB

logger = logging.getLogger("design_study")

#: The finding this study is compared with (LLMCompass, ISCA 2024, Sec. VI).
LLMCOMPASS_BEST_PERF_PER_COST = 3.41
DEVICES = 8
GB = GIGA  # bytes: DRAM bandwidths below are in GB/s

#: Designs: name -> (DeviceSpec field changes, DRAM technology). DRAM bandwidths are
#: whole numbers of the technology's units: HBM2e 460.8 GB/s per stack, HBM3 819.2 GB/s
#: per stack (JESD235C / JESD238), DDR5-6400 51.2 GB/s per 64-bit channel (JESD79-5).
DESIGNS: dict[str, tuple[dict, str]] = {
    "A100": ({}, "hbm2e"),
    "1/2 SMs": ({"compute_units": 54}, "hbm2e"),
    "1/4 SMs": ({"compute_units": 27}, "hbm2e"),
    "2x SMs": ({"compute_units": 216}, "hbm2e"),
    "8x8 arrays": ({"systolic_array_rows": 8, "systolic_array_cols": 8}, "hbm2e"),
    "32x32 arrays": ({"systolic_array_rows": 32, "systolic_array_cols": 32}, "hbm2e"),
    "L2 10 MiB": ({"l2_bytes": 10 * MiB}, "hbm2e"),
    "L2 80 MiB": ({"l2_bytes": 80 * MiB}, "hbm2e"),
    "HBM2e 4 stacks": ({"dram_bandwidth_bytes_per_s": 4 * 460.8 * GB, "dram_capacity_bytes": 64 * GiB}, "hbm2e"),
    "HBM3 4 stacks": ({"dram_bandwidth_bytes_per_s": 4 * 819.2 * GB}, "hbm3"),
    "DDR5 16 ch": ({"dram_bandwidth_bytes_per_s": 16 * 51.2 * GB, "dram_capacity_bytes": 128 * GiB}, "ddr5"),
    "DDR5 8 ch": ({"dram_bandwidth_bytes_per_s": 8 * 51.2 * GB, "dram_capacity_bytes": 128 * GiB}, "ddr5"),
    "1/2 SMs + DDR5 16 ch": (
        {"compute_units": 54, "dram_bandwidth_bytes_per_s": 16 * 51.2 * GB, "dram_capacity_bytes": 128 * GiB},
        "ddr5",
    ),
    "1/4 SMs + DDR5 8 ch": (
        {"compute_units": 27, "dram_bandwidth_bytes_per_s": 8 * 51.2 * GB, "dram_capacity_bytes": 128 * GiB},
        "ddr5",
    ),
    "1/2 SMs + HBM2e 4 stacks": (
        {"compute_units": 54, "dram_bandwidth_bytes_per_s": 4 * 460.8 * GB, "dram_capacity_bytes": 64 * GiB},
        "hbm2e",
    ),
}
CSV_COLUMNS = [
    "design", "memory", "compute_units", "systolic_array", "l2_bytes", "dram_bandwidth_bytes_per_s",
    "dram_capacity_bytes", "area_mm2", "device_cost_usd", "system_cost_usd", "ttft_s", "prefill_tokens_per_s",
    "tpot_s", "decode_tokens_per_s", "prefill_perf_per_cost", "decode_perf_per_cost",
    "prefill_perf_per_cost_vs_a100", "decode_perf_per_cost_vs_a100",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("design-out"), help="output folder (default design-out)")
    parser.add_argument("--model", default="gpt3-175b", help="model preset or YAML (default gpt3-175b)")
    parser.add_argument("--arch", default="standard", choices=("standard", "parallel", "kraken"))
    parser.add_argument("--tp", type=int, default=DEVICES, help=f"tensor-parallel degree (default {DEVICES})")
    parser.add_argument("--seq", type=int, default=2048, help="prompt length (prefill) and KV length (decode)")
    parser.add_argument("--decode-batch", type=int, default=8, help="decode batch (default 8)")
    parser.add_argument("--layers", type=int, help="simulate only this many layers (quick look)")
    parser.add_argument("--designs", nargs="+", choices=list(DESIGNS), metavar="DESIGN", help="a subset of the designs")
    parser.add_argument("--no-plots", action="store_true")
    return parser.parse_args(argv)


def design_system(name: str, changes: dict):
    """The dgx-a100 system with every device replaced by the design."""
    from topologies import load_device, load_system, system_from_graph

    base = load_system("dgx-a100")
    # The spec keeps the name "a100" so the area model applies the A100's product facts
    # (process, NVLink ports, register file, harvesting ratio) to the design's counts.
    device = dataclasses.replace(load_device("a100"), **changes)
    return system_from_graph(f"dgx-{name}", base.graph, device, base.collective, description=name), device


def run_design(name: str, args) -> dict:
    changes, memory = DESIGNS[name]
    system, device = design_system(name, changes)
    area = area_and_cost(device, memory=memory)
    row = {
        "design": name,
        "memory": memory,
        "compute_units": device.compute_units,
        "systolic_array": f"{device.systolic_array_rows}x{device.systolic_array_cols}",
        "l2_bytes": device.l2_bytes,
        "dram_bandwidth_bytes_per_s": device.dram_bandwidth_bytes_per_s,
        "dram_capacity_bytes": device.dram_capacity_bytes,
        "area_mm2": area["total_mm2"],
        "device_cost_usd": area["cost_usd"],
        "system_cost_usd": area["cost_usd"] * args.tp,
    }
    phases = {
        "prefill": dict(phase="prefill", batch=1, seq=args.seq),
        "decode": dict(phase="decode", batch=args.decode_batch, seq=args.seq, kv_len=args.seq),
    }
    for phase, options in phases.items():
        spec = PointSpec(system=system, model=args.model, arch=args.arch, tp=args.tp, layers=args.layers, **options)
        try:
            record = simulate_point(prepare_point(spec)).record
        except DoesNotFitError as exc:
            logger.warning("%s does not fit for %s: %s", name, phase, exc)
            row[f"{phase}_error"] = str(exc)
            continue
        latency = record["latency_s"]
        tokens = options["batch"] * (options["seq"] if phase == "prefill" else 1)
        key = "ttft_s" if phase == "prefill" else "tpot_s"
        row[key] = latency
        row[f"{phase}_tokens_per_s"] = tokens / latency
        row[f"{phase}_perf_per_cost"] = tokens / latency / row["system_cost_usd"]
    return row


def normalise(rows: list[dict]) -> None:
    base = next((r for r in rows if r["design"] == "A100"), None)
    for phase in ("prefill", "decode"):
        reference = base.get(f"{phase}_perf_per_cost") if base else None
        for row in rows:
            value = row.get(f"{phase}_perf_per_cost")
            row[f"{phase}_perf_per_cost_vs_a100"] = value / reference if value and reference else None


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both lower cost and higher throughput."""
    front = []
    for i, (cost, perf) in enumerate(points):
        dominated = any(
            (c <= cost and p >= perf) and (c < cost or p > perf) for j, (c, p) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return front


def _cell(row: dict, key: str, scale: float = 1.0, fmt: str = "{:.3f}", width: int = 9) -> str:
    value = row.get(key)
    return f"{'no fit' if value is None else fmt.format(value * scale):>{width}}"


def format_table(rows: list[dict]) -> str:
    header = (f"{'design':<26} {'area mm2':>9} {'$/device':>9} {'TTFT ms':>9} {'TPOT ms':>9} "
              f"{'prefill tok/s/$':>15} {'decode tok/s/$':>15} {'prefill vs A100':>15} {'decode vs A100':>15}")
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['design']:<26} {row['area_mm2']:>9.0f} {row['device_cost_usd']:>9.0f} "
            f"{_cell(row, 'ttft_s', 1e3)} {_cell(row, 'tpot_s', 1e3)} "
            f"{_cell(row, 'prefill_perf_per_cost', 1, '{:.4f}', 15)} {_cell(row, 'decode_perf_per_cost', 1, '{:.5f}', 15)} "
            f"{_cell(row, 'prefill_perf_per_cost_vs_a100', 1, '{:.2f}x', 15)} "
            f"{_cell(row, 'decode_perf_per_cost_vs_a100', 1, '{:.2f}x', 15)}"
        )
    return "\n".join(lines)


def finding(rows: list[dict]) -> str:
    """Whether less compute or DRAM instead of HBM beats the A100 on decode perf/cost."""
    candidates = [r for r in rows if r["design"] != "A100" and r.get("decode_perf_per_cost_vs_a100")]
    cheaper = [r for r in candidates if ("SMs" in r["design"] and "2x" not in r["design"]) or r["memory"] == "ddr5"]
    if not cheaper:
        return "no reduced-compute or DDR design ran"
    best = max(cheaper, key=lambda r: r["decode_perf_per_cost_vs_a100"])
    gain = best["decode_perf_per_cost_vs_a100"]
    if gain <= 1.0:
        verdict = "not reproduced"
    elif gain < 0.5 * LLMCOMPASS_BEST_PERF_PER_COST:
        verdict = "direction reproduced, far smaller gain"
    else:
        verdict = "reproduced"
    return (
        f"LLMCompass finding ({verdict}): the best design with less compute or DDR instead of HBM is "
        f"'{best['design']}' at {gain:.2f}x the A100's decode performance per cost "
        f"(LLMCompass: up to {LLMCOMPASS_BEST_PERF_PER_COST}x)"
    )


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    for index, phase in enumerate(("prefill", "decode")):
        ax = fig.add_subplot(1, 2, index + 1)
        ran = [r for r in rows if r.get(f"{phase}_tokens_per_s")]
        points = [(r["system_cost_usd"], r[f"{phase}_tokens_per_s"]) for r in ran]
        front = set(pareto(points))
        for i, (row, (cost, perf)) in enumerate(zip(ran, points, strict=True)):
            ax.scatter([cost], [perf], color="#d62728" if i in front else "#1f77b4", s=18, zorder=3)
            ax.annotate(row["design"], (cost, perf), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ordered = sorted(points[i] for i in front)
        if ordered:
            ax.plot([p[0] for p in ordered], [p[1] for p in ordered], color="#d62728", linewidth=0.8, label="Pareto front")
        ax.set_xlabel("system cost (USD, 8 devices: die + DRAM + packaging)")
        ax.set_ylabel(f"{phase} throughput (tokens/s)")
        ax.set_title(f"{phase}")
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    save_png(fig.canvas, path)


def study(args) -> list[Path]:
    """Run the designs, print the table and the finding, write the CSV and chart; the files written."""
    make_folder(check_folder(args.out, "--out"))
    rows = [run_design(name, args) for name in (args.designs or DESIGNS)]
    normalise(rows)
    print(format_table(rows))
    print()
    print(finding(rows))
    path = write_csv(args.out / "design_study.csv", CSV_COLUMNS, rows)
    written = [path]
    if not args.no_plots:
        plot(rows, args.out / "design_pareto.png")
        written.append(args.out / "design_pareto.png")
    return written


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_study("design_study", lambda: study(args))


if __name__ == "__main__":
    sys.exit(main())
