"""The ``des run`` command: one model's inference on one system, or a comparison.

``des run`` with an ``--arch`` simulates that architecture; without one it compares
``standard`` and ``kraken`` (the README's main job: GPT-3 13B, TP 8, prefill 2048 on a
DGX A100). Each point is built, checked and simulated by :mod:`des.study`; this module
parses the options, prints the table or the JSON record, and writes the traces and
Gantt charts. Every point is built and checked before any is simulated, and every
output path before anything runs; files are written after the result is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from des.cli.args import add_fault_options, add_simulation_limits, output_path, positive_int
from des.cli.outputs import EXIT_BAD_INPUT, write_outputs
from des.errors import DesError
from des.specs import LIBRARIES
from des.study.defaults import DECODE, DEFAULT_MODEL, DEFAULT_SEQ, DEFAULT_SYSTEM, DEFAULT_TP

#: Architectures compared when no --arch is given.
COMPARED_ARCHS = ("standard", "kraken")
#: Folder the default job writes its trace and Gantt charts to.
DEFAULT_OUT = "des-out"
#: Width of one architecture's column in the table.
_COLUMN = 14
#: A breakdown value below this fraction of the latency is float rounding, shown as 0.
_NOISE = 1e-9


def add_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``des run`` on the main parser's ``commands``."""
    parser = commands.add_parser(
        "run",
        help="simulate a model's inference (default: Kraken vs standard, GPT-3 13B on a DGX A100)",
        description=(
            "Simulate one model's inference on a system. Without --arch, compare the standard "
            "(Megatron) and Kraken architectures."
        ),
    )
    parser.add_argument("--system", default=DEFAULT_SYSTEM, help=f"system preset or YAML path (default {DEFAULT_SYSTEM})")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"model preset, model YAML or Hugging Face config.json path (default {DEFAULT_MODEL})")
    parser.add_argument("--arch", choices=("standard", "parallel", "kraken", "ladder"),
                        help="architecture (default: compare standard and kraken)")
    parser.add_argument("--ep", type=positive_int, default=1, metavar="N",
                        help="expert parallelism of a mixture of experts: 1 (TP inside every expert, default) or "
                        "the TP degree (whole experts per device, tokens exchanged all-to-all)")
    parser.add_argument("--moe-skew", type=float, default=0.0, metavar="S",
                        help="routing skew, a Zipf exponent over the experts (default 0: balanced)")
    parser.add_argument("--moe-seed", type=int, default=0, metavar="N", help="seed of the skewed routing (default 0)")
    parser.add_argument("--pp", type=positive_int, default=1, metavar="N",
                        help="pipeline stages of consecutive layers, each on TP devices (default 1)")
    parser.add_argument("--microbatches", type=positive_int, default=1, metavar="M",
                        help="micro-batches the batch is split into for the pipeline (default 1)")
    parser.add_argument("--devices", type=lambda text: tuple(d for d in text.split(",") if d), metavar="D1,D2,...",
                        help="devices in rank order, stage by stage (default: the system's first TP x PP, node-major)")
    parser.add_argument("--exact", action="store_true",
                        help="simulate every layer and every kernel and collective (no fast path, no replays)")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32", "fp8"),
                        help="element type (default: the model's, else fp16)")
    parser.add_argument("--tp", type=positive_int, default=DEFAULT_TP, metavar="N", help=f"tensor-parallel degree (default {DEFAULT_TP})")
    parser.add_argument("--batch", type=positive_int, default=1, metavar="B", help="batch size (default 1)")
    parser.add_argument("--seq", type=positive_int, metavar="S", help=f"prompt length for prefill (default {DEFAULT_SEQ})")
    parser.add_argument("--phase", choices=("prefill", "decode"), default="prefill", help="prefill (TTFT) or decode (time per output token)")
    parser.add_argument("--kv-len", type=positive_int, metavar="L", help="KV-cache length for decode")
    parser.add_argument("--attention", choices=("fused", "unfused"), default="fused", help="fused (flash) or unfused attention kernels")
    parser.add_argument("--runtime", choices=("eager", "graph"), default="graph", help="kernel launch profile (default graph)")
    parser.add_argument(
        "--comm-library", choices=LIBRARIES,
        help="communication library (default: the runtime's: graph -> trtllm, eager -> nccl)",
    )
    parser.add_argument("--layers", type=positive_int, metavar="K", help="simulate only K transformer layers (no embeddings or LM head)")
    parser.add_argument("--steps", action="store_true",
                        help="also trace every ring step of every channel (large: most of a model's spans)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--trace", type=output_path, metavar="FILE",
                        help="write a Chrome/Perfetto trace (JSON); comparing, FILE-<arch>.json for each")
    parser.add_argument("--gantt", type=output_path, metavar="FILE",
                        help="draw a Gantt chart (PNG); comparing, FILE-<arch>.png for each")
    parser.add_argument("--out", type=Path, metavar="DIR", help=f"write trace and Gantt chart(s) to DIR (default for the comparison: {DEFAULT_OUT})")
    add_fault_options(parser)
    add_simulation_limits(parser)
    parser.set_defaults(func=run_command)
    return parser


def spec_from_args(args: argparse.Namespace, arch: str):
    """The :class:`~des.study.PointSpec` of parsed ``des run`` options for one architecture."""
    from des.study.point import PointSpec

    spec = PointSpec(
        system=args.system,
        model=args.model,
        arch=arch,
        tp=args.tp,
        batch=args.batch,
        seq=args.seq if args.seq is not None else DEFAULT_SEQ,
        phase=args.phase,
        kv_len=args.kv_len,
        attention=args.attention,
        runtime=args.runtime,
        comm_library=args.comm_library,
        layers=args.layers,
        faults=tuple(args.fail),
        degrade=tuple(args.degrade),
        ep=args.ep,
        moe_skew=args.moe_skew,
        moe_seed=args.moe_seed,
        dtype=args.dtype,
        pp=args.pp,
        microbatches=args.microbatches,
        exact=args.exact,
        devices=args.devices,
    )
    spec.check()
    if args.phase == DECODE and args.seq is not None:
        raise DesError("--seq is the prompt length of --phase prefill; decode attends over --kv-len instead")
    return spec


def per_arch_path(path: Path, arch: str) -> Path:
    """``run.json`` -> ``run-kraken.json``: one file per architecture of a comparison."""
    return path.with_name(f"{path.stem}-{arch}{path.suffix}")


def _table(points: list) -> str:
    """One column per architecture: the latency, its breakdown, memory and cost."""
    from des.metrics import BREAKDOWN_CATEGORIES
    from des.units import format_bytes, format_count, format_seconds

    first = points[0]
    spec = first.spec
    metric = "TTFT" if spec.phase == "prefill" else "time per output token"
    what = f"seq {spec.seq}" if spec.phase == "prefill" else f"KV length {spec.kv_len}"
    faults = "".join(f", {f['action']} {f['spec']}" for f in first.record.get("faults", ()))
    layers = f", {format_count(spec.layers, 'layer')}" if spec.layers else ""
    lines = [
        f"{first.record['model']} on {first.record['system']}{faults}, TP={spec.tp}, batch {spec.batch}, {spec.phase} {what}, "
        f"{spec.attention} attention, {spec.runtime} runtime{layers}",
        "",
        f"{'':<24}" + "".join(f"{p.spec.arch:>{_COLUMN}}" for p in points),
        f"{metric:<24}" + "".join(f"{format_seconds(p.record['latency_s']):>{_COLUMN}}" for p in points),
    ]
    for category in BREAKDOWN_CATEGORIES:
        values = [p.record["breakdown_s"].get(category, 0.0) for p in points]
        values = [v if abs(v) > _NOISE * p.record["latency_s"] else 0.0 for v, p in zip(values, points, strict=True)]
        if any(values):
            lines.append(f"  {category:<22}" + "".join(f"{format_seconds(v):>{_COLUMN}}" for v in values))
    lines.append(f"{'memory per device':<24}" + "".join(
        f"{format_bytes(p.record['memory_bytes_per_device']['total']):>{_COLUMN}}" for p in points))
    lines.append(f"{'events simulated':<24}" + "".join(f"{p.record['events']:>{_COLUMN},}" for p in points))
    if len(points) == 2:
        base, other = points
        saved = 1.0 - other.record["latency_s"] / base.record["latency_s"]
        lines.append("")
        lines.append(f"{other.spec.arch} vs {base.spec.arch}: {saved * 100:+.1f} % {metric} reduction "
                     f"({base.record['latency_s'] / other.record['latency_s']:.2f}x speed-up)")
    return "\n".join(lines)


def _each(specs: list, work, compare: bool) -> list:
    """``work(item)`` for each item; in a comparison an error names the architecture(s) it broke."""
    results, errors = [], []
    for spec, item in specs:
        try:
            results.append(work(item))
        except DesError as exc:
            errors.append((spec.arch, exc))
    if not errors:
        return results
    if not compare:
        raise errors[0][1]
    messages = {str(exc) for _arch, exc in errors}
    if len(errors) == len(specs) and len(messages) == 1:
        raise errors[0][1]
    broken = "; ".join(f"{arch}: {exc}" for arch, exc in errors)
    fine = [spec.arch for spec, _item in specs if spec.arch not in {arch for arch, _exc in errors}]
    also = f" ({', '.join(fine)} would run)" if fine else ""
    raise type(errors[0][1])(f"{broken}{also}")


def _simulate(prepared, max_pieces: int | None, steps: bool = False):
    from des.progress import Progress
    from des.study.point import simulate_point

    with Progress(f"des run {prepared.spec.arch}", unit="tasks") as progress:
        return simulate_point(prepared, progress=progress, max_piece_transfers=max_pieces, steps=steps)


def _files(point, trace_path: Path | None, gantt_path: Path | None) -> list:
    from des.plot import gantt
    from des.study.gantt import gantt_spans, gantt_title
    from des.trace import write_chrome_trace

    return [
        (trace_path, lambda path: write_chrome_trace(point.trace.spans, path)),
        (gantt_path, lambda path: gantt(gantt_spans(point), path, title=gantt_title(point))),
    ]


def run_command(args: argparse.Namespace) -> int:
    """Run ``des run`` from parsed arguments; returns the exit status."""
    from des.outputs import check_folder, check_writable, make_folder
    from des.study.point import prepare_point

    compare = args.arch is None
    archs = COMPARED_ARCHS if compare else (args.arch,)
    specs = [spec_from_args(args, arch) for arch in archs]
    out = args.out if args.out is not None else (Path(DEFAULT_OUT) if compare else None)
    if out is not None:
        check_folder(out, "--out")
    targets: dict[str, tuple[Path | None, Path | None]] = {}
    for arch in archs:
        trace_path, gantt_path = args.trace, args.gantt
        if compare:
            trace_path = per_arch_path(trace_path, arch) if trace_path else None
            gantt_path = per_arch_path(gantt_path, arch) if gantt_path else None
            for option, path in (("--trace", trace_path), ("--gantt", gantt_path)):
                if path is not None:
                    check_writable(path, option)
        targets[arch] = (trace_path, gantt_path)
    # Build and check every point before simulating any: a point that does not fit
    # stops the command before anything runs.
    prepared = _each([(spec, spec) for spec in specs], prepare_point, compare)
    points = _each([(p.spec, p) for p in prepared], lambda p: _simulate(p, args.max_pieces, args.steps), compare)
    if args.json:
        record = dict(points[-1].record)
        if compare:
            record["baseline"] = points[0].record
            record["speedup"] = points[0].record["latency_s"] / points[-1].record["latency_s"]
        print(json.dumps(record, sort_keys=True))
    else:
        print(_table(points))
    files: list = []
    status = 0
    if out is not None:
        try:
            make_folder(out)
        except DesError as exc:
            print(f"des: error: {exc}", file=sys.stderr)
            status = EXIT_BAD_INPUT
        else:
            for point in points:
                arch = point.spec.arch
                files += _files(point, out / f"trace-{arch}.json", out / f"gantt-{arch}.png")
    for point in points:
        files += _files(point, *targets[point.spec.arch])
    stream = sys.stderr if args.json else sys.stdout
    return max(status, write_outputs(files, stream))
