"""Metrics of a run, computed from its trace: latency, a time breakdown, per-operator
time, resource utilisation and compute/communication overlap.

The breakdown splits every instant from 0 to the run's latency on each device into one
category, by priority:

1. a compute kernel runs (a span of a kernel category): the instant is that kernel's
   category, except that ``gemm`` becomes ``overlapped_gemm`` while a collective is in
   flight on the same device; when kernels overlap (several compute streams) the
   earliest-started one owns the instant;
2. else a collective is in flight: ``exposed_allreduce`` (any collective kind - the
   communication time nothing hides);
3. else a kernel launch runs: ``launch``;
4. else ``idle``.

So the categories of one device sum to the latency exactly, and the reported breakdown
is their average over the devices asked for. Link, collective-step and DRAM spans are
detail below a collective or a kernel and are not counted again.

Everything is a sweep over sorted interval end points (numpy), O(n log n) in the number
of spans, so a 96-layer model on 8 devices is summarised in well under a second.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from des.names import COLLECTIVE, KERNEL_CATEGORIES, LAUNCH, is_link_resource, natural_key
from des.spans import Span
from des.taskgraph import CollectiveTask, TaskGraph
from des.units import format_bytes, format_count, format_seconds

logger = logging.getLogger(__name__)

#: Breakdown keys, in report order; their values sum to the latency.
BREAKDOWN_CATEGORIES = (
    "norm",
    "gemm",
    "overlapped_gemm",
    "attention",
    "elementwise",
    "lm_head",
    "other",
    "exposed_allreduce",
    "launch",
    "idle",
)



@dataclass(frozen=True)
class RunMetrics:
    """Summary of one run.

    Attributes
    ----------
    latency_s : float
        End-to-end latency of the run.
    breakdown_s : dict of str to float
        Seconds per :data:`BREAKDOWN_CATEGORIES` key, averaged over :attr:`devices`;
        the values sum to ``latency_s`` (to float rounding).
    per_op_s : dict of str to float
        Seconds per task label, summed over the run on the first of :attr:`devices`
        (kernel spans without their launch; collective spans on that device), in the
        order labels first appear in the graph.
    utilisation : dict
        ``{"devices": {name: {"compute": f, "dram": f, "dram_bytes": b}},
        "links": {"A->B": {"busy": f, "bytes": b}}}``: busy fractions of the latency
        (compute as busy unit-seconds over units x latency) and bytes moved.
    overlap_s : float
        Time, averaged over :attr:`devices`, during which a collective is in flight
        and a compute kernel runs on the same device.
    events : int
        SimPy events the run scheduled.
    devices : tuple of str
        Devices the breakdown averages over.
    """

    latency_s: float
    breakdown_s: dict[str, float]
    per_op_s: dict[str, float]
    utilisation: dict[str, dict[str, dict[str, float]]]
    overlap_s: float
    events: int
    devices: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a deterministic key order.

        The per-operator times are under ``per_op`` (the ``des run --json`` contract).
        """
        return {
            "latency_s": self.latency_s,
            "breakdown_s": dict(self.breakdown_s),
            "per_op": dict(self.per_op_s),
            "overlap_s": self.overlap_s,
            "utilisation": {
                group: {name: dict(values) for name, values in entries.items()}
                for group, entries in self.utilisation.items()
            },
            "devices": list(self.devices),
            "events": self.events,
        }


# --------------------------------------------------------------------- intervals


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of intervals as disjoint, sorted ``(starts, ends)`` arrays."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    # A new piece begins where an interval starts beyond everything before it.
    new = np.empty(starts.size, dtype=bool)
    new[0] = True
    new[1:] = starts[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, starts.size - 1)
    return starts[first], reach[last]


def _covered(starts: np.ndarray, ends: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Measure of the disjoint sorted intervals ``(starts, ends)`` within ``[0, t]``."""
    t = np.asarray(t, dtype=float)
    if starts.size == 0:
        return np.zeros_like(t)
    lengths = ends - starts
    before = np.concatenate(([0.0], np.cumsum(lengths)))
    index = np.searchsorted(starts, t, side="right") - 1
    inside = np.clip(t - starts[np.maximum(index, 0)], 0.0, lengths[np.maximum(index, 0)])
    return np.where(index >= 0, before[np.maximum(index, 0)] + inside, 0.0)


def _overlap(a_starts: np.ndarray, a_ends: np.ndarray, b_starts: np.ndarray, b_ends: np.ndarray) -> np.ndarray:
    """Per interval of ``a``, its overlap with the disjoint sorted intervals ``b``."""
    return _covered(b_starts, b_ends, a_ends) - _covered(b_starts, b_ends, a_starts)


def _owned(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The part of each interval no earlier one covers, for intervals sorted by start.

    Every earlier interval starts no later, so what earlier ones cover from interval
    i's start on is ``[start_i, max(earlier ends))``: interval i owns
    ``[max(start_i, max earlier end), end_i)``. The owned parts are disjoint, sorted
    and give each instant to the earliest-started interval covering it.
    """
    if starts.size == 0:
        return starts, ends
    reach = np.maximum.accumulate(ends)
    before = np.concatenate(([-np.inf], reach[:-1]))
    owned_starts = np.minimum(np.maximum(starts, before), ends)
    return owned_starts, ends


def _arrays(spans: list[Span], latency_s: float) -> tuple[np.ndarray, np.ndarray]:
    starts = np.clip(np.fromiter((s.start_s for s in spans), float, len(spans)), 0.0, latency_s)
    ends = np.clip(np.fromiter((s.end_s for s in spans), float, len(spans)), 0.0, latency_s)
    return starts, ends


def _span_order(span: Span) -> tuple:
    return (span.start_s, span.end_s, span.resource, span.name)


# --------------------------------------------------------------------- breakdown


def device_breakdown(spans: Iterable[Span], latency_s: float) -> tuple[dict[str, float], float]:
    """Breakdown of one device's time from 0 to ``latency_s``.

    Parameters
    ----------
    spans : iterable of Span
        Spans of one device (others' categories are ignored; the device is not
        checked).
    latency_s : float
        End of the period to split.

    Returns
    -------
    breakdown_s : dict of str to float
        Seconds per :data:`BREAKDOWN_CATEGORIES` key, summing to ``latency_s``.
    overlap_s : float
        Seconds during which a collective is in flight and a kernel runs.
    """
    kernels: list[Span] = []
    collectives: list[Span] = []
    launches: list[Span] = []
    for span in spans:
        if span.category in KERNEL_CATEGORIES and not is_link_resource(span.resource):
            kernels.append(span)
        elif span.category == COLLECTIVE:
            collectives.append(span)
        elif span.category == LAUNCH:
            launches.append(span)
    kernels.sort(key=_span_order)
    breakdown = dict.fromkeys(BREAKDOWN_CATEGORIES, 0.0)

    k_starts, k_ends = _owned(*_arrays(kernels, latency_s))
    c_starts, c_ends = _merge(*_arrays(collectives, latency_s))
    beside = _overlap(k_starts, k_ends, c_starts, c_ends)
    owned = k_ends - k_starts
    categories = np.array([span.category for span in kernels], dtype=object)
    for category in KERNEL_CATEGORIES:
        mask = categories == category
        if not mask.any():
            continue
        if category == "gemm":
            breakdown["overlapped_gemm"] = float(beside[mask].sum())
            breakdown["gemm"] = float((owned[mask] - beside[mask]).sum())
        else:
            breakdown[category] = float(owned[mask].sum())
    overlap_s = float(beside.sum())
    breakdown["exposed_allreduce"] = float((c_ends - c_starts).sum()) - overlap_s

    # Launch time counts only where neither a kernel nor a collective runs.
    u_starts, u_ends = _merge(np.concatenate((k_starts, c_starts)), np.concatenate((k_ends, c_ends)))
    l_starts, l_ends = _merge(*_arrays(launches, latency_s))
    breakdown["launch"] = float(((l_ends - l_starts) - _overlap(l_starts, l_ends, u_starts, u_ends)).sum())

    # Float round-off only: the parts are measures of disjoint sets within [0, latency].
    for key in ("gemm", "exposed_allreduce", "launch"):
        breakdown[key] = max(breakdown[key], 0.0)
    busy = sum(value for key, value in breakdown.items() if key != "idle")
    breakdown["idle"] = max(latency_s - busy, 0.0)
    return breakdown, overlap_s


def _spans_by_device(spans: Iterable[Span], devices: Sequence[str]) -> dict[str, list[Span]]:
    wanted: dict[str, list[Span]] = {device: [] for device in devices}
    for span in spans:
        bucket = wanted.get(span.device)
        if bucket is not None:
            bucket.append(span)
    return wanted


def _per_op(spans: list[Span], graph: TaskGraph) -> dict[str, float]:
    """Seconds per task label from one device's kernel and collective spans."""
    label_of: dict[str, str] = {}
    for task in graph:
        if task.label:
            label_of[task.name] = task.label
        elif isinstance(task, CollectiveTask):
            label_of[task.name] = task.kind
    # Labels in graph order; unlabelled kernels fall back to their span category.
    order = {label: index for index, label in enumerate(dict.fromkeys(label_of.values()))}
    totals: dict[str, float] = {}
    for span in spans:
        counted = span.category == COLLECTIVE or (
            span.category in KERNEL_CATEGORIES and not is_link_resource(span.resource)
        )
        if not counted or span.name not in graph.tasks:
            continue
        label = label_of.get(span.name, span.category)
        totals[label] = totals.get(label, 0.0) + (span.end_s - span.start_s)
    return dict(sorted(totals.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def _utilisation(network: Any, latency_s: float) -> dict[str, dict[str, dict[str, float]]]:
    scale = 1.0 / latency_s if latency_s > 0 else 0.0
    devices = {}
    for name in sorted(network.devices, key=natural_key):
        device = network.devices[name]
        devices[name] = {
            "compute": device.compute.unit_busy_s * scale / device.compute.units,
            "dram": device.dram.busy_s * scale,
            "dram_bytes": device.dram.total_bytes,
        }
    links = {}
    for key in sorted(network.links, key=lambda pair: (natural_key(pair[0]), natural_key(pair[1]))):
        link = network.links[key]
        links[link.name] = {"busy": link.busy_s * scale, "bytes": link.bytes_sent}
    return {"devices": devices, "links": links}


def summarize(result: Any, graph: TaskGraph, devices: Sequence[str] | None = None) -> RunMetrics:
    """Metrics of a run.

    Parameters
    ----------
    result : RunResult
        What :meth:`des.engine.Engine.run` returned (its trace must be enabled for the
        breakdown and per-operator times).
    graph : TaskGraph
        The graph that was run (task labels for :attr:`RunMetrics.per_op_s`).
    devices : sequence of str, optional
        Devices to average the breakdown over; the first also gives the per-operator
        times. Default: every device the graph uses, in first-use order.

    Returns
    -------
    RunMetrics
    """
    devices = tuple(graph.devices() if devices is None else devices)
    latency_s = float(result.latency_s)
    if not result.trace.enabled:
        logger.warning("the run's trace is disabled: breakdown and per-operator times are empty")
    by_device = _spans_by_device(result.trace.spans, devices)
    breakdown = dict.fromkeys(BREAKDOWN_CATEGORIES, 0.0)
    overlap_s = 0.0
    for device in devices:
        part, overlap = device_breakdown(by_device[device], latency_s)
        for key, value in part.items():
            breakdown[key] += value
        overlap_s += overlap
    if devices:
        count = len(devices)
        breakdown = {key: value / count for key, value in breakdown.items()}
        overlap_s /= count
    per_op = _per_op(by_device[devices[0]], graph) if devices else {}
    return RunMetrics(
        latency_s=latency_s,
        breakdown_s=breakdown,
        per_op_s=per_op,
        utilisation=_utilisation(result.network, latency_s),
        overlap_s=overlap_s,
        events=int(getattr(result, "events", 0)),
        devices=devices,
    )


# --------------------------------------------------------------------- overlap


def overlapping_spans(
    spans: Iterable[Span], category_a: str = COLLECTIVE, categories_b: Sequence[str] = ("attention",)
) -> list[tuple[str, Span, Span]]:
    """Pairs of spans on the same device that run at the same time.

    Parameters
    ----------
    spans : iterable of Span
        A trace's spans.
    category_a : str
        Category of the first span of each pair.
    categories_b : sequence of str
        Categories of the second.

    Returns
    -------
    list of (device, span_a, span_b)
        Every pair whose intervals share a positive length, ordered by device, then
        span_a, then span_b start.
    """
    wanted_b = set(categories_b)
    a_of: dict[str, list[Span]] = {}
    b_of: dict[str, list[Span]] = {}
    for span in spans:
        if span.category == category_a:
            a_of.setdefault(span.device, []).append(span)
        if span.category in wanted_b:
            b_of.setdefault(span.device, []).append(span)
    pairs: list[tuple[str, Span, Span]] = []
    for device in sorted(a_of, key=natural_key):
        others = sorted(b_of.get(device, ()), key=_span_order)
        if not others:
            continue
        starts = [span.start_s for span in others]
        reach = np.maximum.accumulate([span.end_s for span in others])
        for a in sorted(a_of[device], key=_span_order):
            found = []
            # Walk back from the last b starting before a ends; stop once no earlier b
            # reaches past a's start.
            j = bisect.bisect_left(starts, a.end_s) - 1
            while j >= 0 and reach[j] > a.start_s:
                b = others[j]
                if b.end_s > a.start_s and b is not a:
                    found.append(b)
                j -= 1
            pairs.extend((device, a, b) for b in reversed(found))
    return pairs


# --------------------------------------------------------------------- report


def format_breakdown(metrics: RunMetrics) -> str:
    """A short table of the breakdown, with per-device utilisation averages.

    Parameters
    ----------
    metrics : RunMetrics
        What :func:`summarize` returned.

    Returns
    -------
    str
        Lines of text (no trailing newline).
    """
    latency_s = metrics.latency_s
    lines = [f"latency {format_seconds(latency_s)} over {format_count(len(metrics.devices), 'device')}"]
    width = max(len(key) for key in BREAKDOWN_CATEGORIES)
    for key in BREAKDOWN_CATEGORIES:
        value = metrics.breakdown_s.get(key, 0.0)
        if value == 0.0 and key in ("other", "overlapped_gemm", "lm_head"):
            continue
        share = 100.0 * value / latency_s if latency_s > 0 else 0.0
        lines.append(f"  {key:<{width}}  {format_seconds(value):>11}  {share:5.1f} %")
    lines.append(f"  {'overlap':<{width}}  {format_seconds(metrics.overlap_s):>11}  (collective beside compute)")
    used = [metrics.utilisation["devices"][d] for d in metrics.devices if d in metrics.utilisation.get("devices", {})]
    if used:
        compute = sum(u["compute"] for u in used) / len(used)
        dram = sum(u["dram"] for u in used) / len(used)
        moved = sum(u["dram_bytes"] for u in used) / len(used)
        lines.append(f"utilisation: compute {100 * compute:.1f} %, dram {100 * dram:.1f} % ({format_bytes(moved)} per device)")
    return "\n".join(lines)
