"""One point of a study: what to run where, built, checked, simulated and summarised.

A :class:`PointSpec` names a system, a model and the run options (architecture, TP,
batch, phase and tokens, attention, runtime, layers, faults). :func:`prepare_point`
builds the system and the model (:func:`build_system`, :func:`build_model`, with any
sweep overrides set on their YAML first), builds the workload and checks that it fits
every device's memory, so bad input stops before anything is simulated;
:func:`simulate_point` runs the engine and summarises the trace into one JSON-ready
record. ``des run``, the sweeps, the scenario scripts and the benchmarks all call these,
so they report the same numbers for the same point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from des.errors import DesError
from des.specs import SystemSpec, read_yaml
from des.study.defaults import (
    DECODE,
    DEFAULT_MODEL,
    DEFAULT_SEQ,
    DEFAULT_SYSTEM,
    DEFAULT_TP,
    METRIC_OF_PHASE,
    PREFILL,
)
from des.study.overrides import apply_overrides


@dataclass(frozen=True)
class PointSpec:
    """One simulation point: what to run where.

    Attributes mirror the ``des run`` options; ``arch`` is one architecture.
    ``system`` is a preset name, a YAML path or a built :class:`~des.specs.SystemSpec`
    (studies of systems that are not presets); ``model`` likewise a name, a path or a
    built ``workloads.model.ModelSpec`` (sweeps build each once per worker).
    ``seq`` is the prompt length of ``prefill``; ``decode`` attends over ``kv_len``
    instead and ignores ``seq`` (its record says ``null``). ``faults`` and
    ``degrade`` are ``--fail`` and ``--degrade`` values (:mod:`des.faults`).
    """

    system: Any = DEFAULT_SYSTEM
    model: Any = DEFAULT_MODEL
    arch: str = "standard"
    tp: int = DEFAULT_TP
    batch: int = 1
    seq: int = DEFAULT_SEQ
    phase: str = PREFILL
    kv_len: int | None = None
    attention: str = "fused"
    runtime: str = "graph"
    layers: int | None = None
    faults: tuple[str, ...] = ()
    degrade: tuple[str, ...] = ()
    #: Element type; ``None``: the model's (a config's ``torch_dtype``), else fp16.
    dtype: str | None = None
    #: Expert parallelism and routing skew of a mixture of experts (workloads.moe).
    ep: int = 1
    moe_skew: float = 0.0
    moe_seed: int = 0
    #: Pipeline stages and micro-batches: ``tp x pp`` devices, stage-major.
    pp: int = 1
    microbatches: int = 1
    #: Simulate every layer even where the graph repeats (no fast path, des.fastpath),
    #: and every kernel and collective (no replays, des.memo).
    exact: bool = False
    #: The devices in rank order (stage-major with PP), overriding the node-major default.
    devices: tuple[str, ...] | None = None
    #: The communication library (:mod:`des.comm`); ``None``: the runtime profile's.
    comm_library: str | None = None
    #: ``(dotted path, value)`` pairs set in the system's YAML mapping before it is
    #: built, e.g. ``("device.compute_units", 54)`` (sweeps; see :mod:`des.sweep`).
    system_overrides: tuple[tuple[str, Any], ...] = ()
    #: The same for the model's YAML mapping, e.g. ``("hidden", 4096)``.
    model_overrides: tuple[tuple[str, Any], ...] = ()
    #: ``(option, value)`` pairs of a serving point (a sweep's ``serve`` section,
    #: :mod:`des.serve.point`); empty for a ``des run`` point.
    serve: tuple[tuple[str, Any], ...] = ()

    def check(self) -> None:
        """The phase and KV-length rule: decode needs ``kv_len``, prefill refuses it.

        Raises
        ------
        DesError
            Naming the option (``kv_len``, ``--kv-len`` on the command line).
        """
        if self.phase == DECODE and self.kv_len is None:
            raise DesError("phase decode needs kv_len (--kv-len L): the KV-cache length each new token attends to")
        if self.phase == PREFILL and self.kv_len is not None:
            raise DesError("kv_len (--kv-len) applies to phase decode only; prefill attends over its own seq tokens")

    @property
    def metric(self) -> str:
        """``ttft_s`` for prefill, ``tpot_s`` for decode."""
        return METRIC_OF_PHASE.get(self.phase, "latency_s")

    @property
    def tokens(self) -> dict[str, int | None]:
        """``seq`` and ``kv_len`` as the phase uses them (the one it ignores is ``None``)."""
        if self.phase == DECODE:
            return {"seq": None, "kv_len": self.kv_len}
        return {"seq": self.seq, "kv_len": self.kv_len}


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
        The run's spans.
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


# --------------------------------------------------------------------------- building


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


def _built_with_overrides(kind: str, value: Any, overrides: tuple) -> None:
    if overrides and not isinstance(value, str):
        raise DesError(f"{kind} overrides need a {kind} preset name or YAML path, not a built {kind}")


def build_system(system: Any, overrides: tuple[tuple[str, Any], ...] = ()) -> SystemSpec:
    """The system of a point: a built spec as it is, else the preset or file loaded.

    With ``overrides`` the YAML mapping is changed first (:func:`apply_overrides`); a
    device named by preset or path is expanded into its fields when a path goes
    through it, so ``device.compute_units`` works either way.

    Raises
    ------
    DesError
        For an unknown preset, a bad file, an override of a field that does not exist
        or that the system's per-protocol parameters shadow.
    """
    from topologies import device_mapping, load_system, system_from_mapping, system_path

    _built_with_overrides("system", system, overrides)
    if isinstance(system, SystemSpec):
        return system
    if not overrides:
        return load_system(system)
    path = system_path(system)

    def expand(keys: tuple[str, ...], value: Any) -> Any:
        if keys[-1] == "device" and isinstance(value, str):
            return device_mapping(value, path.parent)
        return value

    data = apply_overrides(read_yaml(path), overrides, str(path), expand)
    _check_shadowed_collective_fields(overrides, data, path)
    return system_from_mapping(data, str(path), path.parent, default_name=path.stem)


def build_model(model: Any, overrides: tuple[tuple[str, Any], ...] = ()) -> Any:
    """The model of a point: a built ``ModelSpec`` as it is, else loaded (with ``overrides``)."""
    from workloads import load_model, model_from_mapping, model_path

    _built_with_overrides("model", model, overrides)
    if not isinstance(model, str):
        return model
    if not overrides:
        return load_model(model)
    path = model_path(model)
    data = apply_overrides(read_yaml(path), overrides, str(path))
    return model_from_mapping(data, str(path), default_name=path.stem)


def group_for(system: SystemSpec, tp: int, pp: int = 1, chosen: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The first ``tp x pp`` devices of ``system`` (node-major, so a stage of TP ranks
    fills a machine before the next stage starts, and a stage as wide as a machine has
    its own: TP inside a node, stages across nodes), or the ``chosen`` ones in their
    order; a clear error otherwise."""
    devices = system.devices
    need = tp * pp
    if chosen is not None:
        unknown = [d for d in chosen if d not in devices]
        if unknown:
            raise DesError(f"--devices: {', '.join(unknown)} not in system '{system.name}' ({', '.join(devices)})")
        if len(chosen) != need or len(set(chosen)) != need:
            raise DesError(f"--devices: TP {tp} x PP {pp} takes {need} distinct devices, got {len(chosen)}")
        return tuple(chosen)
    if need > len(devices):
        what = f"--tp {tp}" if pp == 1 else f"--tp {tp} x --pp {pp}"
        raise DesError(f"{what} needs {need} devices but system '{system.name}' has {len(devices)}")
    return tuple(devices[:need])


def _point_faults(spec: PointSpec, system: SystemSpec, devices: tuple[str, ...]) -> tuple:
    """The point's faults, parsed; a run they break before it starts stops here."""
    if not (spec.faults or spec.degrade):
        return ()
    from des.faults import apply_faults, check_groups, parse_faults

    faults = parse_faults(system, spec.faults, spec.degrade)
    check_groups(system, apply_faults(system, faults), faults, {f"the run (devices {', '.join(devices)})": devices})
    return faults


# --------------------------------------------------------------------------- running


def prepare_point(spec: PointSpec) -> PreparedPoint:
    """Load the system and model, build the workload and check it fits in memory.

    Raises
    ------
    DesError
        For bad input or a model that does not fit on every device of the group.
    """
    from des.runtime import runtime_profile
    from workloads import build_workload, check_memory

    wall_start = time.perf_counter()
    spec.check()
    runtime_profile(spec.runtime)  # an unknown profile fails here, before any work
    system = build_system(spec.system, spec.system_overrides)
    model = build_model(spec.model, spec.model_overrides)
    devices = group_for(system, spec.tp, spec.pp, spec.devices)
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
        dtype=spec.dtype or getattr(model, "dtype", None) or "fp16",
        ep=spec.ep,
        moe_skew=spec.moe_skew,
        moe_seed=spec.moe_seed,
        pp=spec.pp,
        microbatches=spec.microbatches,
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


def simulate_point(
    prepared: PreparedPoint, *, links: bool = False, steps: bool = False, progress: Any = None,
    max_piece_transfers: int | None = None,
) -> PointResult:
    """Simulate a prepared point and summarise it.

    Parameters
    ----------
    prepared : PreparedPoint
        From :func:`prepare_point`.
    links : bool
        Also record one span per chunk per link hop (large).
    steps : bool
        Also record every ring step of every channel and rank (most of a model's spans).
        Kernels, launches and collectives are always recorded: the metrics come from them.
    progress : des.progress.Progress, optional
        Told of each task finished (a bar on a terminal).
    max_piece_transfers : int, optional
        The most piece transfers one collective may simulate (the engine's default
        otherwise).
    """
    from des.engine import Engine
    from des.metrics import summarize
    from des.runtime import runtime_launch, runtime_profile
    from des.spans import Trace
    from workloads.params import parameter_counts

    wall_start = time.perf_counter()
    spec, system, workload, devices = prepared.spec, prepared.system, prepared.workload, prepared.devices
    spans = Trace(enabled=True, links=links, steps=steps)
    profile = runtime_profile(spec.runtime)
    library = spec.comm_library or profile.comm_library
    engine = Engine(
        system, trace=spans, launch_fn=runtime_launch(spec.runtime), faults=prepared.faults,
        progress=progress, max_piece_transfers=max_piece_transfers,
        comm_library=library, comm_launch_s=profile.comm_launch_s, fast_path=not spec.exact, memo=not spec.exact,
    )
    result = engine.run(workload.graph)
    metrics = summarize(result, workload.graph, devices)
    record = {
        "system": system.name,
        "model": prepared.model.name,
        "arch": spec.arch,
        "tp": spec.tp,
        "batch": spec.batch,
        **spec.tokens,
        "phase": spec.phase,
        "attention": spec.attention,
        "runtime": spec.runtime,
        "comm_library": library,
        "layers": spec.layers,
        "dtype": workload.dtype,
        "ep": spec.ep,
        "moe_skew": spec.moe_skew,
        "pp": spec.pp,
        "microbatches": spec.microbatches,
        "devices": list(devices),
        "simulated_model": workload.describe(),
        "parameters": parameter_counts(prepared.model)["total"],
        "active_parameters": parameter_counts(prepared.model)["active"],
        "weight_bytes_per_device": workload.memory.weights_bytes,
        "kv_cache_bytes_per_device": workload.memory.kv_cache_bytes,
        "activation_bytes_per_device": workload.memory.activation_bytes,
        "memory_bytes_per_device": workload.memory.as_dict(),
        "memory_capacity_bytes": min(system.device_spec(d).dram_capacity_bytes for d in devices),
        "tasks": len(workload.graph),
    }
    record.update(metrics.as_dict())  # latency_s, breakdown_s, per_op, events...
    record["fast_path"] = result.fast_path
    record["events_simulated"] = result.events_simulated
    record["metric"] = spec.metric
    record["faults"] = [dict(f.as_dict(), applied=f in result.faults_applied) for f in prepared.faults]
    record["wall_s"] = prepared.prepare_s + time.perf_counter() - wall_start
    return PointResult(spec=spec, record=record, trace=spans, result=result, workload=workload)


def run_point(spec: PointSpec, *, links: bool = False, steps: bool = False) -> PointResult:
    """:func:`prepare_point` then :func:`simulate_point`."""
    return simulate_point(prepare_point(spec), links=links, steps=steps)
