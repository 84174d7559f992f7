"""What a device achieves against its datasheet, fitted on measurements (``des calibrate``).

A datasheet gives peaks; real kernels reach a fraction of them, and how large a
fraction is not on any datasheet (ROCm kernels on an MI210 reach less of it than CUDA
kernels on an A100). A device YAML may carry a ``fitted:`` block that ``des calibrate``
writes from microbenchmarks of that device, beside the datasheet figures it leaves
untouched::

    fitted:
      source: des calibrate on a100_matmul.csv (10 rows), a100_softmax.csv (22 rows)
      matrix_efficiency: 0.93      # fraction of the matrix peak a GEMM main loop sustains
      vector_efficiency: 1.0       # fraction of the vector issue rate row-wise kernels sustain
      dram_efficiency:             # fraction of the DRAM peak, per operator group
        matmul: 0.90               # GEMMs
        skinny: 0.80               # GEMMs of 2-16 rows (decode); default: matmul's
        attention: 0.85            # fused attention; default: matmul's
        rowwise: 0.85              # softmax, layernorm
      eager_launch_s:              # host-timed per-call overhead of PyTorch eager, per class
        matmul: 21 us
        softmax: 12 us

The efficiencies replace the mapper's defaults (:class:`des.mapper.params.MapperParams`)
for this device; the launch overheads replace the ``eager`` runtime profile's for the
classes listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from des.errors import DesError
from des.names import OP_CLASSES
from des.units import parse_quantity

#: Operator groups with a DRAM fraction of their own, and the classes in each. Fused
#: attention is a library kernel of its own (FlashAttention, cuDNN). GEMMs are split by
#: shape (:func:`dram_group_of`): ``skinny`` ones (decode batches) and
#: ``gemv`` ones stream their weights through kernels of their own, whose achieved
#: bandwidth differs from a large GEMM's.
DRAM_GROUPS = {
    "matmul": ("matmul",),
    "attention": ("attention",),
    "skinny": (),
    "gemv": (),
    "rowwise": ("softmax", "layernorm"),
    "elementwise": ("gelu", "elementwise"),
}
#: A group without a fitted fraction of its own takes this group's: decode GEMMs come
#: from the same library as large ones, and fused attention streams its K and V tiles
#: through the matrix units as a GEMM does.
DRAM_FALLBACK = {"skinny": "matmul", "gemv": "matmul", "attention": "matmul"}
#: Rows (the smaller of M and N) at or under which a GEMM is skinny: one tensor-core
#: tile side (PTX ``mma.m16n8k16``; AMD's MFMA 16x16 blocks): below it the matrix units
#: run part-empty and the libraries switch to split-K / GEMV-like kernels.
SKINNY_MAX_ROWS = 16


def dram_group(op_class: str) -> str:
    """The :data:`DRAM_GROUPS` group of an operator class (GEMMs: ``matmul``)."""
    for group, classes in DRAM_GROUPS.items():
        if op_class in classes:
            return group
    raise DesError(f"no DRAM group for operator class {op_class!r}")


def dram_group_of(operator) -> str:
    """The DRAM group of one operator: its class's, with GEMMs split by their rows."""
    if getattr(operator, "kind", None) in ("matmul", "bmm"):
        rows = min(operator.M, operator.N)
        if rows == 1:
            return "gemv"
        if rows <= SKINNY_MAX_ROWS:
            return "skinny"
    return dram_group(operator.op_class)


@dataclass(frozen=True)
class FittedParams:
    """A device's fitted efficiencies and launch overheads.

    Attributes
    ----------
    matrix_efficiency, vector_efficiency : float or None
        Fractions in (0, 1] of the matrix and vector peaks; ``None``: the mapper's default.
    dram_efficiency : tuple of (str, float)
        Fraction in (0, 1] of the DRAM peak per :data:`DRAM_GROUPS` group; a group not
        listed keeps the mapper's default.
    eager_launch_s : tuple of (str, float)
        Host-timed per-call overhead of the eager runtime, per operator class, seconds.
    source : str
        What they were fitted on.
    """

    matrix_efficiency: float | None = None
    dram_efficiency: tuple[tuple[str, float], ...] = ()
    vector_efficiency: float | None = None
    eager_launch_s: tuple[tuple[str, float], ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("matrix_efficiency", "vector_efficiency"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value <= 1):
                raise DesError(f"fitted {name} must be in (0, 1], got {value!r}")
        for group, value in self.dram_efficiency:
            if group not in DRAM_GROUPS:
                raise DesError(f"fitted dram_efficiency: unknown group {group!r}; known: {', '.join(DRAM_GROUPS)}")
            if not (isinstance(value, (int, float)) and 0 < value <= 1):
                raise DesError(f"fitted dram_efficiency.{group} must be in (0, 1], got {value!r}")
        for op_class, seconds in self.eager_launch_s:
            if op_class not in OP_CLASSES:
                raise DesError(f"fitted eager_launch_s: unknown operator class {op_class!r}; known: {', '.join(OP_CLASSES)}")
            if not seconds >= 0:
                raise DesError(f"fitted eager_launch_s.{op_class} must be zero or positive, got {seconds!r}")

    def mapper_overrides(self, op_class: str, group: str | None = None) -> dict[str, float]:
        """The mapper parameters this device fixes for an operator of ``op_class`` (in DRAM
        group ``group``, by default its class's; a group with no fraction of its own takes
        its :data:`DRAM_FALLBACK`'s)."""
        out = {}
        for name in ("matrix_efficiency", "vector_efficiency"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if group is None and op_class in OP_CLASSES:
            group = dram_group(op_class)
        drams = dict(self.dram_efficiency)
        dram = drams.get(group, drams.get(DRAM_FALLBACK.get(group, ""))) if group else None
        if dram is not None:
            out["dram_efficiency"] = dram
        return out

    def launch_s(self, op_class: str) -> float | None:
        """The fitted eager launch overhead of ``op_class``, or ``None``."""
        return dict(self.eager_launch_s).get(op_class)

    def as_mapping(self) -> dict[str, object]:
        """The block as YAML would hold it (seconds as numbers)."""
        out: dict[str, object] = {}
        if self.source:
            out["source"] = self.source
        for name in ("matrix_efficiency", "vector_efficiency"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.dram_efficiency:
            out["dram_efficiency"] = dict(self.dram_efficiency)
        if self.eager_launch_s:
            out["eager_launch_s"] = dict(self.eager_launch_s)
        return out


def fitted_from_mapping(data: object, where: str) -> FittedParams:
    """Parse a ``fitted:`` block; a wrong field or value is one error naming it."""
    if not isinstance(data, Mapping):
        raise DesError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {"source", "eager_launch_s", "matrix_efficiency", "vector_efficiency", "dram_efficiency"}
    for key in data:
        if key not in known:
            raise DesError(f"{where}: unknown field {key!r}; known fields: {', '.join(sorted(known))}")
    values: dict[str, object] = {}
    source = data.get("source", "")
    if not isinstance(source, str):
        raise DesError(f"{where}: field 'source' must be a string, got {source!r}")
    values["source"] = source
    for name in ("matrix_efficiency", "vector_efficiency"):
        if name in data:
            try:
                values[name] = parse_quantity(data[name], "number")
            except ValueError as exc:
                raise DesError(f"{where}: field '{name}': {exc}") from None
    values["dram_efficiency"] = _pairs(data.get("dram_efficiency", {}), "number", f"{where}: field 'dram_efficiency'")
    values["eager_launch_s"] = _pairs(data.get("eager_launch_s", {}), "time", f"{where}: field 'eager_launch_s'")
    try:
        return FittedParams(**values)
    except DesError as exc:
        raise DesError(f"{where}: {exc}") from None


def _pairs(data: object, dimension: str, where: str) -> tuple[tuple[str, float], ...]:
    if not isinstance(data, Mapping):
        raise DesError(f"{where} must be a mapping of names to values, got {data!r}")
    pairs = []
    for key, value in sorted(data.items()):
        try:
            pairs.append((str(key), parse_quantity(value, dimension)))
        except ValueError as exc:
            raise DesError(f"{where}.{key}: {exc}") from None
    return tuple(pairs)
