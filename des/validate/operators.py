"""Operator validation: the mapper against real measurements of the same device.

A device is compared only with measurements of that device: the files
``<device>_matmul.csv`` (fp16 GEMM, columns ``m, n, k, latency_s``) and
``<device>_softmax.csv`` (fp16 softmax, ``rows, cols, latency_s``) of the calibration
folder, ``<device>`` being the device spec's name (``a100``, ``mi210``). Each row is
compared with the mapper's standalone latency plus the runtime profile's launch
overhead (``eager``: the tables were host-timed in PyTorch eager, launch included); the
report gives each row's error, each file's mean absolute percentage error (MAPE) and
the files used. A device with no such file is an error naming the files the folder
holds.

The calibration folder is not part of the repository: see
:func:`des.validate.calibration.calibration_dir`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from des.errors import DesError
from des.mapper import MapperParams, schedule_for
from des.operators import Matmul, Softmax
from des.runtime import RuntimeProfile, runtime_profile
from des.specs import DeviceSpec
from des.units import US_PER_S
from des.validate.calibration import calibration_dir as _calibration_dir
from des.validate.calibration import read_rows

#: Operator tables a device may have, ``<device>_<op>.csv``, and their columns.
OPERATOR_TABLES = {
    "matmul": ("m", "n", "k", "latency_s"),
    "softmax": ("rows", "cols", "latency_s"),
}


def operator_files(folder: Path, device: str) -> list[Path]:
    """The operator tables of ``device`` in ``folder`` (``<device>_matmul.csv``...), in table order."""
    return [folder / f"{device}_{op}.csv" for op in OPERATOR_TABLES if (folder / f"{device}_{op}.csv").is_file()]


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
    """All rows, per file the MAPE and the worst absolute error (per cent), and the files used."""

    device: str
    runtime: str
    rows: tuple[ValidationRow, ...]
    mape_pct: dict[str, float]
    max_abs_error_pct: dict[str, float]
    files: tuple[str, ...] = ()


def _operators(path: Path) -> list[tuple[Any, float]]:
    """(operator, measured seconds) for each row of a calibration file."""
    try:
        if path.stem.endswith("_matmul"):
            rows = read_rows(path, OPERATOR_TABLES["matmul"])
            return [
                (Matmul(int(r["m"]), int(r["k"]), int(r["n"])), float(r["latency_s"])) for r in rows
            ]
        rows = read_rows(path, OPERATOR_TABLES["softmax"])
        return [(Softmax(int(r["rows"]), int(r["cols"])), float(r["latency_s"])) for r in rows]
    except ValueError as exc:
        raise DesError(f"{path}: bad number: {exc}") from None


def validate_operators(
    device: DeviceSpec,
    calibration_dir: str | os.PathLike[str] | None = None,
    runtime: str | RuntimeProfile = "eager",
    params: MapperParams | None = None,
) -> ValidationReport:
    """Compare the mapper with every row of the device's own operator tables.

    Parameters
    ----------
    device : DeviceSpec
        The device to simulate; its tables are ``<device.name>_matmul.csv`` and
        ``<device.name>_softmax.csv``.
    calibration_dir : path, optional
        The calibration folder; found by :func:`des.calibration.calibration_dir` when omitted.
    runtime : str or RuntimeProfile
        Launch overhead added to each kernel (``"eager"``, as measured).
    params : MapperParams, optional
        Mapper constants.

    Returns
    -------
    ValidationReport

    Raises
    ------
    DesError
        If the folder holds no table of this device (listing what it holds).
    """
    folder = _calibration_dir(calibration_dir)
    paths = operator_files(folder, device.name)
    if not paths:
        held = sorted(p.name for p in folder.glob("*.csv"))
        raise DesError(
            f"{folder}: no operator measurements of device '{device.name}' "
            f"(looked for {', '.join(f'{device.name}_{op}.csv' for op in OPERATOR_TABLES)}; "
            f"the folder holds {', '.join(held) or 'no CSV file'}); a device is compared only with its own"
        )
    profile = runtime_profile(runtime) if isinstance(runtime, str) else runtime
    rows: list[ValidationRow] = []
    mape: dict[str, float] = {}
    worst: dict[str, float] = {}
    for path in paths:
        name = path.name
        errors = []
        for operator, measured in _operators(path):
            schedule, _ = schedule_for(device, operator, params)
            launch = profile.launch_overhead_for(operator.op_class, device.name)
            simulated = schedule.standalone_s + launch
            error = 100.0 * (simulated - measured) / measured
            errors.append(abs(error))
            rows.append(ValidationRow(name, operator.describe(), measured, simulated, error))
        mape[name] = sum(errors) / len(errors) if errors else 0.0
        worst[name] = max(errors) if errors else 0.0
    return ValidationReport(device.name, profile.name, tuple(rows), mape, worst, tuple(str(p) for p in paths))


def format_validation(report: ValidationReport) -> str:
    """The report as a text table: operator, simulated, measured, error; then MAPE per file."""
    lines = [f"operator validation on {report.device}, runtime {report.runtime}"]
    lines += [f"  measurements: {path}" for path in report.files]
    header = f"{'operator':<44} {'simulated':>12} {'measured':>12} {'error':>8}"
    current = None
    for row in report.rows:
        if row.file != current:
            current = row.file
            lines += ["", current, header]
        lines.append(
            f"{row.operator:<44} {row.simulated_s * US_PER_S:>9.1f} us {row.measured_s * US_PER_S:>9.1f} us"
            f" {row.error_pct:>+7.1f}%"
        )
    lines.append("")
    for name in report.mape_pct:
        lines.append(
            f"{name}: MAPE {report.mape_pct[name]:.2f} %, worst row {report.max_abs_error_pct[name]:.1f} %"
        )
    return "\n".join(lines)
