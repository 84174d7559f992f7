"""The ``des run`` command: one model's inference on one system, or a comparison.

``des run`` with an ``--arch`` simulates that architecture; without one it compares
``standard`` and ``kraken`` (the README's main job: GPT-3 13B, TP 8, prefill 2048 on a
DGX A100). Each point is built by :mod:`workloads` (task graph and memory estimate),
checked against the devices' DRAM before anything runs, simulated by the engine and
summarised by :mod:`des.metrics`. :func:`run_point` is the one function that does this,
shared with the scenario scripts and sweeps, so they all report the same numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from des.errors import DesError, DoesNotFitError

logger = logging.getLogger(__name__)

#: Defaults of the main job: a mid-size model where the all-reduces matter.
DEFAULT_SYSTEM = "dgx-a100"
DEFAULT_MODEL = "gpt3-13b"
DEFAULT_TP = 8
DEFAULT_SEQ = 2048
#: Architectures compared when no --arch is given.
COMPARED_ARCHS = ("standard", "kraken")
#: Folder the default job writes its trace and Gantt charts to.
DEFAULT_OUT = "des-out"
#: Layers drawn in a Gantt chart of a whole model (two, after the first, whose
#: all-reduce pattern every later layer repeats).
GANTT_LAYERS = (2, 3)


@dataclass(frozen=True)
class PointSpec:
    """One simulation point: what to run where.

    Attributes mirror the ``des run`` options; ``arch`` is one architecture.
    ``system`` is a preset name, a YAML path or a built :class:`~des.specs.SystemSpec`
    (studies of systems that are not presets); ``model`` likewise a name, a path or a
    built :class:`~workloads.model.ModelSpec` (sweeps build each once per worker). ``faults`` and ``degrade`` are
    ``--fail`` and ``--degrade`` values (:mod:`des.faults`).
    """

    system: Any = DEFAULT_SYSTEM
    model: Any = DEFAULT_MODEL
    arch: str = "standard"
    tp: int = DEFAULT_TP
    batch: int = 1
    seq: int = DEFAULT_SEQ
    phase: str = "prefill"
    kv_len: int | None = None
    attention: str = "fused"
    runtime: str = "graph"
    layers: int | None = None
    faults: tuple[str, ...] = ()
    degrade: tuple[str, ...] = ()
    dtype: str = "fp16"
    #: ``(dotted path, value)`` pairs set in the system's YAML mapping before it is
    #: built, e.g. ``("device.compute_units", 54)`` (sweeps; see :mod:`des.sweep`).
    system_overrides: tuple[tuple[str, Any], ...] = ()
    #: The same for the model's YAML mapping, e.g. ``("hidden", 4096)``.
    model_overrides: tuple[tuple[str, Any], ...] = ()


@dataclass
class PointResult:
    """What :func:`run_point` produced.

    Attributes
    ----------
    spec : PointSpec
        The point.
    record : dict
        JSON-ready summary (latency, breakdown, per-operator time, memory, events,
        wall time, the point's parameters).
    trace : Trace
        The run's spans (empty when tracing was off).
    result : RunResult
        The engine's result.
    workload : Workload
        The built workload (graph, model actually simulated, memory estimate).
    """

    spec: PointSpec
    record: dict[str, Any]
    trace: Any = field(repr=False)
    result: Any = field(repr=False)
    workload: Any = field(repr=False)


def group_for(system, tp: int) -> tuple[str, ...]:
    """The first ``tp`` devices of ``system`` (node-major), or a clear error."""
    devices = system.devices
    if tp > len(devices):
        raise DesError(f"--tp {tp} needs {tp} devices but system '{system.name}' has {len(devices)}")
    return tuple(devices[:tp])


@dataclass
class PreparedPoint:
    """A point built and checked, ready to simulate (nothing has run yet)."""

    spec: PointSpec
    system: Any = field(repr=False)
    model: Any = field(repr=False)
    devices: tuple[str, ...]
    workload: Any = field(repr=False)
    prepare_s: float = 0.0
    faults: tuple = ()


def point_system(spec: PointSpec):
    """The point's system: its YAML mapping with ``spec.system_overrides`` set, built.

    A device named by preset or path is expanded into its fields first when a path
    goes through it, so ``device.compute_units`` works either way.
    """
    from des.specs import read_yaml
    from des.sweep.overrides import apply_overrides
    from topologies import device_mapping, system_from_mapping, system_path

    path = system_path(spec.system)

    def expand(keys: tuple[str, ...], value: Any) -> Any:
        if keys[-1] == "device" and isinstance(value, str):
            return device_mapping(value, path.parent)
        return value

    data = apply_overrides(read_yaml(path), spec.system_overrides, str(path), expand)
    _check_shadowed_collective_fields(spec.system_overrides, data, path)
    return system_from_mapping(data, str(path), path.parent, default_name=path.stem)


#: Collective fields that each protocol of ``collective.protocols`` sets for itself.
_PROTOCOL_FIELDS = (
    "launch_latency_s",
    "step_latency_s",
    "bandwidth_efficiency",
    "chunk_bytes",
    "inter_node_step_latency_s",
    "inter_node_bandwidth_efficiency",
)


def _check_shadowed_collective_fields(overrides, data: Any, path) -> None:
    """Refuse an override that the system's per-protocol parameters would ignore.

    With ``collective.protocols`` each call runs one protocol's own latencies and
    efficiency, so setting ``collective.bandwidth_efficiency`` would change nothing:
    say so, rather than report points that silently did not vary.
    """
    collective = data.get("collective") if isinstance(data, dict) else None
    if not isinstance(collective, dict) or not collective.get("protocols"):
        return
    for dotted, _value in overrides:
        keys = dotted.split(".")
        if len(keys) == 2 and keys[0] == "collective" and keys[1] in _PROTOCOL_FIELDS:
            names = ", ".join(collective["protocols"])
            raise DesError(
                f"{path}: collective.{keys[1]} is set per protocol in this system "
                f"(collective.protocols: {names}), so overriding it would change nothing; "
                f"override collective.protocols.<protocol>.{keys[1]} instead, or set "
                f"collective.protocols to null to use the single-protocol model"
            )


def point_model(spec: PointSpec):
    """The point's model: its YAML mapping with ``spec.model_overrides`` set, built."""
    from des.specs import read_yaml
    from des.sweep.overrides import apply_overrides
    from workloads import model_from_mapping, model_path

    path = model_path(spec.model)
    data = apply_overrides(read_yaml(path), spec.model_overrides, str(path))
    return model_from_mapping(data, str(path), default_name=path.stem)


def prepare_point(spec: PointSpec) -> PreparedPoint:
    """Load the system and model, build the workload and check it fits in memory.

    Raises
    ------
    DesError
        For bad input or a model that does not fit on every device of the group.
    """
    from des.runtime import runtime_profile
    from topologies import load_system
    from workloads import build_workload, check_memory, load_model

    wall_start = time.perf_counter()
    runtime_profile(spec.runtime)  # an unknown profile fails here, before any work
    if spec.system_overrides:
        system = point_system(spec)
    else:
        system = load_system(spec.system) if isinstance(spec.system, str) else spec.system
    if spec.model_overrides:
        model = point_model(spec)
    else:
        model = load_model(spec.model) if isinstance(spec.model, str) else spec.model
    devices = group_for(system, spec.tp)
    faults = _point_faults(spec, system, devices)
    workload = build_workload(
        model,
        arch=spec.arch,
        phase=spec.phase,
        tp=spec.tp,
        devices=devices,
        batch=spec.batch,
        seq=spec.seq,
        kv_len=spec.kv_len,
        attention=spec.attention,
        layers=spec.layers,
        dtype=spec.dtype,
    )
    for device in devices:
        device_spec = system.device_spec(device)
        check_memory(workload, device_spec.dram_capacity_bytes, where=f"{device} ({device_spec.name})")
    return PreparedPoint(
        spec=spec,
        system=system,
        model=model,
        devices=devices,
        workload=workload,
        prepare_s=time.perf_counter() - wall_start,
        faults=faults,
    )


def _point_faults(spec: PointSpec, system, devices: tuple[str, ...]) -> tuple:
    """The point's faults, parsed; a run they break before it starts stops here."""
    if not (spec.faults or spec.degrade):
        return ()
    from des.faults import apply_faults, check_groups, parse_faults

    faults = parse_faults(system, spec.faults, spec.degrade)
    check_groups(system, apply_faults(system, faults), faults, {f"the run (devices {', '.join(devices)})": devices})
    return faults


def simulate_point(prepared: PreparedPoint, *, links: bool = False) -> PointResult:
    """Simulate a prepared point and summarise it.

    Parameters
    ----------
    prepared : PreparedPoint
        From :func:`prepare_point`.
    links : bool
        Also record one span per chunk per link hop (large). Kernels, launches,
        collectives and their steps are always recorded: the metrics come from them.
    """
    from des.engine import Engine, runtime_launch
    from des.metrics import summarize
    from des.trace import Trace

    wall_start = time.perf_counter()
    spec, system, workload, devices = prepared.spec, prepared.system, prepared.workload, prepared.devices
    spans = Trace(enabled=True, links=links)
    result = Engine(system, trace=spans, launch_fn=runtime_launch(spec.runtime), faults=prepared.faults).run(workload.graph)
    metrics = summarize(result, workload.graph, devices)
    record = {
        "system": system.name,
        "model": prepared.model.name,
        "arch": spec.arch,
        "tp": spec.tp,
        "batch": spec.batch,
        "seq": spec.seq,
        "phase": spec.phase,
        "kv_len": spec.kv_len,
        "attention": spec.attention,
        "runtime": spec.runtime,
        "layers": spec.layers,
        "dtype": spec.dtype,
        "devices": list(devices),
        "simulated_model": workload.describe(),
        "memory_bytes_per_device": workload.memory.as_dict(),
        "memory_capacity_bytes": min(system.device_spec(d).dram_capacity_bytes for d in devices),
        "tasks": len(workload.graph),
    }
    record.update(metrics.as_dict())  # latency_s, breakdown_s, per_op, events...
    record["metric"] = "ttft_s" if spec.phase == "prefill" else "tpot_s"
    record["faults"] = [dict(f.as_dict(), applied=f in result.faults_applied) for f in prepared.faults]
    record["wall_s"] = prepared.prepare_s + time.perf_counter() - wall_start
    return PointResult(spec=spec, record=record, trace=spans, result=result, workload=workload)


def run_point(spec: PointSpec, *, links: bool = False) -> PointResult:
    """:func:`prepare_point` then :func:`simulate_point`."""
    return simulate_point(prepare_point(spec), links=links)


# --------------------------------------------------------------------------- CLI


def add_run_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``des run`` on the main CLI's ``subparsers``."""
    from des.cli_args import add_fault_options, output_path, positive_int

    parser = subparsers.add_parser(
        "run",
        help="simulate a model's inference (default: Kraken vs standard, GPT-3 13B on a DGX A100)",
        description=(
            "Simulate one model's inference on a system. Without --arch, compare the standard "
            "(Megatron) and Kraken architectures."
        ),
    )
    parser.add_argument("--system", default=DEFAULT_SYSTEM, help=f"system preset or YAML path (default {DEFAULT_SYSTEM})")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model preset or YAML path (default {DEFAULT_MODEL})")
    parser.add_argument("--arch", choices=("standard", "parallel", "kraken"), help="architecture (default: compare standard and kraken)")
    parser.add_argument("--tp", type=positive_int, default=DEFAULT_TP, metavar="N", help=f"tensor-parallel degree (default {DEFAULT_TP})")
    parser.add_argument("--batch", type=positive_int, default=1, metavar="B", help="batch size (default 1)")
    parser.add_argument("--seq", type=positive_int, default=DEFAULT_SEQ, metavar="S", help=f"prompt length for prefill (default {DEFAULT_SEQ})")
    parser.add_argument("--phase", choices=("prefill", "decode"), default="prefill", help="prefill (TTFT) or decode (time per output token)")
    parser.add_argument("--kv-len", type=positive_int, metavar="L", help="KV-cache length for decode")
    parser.add_argument("--attention", choices=("fused", "unfused"), default="fused", help="fused (flash) or unfused attention kernels")
    parser.add_argument("--runtime", choices=("eager", "graph"), default="graph", help="kernel launch profile (default graph)")
    parser.add_argument("--layers", type=positive_int, metavar="K", help="simulate only K transformer layers (no embeddings or LM head)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--trace", type=output_path, metavar="FILE", help="write a Chrome/Perfetto trace (JSON)")
    parser.add_argument("--gantt", type=output_path, metavar="FILE", help="draw a Gantt chart (PNG)")
    parser.add_argument("--out", type=Path, metavar="DIR", help=f"write trace and Gantt chart(s) to DIR (default for the comparison: {DEFAULT_OUT})")
    add_fault_options(parser)
    parser.set_defaults(func=run_command)
    return parser


def _spec_from(args, arch: str) -> PointSpec:
    if args.phase == "decode" and args.kv_len is None:
        raise DesError("--phase decode needs --kv-len L (the KV-cache length the token attends to)")
    if args.phase == "prefill" and args.kv_len is not None:
        raise DesError("--kv-len applies to --phase decode only")
    return PointSpec(
        system=args.system,
        model=args.model,
        arch=arch,
        tp=args.tp,
        batch=args.batch,
        seq=args.seq,
        phase=args.phase,
        kv_len=args.kv_len,
        attention=args.attention,
        runtime=args.runtime,
        layers=args.layers,
        faults=tuple(args.fail),
        degrade=tuple(args.degrade),
    )


def gantt_spans(point: PointResult) -> list:
    """Spans to draw: the whole run for a few layers, else layers :data:`GANTT_LAYERS`.

    Link spans are left out (one row per link direction would drown the streams).
    """
    spans = [s for s in point.trace.spans if s.category not in ("link", "dram")]
    layers = point.spec.layers
    if layers is not None and layers <= len(GANTT_LAYERS):
        return spans
    wanted = GANTT_LAYERS if layers is None or layers >= GANTT_LAYERS[-1] else (1, 2)
    starts = point.result.task_start_s
    ends = point.result.task_end_s
    names = [name for name in point.workload.graph.tasks if _layer_of(name) in wanted]
    if not names:
        return spans
    first = min(starts[name] for name in names)
    last = max(ends[name] for name in names)
    return [s for s in spans if s.end_s > first and s.start_s < last]


def _layer_of(task_name: str) -> int | None:
    head = task_name.split(".", 1)[0]
    if head.startswith("L") and head[1:].isdigit():
        return int(head[1:])
    return None


def _write_outputs(point: PointResult, trace_path: Path | None, gantt_path: Path | None) -> list[Path]:
    written = []
    if trace_path is not None:
        from des.trace import write_chrome_trace

        write_chrome_trace(point.trace.spans, trace_path)
        written.append(trace_path)
    if gantt_path is not None:
        from des.plot import gantt

        spec = point.spec
        title = f"{point.record['model']} {spec.arch} TP={spec.tp} {spec.phase} seq {spec.seq} on {point.record['system']}"
        gantt(gantt_spans(point), gantt_path, title=title)
        written.append(gantt_path)
    return written


def draw_point_gantt(spec: PointSpec, path: Path, title: str) -> bool:
    """Simulate ``spec`` and draw :func:`gantt_spans` of it to ``path`` (scenario scripts).

    Returns
    -------
    bool
        Whether the chart was drawn: ``False``, and nothing written, where the model
        does not fit on the devices.
    """
    from des.plot import gantt

    try:
        point = run_point(spec)
    except DoesNotFitError:
        return False
    gantt(gantt_spans(point), path, title=title)
    return True


def run_study(name: str, study: Callable[[], list[Path]]) -> int:
    """A scenario script's ``main``: run ``study``, list what it wrote, report bad input.

    Parameters
    ----------
    name : str
        The script's name, which starts its error line.
    study : callable
        Does the work (printing its tables) and returns the files it wrote.

    Returns
    -------
    int
        The exit status: 0, or 2 after one line ``NAME: error: ...`` on stderr for a
        :class:`~des.errors.DesError`.
    """
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        written = study()
    except DesError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def _table(points: list[PointResult]) -> str:
    """One column per architecture: the latency, its breakdown, memory and cost."""
    from des.metrics import BREAKDOWN_CATEGORIES
    from des.units import format_bytes, format_seconds

    first = points[0]
    spec = first.spec
    metric = "TTFT" if spec.phase == "prefill" else "time per output token"
    what = f"seq {spec.seq}" if spec.phase == "prefill" else f"KV length {spec.kv_len}"
    width = 14
    faults = "".join(f", {f['action']} {f['spec']}" for f in first.record.get("faults", ()))
    lines = [
        f"{first.record['model']} on {first.record['system']}{faults}, TP={spec.tp}, batch {spec.batch}, {spec.phase} {what}, "
        f"{spec.attention} attention, {spec.runtime} runtime" + (f", {spec.layers} layers" if spec.layers else ""),
        "",
        f"{'':<24}" + "".join(f"{p.spec.arch:>{width}}" for p in points),
        f"{metric:<24}" + "".join(f"{format_seconds(p.record['latency_s']):>{width}}" for p in points),
    ]
    for category in BREAKDOWN_CATEGORIES:
        values = [p.record["breakdown_s"].get(category, 0.0) for p in points]
        if any(values):
            lines.append(f"  {category:<22}" + "".join(f"{format_seconds(v):>{width}}" for v in values))
    lines.append(f"{'memory per device':<24}" + "".join(
        f"{format_bytes(p.record['memory_bytes_per_device']['total']):>{width}}" for p in points))
    lines.append(f"{'events simulated':<24}" + "".join(f"{p.record['events']:>{width},}" for p in points))
    if len(points) == 2:
        base, other = points
        saved = 1.0 - other.record["latency_s"] / base.record["latency_s"]
        lines.append("")
        lines.append(f"{other.spec.arch} vs {base.spec.arch}: {saved * 100:+.1f} % {metric} reduction "
                     f"({base.record['latency_s'] / other.record['latency_s']:.2f}x speed-up)")
    return "\n".join(lines)


def run_command(args) -> int:
    """Run ``des run`` from parsed arguments; returns the exit status."""
    compare = args.arch is None
    archs = COMPARED_ARCHS if compare else (args.arch,)
    specs = [_spec_from(args, arch) for arch in archs]
    out = args.out if args.out is not None else (Path(DEFAULT_OUT) if compare else None)
    if out is not None and out.exists() and not out.is_dir():
        raise DesError(f"--out {out} exists and is not a folder")
    # Build and check every point before simulating any: a point that does not fit
    # stops the command before anything runs.
    prepared = [prepare_point(spec) for spec in specs]
    points = [simulate_point(p) for p in prepared]
    written: list[Path] = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for point in points:
            arch = point.spec.arch
            written += _write_outputs(point, out / f"trace-{arch}.json", out / f"gantt-{arch}.png")
    if args.trace or args.gantt:
        written += _write_outputs(points[-1], args.trace, args.gantt)
    if args.json:
        record = dict(points[-1].record)
        if compare:
            record["baseline"] = points[0].record
            record["speedup"] = points[0].record["latency_s"] / points[-1].record["latency_s"]
        print(json.dumps(record, sort_keys=True))
    else:
        print(_table(points))
    stream = sys.stderr if args.json else sys.stdout
    for path in written:
        print(f"wrote {path}", file=stream)
    return 0
