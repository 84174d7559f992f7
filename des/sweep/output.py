"""A sweep's results table: its columns, the CSV file, resuming and the Parquet copy.

One row per point, in point order (a row that finishes early waits for the rows
before it, so the file is always a prefix of the sweep in order plus nothing else).
The columns, in this order:

- ``point``: the point's index;
- one column per axis, named by its dotted path (``run.tp``,
  ``system.device.compute_units``), holding the value as written in the sweep;
- ``status`` (``ok`` or ``error``) and ``error`` (``ExceptionType: message``, empty
  when ok);
- the point's ``des run`` options: ``system``, ``model``, ``arch``, ``tp``, ``batch``,
  ``seq``, ``phase``, ``kv_len``, ``attention``, ``runtime``, ``layers``;
- ``metric`` (``ttft_s`` or ``tpot_s``), ``latency_s``, the breakdown of the latency as
  ``<category>_s`` (:data:`des.metrics.BREAKDOWN_CATEGORIES`), ``overlap_s``;
- memory per device: ``memory_weights_bytes``, ``memory_kv_cache_bytes``,
  ``memory_activations_bytes``, ``memory_total_bytes``, ``memory_capacity_bytes``;
- ``tasks``, ``events`` (SimPy events simulated);
- ``wall_s``: the point's wall time, the only column that differs between two runs of
  the same sweep.

A serving sweep (a ``serve`` section) writes instead the point's ``system``, ``model``,
``arch``, ``tp``, ``runtime`` and every ``serve.<option>``, then :data:`SERVE_RESULT_COLUMNS`:
TTFT, TPOT and end-to-end latency percentiles and means, throughput, goodput,
preemptions, iterations, mean batch, peak KV occupancy, and the iterations simulated,
cache hits and events of the point's own run.

Floats are written with :func:`repr`, so they read back bit for bit; a missing value
(``layers`` of a whole model, the metrics of a failed point) is an empty cell.

Beside ``OUT.csv`` lies ``OUT.csv.sweep.json``: the sweep's fingerprint (a hash of its
normalised base, axes and mode), the sweep itself and the column list. ``--resume``
refuses an output whose fingerprint differs.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from des.errors import DesError
from des.metrics import BREAKDOWN_CATEGORIES
from des.outputs import write_text
from des.sweep.spec import SweepSpec

logger = logging.getLogger(__name__)

#: Run options written for every point, in this order.
PARAM_COLUMNS = ("system", "model", "arch", "tp", "batch", "seq", "phase", "kv_len", "attention", "runtime", "layers")
#: Memory estimate keys (``memory_bytes_per_device``) and their columns.
MEMORY_KEYS = ("weights", "kv_cache", "activations", "total")
#: Columns a point's result fills in, in this order.
RESULT_COLUMNS = (
    "metric",
    "latency_s",
    *(f"{category}_s" for category in BREAKDOWN_CATEGORIES),
    "overlap_s",
    *(f"memory_{key}_bytes" for key in MEMORY_KEYS),
    "memory_capacity_bytes",
    "tasks",
    "events",
)
#: A serving sweep's options written for every point, and its result columns.
SERVE_PARAM_COLUMNS = ("system", "model", "arch", "tp", "runtime")
SERVE_RESULT_COLUMNS = (
    *(f"{metric}_{stat}" for metric in ("ttft_s", "tpot_s", "e2e_s") for stat in ("p50", "p90", "p99", "mean")),
    "throughput_requests_per_s", "throughput_tokens_per_s", "goodput_requests_per_s", "preemptions", "iterations",
    "batch_mean", "kv_occupancy_peak", "iterations_simulated", "iteration_cache_hits", "events_simulated",
)
#: The timing column (differs run to run).
WALL_COLUMN = "wall_s"
SIDECAR_SUFFIX = ".sweep.json"



def param_columns(spec: SweepSpec) -> tuple[str, ...]:
    """The options written for every point: a serving sweep's add its serving options."""
    if spec.serving:
        from des.serve.point import SERVE_DEFAULTS

        return (*SERVE_PARAM_COLUMNS, *(f"serve.{name}" for name in SERVE_DEFAULTS))
    return PARAM_COLUMNS


def result_columns(spec: SweepSpec) -> tuple[str, ...]:
    """The columns a point's result fills in."""
    return SERVE_RESULT_COLUMNS if spec.serving else RESULT_COLUMNS


def columns(spec: SweepSpec) -> list[str]:
    """The table's columns for ``spec``, in order."""
    return ["point", *spec.axis_paths, "status", "error", *param_columns(spec), *result_columns(spec), WALL_COLUMN]


def cell(value: Any) -> str:
    """A value as written in a CSV cell: exact floats, ``true``/``false``, JSON for the rest."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, sort_keys=True)


def result_cells(record: dict[str, Any]) -> dict[str, Any]:
    """The result columns of a ``des run`` record (:func:`des.study.simulate_point`), or
    of a serving point's (:func:`des.serve.point.serve_point`)."""
    if isinstance(record.get("ttft_s"), dict):
        row = {f"{metric}_{stat}": record[metric][stat] for metric in ("ttft_s", "tpot_s", "e2e_s")
               for stat in ("p50", "p90", "p99", "mean")}
        row.update({name: record[name] for name in SERVE_RESULT_COLUMNS if name in record})
        return row
    memory = record["memory_bytes_per_device"]
    row: dict[str, Any] = {"metric": record["metric"], "latency_s": record["latency_s"]}
    for category in BREAKDOWN_CATEGORIES:
        row[f"{category}_s"] = record["breakdown_s"].get(category, 0.0)
    row["overlap_s"] = record["overlap_s"]
    for key in MEMORY_KEYS:
        row[f"memory_{key}_bytes"] = memory[key]
    row["memory_capacity_bytes"] = record["memory_capacity_bytes"]
    row["tasks"] = record["tasks"]
    row["events"] = record["events"]
    return row


def sidecar_path(out: Path) -> Path:
    """``OUT.csv`` -> ``OUT.csv.sweep.json``."""
    return out.with_name(out.name + SIDECAR_SUFFIX)


def write_sidecar(out: Path, spec: SweepSpec) -> None:
    """Record which sweep ``out`` holds (see the module docstring)."""
    data = {"fingerprint": spec.fingerprint(), "sweep": spec.normalised(), "source": spec.source, "columns": columns(spec)}
    write_text(sidecar_path(out), json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def _csv_text(header: list[str], rows: Iterable[list[str]]) -> str:
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def read_done(out: Path, spec: SweepSpec) -> list[list[str]]:
    """Rows of a previous run of ``spec`` in ``out``, for ``--resume``.

    Returns
    -------
    list of list of str
        Complete rows (a line cut short by an interrupted write is dropped).

    Raises
    ------
    DesError
        If ``out`` has no sidecar, or is from another sweep, or its header differs.
    """
    sidecar = sidecar_path(out)
    if not sidecar.is_file():
        raise DesError(f"--resume: {out} has no {sidecar.name} beside it, so it was not written by des sweep; "
                       f"choose another --out or drop --resume")
    try:
        stored = json.loads(sidecar.read_text(encoding="utf-8"))
        fingerprint = stored["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DesError(f"--resume: cannot read {sidecar}: {exc}") from None
    if fingerprint != spec.fingerprint():
        raise DesError(
            f"--resume: {out} holds the results of a different sweep (from {stored.get('source', '?')}: other base, "
            f"axes or mode); choose another --out or drop --resume to overwrite it"
        )
    expected = columns(spec)
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return []
    if rows[0] != expected:
        raise DesError(f"--resume: {out} has other columns than this sweep writes; choose another --out")
    complete = [row for row in rows[1:] if len(row) == len(expected)]
    dropped = len(rows) - 1 - len(complete)
    if dropped:
        logger.warning("%s: dropped %d incomplete row(s) of an interrupted run", out, dropped)
    return complete


class OrderedCsvWriter:
    """Writes rows in point order, holding back a row until those before it are in.

    Parameters
    ----------
    out : Path
        The CSV file.
    header : list of str
        Its columns.
    rows : list of list of str
        Rows kept from a previous run (``--resume``); the file is rewritten with them.
    pending : list of int
        Indices of the points still to run, in order.
    """

    def __init__(self, out: Path, header: list[str], rows: list[list[str]], pending: list[int]) -> None:
        self.out = out
        self.header = header
        self.kept = sorted(rows, key=lambda row: int(row[0]))
        self.pending = list(pending)
        self.next = 0
        self.waiting: dict[int, list[str]] = {}
        self.written: list[list[str]] = []
        # The file starts as the kept rows, rewritten in order (drops a torn last line).
        write_text(out, _csv_text(header, self.kept))
        self.handle = out.open("a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle, lineterminator="\n")

    def add(self, index: int, row: list[str]) -> None:
        """Take point ``index``'s row; write it and every row it was holding back."""
        self.waiting[index] = row
        while self.next < len(self.pending) and self.pending[self.next] in self.waiting:
            ready = self.waiting.pop(self.pending[self.next])
            self.writer.writerow(ready)
            self.written.append(ready)
            self.next += 1
        self.handle.flush()

    def close(self) -> None:
        """Close the file, keeping every row it took.

        Rows still held back (a sweep stopped before an earlier point finished) are kept
        too; where they, or resumed rows, interleave with the new ones the file is
        rewritten in point order, so ``--resume`` finds every finished point.
        """
        self.handle.close()
        held = [self.waiting[index] for index in sorted(self.waiting)]
        self.waiting.clear()
        interleaved = self.kept and self.written and int(self.written[0][0]) < int(self.kept[-1][0])
        if held or interleaved:
            rows = sorted(self.kept + self.written + held, key=lambda row: int(row[0]))
            self.written += held
            write_text(self.out, _csv_text(self.header, rows))


def write_parquet(out: Path) -> Path | None:
    """Write ``out`` (a CSV file) as Parquet beside it if pyarrow is importable."""
    try:
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq
    except ImportError:
        logger.info("pyarrow is not installed: no Parquet copy of %s", out)
        return None
    target = out.with_suffix(".parquet")
    pq.write_table(pa_csv.read_csv(out), target)
    return target
