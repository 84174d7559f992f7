"""The Gantt chart of a point: the whole run for a few layers or a pipeline, else two layers of it.

A model of many layers repeats the same pattern; a chart of all 96 would show nothing.
:func:`gantt_spans` keeps the spans of layers :data:`GANTT_LAYERS` (the first layer's
all-reduce pattern is special for Kraken, every later one repeats the second), selected
by the layer index every task of a workload carries (:attr:`des.taskgraph.KernelTask.layer`).
"""

from __future__ import annotations

from pathlib import Path

from des.errors import DoesNotFitError
from des.names import DRAM, LINK
from des.study.point import PointResult, PointSpec, run_point

#: Layers drawn in a Gantt chart of a whole model (two, after the first, whose
#: all-reduce pattern every later layer repeats).
GANTT_LAYERS = (2, 3)


def gantt_spans(point: PointResult) -> list:
    """Spans to draw: the whole run for a few layers, else layers :data:`GANTT_LAYERS`.

    Link and DRAM spans are left out (one row per link direction would drown the
    streams).
    """
    spans = [s for s in point.trace.spans if s.category not in (LINK, DRAM)]
    layers = point.spec.layers
    if layers is not None and layers <= len(GANTT_LAYERS):
        return spans
    if point.spec.pp > 1 or point.spec.microbatches > 1:
        return spans  # a pipeline's whole run: its bubble is the idle stretches of each stage
    wanted = GANTT_LAYERS if layers is None or layers >= GANTT_LAYERS[-1] else (1, 2)
    starts = point.result.task_start_s
    ends = point.result.task_end_s
    names = [task.name for task in point.workload.graph if task.layer in wanted]
    if not names:
        return spans
    first = min(starts[name] for name in names)
    last = max(ends[name] for name in names)
    return [s for s in spans if s.end_s > first and s.start_s < last]


def gantt_title(point: PointResult) -> str:
    """``gpt3-13b kraken TP=8 prefill seq 2048 on dgx-a100``."""
    spec = point.spec
    tokens = f"seq {spec.seq}" if spec.phase == "prefill" else f"kv-len {spec.kv_len}"
    return f"{point.record['model']} {spec.arch} TP={spec.tp} {spec.phase} {tokens} on {point.record['system']}"


def draw_point_gantt(spec: PointSpec, path: Path, title: str) -> bool:
    """Simulate ``spec`` and draw :func:`gantt_spans` of it to ``path`` (scenario scripts).

    Returns
    -------
    bool
        Whether the chart was drawn: ``False``, and nothing written, where the model
        does not fit on the devices.
    """
    from des.plot import gantt

    try:
        point = run_point(spec)
    except DoesNotFitError:
        return False
    gantt(gantt_spans(point), path, title=title)
    return True
