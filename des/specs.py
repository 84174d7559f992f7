"""Frozen descriptions of devices, links, collectives and systems, and their YAML readers.

A :class:`DeviceSpec` describes one accelerator in the manner of LLMCompass: compute
units (SMs or CUs), each with systolic arrays, a vector unit and local SRAM; a shared
L2 / global buffer; and DRAM. A :class:`LinkSpec` is one direction's bandwidth and a
latency. A :class:`SystemSpec` joins devices and switches in a networkx graph whose
edges carry link specs, plus the :class:`CollectiveParams` of the communication library.

Values in YAML may be bare numbers in SI base units or strings with a unit
(``"25 GB/s"``, ``"8.92 us"``, ``"80 GiB"``). Every reader names the file, the field,
the bad value and what is allowed when it rejects something.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from des.errors import DesError
from des.fitted import FittedParams, fitted_from_mapping
from des.names import natural_key
from des.units import parse_quantity

# --------------------------------------------------------------------------- helpers


class FieldReader:
    """Reads the fields of one YAML mapping, checking each and naming where it is.

    Parameters
    ----------
    data : mapping
        The parsed YAML mapping.
    where : str
        Where the mapping comes from, e.g. ``"topologies/systems/dgx-a100.yaml: collective"``.
    """

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise DesError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
        self.data = dict(data)
        self.where = where
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        """Whether the mapping holds ``name``."""
        return name in self.data

    def raw(self, name: str, default: object = ...) -> object:
        """The raw value of ``name``; a missing field without a default is an error."""
        self.used.add(name)
        if name not in self.data:
            if default is ...:
                raise DesError(f"{self.where}: missing field '{name}'")
            return default
        return self.data[name]

    def quantity(
        self,
        name: str,
        dimension: str,
        default: float | None = None,
        *,
        positive: bool = True,
        allow_zero: bool = False,
        at_most: float | None = None,
    ) -> float:
        """A number (or number with a unit) checked for sign and upper bound."""
        value = self.raw(name, ... if default is None else default)
        try:
            number = parse_quantity(value, dimension)
        except ValueError as exc:
            raise DesError(f"{self.where}: field '{name}': {exc}") from None
        if positive:
            if allow_zero and number < 0:
                raise DesError(
                    f"{self.where}: field '{name}' must be zero or positive, got {value!r}"
                )
            if not allow_zero and number <= 0:
                raise DesError(f"{self.where}: field '{name}' must be positive, got {value!r}")
        if at_most is not None and number > at_most:
            raise DesError(f"{self.where}: field '{name}' must be at most {at_most:g}, got {value!r}")
        return number

    def integer(self, name: str, default: int | None = None, *, minimum: int = 1) -> int:
        """A whole number no smaller than ``minimum``."""
        value = self.raw(name, ... if default is None else default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise DesError(f"{self.where}: field '{name}' must be a whole number, got {value!r}")
        if value < minimum:
            raise DesError(f"{self.where}: field '{name}' must be at least {minimum}, got {value!r}")
        return int(value)

    def string(self, name: str, default: str | None = None, *, choices: tuple[str, ...] = ()) -> str:
        """A string, optionally one of ``choices``."""
        value = self.raw(name, ... if default is None else default)
        if not isinstance(value, str):
            raise DesError(f"{self.where}: field '{name}' must be a string, got {value!r}")
        if choices and value not in choices:
            raise DesError(
                f"{self.where}: field '{name}' is {value!r}; allowed: {', '.join(choices)}"
            )
        return value

    def finish(self) -> None:
        """Reject fields that were never read, suggesting the nearest known name."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            name = str(unknown[0])
            close = difflib.get_close_matches(name, sorted(self.used), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            allowed = ", ".join(sorted(self.used))
            raise DesError(f"{self.where}: unknown field '{name}'{hint}; known fields: {allowed}")


#: libyaml's safe loader where PyYAML was built with it (several times faster: a sweep
#: reads a system and a model per point), else the pure-Python one; both accept the
#: same documents and build the same objects.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> object:
    """Parse a YAML file, turning I/O and syntax errors into :class:`DesError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DesError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DesError(f"{path}: is a directory, not a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DesError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DesError(f"{path}: YAML syntax error{at}: {problem}") from None


# --------------------------------------------------------------------------- presets

#: File endings that make a name a YAML path rather than a preset name.
YAML_SUFFIXES = (".yaml", ".yml")


def preset_names(folder: Path) -> list[str]:
    """Names of the presets in ``folder`` (its YAML files' stems), sorted."""
    return sorted(p.stem for p in folder.iterdir() if p.suffix in YAML_SUFFIXES)


def is_yaml_path(name: str) -> bool:
    """Whether ``name`` is a path (ends in ``.yaml``/``.yml`` or holds a separator)."""
    return name.endswith(YAML_SUFFIXES) or "/" in name or os.sep in name


def resolve_preset(name_or_path: object, folder: Path, kind: str) -> Path:
    """The YAML file of a preset name or a path.

    Parameters
    ----------
    name_or_path : str
        A preset name (a file in ``folder``) or a path (see :func:`is_yaml_path`).
    folder : Path
        Where the presets of this kind live.
    kind : str
        What is named (``device``, ``system``, ``model``), for error messages.

    Returns
    -------
    Path
        The path as given, or the preset's file in ``folder``.

    Raises
    ------
    DesError
        For something that is not a non-empty string, or an unknown preset (listing
        the known ones, with the nearest).
    """
    if not isinstance(name_or_path, str) or not name_or_path:
        raise DesError(f"{kind} must be a preset name or a path, got {name_or_path!r}")
    if is_yaml_path(name_or_path):
        return Path(name_or_path)
    known = preset_names(folder)
    if name_or_path not in known:
        close = difflib.get_close_matches(name_or_path, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DesError(f"unknown {kind} preset '{name_or_path}'{hint}; known: {', '.join(known)}")
    return folder / f"{name_or_path}.yaml"


# --------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class DeviceSpec:
    """One accelerator, described as compute units, L2 and DRAM.

    Attributes
    ----------
    name : str
        Preset or user name, e.g. ``"a100"``.
    compute_units : int
        Streaming multiprocessors (NVIDIA) or compute units (AMD).
    clock_hz : float
        Clock at which the matrix and vector peaks below are reached.
    systolic_arrays_per_unit : int
        Matrix engines (tensor cores modelled as systolic arrays) per compute unit.
    systolic_array_rows, systolic_array_cols : int
        Processing elements of one systolic array along its two sides.
    macs_per_pe_per_cycle : float
        Multiply-accumulates one processing element completes per cycle in fp16.
    vector_flops_per_cycle_per_unit : float
        Non-matrix fp16 FLOP per cycle of one compute unit.
    vector_lanes_per_unit, vector_lane_width : int
        The vector unit as lanes x width (a row reduction splits across lanes).
    exp_vector_flops : float
        Vector FLOP one exponential costs.
    sram_bytes_per_unit : float
        Local SRAM (shared memory / L1 / LDS) of one compute unit.
    l2_bytes : float
        Global buffer (L2) capacity.
    l2_bandwidth_bytes_per_cycle : float
        L2 bandwidth to all compute units together, per cycle.
    dram_bandwidth_bytes_per_s : float
        Peak DRAM bandwidth.
    dram_capacity_bytes : float
        DRAM capacity.
    fitted : FittedParams or None
        What the device achieves against these figures, fitted on its measurements
        (``des calibrate``; :mod:`des.fitted`); ``None``: the datasheet alone.
    """

    name: str
    compute_units: int
    clock_hz: float
    systolic_arrays_per_unit: int
    systolic_array_rows: int
    systolic_array_cols: int
    macs_per_pe_per_cycle: float
    vector_flops_per_cycle_per_unit: float
    vector_lanes_per_unit: int
    vector_lane_width: int
    exp_vector_flops: float
    sram_bytes_per_unit: float
    l2_bytes: float
    l2_bandwidth_bytes_per_cycle: float
    dram_bandwidth_bytes_per_s: float
    dram_capacity_bytes: float
    fitted: FittedParams | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DesError(f"device name must be a non-empty string, got {self.name!r}")
        if self.fitted is not None and not isinstance(self.fitted, FittedParams):
            raise DesError(f"device '{self.name}': field 'fitted' must be fitted parameters, got {self.fitted!r}")
        for spec_field in fields(self):
            if spec_field.name in ("name", "fitted"):
                continue
            value = getattr(self, spec_field.name)
            where = f"device '{self.name}': field '{spec_field.name}'"
            if spec_field.name in _INT_FIELDS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise DesError(f"{where} must be a whole number of at least 1, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise DesError(f"{where} must be a positive number, got {value!r}")

    @property
    def matrix_flops_per_s(self) -> float:
        """Dense fp16 matrix peak of the whole chip (2 FLOP per MAC)."""
        per_unit = (
            self.systolic_arrays_per_unit
            * self.systolic_array_rows
            * self.systolic_array_cols
            * self.macs_per_pe_per_cycle
            * 2.0
        )
        return per_unit * self.compute_units * self.clock_hz

    @property
    def vector_flops_per_s(self) -> float:
        """Non-matrix fp16 peak of the whole chip."""
        return self.vector_flops_per_cycle_per_unit * self.compute_units * self.clock_hz

    @property
    def l2_bandwidth_bytes_per_s(self) -> float:
        """L2 bandwidth of the whole chip."""
        return self.l2_bandwidth_bytes_per_cycle * self.clock_hz


_INT_FIELDS = {
    "compute_units",
    "systolic_arrays_per_unit",
    "systolic_array_rows",
    "systolic_array_cols",
    "vector_lanes_per_unit",
    "vector_lane_width",
}
_DEVICE_DIMENSIONS = {
    "clock_hz": "frequency",
    "macs_per_pe_per_cycle": "number",
    "vector_flops_per_cycle_per_unit": "number",
    "exp_vector_flops": "number",
    "sram_bytes_per_unit": "bytes",
    "l2_bytes": "bytes",
    "l2_bandwidth_bytes_per_cycle": "number",
    "dram_bandwidth_bytes_per_s": "bandwidth",
    "dram_capacity_bytes": "bytes",
}


def device_from_mapping(data: object, where: str, default_name: str = "device") -> DeviceSpec:
    """Build a :class:`DeviceSpec` from a parsed YAML mapping.

    Parameters
    ----------
    data : mapping
        The device's fields (see :class:`DeviceSpec`).
    where : str
        File and position, used in error messages.
    default_name : str
        Name used when the mapping has no ``name`` field.
    """
    reader = FieldReader(data, where)
    values: dict[str, Any] = {"name": reader.string("name", default_name)}
    for spec_field in fields(DeviceSpec):
        name = spec_field.name
        if name in ("name", "fitted"):
            continue
        if name in _INT_FIELDS:
            values[name] = reader.integer(name)
        else:
            values[name] = reader.quantity(name, _DEVICE_DIMENSIONS[name])
    if reader.has("fitted"):
        values["fitted"] = fitted_from_mapping(reader.raw("fitted"), f"{where}: fitted")
    else:
        reader.raw("fitted", None)
    reader.finish()
    return DeviceSpec(**values)


# --------------------------------------------------------------------------- links


@dataclass(frozen=True)
class LinkSpec:
    """One link, the same in both directions.

    Attributes
    ----------
    bandwidth_bytes_per_s : float
        Bandwidth of each direction.
    latency_s : float
        Time from the last byte leaving the sender to it arriving (pipelined, so it
        does not hold the link).
    """

    bandwidth_bytes_per_s: float
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        if not (self.bandwidth_bytes_per_s > 0 and math.isfinite(self.bandwidth_bytes_per_s)):
            raise DesError(f"link bandwidth must be positive, got {self.bandwidth_bytes_per_s!r}")
        if not (self.latency_s >= 0 and math.isfinite(self.latency_s)):
            raise DesError(f"link latency must be zero or positive, got {self.latency_s!r}")


def link_from_mapping(data: object, where: str) -> LinkSpec:
    """Build a :class:`LinkSpec` from ``{bandwidth_bytes_per_s, latency_s}``."""
    reader = FieldReader(data, where)
    bandwidth = reader.quantity("bandwidth_bytes_per_s", "bandwidth")
    latency = reader.quantity("latency_s", "time", 0.0, allow_zero=True)
    reader.finish()
    return LinkSpec(bandwidth, latency)


# --------------------------------------------------------------------------- collectives


@dataclass(frozen=True)
class CollectiveParams:
    """How the communication library (NCCL-like) runs a collective.

    Attributes
    ----------
    launch_latency_s : float
        Fixed cost of one collective call before any data moves (kernel launch and
        the library's set-up), paid once per call.
    step_latency_s : float
        Software latency of one ring step (flag signalling between neighbours), paid
        per step and pipelined like a link latency: it delays a chunk's arrival but
        does not hold the link.
    bandwidth_efficiency : float
        Fraction of a link's bandwidth the protocol achieves (headers, flags and
        the copy engine's limits), in (0, 1].
    chunk_bytes : float
        Largest piece a ring step is cut into, so steps pipeline (NCCL's slice).
    compute_units : int
        Compute units the collective kernel occupies on each device while it runs
        (NCCL: one thread block per channel), at least 1 and at most the device has.
    channels : int
        Rings run in parallel, each carrying an equal share of the data; 0 lets des
        choose as many edge-disjoint rings as the topology offers (on several machines:
        one ring per NIC the group can use).
    algorithm : str
        ``ring`` (one flat ring over all ranks), ``hierarchical`` (reduce-scatter
        inside each machine, all-reduce among peers across machines, all-gather inside
        each machine) or ``auto`` (simulate both on an idle copy of the system and
        take the faster). See :data:`ALGORITHMS`.
    inter_node_step_latency_s : float or None
        Step latency of a ring hop between two machines (network transport: the proxy
        thread, the NIC and the switch); ``None`` means ``step_latency_s``.
    inter_node_bandwidth_efficiency : float or None
        Achieved fraction of the network links' bandwidth on a hop between machines;
        ``None`` means ``bandwidth_efficiency``.
    protocols : tuple of (str, ProtocolParams)
        Optional per-protocol parameters (NCCL's LL, LL128 and Simple, see
        :data:`PROTOCOLS`). Empty: every call runs with the fields above. Otherwise
        each ring collective picks the protocol with the least predicted time for its
        size (:func:`des.collectives.closed_form.pipelined_ring_time_s`, as NCCL's
        tuning model does) and runs with :meth:`for_protocol` of it.
    library : str
        The communication library that plans every call (:data:`LIBRARIES`):
        ``fixed`` runs the fields above as given; ``nccl``, ``trtllm`` and ``vllm``
        derive algorithm, protocol, channels and compute units per call the way those
        libraries decide (:mod:`des.comm`), and ignore the fields above but
        ``compute_units`` (the ``fixed`` model's only).
    nvls : bool
        Whether the machine's switch reduces in the fabric (NVLink SHARP: third-
        generation NVSwitch, DGX H100), so ``nccl`` may choose its NVLS algorithm.
    channel_bandwidth_bytes_per_s : float
        Most bytes per second one channel (one thread block) moves on a hop, whatever
        the links could carry; ``inf``: no ceiling. The libraries set it per protocol.
    tuning : tuple of (str, float)
        Overrides of the library's per-generation parameters (``des.comm.nccl``'s
        ``NcclTuning`` fields), e.g. ``(("call_overhead_s", 5e-6),)``.
    """

    launch_latency_s: float = 0.0
    step_latency_s: float = 0.0
    bandwidth_efficiency: float = 1.0
    chunk_bytes: float = math.inf
    compute_units: int = 1
    channels: int = 1
    algorithm: str = "ring"
    inter_node_step_latency_s: float | None = None
    inter_node_bandwidth_efficiency: float | None = None
    protocols: tuple[tuple[str, ProtocolParams], ...] = ()
    library: str = "fixed"
    nvls: bool = False
    channel_bandwidth_bytes_per_s: float = math.inf
    tuning: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.library not in LIBRARIES:
            raise DesError(f"unknown communication library {self.library!r}; allowed: {', '.join(LIBRARIES)}")
        if not isinstance(self.nvls, bool):
            raise DesError(f"collective nvls must be true or false, got {self.nvls!r}")
        if not self.channel_bandwidth_bytes_per_s > 0:
            raise DesError(
                f"collective channel_bandwidth_bytes_per_s must be positive, got {self.channel_bandwidth_bytes_per_s!r}"
            )
        if isinstance(self.compute_units, bool) or not isinstance(self.compute_units, int) or self.compute_units < 1:
            raise DesError(
                f"collective compute_units must be a whole number of at least 1 (the kernel runs on "
                f"compute units), got {self.compute_units!r}"
            )
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels < 0:
            raise DesError(f"collective channels must be a whole number of at least 0 (0: automatic), got {self.channels!r}")
        for key in ("launch_latency_s", "step_latency_s"):
            value = getattr(self, key)
            if not (value >= 0 and math.isfinite(value)):
                raise DesError(f"collective {key} must be zero or positive, got {value!r}")
        if not 0 < self.bandwidth_efficiency <= 1:
            raise DesError(f"collective bandwidth_efficiency must be in (0, 1], got {self.bandwidth_efficiency!r}")
        if not self.chunk_bytes > 0:
            raise DesError(f"collective chunk_bytes must be positive, got {self.chunk_bytes!r}")
        for name, protocol in self.protocols:
            if name not in PROTOCOLS or not isinstance(protocol, ProtocolParams):
                raise DesError(f"unknown collective protocol {name!r}; allowed: {', '.join(PROTOCOLS)}")
        if len({name for name, _ in self.protocols}) != len(self.protocols):
            raise DesError("a collective protocol is given twice")
        if self.algorithm not in ALGORITHMS:
            raise DesError(
                f"unknown collective algorithm {self.algorithm!r}; allowed: {', '.join(ALGORITHMS)}"
            )
        efficiency = self.inter_node_bandwidth_efficiency
        if efficiency is not None and not 0 < efficiency <= 1:
            raise DesError(f"inter_node_bandwidth_efficiency must be in (0, 1], got {efficiency!r}")
        step = self.inter_node_step_latency_s
        if step is not None and not (step >= 0 and math.isfinite(step)):
            raise DesError(f"inter_node_step_latency_s must be zero or positive, got {step!r}")

    def hop_step_latency_s(self, inter_node: bool) -> float:
        """Step latency of a ring hop, inside a machine or between machines."""
        if inter_node and self.inter_node_step_latency_s is not None:
            return self.inter_node_step_latency_s
        return self.step_latency_s

    def hop_efficiency(self, inter_node: bool) -> float:
        """Bandwidth efficiency of a ring hop, inside a machine or between machines."""
        if inter_node and self.inter_node_bandwidth_efficiency is not None:
            return self.inter_node_bandwidth_efficiency
        return self.bandwidth_efficiency

    def protocol_names(self) -> tuple[str, ...]:
        """The protocols a call may choose from (empty: the single-protocol model)."""
        return tuple(name for name, _ in self.protocols)

    def for_protocol(self, name: str) -> CollectiveParams:
        """Single-protocol parameters of protocol ``name``: its launch latency, step
        latency, efficiency and chunk, and its inter-node fields where it has them
        (else this object's); compute units, channels and algorithm stay."""
        protocol = dict(self.protocols).get(name)
        if protocol is None:
            raise DesError(f"collective protocol {name!r} is not configured; have: {', '.join(self.protocol_names()) or 'none'}")
        return replace(
            self,
            launch_latency_s=protocol.launch_latency_s,
            step_latency_s=protocol.step_latency_s,
            bandwidth_efficiency=protocol.bandwidth_efficiency,
            chunk_bytes=protocol.chunk_bytes,
            inter_node_step_latency_s=(
                protocol.inter_node_step_latency_s
                if protocol.inter_node_step_latency_s is not None
                else self.inter_node_step_latency_s
            ),
            inter_node_bandwidth_efficiency=(
                protocol.inter_node_bandwidth_efficiency
                if protocol.inter_node_bandwidth_efficiency is not None
                else self.inter_node_bandwidth_efficiency
            ),
            protocols=(),
        )


#: Protocols a system may describe (``collective.protocols`` in YAML), NCCL's names.
PROTOCOLS = ("ll", "ll128", "simple")


@dataclass(frozen=True)
class ProtocolParams:
    """One protocol's parameters (fields as in :class:`CollectiveParams`).

    ``inter_node_*`` left ``None`` fall back to the collective's own inter-node fields.
    """

    launch_latency_s: float
    step_latency_s: float
    bandwidth_efficiency: float
    chunk_bytes: float = math.inf
    inter_node_step_latency_s: float | None = None
    inter_node_bandwidth_efficiency: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.bandwidth_efficiency <= 1:
            raise DesError(f"protocol bandwidth_efficiency must be in (0, 1], got {self.bandwidth_efficiency!r}")
        if not (self.launch_latency_s >= 0 and self.step_latency_s >= 0):
            raise DesError("protocol latencies must be zero or positive")
        if not self.chunk_bytes > 0:
            raise DesError(f"protocol chunk_bytes must be positive, got {self.chunk_bytes!r}")


#: Collective algorithms a system may choose (``collective.algorithm`` in YAML).
ALGORITHMS = ("ring", "hierarchical", "auto")

#: Communication libraries a system or a run may name (see :mod:`des.comm`).
LIBRARIES = ("fixed", "nccl", "trtllm", "vllm")


def _chunk(reader: FieldReader, default: float = math.inf) -> float:
    chunk_raw = reader.raw("chunk_bytes", None)
    if chunk_raw is None:
        return default
    if chunk_raw in ("inf", "none"):
        return math.inf
    return reader.quantity("chunk_bytes", "bytes")


def _inter_node(reader: FieldReader) -> tuple[float | None, float | None]:
    step = (
        reader.quantity("inter_node_step_latency_s", "time", allow_zero=True)
        if reader.has("inter_node_step_latency_s")
        else None
    )
    efficiency = (
        reader.quantity("inter_node_bandwidth_efficiency", "number", at_most=1.0)
        if reader.has("inter_node_bandwidth_efficiency")
        else None
    )
    return step, efficiency


def protocols_from_mapping(data: object, where: str, chunk: float) -> tuple[tuple[str, ProtocolParams], ...]:
    """Read ``collective.protocols``: protocol name -> its fields (chunk defaults to ``chunk``)."""
    if not isinstance(data, Mapping) or not data:
        raise DesError(f"{where}: expected a mapping of protocols ({', '.join(PROTOCOLS)})")
    protocols = []
    for name, fields_ in data.items():
        if name not in PROTOCOLS:
            close = difflib.get_close_matches(str(name), PROTOCOLS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise DesError(f"{where}: unknown protocol '{name}'{hint}; allowed: {', '.join(PROTOCOLS)}")
        reader = FieldReader(fields_, f"{where}.{name}")
        step, efficiency = _inter_node(reader)
        protocols.append(
            (
                name,
                ProtocolParams(
                    launch_latency_s=reader.quantity("launch_latency_s", "time", allow_zero=True),
                    step_latency_s=reader.quantity("step_latency_s", "time", allow_zero=True),
                    bandwidth_efficiency=reader.quantity("bandwidth_efficiency", "number", at_most=1.0),
                    chunk_bytes=_chunk(reader, chunk),
                    inter_node_step_latency_s=step,
                    inter_node_bandwidth_efficiency=efficiency,
                ),
            )
        )
        reader.finish()
    return tuple(sorted(protocols, key=lambda item: PROTOCOLS.index(item[0])))


def collective_from_mapping(data: object, where: str) -> CollectiveParams:
    """Build :class:`CollectiveParams` from a parsed YAML mapping (all fields optional)."""
    reader = FieldReader(data if data is not None else {}, where)
    defaults = CollectiveParams()
    chunk = _chunk(reader)
    inter_step, inter_efficiency = _inter_node(reader)
    params = CollectiveParams(
        launch_latency_s=reader.quantity("launch_latency_s", "time", 0.0, allow_zero=True),
        step_latency_s=reader.quantity("step_latency_s", "time", 0.0, allow_zero=True),
        bandwidth_efficiency=reader.quantity(
            "bandwidth_efficiency", "number", defaults.bandwidth_efficiency, at_most=1.0
        ),
        chunk_bytes=chunk,
        compute_units=reader.integer("compute_units", defaults.compute_units, minimum=1),
        channels=reader.integer("channels", defaults.channels, minimum=0),
        algorithm=reader.string("algorithm", defaults.algorithm, choices=ALGORITHMS),
        inter_node_step_latency_s=inter_step,
        inter_node_bandwidth_efficiency=inter_efficiency,
        protocols=(
            protocols_from_mapping(reader.raw("protocols"), f"{where}.protocols", chunk)
            # `protocols: null` (e.g. a sweep's override) means the single-protocol model.
            if reader.has("protocols") and reader.raw("protocols") is not None
            else ()
        ),
        library=reader.string("library", defaults.library, choices=LIBRARIES),
        nvls=_boolean(reader, "nvls", defaults.nvls),
        tuning=_tuning(reader.raw("tuning", None), f"{where}.tuning"),
    )
    reader.finish()
    return params


def _boolean(reader: FieldReader, name: str, default: bool) -> bool:
    value = reader.raw(name, default)
    if not isinstance(value, bool):
        raise DesError(f"{reader.where}: field '{name}' must be true or false, got {value!r}")
    return value


def _tuning(data: object, where: str) -> tuple[tuple[str, float], ...]:
    """``tuning: {field: value}`` as sorted (field, seconds-or-number) pairs; fields are
    checked against the library's parameters when a call is planned."""
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise DesError(f"{where}: must be a mapping of parameter to value, got {data!r}")
    from des.units import parse_quantity

    pairs = []
    for key, value in sorted(data.items()):
        kind = "time" if str(key).endswith("_s") else "number"
        if str(key).endswith("_bytes_per_s"):
            kind = "bandwidth"
        try:
            number = parse_quantity(value, kind)
        except ValueError as exc:
            raise DesError(f"{where}: field '{key}': {exc}") from None
        if number < 0:
            raise DesError(f"{where}: field '{key}' must be zero or positive, got {value!r}")
        pairs.append((str(key), number))
    return tuple(pairs)


# --------------------------------------------------------------------------- systems

ROLE_DEVICE = "device"
ROLE_SWITCH = "switch"


def node_order_key(graph: Any, node: object) -> tuple[Any, ...]:
    """Devices before switches, then natural order of names (``des topology show``'s order)."""
    return (graph.nodes[node].get("role") != ROLE_DEVICE, natural_key(node))


@dataclass(frozen=True)
class SystemSpec:
    """Devices and switches joined by links.

    Attributes
    ----------
    name : str
        System name, e.g. ``"dgx-a100"``.
    graph : networkx.Graph
        Nodes have ``role`` (``"device"`` or ``"switch"``); device nodes carry
        ``device`` (a :class:`DeviceSpec`) and ``node`` (the index of the machine
        they sit in); edges carry ``bandwidth_bytes_per_s`` and ``latency_s`` for
        each direction. Live SimPy objects never go in here.
    collective : CollectiveParams
        Communication-library parameters for this system.
    devices : tuple of str
        Device node names in rank order.
    description : str
        Free text from the YAML file.
    source : str
        The file the system was read from, or ``"<built>"``.
    """

    name: str
    graph: Any = field(compare=False, repr=False)
    collective: CollectiveParams
    devices: tuple[str, ...]
    description: str = ""
    source: str = "<built>"

    def __post_init__(self) -> None:
        wanted = self.collective.compute_units
        checked: set[int] = set()
        for node in self.devices:
            spec = self.graph.nodes[node].get("device") if node in self.graph else None
            if not isinstance(spec, DeviceSpec) or id(spec) in checked:
                continue
            checked.add(id(spec))
            if wanted > spec.compute_units:
                raise DesError(
                    f"{self.source}: collective compute_units is {wanted}, but device {node} ({spec.name}) "
                    f"has only {spec.compute_units} compute units"
                )

    def device_spec(self, node: str) -> DeviceSpec:
        """The :class:`DeviceSpec` of device node ``node``."""
        return self.graph.nodes[node]["device"]

    def select_ranks(self, ranks: int | None = None, ranks_per_node: int | None = None) -> tuple[str, ...]:
        """The devices of a collective of ``ranks`` ranks.

        Parameters
        ----------
        ranks : int, optional
            Number of ranks (all devices by default). Ranks are taken in node-major
            order: ranks 0..G-1 in machine 0, and so on.
        ranks_per_node : int, optional
            Instead spread the ranks over ``ranks / ranks_per_node`` machines, this
            many in each (the first devices of each machine).
        """
        total = len(self.devices)
        if ranks is None:
            ranks = total
        if ranks < 2:
            raise DesError(f"a collective needs at least 2 ranks, got {ranks}")
        if ranks > total:
            raise DesError(f"{ranks} ranks requested but system '{self.name}' has {total} devices")
        if ranks_per_node is None:
            return self.devices[:ranks]
        if ranks_per_node < 1 or ranks % ranks_per_node:
            raise DesError(f"--ranks {ranks} is not a multiple of --ranks-per-node {ranks_per_node}")
        by_node: dict[int, list[str]] = {}
        for device in self.devices:
            by_node.setdefault(self.graph.nodes[device].get("node", 0), []).append(device)
        machines = sorted(by_node)
        wanted = ranks // ranks_per_node
        if wanted > len(machines):
            raise DesError(f"{wanted} machines needed for {ranks} ranks at {ranks_per_node} per node, but '{self.name}' has {len(machines)}")
        group = []
        for machine in machines[:wanted]:
            members = by_node[machine]
            if ranks_per_node > len(members):
                raise DesError(f"machine {machine} of '{self.name}' has {len(members)} devices, fewer than {ranks_per_node}")
            group.extend(members[:ranks_per_node])
        return tuple(group)


def validate_graph(graph: Any, where: str) -> tuple[str, ...]:
    """Check a system graph's node roles and edge attributes; return device names in order.

    Device order is the order nodes were added to the graph (builders add them in rank
    order). Raises :class:`DesError` naming the offending node or edge.
    """
    devices = []
    for node, attrs in graph.nodes(data=True):
        role = attrs.get("role")
        if role == ROLE_DEVICE:
            if not isinstance(attrs.get("device"), DeviceSpec):
                raise DesError(f"{where}: device node '{node}' has no device spec")
            devices.append(node)
        elif role != ROLE_SWITCH:
            raise DesError(
                f"{where}: node '{node}' has role {role!r}; allowed: {ROLE_DEVICE}, {ROLE_SWITCH}"
            )
    if not devices:
        raise DesError(f"{where}: the topology has no devices")
    for u, v, attrs in graph.edges(data=True):
        for key in ("bandwidth_bytes_per_s", "latency_s"):
            value = attrs.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise DesError(f"{where}: link {u}-{v} has no valid '{key}' (got {value!r})")
        if attrs["bandwidth_bytes_per_s"] <= 0:
            raise DesError(
                f"{where}: link {u}-{v} bandwidth must be positive, got {attrs['bandwidth_bytes_per_s']!r}"
            )
        if attrs["latency_s"] < 0:
            raise DesError(f"{where}: link {u}-{v} latency must be zero or positive, got {attrs['latency_s']!r}")
    return tuple(devices)
