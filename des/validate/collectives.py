"""``des validate collectives``: simulated all-reduce latency against real measurements.

Every row of the calibration tables that a preset system can reproduce is simulated
alone on an idle system and compared with the measured median:

- ``a100x4_nvlink_allreduce.csv`` -> ``hgx-a100-4`` (4 ranks, LLMCompass artifact);
- ``dgx_allreduce.csv`` -> ``dgx-a100`` / ``dgx-h100`` for ranks in one node, and
  ``2x-dgx-a100`` for ranks spread one per node (Vidur profiling data).

Rows whose system has no preset are counted as skipped, never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from des.engine import simulate_collective
from des.errors import DesError
from des.spans import Trace
from des.specs import SystemSpec
from des.units import US_PER_S, KiB, MiB, format_count
from des.validate.calibration import calibration_dir, read_rows
from des.validate.floor import floor_errors

#: Message-size bands the error is reported in: (label, lowest bytes, highest bytes),
#: the small (latency-bound), mid-size and large (bandwidth-bound) regimes.
SIZE_BANDS = (
    ("< 256 KiB", 0.0, 256 * KiB),
    ("256 KiB - 16 MiB", 256 * KiB, 16 * MiB),
    ("> 16 MiB", 16 * MiB, math.inf),
)


def size_band(nbytes: float) -> str:
    """The label of the :data:`SIZE_BANDS` band holding ``nbytes`` (16 MiB is mid-size)."""
    if nbytes < SIZE_BANDS[1][1]:
        return SIZE_BANDS[0][0]
    if nbytes <= SIZE_BANDS[1][2]:
        return SIZE_BANDS[1][0]
    return SIZE_BANDS[2][0]


@dataclass(frozen=True)
class Row:
    """One compared measurement, and how the simulated call ran."""

    dataset: str
    system: str
    ranks: int
    ranks_per_node: int
    nbytes: float
    measured_s: float
    simulated_s: float
    algorithm: str = "ring"
    protocol: str | None = None
    channels: int = 1

    @property
    def band(self) -> str:
        """The size band of the message (:func:`size_band`)."""
        return size_band(self.nbytes)

    @property
    def error(self) -> float:
        """Signed relative error of the simulation."""
        return self.simulated_s / self.measured_s - 1.0


@dataclass(frozen=True)
class Report:
    """All compared rows and the rows that could not be mapped to a preset."""

    rows: tuple[Row, ...]
    skipped: dict[str, int]
    _floors: dict[int, float] = field(default_factory=dict, compare=False, repr=False)

    def _chosen(self, dataset: str | None, band: str | None) -> list[int]:
        return [
            index for index, row in enumerate(self.rows)
            if (dataset is None or row.dataset == dataset) and (band is None or row.band == band)
        ]

    def mape(self, dataset: str | None = None, band: str | None = None) -> float:
        """Mean absolute percentage error (as a fraction) over a dataset or all rows,
        optionally of one size band (NaN where no row is in it)."""
        chosen = self._chosen(dataset, band)
        if not chosen:
            return float("nan")
        return sum(abs(self.rows[index].error) for index in chosen) / len(chosen)

    def floor(self, dataset: str | None = None, band: str | None = None) -> float:
        """The noise floor of the same rows: the mean absolute percentage error of the best
        non-decreasing fit to each dataset's measurements (:mod:`des.validate.floor`), a
        bound no model whose time does not fall with size can beat."""
        if not self._floors:
            for name in self.datasets():
                members = [index for index, row in enumerate(self.rows) if row.dataset == name]
                errors = floor_errors([self.rows[i].nbytes for i in members], [self.rows[i].measured_s for i in members])
                self._floors.update(zip(members, errors, strict=True))
        chosen = self._chosen(dataset, band)
        if not chosen:
            return float("nan")
        return sum(self._floors[index] for index in chosen) / len(chosen)

    def datasets(self) -> list[str]:
        """Dataset labels in first-seen order."""
        return list(dict.fromkeys(row.dataset for row in self.rows))


def _system_for(gpu: str, ranks: int, ranks_per_node: int) -> str | None:
    if ranks_per_node == ranks:
        return {"a100": "dgx-a100", "h100": "dgx-h100"}.get(gpu)
    if ranks_per_node == 1 and ranks == 2:
        return {"a100": "2x-dgx-a100", "h100": "2x-dgx-h100"}.get(gpu)
    return None


def calibration_jobs() -> tuple[list[tuple[str, str, int, int, float, float]], dict[str, int]]:
    """Every calibration row as ``(dataset, preset, ranks, ranks per node, bytes, measured s)``,
    and the rows per dataset that no preset reproduces."""
    folder = calibration_dir()
    jobs: list[tuple[str, str, int, int, float, float]] = []
    skipped: dict[str, int] = {}
    nvlink = folder / "a100x4_nvlink_allreduce.csv"
    if nvlink.exists():
        for row in read_rows(nvlink):
            jobs.append(("a100x4_nvlink", "hgx-a100-4", 4, 4, float(row["bytes"]), float(row["latency_s"])))
    dgx = folder / "dgx_allreduce.csv"
    if dgx.exists():
        for row in read_rows(dgx):
            gpu, ranks, per_node = row["gpu"], int(row["ranks"]), int(row["ranks_per_node"])
            label = f"dgx_{gpu}_{ranks}r_{per_node}pn"
            system = _system_for(gpu, ranks, per_node)
            if system is None:
                skipped[label] = skipped.get(label, 0) + 1
                continue
            jobs.append((label, system, ranks, per_node, float(row["bytes"]), float(row["median_s"])))
    if not jobs:
        raise DesError(f"{folder}: no all-reduce measurements found")
    return jobs, skipped


def validate_collectives(load_system: Callable[[str], SystemSpec], stride: int = 1, datasets=None, **options) -> Report:
    """Simulate every calibration row a preset can reproduce.

    Parameters
    ----------
    load_system : callable
        ``load_system(preset_name) -> SystemSpec`` (``topologies.load_system``).
    stride : int
        Compare every ``stride``-th row only (tests use this to stay fast).
    datasets : collection of str, optional
        Only these datasets (e.g. ``{"a100x4_nvlink"}``).
    options
        Passed to :func:`~des.engine.simulate_collective` (``comm_library``).
    """
    jobs, skipped = calibration_jobs()
    if datasets is not None:
        jobs = [job for job in jobs if job[0] in datasets]
    systems: dict[str, SystemSpec | None] = {}
    rows = []
    for index, (label, name, ranks, per_node, nbytes, measured) in enumerate(jobs):
        if index % stride:
            continue
        if name not in systems:
            try:
                systems[name] = load_system(name)
            except DesError:
                systems[name] = None
        system = systems[name]
        if system is None:
            skipped[label] = skipped.get(label, 0) + 1
            continue
        group = system.select_ranks(ranks, per_node if per_node != ranks else None)
        result = simulate_collective(system, "allreduce", group, nbytes, Trace(enabled=False), **options)
        rows.append(
            Row(label, name, ranks, per_node, nbytes, measured, result.latency_s,
                result.algorithm, result.protocol, result.channels)
        )
    return Report(tuple(rows), skipped)


def format_report(report: Report, verbose: bool = False) -> str:
    """The table of every row, then the error per dataset and size band, and overall.

    ``verbose`` adds how each simulated call ran: algorithm, protocol and channels.
    """
    how = f" {'algorithm':<12} {'protocol':<12} {'channels':>8}" if verbose else ""
    lines = [f"{'dataset':<22} {'system':<12} {'ranks':>5} {'bytes':>12} {'measured us':>12} {'simulated us':>13} {'error':>8}{how}"]
    for row in report.rows:
        detail = f" {row.algorithm:<12} {row.protocol or '-':<12} {row.channels:>8}" if verbose else ""
        lines.append(
            f"{row.dataset:<22} {row.system:<12} {row.ranks:>5} {row.nbytes:>12.0f} "
            f"{row.measured_s * US_PER_S:>12.2f} {row.simulated_s * US_PER_S:>13.2f} {row.error * 100:>+7.1f}%{detail}"
        )
    lines.append("")
    bands = [label for label, _low, _high in SIZE_BANDS]
    lines.append("mean absolute percentage error" + " " * 19 + "".join(f"{label:>18}" for label in bands))

    def cells(measure, dataset: str | None) -> str:
        values = (measure(dataset, band) for band in bands)
        return "".join(f"{'-' if math.isnan(v) else f'{v * 100:.2f} %':>18}" for v in values)

    def table(measure) -> None:
        for dataset in report.datasets():
            count = f"({format_count(sum(1 for row in report.rows if row.dataset == dataset), 'row')})"
            lines.append(f"  {dataset:<22} {measure(dataset) * 100:6.2f} %  {count:<14}{cells(measure, dataset)}")
        total = f"({format_count(len(report.rows), 'row')})"
        lines.append(f"  {'all rows':<22} {measure(None) * 100:6.2f} %  {total:<14}{cells(measure, None)}")

    table(report.mape)
    lines.append("noise floor: error of the best non-decreasing fit to the measurements")
    table(report.floor)
    for dataset, count in sorted(report.skipped.items()):
        lines.append(f"  skipped {dataset}: {count} rows (no preset system for them)")
    return "\n".join(lines)
