"""Operator validation: the mapper against real A100 measurements.

Compares every row of ``a100_matmul.csv`` (fp16 GEMM, N = K = 12288, M swept) and
``a100_softmax.csv`` (fp16 softmax over rows x cols) of the calibration folder with the
mapper's standalone latency plus the runtime profile's launch overhead (``eager``: the
tables were host-timed in PyTorch eager, launch included), and reports each row's
error and each file's mean absolute percentage error (MAPE).

The calibration folder is not part of the repository: it is found through
``$DES_CALIBRATION_DIR``, else ``<repo root>/../shared/calibration`` (the repository root
being the folder above the ``des`` package), else ``./../shared/calibration``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from des.calibration import calibration_dir as _calibration_dir
from des.calibration import read_rows
from des.errors import DesError
from des.mapper import MapperParams, schedule_for
from des.operators import Matmul, Softmax
from des.runtime import RuntimeProfile, runtime_profile
from des.specs import DeviceSpec

#: Environment variable naming the calibration folder.
#: The files compared, with the columns of their shapes.
CALIBRATION_FILES = ("a100_matmul.csv", "a100_softmax.csv")


@dataclass(frozen=True)
class ValidationRow:
    """One measured operator and its simulated latency.

    Attributes
    ----------
    file : str
        Calibration file name.
    operator : str
        Operator description.
    measured_s, simulated_s : float
        Real and simulated latency, launch overhead included.
    error_pct : float
        ``100 * (simulated - measured) / measured``.
    """

    file: str
    operator: str
    measured_s: float
    simulated_s: float
    error_pct: float


@dataclass(frozen=True)
class ValidationReport:
    """All rows, and per file the MAPE and the worst absolute error (per cent)."""

    device: str
    runtime: str
    rows: tuple[ValidationRow, ...]
    mape_pct: dict[str, float]
    max_abs_error_pct: dict[str, float]


def _operators(path: Path) -> list[tuple[Any, float]]:
    """(operator, measured seconds) for each row of a calibration file."""
    try:
        if path.name == "a100_matmul.csv":
            rows = read_rows(path, ("m", "n", "k", "latency_s"))
            return [
                (Matmul(int(r["m"]), int(r["k"]), int(r["n"])), float(r["latency_s"])) for r in rows
            ]
        rows = read_rows(path, ("rows", "cols", "latency_s"))
        return [(Softmax(int(r["rows"]), int(r["cols"])), float(r["latency_s"])) for r in rows]
    except ValueError as exc:
        raise DesError(f"{path}: bad number: {exc}") from None


def validate_operators(
    device: DeviceSpec,
    calibration_dir: str | os.PathLike[str] | None = None,
    runtime: str | RuntimeProfile = "eager",
    params: MapperParams | None = None,
) -> ValidationReport:
    """Compare the mapper with every row of the A100 operator calibration tables.

    Parameters
    ----------
    device : DeviceSpec
        The device to simulate (the tables were measured on an A100 80 GB: use the
        ``a100`` preset).
    calibration_dir : path, optional
        The calibration folder; found by :func:`des.calibration.calibration_dir` when omitted.
    runtime : str or RuntimeProfile
        Launch overhead added to each kernel (``"eager"``, as measured).
    params : MapperParams, optional
        Mapper constants.

    Returns
    -------
    ValidationReport
    """
    folder = _calibration_dir(calibration_dir)
    profile = runtime_profile(runtime) if isinstance(runtime, str) else runtime
    rows: list[ValidationRow] = []
    mape: dict[str, float] = {}
    worst: dict[str, float] = {}
    for name in CALIBRATION_FILES:
        errors = []
        for operator, measured in _operators(folder / name):
            schedule, _ = schedule_for(device, operator, params)
            launch = profile.launch_overhead_for(operator.op_class, device.name)
            simulated = schedule.standalone_s + launch
            error = 100.0 * (simulated - measured) / measured
            errors.append(abs(error))
            rows.append(ValidationRow(name, operator.describe(), measured, simulated, error))
        mape[name] = sum(errors) / len(errors) if errors else 0.0
        worst[name] = max(errors) if errors else 0.0
    return ValidationReport(device.name, profile.name, tuple(rows), mape, worst)


def format_validation(report: ValidationReport) -> str:
    """The report as a text table: operator, simulated, measured, error; then MAPE per file."""
    lines = [f"operator validation on {report.device}, runtime {report.runtime}"]
    header = f"{'operator':<44} {'simulated':>12} {'measured':>12} {'error':>8}"
    current = None
    for row in report.rows:
        if row.file != current:
            current = row.file
            lines += ["", current, header]
        lines.append(
            f"{row.operator:<44} {row.simulated_s * 1e6:>9.1f} us {row.measured_s * 1e6:>9.1f} us"
            f" {row.error_pct:>+7.1f}%"
        )
    lines.append("")
    for name in report.mape_pct:
        lines.append(
            f"{name}: MAPE {report.mape_pct[name]:.2f} %, worst row {report.max_abs_error_pct[name]:.1f} %"
        )
    return "\n".join(lines)
