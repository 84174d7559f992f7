"""``des calibrate``: fit what a device achieves against its datasheet, from microbenchmarks.

A device YAML holds datasheet figures. Real kernels reach a fraction of them that no
datasheet gives, and a host-timed call costs its runtime's launch on top. From a few
microbenchmark tables of the device this module fits, with bounds that keep them
physical (:mod:`des.fitted`):

- ``dram_efficiency`` (0.1-1.0) per operator group (:data:`des.fitted.DRAM_GROUPS`):
  the fraction of the DRAM peak that group's kernels sustain, each from its own tables
  (row-wise: softmax, layernorm; element-wise: GELU, add; GEMMs; decode GEMMs of 2-16
  rows and GEMVs; fused attention, the last three taking the GEMMs' fraction unless
  their own rows ask for one of their own);
  a group without tables keeps the mapper's default;
- ``matrix_efficiency`` (0.3-1.0): the fraction of the matrix peak a GEMM's main loop
  sustains, from the GEMM tables, fitted in turn with their DRAM
  fraction (small GEMMs are DRAM-bound, large ones compute-bound);
- ``vector_efficiency`` (0.3-1.0): the fraction of the vector units' issue rate those
  kernels sustain (one for the device), fitted jointly with their DRAM fractions when
  the tables hold both a vector-bound kind (softmax, GELU) and a DRAM-bound one
  (layernorm, add), the only way to tell the two apart. Tables of one kind alone move
  one of the two, the one that explains them better by a clear margin, else the
  resource that bounds their rows under the datasheet model (an A100's softmax: its
  exponentials outlast its DRAM traffic), and leave the other at its default;
- a streaming fraction that lowers the error by less than :data:`SIGNIFICANT_PP` keeps
  its default: the tables do not tell it apart;
- ``eager_launch_s`` per operator class (0-200 us): the host-timed overhead of one
  eager call, for each fitted set of efficiencies the weighted median of measured
  minus simulated (the value that minimises the mean absolute percentage error
  exactly); a class whose fastest row takes over 100 us keeps the eager profile's
  figure (its tables cannot tell a launch from a slower kernel).

Each efficiency is a golden-section search of the mean absolute percentage error of the
mapper's latency plus the launch against the measurements. The datasheet figures are
never changed. Tables are CSV files ``<device>_<op>.csv`` in the formats of
``../shared/calibration``:

======================  ==============================================
``<d>_matmul.csv``      ``m, n, k, latency_s`` (fp16 ``[m, k] @ [k, n]``)
``<d>_softmax.csv``     ``rows, cols, latency_s``
``<d>_layernorm.csv``   ``rows, cols, latency_s``
``<d>_gelu.csv``        ``elements, latency_s``
``<d>_add.csv``         ``elements, latency_s``
``<d>_attention.csv``   ``batch, heads, q_len, kv_len, head_dim, latency_s`` (optional ``causal``)
``<d>_ops.csv``         ``op, shape, latency_s``: any of them, shapes as ``MxKxN``,
                        ``BxMxKxN`` (bmm), ``ROWSxCOLS``, ``ELEMENTS`` (add),
                        ``BxHxQxKVxD`` with a trailing ``c`` when causal (attention)
======================  ==============================================
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from des.errors import DesError
from des.fitted import DRAM_FALLBACK, FittedParams, dram_group, dram_group_of
from des.mapper import schedule_for
from des.mapper.params import DEFAULT_PARAMS, MapperParams
from des.operators import Attention, BatchedMatmul, ElementwiseAdd, Gelu, LayerNorm, Matmul, Softmax
from des.runtime import runtime_profile
from des.specs import DeviceSpec
from des.validate.calibration import read_rows
from des.validate.floor import weighted_median

#: Table kinds: columns, and the operator one row describes.
TABLES: dict[str, tuple[tuple[str, ...], Callable[[dict[str, str]], Any]]] = {
    "matmul": (("m", "n", "k", "latency_s"), lambda r: Matmul(int(r["m"]), int(r["k"]), int(r["n"]))),
    "softmax": (("rows", "cols", "latency_s"), lambda r: Softmax(int(r["rows"]), int(r["cols"]))),
    "layernorm": (("rows", "cols", "latency_s"), lambda r: LayerNorm(int(r["rows"]), int(r["cols"]))),
    "gelu": (("elements", "latency_s"), lambda r: Gelu(int(r["elements"]))),
    "add": (("elements", "latency_s"), lambda r: ElementwiseAdd(int(r["elements"]))),
    "attention": (
        ("batch", "heads", "q_len", "kv_len", "head_dim", "latency_s"),
        lambda r: Attention(int(r["batch"]), int(r["heads"]), int(r["q_len"]), int(r["kv_len"]), int(r["head_dim"]),
                            causal=r.get("causal", "0").strip().lower() in ("1", "true", "yes")),
    ),
}
def _dims(shape: str, count: int, what: str) -> list[int]:
    parts = shape.lower().rstrip("c").split("x")
    if len(parts) != count:
        raise ValueError(f"{what} shape {shape!r} must have {count} dimensions joined by 'x'")
    return [int(part) for part in parts]


#: Operators of the combined ``<device>_ops.csv`` format (``op, shape, latency_s``; the
#: shapes of tests/data/h100/README.md): op -> shape parser.
COMBINED_SHAPES: dict[str, Callable[[str], Any]] = {
    "matmul": lambda s: Matmul(*_dims(s, 3, "matmul")),
    "bmm": lambda s: BatchedMatmul(*_dims(s, 4, "bmm")),
    "softmax": lambda s: Softmax(*_dims(s, 2, "softmax")),
    "layernorm": lambda s: LayerNorm(*_dims(s, 2, "layernorm")),
    "gelu": lambda s: Gelu(math.prod(_dims(s, 2, "gelu"))),
    "add": lambda s: ElementwiseAdd(*_dims(s, 1, "add")),
    "attention": lambda s: Attention(*_dims(s, 5, "attention"), causal=s.lower().endswith("c")),
}


def _combined(row: dict[str, str]) -> Any:
    op = row["op"].strip().lower()
    if op not in COMBINED_SHAPES:
        raise ValueError(f"unknown op {row['op']!r}; known: {', '.join(COMBINED_SHAPES)}")
    return COMBINED_SHAPES[op](row["shape"].strip())


TABLES["ops"] = (("op", "shape", "latency_s"), _combined)

#: Bounds of the fitted fractions of the matrix and vector peaks.
EFFICIENCY_BOUNDS = (0.3, 1.0)
#: Bounds of a fitted DRAM fraction. Lower than the compute bounds because real
#: streaming kernels go that low: the MI210's ROCm softmax and layernorm sustain 15-25 %
#: of its DRAM peak (LLMCompass artifact, figure 5); below a tenth a kernel is not
#: streaming at all.
DRAM_BOUNDS = (0.1, 1.0)
#: A streaming fraction leaves its physical default only if that lowers the tables'
#: error by at least this much (percentage points): host-timed medians scatter by about
#: a per cent, and a parameter that gains less is not told apart by the tables.
SIGNIFICANT_PP = 1.0
LAUNCH_BOUNDS_S = (0.0, 200e-6)
#: A class's launch is fitted only if its fastest row is at most this long: beyond it a
#: launch of tens of microseconds cannot be told from a slower kernel.
LAUNCH_IDENTIFIABLE_S = 100e-6
#: Golden-section stopping width (of an efficiency).
TOLERANCE = 1e-3
#: The coarse grid the joint searches may start from.
GRID = (0.35, 0.5, 0.65, 0.8, 0.95)
#: Most rounds of the alternating searches.
MAX_ROUNDS = 8
_GOLDEN = (math.sqrt(5) - 1) / 2
#: DRAM groups of the row-wise and element-wise kernels.
STREAMING_GROUPS = ("rowwise", "elementwise")
#: Row-wise / element-wise classes bound by their vector work, and by DRAM.
VECTOR_HEAVY = {"softmax", "gelu"}
DRAM_HEAVY = {"layernorm", "elementwise"}
_FILE_NAME = re.compile(r"^(?P<device>.+)_(?P<op>[a-z]+)\.csv$")


@dataclass(frozen=True)
class Measurement:
    """One microbenchmark row: the operator, its file and the measured seconds."""

    file: str
    operator: Any
    measured_s: float

    @property
    def family(self) -> str:
        """The operator family the row belongs to (``matmul``, ``bmm``, ``softmax``...)."""
        return self.operator.kind


@dataclass(frozen=True)
class CalibrationResult:
    """The fit: the parameters, the error per file before and after, and warnings."""

    device: str
    fitted: FittedParams
    files: tuple[str, ...]
    ignored: tuple[str, ...]
    mape_before_pct: dict[str, float]
    mape_after_pct: dict[str, float]
    warnings: tuple[str, ...]
    launches_s: dict[str, float] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()


def find_tables(device: str, data: Sequence[str | Path]) -> tuple[list[tuple[Path, str]], list[str]]:
    """The tables of ``device`` among folders and files: ``[(path, op)]`` and the names ignored.

    A folder contributes its ``<device>_<op>.csv`` files; any other file in it is
    ignored (and listed). A file named on its own must be a table of a known op; its
    device prefix is not checked, so a user's ``my_gemms_matmul.csv`` works too.

    Raises
    ------
    DesError
        For a path that does not exist, a named file of no known kind, or no table at all.
    """
    tables: list[tuple[Path, str]] = []
    ignored: list[str] = []
    for entry in data:
        path = Path(entry)
        if path.is_dir():
            for child in sorted(path.iterdir()):
                match = _FILE_NAME.match(child.name)
                if child.is_file() and match and match["device"] == device and match["op"] in TABLES:
                    tables.append((child, match["op"]))
                elif child.is_file():
                    ignored.append(child.name)
        elif path.is_file():
            match = _FILE_NAME.match(path.name)
            if not match or match["op"] not in TABLES:
                raise DesError(f"{path}: not a table of a known kind (<device>_<op>.csv with op one of {', '.join(TABLES)})")
            tables.append((path, match["op"]))
        else:
            raise DesError(f"{path}: no such file or folder")
    if not tables:
        where = ", ".join(str(p) for p in data)
        held = f"; the folder holds {', '.join(ignored)}" if ignored else ""
        raise DesError(
            f"{where}: no microbenchmark table of device '{device}' (looked for "
            f"{', '.join(f'{device}_{op}.csv' for op in TABLES)}{held}); a device is compared only with its own"
        )
    return tables, ignored


def read_measurements(tables: Sequence[tuple[Path, str]]) -> list[Measurement]:
    """Every row of the tables as a :class:`Measurement`; a bad row is one error naming it."""
    rows: list[Measurement] = []
    for path, op in tables:
        columns, build = TABLES[op]
        already = len(rows)
        for number, row in enumerate(read_rows(path, columns), start=2):
            try:
                operator = build(row)
                measured = float(row["latency_s"])
            except (ValueError, DesError) as exc:
                raise DesError(f"{path}: line {number}: {exc}") from None
            if not (measured > 0 and math.isfinite(measured)):
                raise DesError(f"{path}: line {number}: latency_s must be a positive number, got {row['latency_s']!r}")
            rows.append(Measurement(path.name, operator, measured))
        if len(rows) == already:
            raise DesError(f"{path}: no rows")
    return rows


def launch_classes(rows: Sequence[Measurement]) -> set[str]:
    """The operator classes whose tables show their launch: a row at most
    :data:`LAUNCH_IDENTIFIABLE_S` long."""
    return {row.operator.op_class for row in rows if row.measured_s <= LAUNCH_IDENTIFIABLE_S}


class _Fit:
    """The mapper's latencies of the measured operators under trial parameters."""

    def __init__(self, device: DeviceSpec) -> None:
        self.device = dataclasses.replace(device, fitted=None)

    def kernel_s(self, params: MapperParams, rows: list[Measurement]) -> list[float]:
        return self.kernel_s_by_class(lambda _operator: params, rows)

    def kernel_s_by_class(self, params_of: Callable[[Any], MapperParams], rows: list[Measurement]) -> list[float]:
        """Kernel seconds of each row under ``params_of(operator)``."""
        return [
            schedule_for(self.device, row.operator, params_of(row.operator), use_cache=False)[0].standalone_s
            for row in rows
        ]

    def launches(self, rows: list[Measurement], kernel_s: list[float]) -> dict[str, float]:
        """Per class, the launch overhead of least mean absolute percentage error (bounded).

        A class whose fastest row takes longer than :data:`LAUNCH_IDENTIFIABLE_S` cannot
        tell a launch from a slower kernel; it keeps the eager profile's figure.
        """
        residuals: dict[str, list[tuple[float, float]]] = {}
        for row, simulated in zip(rows, kernel_s, strict=True):
            residuals.setdefault(row.operator.op_class, []).append((row.measured_s - simulated, 1.0 / row.measured_s))
        low, high = LAUNCH_BOUNDS_S
        profile = runtime_profile("eager")
        shown = launch_classes(rows)
        out = {}
        for op_class, values in residuals.items():
            if op_class not in shown:
                out[op_class] = profile.launch_overhead_for(op_class, self.device.name)
            else:
                out[op_class] = min(max(weighted_median(values), low), high)
        return out

    def error(self, params: MapperParams, rows: list[Measurement]) -> float:
        return self.error_by_class(lambda _operator: params, rows)

    def error_by_class(self, params_of: Callable[[Any], MapperParams], rows: list[Measurement]) -> float:
        errors = self.row_errors(params_of, rows)
        return sum(errors) / len(errors)

    def row_errors(self, params_of: Callable[[Any], MapperParams], rows: list[Measurement]) -> list[float]:
        """Each row's relative error, the launches fitted on all of ``rows``."""
        kernel = self.kernel_s_by_class(params_of, rows)
        launch = self.launches(rows, kernel)
        return [abs(t + launch[row.operator.op_class] - row.measured_s) / row.measured_s
                for row, t in zip(rows, kernel, strict=True)]


def _nelder_mead(objective: Callable[[list[float]], float], start: list[float],
                 bounds: Sequence[tuple[float, float]], step: float = 0.05, max_evals: int = 120) -> list[float]:
    """Bounded Nelder-Mead: the minimiser of ``objective`` near ``start`` (coordinate
    ``i`` clipped to ``bounds[i]``), to :data:`TOLERANCE` in every coordinate.

    Alternating one-dimensional searches stall in a diagonal valley (a lower DRAM
    fraction traded for a higher vector fraction); the simplex follows it.
    """
    def clip(point):
        return [min(max(x, low), high) for x, (low, high) in zip(point, bounds, strict=True)]

    def value(point):
        return objective(clip(point))

    simplex = [clip(start)] + [clip([x + (step if i == j else 0.0) for j, x in enumerate(start)]) for i in range(len(start))]
    scores = [value(p) for p in simplex]
    evals = len(simplex)
    while evals < max_evals:
        order = sorted(range(len(simplex)), key=lambda i: scores[i])
        simplex, scores = [simplex[i] for i in order], [scores[i] for i in order]
        if max(abs(a - b) for p in simplex[1:] for a, b in zip(p, simplex[0], strict=True)) <= TOLERANCE:
            break
        centre = [sum(p[k] for p in simplex[:-1]) / (len(simplex) - 1) for k in range(len(start))]
        worst = simplex[-1]
        reflected = clip([c + (c - w) for c, w in zip(centre, worst, strict=True)])
        r = value(reflected)
        evals += 1
        if r < scores[0]:
            expanded = clip([c + 2 * (c - w) for c, w in zip(centre, worst, strict=True)])
            e = value(expanded)
            evals += 1
            simplex[-1], scores[-1] = (expanded, e) if e < r else (reflected, r)
        elif r < scores[-2]:
            simplex[-1], scores[-1] = reflected, r
        else:
            contracted = clip([c + 0.5 * (w - c) for c, w in zip(centre, worst, strict=True)])
            c_score = value(contracted)
            evals += 1
            if c_score < scores[-1]:
                simplex[-1], scores[-1] = contracted, c_score
            else:
                best = simplex[0]
                simplex = [best] + [clip([b + 0.5 * (x - b) for b, x in zip(best, p, strict=True)]) for p in simplex[1:]]
                scores = [scores[0]] + [value(p) for p in simplex[1:]]
                evals += len(simplex) - 1
    return simplex[min(range(len(simplex)), key=lambda i: scores[i])]


def _fit_one_kind(fit: _Fit, streaming: dict[str, list[Measurement]], every: list[Measurement],
                  params_at: Callable[[dict[str, float], float | None], Callable[[str], MapperParams]],
                  say: Callable[[str], None]) -> tuple[float | None, dict[str, float], list[str]]:
    """The streaming fractions when the tables hold one kind of kernel only.

    Such tables barely tell a slower vector unit from a slower DRAM (the two trade off
    along a valley). Both explanations are fitted: the vector fraction alone, and each
    group's DRAM fraction alone. The one with the smaller error wins if it is smaller by
    :data:`SIGNIFICANT_PP` or more; otherwise the resource that bounds the rows under
    the datasheet model (the one whose halving would slow them more) is taken. A
    fraction that then lowers the error by less than :data:`SIGNIFICANT_PP` keeps its
    default.

    Returns
    -------
    (vector fraction or None, {group: DRAM fraction}, notes on the choice)
    """
    default = DEFAULT_PARAMS.dram_efficiency
    defaults = dict.fromkeys(streaming, default)
    base_error = fit.error_by_class(params_at(defaults, None), every)

    say(f"fitting the vector fraction alone on {len(every)} row-wise / element-wise rows")
    vector = _golden(lambda e: fit.error_by_class(params_at(defaults, e), every), *EFFICIENCY_BOUNDS)
    vector_error = fit.error_by_class(params_at(defaults, vector), every)
    drams = {}
    for group, members in streaming.items():
        say(f"fitting the DRAM fraction of {group} operators alone on {len(members)} rows")
        drams[group] = _golden(
            lambda e, members=members, group=group: fit.error_by_class(params_at({group: e}, None), members), *DRAM_BOUNDS
        )
    dram_error = fit.error_by_class(params_at(drams, None), every)

    if abs(vector_error - dram_error) * 100 >= SIGNIFICANT_PP:
        by_vector = vector_error < dram_error
        why = (f"the tables prefer the {'vector' if by_vector else 'DRAM'} explanation "
               f"({min(vector_error, dram_error) * 100:.2f} % against {max(vector_error, dram_error) * 100:.2f} %)")
    else:
        base = fit.kernel_s_by_class(params_at(defaults, None), every)
        slow_vector = fit.kernel_s_by_class(params_at(defaults, DEFAULT_PARAMS.vector_efficiency / 2), every)
        slow_dram = fit.kernel_s_by_class(params_at(dict.fromkeys(streaming, default / 2), None), every)
        weights = [1.0 / row.measured_s for row in every]
        by_vector = (sum(w * (v - t) for w, v, t in zip(weights, slow_vector, base, strict=True))
                     > sum(w * (d - t) for w, d, t in zip(weights, slow_dram, base, strict=True)))
        why = (f"the tables fit a slower vector unit and a slower DRAM alike; their rows are bound by "
               f"{'vector work' if by_vector else 'DRAM'} under the datasheet")
    if by_vector:
        notes = [f"{why}: the vector fraction may move, the DRAM fractions keep the default {default:.2f}"]
        gain = base_error - vector_error
        if gain * 100 >= SIGNIFICANT_PP:
            return vector, {}, notes
        notes.append(f"vector_efficiency keeps its default: fitting it gained {gain * 100:.2f} points (< {SIGNIFICANT_PP})")
        return None, {}, notes
    notes = [f"{why}: the DRAM fractions may move, the vector fraction keeps its default"]
    fitted = {}
    for group, members in streaming.items():
        gain = (fit.error_by_class(params_at({group: default}, None), members)
                - fit.error_by_class(params_at({group: drams[group]}, None), members))
        if gain * 100 >= SIGNIFICANT_PP:
            fitted[group] = drams[group]
        else:
            notes.append(f"dram_efficiency.{group} keeps its default {default:.2f}: fitting it gained "
                         f"{gain * 100:.2f} points (< {SIGNIFICANT_PP})")
    return None, fitted, notes


def _settled(before: tuple[float, dict[str, float]], after: tuple[float, dict[str, float]]) -> bool:
    """Whether an alternating round moved no parameter by more than the tolerance."""
    (x0, d0), (x1, d1) = before, after
    return abs(x0 - x1) <= TOLERANCE and all(abs(d0.get(k, math.inf) - v) <= TOLERANCE for k, v in d1.items())


def _golden(objective: Callable[[float], float], low: float, high: float) -> float:
    """The minimiser of a unimodal ``objective`` on ``[low, high]`` to :data:`TOLERANCE`."""
    a, b = low, high
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = objective(c), objective(d)
    while b - a > TOLERANCE:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = objective(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = objective(d)
    best = (a + b) / 2
    # The ends themselves: a parameter may belong on its bound.
    candidates = [(objective(best), best), (objective(low), low), (objective(high), high)]
    return min(candidates)[1]


def calibrate(device: DeviceSpec, tables: Sequence[tuple[Path, str]], ignored: Sequence[str] = (),
              progress: Callable[[str], None] | None = None) -> CalibrationResult:
    """Fit ``device``'s efficiencies and eager launch overheads on its tables.

    Parameters
    ----------
    device : DeviceSpec
        The device (its datasheet figures; any fitted block is ignored and replaced).
    tables : sequence of (Path, str)
        The tables and their kinds (:func:`find_tables`).
    ignored : sequence of str
        Files passed over, reported back.
    progress : callable, optional
        Told a line per fitting step.

    Returns
    -------
    CalibrationResult
    """
    rows = read_measurements(tables)
    fit = _Fit(device)
    say = progress or (lambda _line: None)
    profile = runtime_profile("eager")
    before = _per_file(rows, fit.kernel_s(DEFAULT_PARAMS, rows),
                       lambda op_class: profile.launch_overhead_for(op_class, fit.device.name))
    groups: dict[str, list[Measurement]] = {}
    for row in rows:
        groups.setdefault(dram_group_of(row.operator), []).append(row)
    dram: dict[str, float] = {}
    notes: list[str] = []
    matrix: float | None = None
    vector: float | None = None
    streaming = {group: members for group, members in groups.items() if group in STREAMING_GROUPS}
    classes = {row.operator.op_class for row in rows}
    # The vector fraction is told apart from the DRAM fractions only by tables of both
    # kinds of kernel: one bound by its vector work (softmax's and GELU's exponentials)
    # and one bound by DRAM (layernorm, add). With one kind alone the two trade off along
    # a valley, and the vector fraction keeps its default.
    split = bool(classes & VECTOR_HEAVY) and bool(classes & DRAM_HEAVY)
    if streaming:
        vector = 1.0 if split else None
        every = [row for members in streaming.values() for row in members]

        def params_at(drams: dict[str, float], vector_fraction: float | None):
            values = {} if vector_fraction is None else {"vector_efficiency": vector_fraction}
            return lambda op: dataclasses.replace(DEFAULT_PARAMS, dram_efficiency=drams[dram_group(op.op_class)], **values)

        if not split:
            vector, fitted_dram, notes = _fit_one_kind(fit, streaming, every, params_at, say)
            dram.update(fitted_dram)
        for _round in range(MAX_ROUNDS if split else 0):
            previous = (vector or 1.0, dict(dram))
            for group, members in streaming.items():
                say(f"fitting the DRAM fraction of {group} operators on {len(members)} rows")
                dram[group] = _golden(
                    lambda e, members=members, group=group, vector=vector: fit.error_by_class(
                        params_at({group: e}, vector), members
                    ),
                    *DRAM_BOUNDS,
                )
            say(f"fitting the vector fraction on {len(every)} rows")
            vector = _golden(lambda e: fit.error_by_class(params_at(dram, e), every), *EFFICIENCY_BOUNDS)
            if _settled(previous, (vector, dram)):
                break
        if split:
            names = list(streaming)

            def streaming_error(point):
                return fit.error_by_class(params_at(dict(zip(names, point[:-1], strict=True)), point[-1]), every)

            # The mapper's tile choices make the error rugged: start the simplex from the
            # best of the alternating searches' point and a coarse grid of (DRAM, vector).
            say("polishing the row-wise / element-wise fractions together")
            starts = [[dram[n] for n in names] + [vector]]
            starts += [[d] * len(names) + [v] for d in GRID for v in GRID]
            start = min(starts, key=streaming_error)
            point = _nelder_mead(streaming_error, start, [DRAM_BOUNDS] * len(names) + [EFFICIENCY_BOUNDS])
            dram.update(zip(names, point[:-1], strict=True))
            vector = point[-1]
    if "matmul" in groups:
        members = groups["matmul"]
        say(f"fitting the matrix and DRAM fractions of GEMMs on {len(members)} rows")
        trial = DEFAULT_PARAMS
        # GEMMs use both: the DRAM fraction (small M is DRAM-bound) and the matrix
        # fraction (large M), each in turn until they settle.
        for _round in range(MAX_ROUNDS):
            previous = (trial.matrix_efficiency, {"matmul": trial.dram_efficiency})
            for name, bounds in (("dram_efficiency", DRAM_BOUNDS), ("matrix_efficiency", EFFICIENCY_BOUNDS)):
                value = _golden(
                    lambda e, name=name, base=trial: fit.error(dataclasses.replace(base, **{name: e}), members),
                    *bounds,
                )
                trial = dataclasses.replace(trial, **{name: value})
            if _settled(previous, (trial.matrix_efficiency, {"matmul": trial.dram_efficiency})):
                break
        point = _nelder_mead(
            lambda p: fit.error(dataclasses.replace(DEFAULT_PARAMS, dram_efficiency=p[0], matrix_efficiency=p[1]), members),
            [trial.dram_efficiency, trial.matrix_efficiency], [DRAM_BOUNDS, EFFICIENCY_BOUNDS],
        )
        trial = dataclasses.replace(trial, dram_efficiency=point[0], matrix_efficiency=point[1])
        matrix, dram["matmul"] = trial.matrix_efficiency, trial.dram_efficiency
    for group in ("skinny", "gemv", "attention"):
        if group not in groups:
            continue
        members = groups[group]
        # Decode GEMMs stream their weights, attention its K and V: their DRAM fraction,
        # the matrix one held, the error taken over all these rows (one launch per class).
        base = DEFAULT_PARAMS if matrix is None else dataclasses.replace(DEFAULT_PARAMS, matrix_efficiency=matrix)
        inherited = dram.get(DRAM_FALLBACK[group], DEFAULT_PARAMS.dram_efficiency)
        gemms = [row for name in ("matmul", "skinny", "gemv", "attention") for row in groups.get(name, [])]

        def trial(e, group=group, base=base):
            def params(operator):
                own = dram_group_of(operator)
                value = e if own == group else dram.get(own, dram.get(DRAM_FALLBACK.get(own, ""), DEFAULT_PARAMS.dram_efficiency))
                return dataclasses.replace(base, dram_efficiency=value)
            return params

        say(f"fitting the DRAM fraction of {group} operators on {len(members)} rows")
        value = _golden(lambda e, trial=trial, gemms=gemms: fit.error_by_class(trial(e), gemms), *DRAM_BOUNDS)
        own = [i for i, row in enumerate(gemms) if dram_group_of(row.operator) == group]

        def own_error(e, trial=trial, gemms=gemms, own=own):
            errors = fit.row_errors(trial(e), gemms)
            return sum(errors[i] for i in own) / len(own)

        gain = own_error(inherited) - own_error(value)
        if gain * 100 >= SIGNIFICANT_PP:
            dram[group] = value
        else:
            notes.append(f"dram_efficiency.{group} takes {DRAM_FALLBACK[group]}'s {inherited:.2f}: a fraction of its own "
                         f"gained {gain * 100:.2f} points (< {SIGNIFICANT_PP})")

    def params_of(operator: Any) -> MapperParams:
        group = dram_group_of(operator)
        default = dram.get(DRAM_FALLBACK.get(group, ""), DEFAULT_PARAMS.dram_efficiency)
        values = {"dram_efficiency": dram.get(group, default)}
        if matrix is not None:
            values["matrix_efficiency"] = matrix
        if vector is not None:
            values["vector_efficiency"] = vector
        return dataclasses.replace(DEFAULT_PARAMS, **values)

    kernel = fit.kernel_s_by_class(params_of, rows)
    launches = fit.launches(rows, kernel)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.file] = counts.get(row.file, 0) + 1
    source = "des calibrate on " + ", ".join(f"{name} ({count} rows)" for name, count in counts.items())
    result = FittedParams(
        matrix_efficiency=round(matrix, 4) if matrix is not None else None,
        vector_efficiency=round(vector, 4) if vector is not None else None,
        dram_efficiency=tuple(sorted((group, round(value, 4)) for group, value in dram.items())),
        eager_launch_s=tuple(sorted((c, round(seconds, 9)) for c, seconds in launches.items() if c in launch_classes(rows))),
        source=source,
    )
    fitted = {f"dram_efficiency.{group}": value for group, value in dram.items()}
    if matrix is not None:
        fitted["matrix_efficiency"] = matrix
    if vector is not None:
        fitted["vector_efficiency"] = vector
    after = _per_file(rows, kernel, launches.__getitem__)
    warnings = []
    for name, value in fitted.items():
        bounds = DRAM_BOUNDS if name.startswith("dram") else EFFICIENCY_BOUNDS
        if min(abs(value - bound) for bound in bounds) < 2 * TOLERANCE:
            warnings.append(f"{name} = {value:.3f} sits on its bound {bounds}: the tables ask for more than a physical fraction")
    for op_class, seconds in launches.items():
        if seconds in LAUNCH_BOUNDS_S:
            warnings.append(f"eager launch of {op_class} = {seconds * 1e6:.1f} us sits on its bound")
    return CalibrationResult(device.name, result, tuple(str(p) for p, _ in tables), tuple(ignored), before, after,
                             tuple(warnings), dict(launches), tuple(notes))


def _per_file(rows: list[Measurement], kernel_s: list[float], launch_of: Callable[[str], float]) -> dict[str, float]:
    """MAPE (per cent) per file of the kernel times plus each class's launch."""
    errors: dict[str, list[float]] = {}
    for row, t in zip(rows, kernel_s, strict=True):
        launch = launch_of(row.operator.op_class)
        errors.setdefault(row.file, []).append(abs(t + launch - row.measured_s) / row.measured_s * 100)
    return {name: sum(values) / len(values) for name, values in errors.items()}


_FITTED_HEADER = "# Fitted by des calibrate (not datasheet figures): what this device's kernels achieve."


def fitted_yaml(original_text: str, result: CalibrationResult) -> str:
    """The device YAML with the ``fitted:`` block set: the original text, its datasheet
    figures and their source comments untouched, any old ``fitted:`` block replaced."""
    kept: list[str] = []
    skipping = False
    for line in original_text.splitlines():
        if line == _FITTED_HEADER:
            continue
        if re.match(r"^fitted\s*:", line):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "\t")) or not line.strip() or line.lstrip().startswith("#") and line.startswith(" ")):
            continue
        skipping = False
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    fitted = result.fitted
    block = ["", _FITTED_HEADER, "fitted:", f"  source: {fitted.source!r}"]
    if fitted.matrix_efficiency is not None:
        block.append(f"  matrix_efficiency: {fitted.matrix_efficiency:.4f}  # of the matrix peak, GEMM main loops")
    if fitted.vector_efficiency is not None:
        block.append(f"  vector_efficiency: {fitted.vector_efficiency:.4f}  # of the vector issue rate, row-wise kernels")
    if fitted.dram_efficiency:
        block.append("  dram_efficiency:  # of the DRAM peak, per operator group")
        block += [f"    {group}: {value:.4f}" for group, value in fitted.dram_efficiency]
    if fitted.eager_launch_s:
        block.append("  eager_launch_s:  # host-timed per-call overhead of PyTorch eager")
        block += [f"    {op_class}: {seconds * 1e6:.3f} us" for op_class, seconds in fitted.eager_launch_s]
    return "\n".join(kept + block) + "\n"


def format_result(result: CalibrationResult) -> str:
    """What the fit found, as text: parameters, error per file, warnings, files ignored."""
    fitted = result.fitted
    lines = [f"calibration of {result.device}"]
    lines += [f"  measurements: {path}" for path in result.files]
    for group, value in fitted.dram_efficiency:
        lines.append(f"  dram_efficiency {group:<12} {value:.4f}")
    if fitted.matrix_efficiency is not None:
        lines.append(f"  matrix_efficiency  {fitted.matrix_efficiency:.4f}")
    if fitted.vector_efficiency is not None:
        lines.append(f"  vector_efficiency  {fitted.vector_efficiency:.4f}")
    fitted_launch = dict(fitted.eager_launch_s)
    for op_class, seconds in result.launches_s.items():
        how = "fitted" if op_class in fitted_launch else "the eager profile's (its rows are too long to tell)"
        lines.append(f"  eager launch {op_class:<12} {seconds * 1e6:8.2f} us  {how}")
    lines.append("")
    lines.append(f"  {'file':<28} {'MAPE datasheet':>15} {'MAPE fitted':>12}")
    for name, after in result.mape_after_pct.items():
        lines.append(f"  {name:<28} {result.mape_before_pct[name]:>13.2f} % {after:>10.2f} %")
    lines += [f"  note: {note}" for note in result.notes]
    lines += [f"warning: {warning}" for warning in result.warnings]
    if result.ignored:
        lines.append(f"ignored (not {result.device}'s tables): {', '.join(result.ignored)}")
    return "\n".join(lines)
