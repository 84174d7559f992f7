"""Operator validation: the mapper against real measurements of the same device.

A device is compared only with measurements of that device: the tables
``<device>_<op>.csv`` of a folder (:mod:`des.calibrate`'s formats: ``matmul``,
``softmax``, ``layernorm``, ``gelu``, ``add``, ``attention``, and the combined ``ops``
table of tests/data/h100), ``<device>`` being the device spec's name (``a100``,
``mi210``, ``h100``), or table files named on their own. Each row is compared with the
mapper's standalone latency plus the runtime profile's launch overhead (``eager``: the
tables were host-timed in PyTorch eager, launch included; a device's fitted launch
where ``des calibrate`` measured one); the report gives each row's error, the mean
absolute percentage error (MAPE) per file and per operator family, and the files used.
A device with no table is an error naming what was looked for.

The calibration folder is not part of the repository: see
:func:`des.validate.calibration.calibration_dir`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from des.calibrate import find_tables, read_measurements
from des.mapper import MapperParams, schedule_for
from des.runtime import RuntimeProfile, runtime_profile
from des.specs import DeviceSpec
from des.units import US_PER_S
from des.validate.calibration import calibration_dir as _calibration_dir


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
    family : str
        The operator family (``matmul``, ``bmm``, ``softmax``...).
    """

    file: str
    operator: str
    measured_s: float
    simulated_s: float
    error_pct: float
    family: str = ""


@dataclass(frozen=True)
class ValidationReport:
    """All rows; per file and per family the MAPE and the worst absolute error (per cent); the files used."""

    device: str
    runtime: str
    rows: tuple[ValidationRow, ...]
    mape_pct: dict[str, float]
    max_abs_error_pct: dict[str, float]
    files: tuple[str, ...] = ()
    family_mape_pct: dict[str, float] = field(default_factory=dict)


def validate_operators(
    device: DeviceSpec,
    calibration_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    runtime: str | RuntimeProfile = "eager",
    params: MapperParams | None = None,
) -> ValidationReport:
    """Compare the mapper with every row of the device's own operator tables.

    Parameters
    ----------
    device : DeviceSpec
        The device to simulate; its tables are ``<device.name>_<op>.csv``.
    calibration_dir : path or sequence of paths, optional
        Folders holding the tables, or table files; the calibration folder
        (:func:`des.validate.calibration.calibration_dir`) when omitted.
    runtime : str or RuntimeProfile
        Launch overhead added to each kernel (``"eager"``, as measured).
    params : MapperParams, optional
        Mapper constants (default: the device's own, fitted ones included).

    Returns
    -------
    ValidationReport

    Raises
    ------
    DesError
        If no table of this device is found, or a table is malformed.
    """
    if calibration_dir is None or isinstance(calibration_dir, (str, os.PathLike)):
        sources: list[str | os.PathLike[str]] = [_calibration_dir(calibration_dir)]
    else:
        sources = list(calibration_dir)
    tables, _ignored = find_tables(device.name, [Path(p) for p in sources])
    profile = runtime_profile(runtime) if isinstance(runtime, str) else runtime
    rows: list[ValidationRow] = []
    by_file: dict[str, list[float]] = {}
    by_family: dict[str, list[float]] = {}
    for measurement in read_measurements(tables):
        operator = measurement.operator
        schedule, _ = schedule_for(device, operator, params)
        simulated = schedule.standalone_s + profile.launch_for_device(operator.op_class, device)
        error = 100.0 * (simulated - measurement.measured_s) / measurement.measured_s
        by_file.setdefault(measurement.file, []).append(abs(error))
        by_family.setdefault(measurement.family, []).append(abs(error))
        rows.append(ValidationRow(measurement.file, operator.describe(), measurement.measured_s, simulated, error,
                                  measurement.family))
    mape = {name: sum(v) / len(v) for name, v in by_file.items()}
    worst = {name: max(v) for name, v in by_file.items()}
    families = {name: sum(v) / len(v) for name, v in by_family.items()}
    return ValidationReport(device.name, profile.name, tuple(rows), mape, worst, tuple(str(p) for p, _ in tables), families)


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
    if len(report.family_mape_pct) > 1 or len(report.mape_pct) > 1:
        lines.append("MAPE per family: " + ", ".join(f"{name} {value:.2f} %" for name, value in report.family_mape_pct.items()))
    return "\n".join(lines)
