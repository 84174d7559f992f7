"""The exact fast path for graphs of repeated layers.

A transformer's task graph is mostly the same layer again and again: the same tasks,
shapes, devices and streams, each layer depending on the one before in the same way.
Once the simulation settles into that rhythm, every further layer repeats the last one
shifted by one period. :func:`run_repeated` simulates the graph cut down to ``m``
layers (the repeated ones and what comes after, re-attached to the last kept layer),
then to ``m + 1``, and accepts the period ``D`` only if

- the last two layer periods of the longer run are equal (to ``1e-9`` of the latency),
- every task and every span of its last layer is the previous layer's shifted by ``D``,
- the tasks after the layers, and the run's end, moved by exactly ``D`` between the
  two runs (so the state at a layer boundary carries nothing that would grow);

and then writes the full run out: the layers not simulated are the last one shifted by
multiples of ``D`` (tasks, collectives, spans renamed to their layer), what follows
them shifted by ``(N - m) D``, and every counter (busy time of compute units, DRAM and
links, bytes, events) extended by ``(N - m)`` times its growth per layer. If any check
fails, the runs are repeated with more layers (:data:`ATTEMPTS`, while that costs at
most :data:`ATTEMPT_SHARE` of the graph), and then the caller simulates in full (a
Ladder model's ranks drift apart by parts in 10^5 per layer for many layers and take
that path). The engine knows nothing of transformers: a layer is the ``layer``
attribute of a task.
"""

from __future__ import annotations

import dataclasses
import logging
from types import SimpleNamespace
from typing import Any

from des.spans import Span, Trace
from des.taskgraph import KernelTask, TaskGraph

logger = logging.getLogger(__name__)

#: Repeated layers the pairs of runs keep beyond the first repeated one, in turn.
ATTEMPTS = (2, 8)
#: A later attempt is made only while its two runs would simulate at most this share of
#: the graph's layers (a graph that does not settle costs at most half again its run).
ATTEMPT_SHARE = 0.5
#: Relative tolerance of every time comparison (of the latency).
TOLERANCE = 1e-9


@dataclasses.dataclass
class Repetition:
    """Where a graph repeats: layers ``first`` to ``last`` (1-based) have one structure."""

    pre: list[Any]
    layers: dict[int, list[Any]]
    post: list[Any]
    first: int
    last: int


def _describe(task) -> tuple:
    if isinstance(task, KernelTask):
        return ("k", task.device, task.stream, task.operator, task.schedule, task.category, task.label)
    return ("c", task.kind, task.group, task.nbytes, task.stream, task.label, task.matrix)


def find_repetition(graph: TaskGraph, min_layers: int) -> Repetition | None:
    """The repeated layers of ``graph``, or ``None`` if it has no long enough run of them."""
    tasks = list(graph)
    layer_of = {task.name: task.layer for task in tasks}
    # Layers must come as contiguous, ascending blocks, with layer-less tasks only before
    # the first and after the last.
    pre, post, layers = [], [], {}
    order = []
    for task in tasks:
        if task.layer is None:
            (post if layers else pre).append(task)
            continue
        if post or (order and task.layer < order[-1]):
            return None
        if not order or task.layer != order[-1]:
            order.append(task.layer)
        layers.setdefault(task.layer, []).append(task)
    if len(order) < min_layers or order != list(range(1, len(order) + 1)):
        return None
    index = {task.name: i for members in layers.values() for i, task in enumerate(members)}
    pre_names = {task.name for task in pre}

    def signature(layer: int):
        out = []
        for task in layers[layer]:
            deps = []
            for dep in task.deps:
                if layer_of.get(dep) == layer:
                    deps.append(("s", index[dep]))
                elif layer_of.get(dep) == layer - 1:
                    deps.append(("p", index[dep]))
                elif dep in pre_names:
                    deps.append(("pre", dep))
                else:
                    return None
            out.append((_describe(task), tuple(deps)))
        return tuple(out)

    n = len(order)
    sigs = {layer: signature(layer) for layer in range(1, n + 1)}
    last = n
    if n >= 2 and sigs[n] != sigs[n - 1]:
        last = n - 1  # a last layer with extra tasks (Ladder's closing adds) is left after
    first = last
    while first > 1 and sigs[first - 1] is not None and sigs[first - 1] == sigs[last]:
        first -= 1
    if sigs[last] is None or last - first + 1 < min_layers:
        return None
    after = [task for layer in range(last + 1, n + 1) for task in layers[layer]] + post
    allowed = {task.name for task in after} | pre_names | {task.name for task in layers[last]}
    if any(dep not in allowed for task in after for dep in task.deps):
        return None
    return Repetition(pre, {layer: layers[layer] for layer in range(1, last + 1)}, after, first, last)


def truncated(rep: Repetition, keep: int) -> TaskGraph:
    """The graph with layers up to ``keep`` and what follows re-attached to layer ``keep``."""
    graph = TaskGraph()
    for task in rep.pre:
        graph.add(task)
    for layer in range(1, keep + 1):
        for task in rep.layers[layer]:
            graph.add(task)
    rename = {old.name: new.name for old, new in zip(rep.layers[rep.last], rep.layers[keep], strict=True)}
    for task in rep.post:
        graph.add(dataclasses.replace(task, deps=tuple(rename.get(dep, dep) for dep in task.deps)))
    return graph


def _owner(span: Span, names: set[str]) -> str | None:
    name = span.name[7:] if span.name.startswith("launch ") else span.name.split(" ", 1)[0]
    return name if name in names else None


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol


def _counters(network) -> dict:
    out = {}
    for name, device in network.devices.items():
        out[("compute", name)] = device.compute.unit_busy_s
        out[("dram", name)] = device.dram.busy_s
        out[("dram_bytes", name)] = device.dram.total_bytes
    for key, link in network.links.items():
        out[("link_busy", key)] = link.busy_s
        out[("link_bytes", key)] = link.bytes_sent
    return out


def expand(graph: TaskGraph, rep: Repetition, keep: int, short, long, trace: Trace):
    """The full run from the runs of ``keep`` and ``keep + 1`` layers, or ``None`` if the
    longer run does not repeat exactly (module docstring)."""
    m = keep + 1
    tol = TOLERANCE * max(long.latency_s, 1e-30)
    ends = {layer: max(long.task_end_s[t.name] for t in rep.layers[layer]) for layer in (m - 2, m - 1, m)}
    period = ends[m] - ends[m - 1]
    if not (period > 0 and _close(ends[m - 1] - ends[m - 2], period, tol)):
        return None
    if not _close(long.latency_s - short.latency_s, period, tol):
        return None
    for old, new in zip(rep.layers[m - 1], rep.layers[m], strict=True):
        if not (_close(long.task_start_s[new.name] - long.task_start_s[old.name], period, tol)
                and _close(long.task_end_s[new.name] - long.task_end_s[old.name], period, tol)):
            return None
    for task in rep.post:
        if not _close(long.task_end_s[task.name] - short.task_end_s[task.name], period, tol):
            return None
    names = {task.name for task in graph}
    layer_names = {layer: [t.name for t in rep.layers[layer]] for layer in rep.layers}
    layer_of_name = {name: layer for layer, members in layer_names.items() for name in members}
    post_names = {task.name for task in rep.post}
    spans = long.trace.spans
    by_layer: dict[int, list[Span]] = {m - 1: [], m: []}
    kept, tail = [], []
    for span in spans:
        owner = _owner(span, names)
        if owner is None:
            return None
        layer = layer_of_name.get(owner)
        if layer in by_layer:
            by_layer[layer].append(span)
        if owner in post_names:
            tail.append(span)
        else:
            kept.append(span)
    if len(by_layer[m - 1]) != len(by_layer[m]):
        return None
    rename_back = dict(zip(layer_names[m], layer_names[m - 1], strict=True))

    def key(span: Span, shift: float, rename: dict) -> tuple:
        owner = _owner(span, names)
        return (span.device, span.resource, span.name.replace(owner, rename.get(owner, owner), 1), span.category,
                span.start_s - shift, span.end_s - shift)

    earlier = sorted(key(s, 0.0, {}) for s in by_layer[m - 1])
    later = sorted(key(s, period, rename_back) for s in by_layer[m])
    for a, b in zip(earlier, later, strict=True):
        if a[:4] != b[:4] or not (_close(a[4], b[4], tol) and _close(a[5], b[5], tol)):
            return None
    # Write the full run out.
    extra = rep.last - m
    starts, finish = dict(long.task_start_s), dict(long.task_end_s)
    collectives = dict(long.collectives)
    out_spans = list(kept)
    template = layer_names[m]
    for step in range(1, extra + 1):
        target = layer_names[m + step]
        rename = dict(zip(template, target, strict=True))
        shift = step * period
        for old, new in rename.items():
            starts[new] = long.task_start_s[old] + shift
            finish[new] = long.task_end_s[old] + shift
            if old in long.collectives:
                c = long.collectives[old]
                collectives[new] = dataclasses.replace(c, start_s=c.start_s + shift, end_s=c.end_s + shift)
        for span in by_layer[m]:
            owner = _owner(span, names)
            out_spans.append(span._replace(name=span.name.replace(owner, rename[owner], 1), start_s=span.start_s + shift,
                                           end_s=span.end_s + shift))
    shift = extra * period
    for task in rep.post:
        starts[task.name] = long.task_start_s[task.name] + shift
        finish[task.name] = long.task_end_s[task.name] + shift
        if task.name in long.collectives:
            c = long.collectives[task.name]
            collectives[task.name] = dataclasses.replace(c, start_s=c.start_s + shift, end_s=c.end_s + shift)
    out_spans += [span._replace(start_s=span.start_s + shift, end_s=span.end_s + shift) for span in tail]
    out_spans.sort(key=lambda span: span.end_s)
    if trace.enabled:
        trace.spans.extend(out_spans)
    a, b = _counters(short.network), _counters(long.network)
    full = {k: b[k] + extra * (b[k] - a[k]) for k in b}
    network = _ExtendedNetwork(long.network, full)
    events = long.events + extra * (long.events - short.events)
    return dict(latency_s=long.latency_s + shift, task_start_s=starts, task_end_s=finish, collectives=collectives,
                trace=trace, network=network, events=events)


class _ExtendedNetwork:
    """The counters of a network as the full run would have left them (for the metrics)."""

    def __init__(self, network, counters: dict) -> None:
        self.graph = network.graph
        self.devices = {
            name: SimpleNamespace(
                spec=device.spec,
                compute=SimpleNamespace(units=device.compute.units, unit_busy_s=counters[("compute", name)]),
                dram=SimpleNamespace(busy_s=counters[("dram", name)], total_bytes=counters[("dram_bytes", name)]),
            )
            for name, device in network.devices.items()
        }
        self.links = {
            key: SimpleNamespace(name=link.name, src=link.src, dst=link.dst, busy_s=counters[("link_busy", key)],
                                 bytes_sent=counters[("link_bytes", key)], bandwidth_bytes_per_s=link.bandwidth_bytes_per_s)
            for key, link in network.links.items()
        }


def run_repeated(graph: TaskGraph, make_engine, trace: Trace):
    """Try the fast path; returns the full run's fields (a dict) and the events simulated,
    or ``(None, 0)`` when the graph does not repeat or the runs do not settle.

    ``make_engine(trace)`` builds a fresh engine like the caller's, recording into ``trace``.
    """
    rep = find_repetition(graph, min_layers=ATTEMPTS[0] + 3)
    if rep is None:
        return None, 0
    simulated = 0
    for attempt, kept in enumerate(ATTEMPTS):
        keep = rep.first + kept
        if keep + 1 > rep.last or (attempt and 2 * (keep + 1) > ATTEMPT_SHARE * rep.last):
            break
        runs = []
        for layers in (keep, keep + 1):
            sub_trace = Trace(enabled=True, links=trace.links, steps=trace.steps)
            runs.append(make_engine(sub_trace).run(truncated(rep, layers)))
            simulated += runs[-1].events
        result = expand(graph, rep, keep, runs[0], runs[1], trace)
        if result is not None:
            logger.debug("fast path: %d of %d layers simulated", keep + 1, rep.last)
            return result, simulated
        logger.debug("fast path: %d layers did not repeat exactly", keep + 1)
    return None, simulated
