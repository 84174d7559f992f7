"""Runtime profiles: what the software stack adds to every kernel.

Launch overhead is not a property of the chip: eager PyTorch pays the Python
dispatcher, the allocator and a ``cudaLaunchKernel`` per operator, while an engine that
replays CUDA graphs (TensorRT-LLM, vLLM with graphs) pays a few microseconds between
kernels. A :class:`RuntimeProfile` gives the overhead per operator class, optionally
per device vendor, and a run picks one by name (:func:`runtime_profile`).

Presets
-------
``eager``
    PyTorch eager, host-timed with a synchronisation around each call (the method of
    the calibration tables). NVIDIA figures: LLMCompass's published model (Zhang et al.,
    ISCA 2024; ../shared/reference/hardware.md): matmul 21 us, softmax 12 us,
    layernorm 45 us, GELU 45 us; element-wise and attention from this project's H100
    eager measurements (tests/data/h100/h100_ops.csv: a 1 Mi-element add takes 21.4 us
    and a 1x32x128x128 flash attention 26.7 us host-timed, of which the kernels
    account for about 3 us). AMD figures (MI210, same source): matmul 34 us, softmax
    22 us, layernorm 28 us, GELU 21 us; element-wise as GELU (one element-wise
    kernel) and attention as matmul (no published figure).
Each profile also names the communication library its collectives go through:
``eager`` (PyTorch) calls ``nccl`` through torch.distributed; ``graph`` is a
TensorRT-LLM engine, whose all-reduce plugin runs ``trtllm``'s own kernels (NCCL above
their size range), each call a graph-launched kernel.

``graph``
    Kernels replayed from a captured CUDA/HIP graph: 2 us per kernel. A graph removes
    the host's per-launch cost and leaves about 1-2 us between dependent kernels on
    the device (NVIDIA, "Getting Started with CUDA Graphs", 2019); TensorRT-LLM and
    vLLM capture decoding steps in graphs for this reason.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from des.errors import DesError
from des.names import OP_CLASSES
from des.units import US

#: Vendors a profile may override; a device's vendor comes from :func:`device_vendor`.
VENDORS = ("nvidia", "amd")


def device_vendor(device_name: str) -> str:
    """The vendor of a device by its name: AMD Instinct parts are ``mi...``, else NVIDIA."""
    return "amd" if device_name.lower().startswith("mi") else "nvidia"


@dataclass(frozen=True)
class RuntimeProfile:
    """Per-kernel launch overhead of a software stack.

    Attributes
    ----------
    name : str
        Profile name, e.g. ``"eager"``.
    launch_overhead_s : dict of str to float
        Seconds added to each kernel, by operator class (the default vendor, NVIDIA).
    vendor_overhead_s : dict of str to dict of str to float
        Overrides by vendor, then operator class; classes not listed fall back to
        ``launch_overhead_s``.
    description : str
        Where the figures come from.
    comm_library : str
        The communication library the stack's collectives go through (``nccl`` for
        PyTorch, ``trtllm`` for a TensorRT-LLM engine; :mod:`des.comm`).
    comm_launch_s : float or None
        Per-call cost of a collective launched by this stack (a graph's kernel launch);
        ``None``: the library's host-timed eager figure.
    """

    name: str
    launch_overhead_s: dict[str, float]
    vendor_overhead_s: dict[str, dict[str, float]] = field(default_factory=dict)
    description: str = ""
    comm_library: str = "nccl"
    comm_launch_s: float | None = None

    def __post_init__(self) -> None:
        missing = [c for c in OP_CLASSES if c not in self.launch_overhead_s]
        if missing:
            raise DesError(f"runtime profile {self.name!r}: no launch overhead for {', '.join(missing)}")
        tables = [self.launch_overhead_s, *self.vendor_overhead_s.values()]
        for table in tables:
            for op_class, seconds in table.items():
                if op_class not in OP_CLASSES:
                    raise DesError(
                        f"runtime profile {self.name!r}: unknown operator class {op_class!r};"
                        f" known: {', '.join(OP_CLASSES)}"
                    )
                if not (isinstance(seconds, (int, float)) and seconds >= 0):
                    raise DesError(
                        f"runtime profile {self.name!r}: launch overhead of {op_class} must be"
                        f" zero or positive, got {seconds!r}"
                    )
        for vendor in self.vendor_overhead_s:
            if vendor not in VENDORS:
                raise DesError(f"runtime profile {self.name!r}: unknown vendor {vendor!r}")

    def launch_overhead(self, op_class: str, vendor: str = "nvidia") -> float:
        """Seconds of launch overhead of one kernel of ``op_class`` on ``vendor``'s device.

        Raises
        ------
        DesError
            For an unknown operator class.
        """
        if op_class not in OP_CLASSES:
            raise DesError(f"unknown operator class {op_class!r}; known: {', '.join(OP_CLASSES)}")
        table = self.vendor_overhead_s.get(vendor, {})
        return float(table.get(op_class, self.launch_overhead_s[op_class]))

    def launch_overhead_for(self, op_class: str, device_name: str) -> float:
        """Launch overhead of ``op_class`` on the device called ``device_name``."""
        return self.launch_overhead(op_class, device_vendor(device_name))

    def launch_for_device(self, op_class: str, device: Any) -> float:
        """Launch overhead of ``op_class`` on ``device`` (a DeviceSpec): for ``eager``,
        the device's own fitted figure where ``des calibrate`` measured one."""
        fitted = getattr(device, "fitted", None)
        if self.name == "eager" and fitted is not None:
            measured = fitted.launch_s(op_class)
            if measured is not None:
                return measured
        return self.launch_overhead_for(op_class, device.name)


def _eager() -> RuntimeProfile:
    return RuntimeProfile(
        name="eager",
        launch_overhead_s={
            "matmul": 21 * US,
            "softmax": 12 * US,
            "layernorm": 45 * US,
            "gelu": 45 * US,
            "elementwise": 18 * US,
            "attention": 24 * US,
        },
        vendor_overhead_s={
            "amd": {
                "matmul": 34 * US,
                "softmax": 22 * US,
                "layernorm": 28 * US,
                "gelu": 21 * US,
                "elementwise": 21 * US,
                "attention": 34 * US,
            }
        },
        description="PyTorch eager, host-timed (LLMCompass's A100/MI210 figures)",
        comm_library="nccl",
    )


def _graph() -> RuntimeProfile:
    return RuntimeProfile(
        name="graph",
        launch_overhead_s={op_class: 2 * US for op_class in OP_CLASSES},
        description="kernels replayed from a CUDA/HIP graph (TensorRT-LLM-like)",
        comm_library="trtllm",
        comm_launch_s=2 * US,
    )


_PRESETS = {"eager": _eager, "graph": _graph}


def runtime_names() -> list[str]:
    """Names of the preset runtime profiles."""
    return sorted(_PRESETS)


#: ``launch_fn(schedule, device_spec) -> seconds``: the launch overhead of one kernel.
LaunchFn = Callable[[Any, Any], float]


def runtime_launch(name: str) -> LaunchFn:
    """The engine's launch function for the runtime profile ``name`` (``eager``, ``graph``).

    Raises
    ------
    DesError
        For an unknown profile name.
    """
    profile = runtime_profile(name)
    return lambda schedule, device: profile.launch_for_device(schedule.op_class, device)


def runtime_profile(name: str) -> RuntimeProfile:
    """The preset runtime profile called ``name``.

    Raises
    ------
    DesError
        For an unknown name, listing the known ones.
    """
    if name not in _PRESETS:
        close = difflib.get_close_matches(str(name), runtime_names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DesError(f"unknown runtime profile {name!r}{hint}; known: {', '.join(runtime_names())}")
    return _PRESETS[name]()
