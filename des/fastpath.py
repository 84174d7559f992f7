"""The exact fast path for graphs of repeated layers.

A transformer's task graph is mostly the same layer again and again: the same tasks,
shapes, devices and streams, each layer depending on the one before in the same way.
Once the simulation settles into that rhythm, every further layer repeats the last one
shifted by one period. :func:`run_repeated` simulates the graph cut down to ``m``
layers (the repeated ones and what comes after, re-attached to the last kept layer),
once, and accepts the period ``D`` only if

- the last two layer periods are equal,
- every task and every span of each of the last two layers is the previous layer's
  shifted by ``D``,
- the state carried across a layer boundary repeats: every counter (busy time of
  compute units, DRAM and links, bytes) grew by the same amount over the last two
  periods of layers followed by a layer, read at the instant each layer's last task
  ended;

each to within what keeps the written-out run within :data:`TOLERANCE` (``1e-9``) of
its total, were the difference to grow by as much every layer (:func:`_allowance`):
Kraken's overlapped layers amplify a last-bit difference about sixfold a layer, and
such a run must fail these checks rather than be extrapolated;

and then writes the full run out: the layers not simulated are the last one shifted by
multiples of ``D`` (tasks, collectives, spans renamed to their layer), what follows
them shifted by ``(N - m) D``, and every counter, and the events scheduled, extended
by ``(N - m)`` times its growth over the last period. If any check fails, the run is repeated with more layers
(:data:`ATTEMPTS`, while that costs at most :data:`ATTEMPT_SHARE` of the graph), and
then the caller simulates in full (a Ladder model's ranks drift apart by parts in 10^5
per layer for many layers and take that path). The engine knows nothing of
transformers: a layer is the ``layer`` attribute of a task.
"""

from __future__ import annotations

import dataclasses
import logging
from types import SimpleNamespace
from typing import Any

from des.engine import events_so_far
from des.spans import Span, Trace
from des.taskgraph import KernelTask, TaskGraph

logger = logging.getLogger(__name__)

#: Repeated layers a run keeps beyond the first repeated one, in turn (at least 3: the
#: checks read the ends of three repeated layers followed by a layer, and two shifts).
ATTEMPTS = (3, 8)
#: A later attempt is made only while its run would simulate at most this share of the
#: graph's layers (a graph that does not settle costs at most half again its run).
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
    # A task of the layer before is named by what it is (and which of the alike it is,
    # counted from the layer's end), not by its place there: a first layer with fewer
    # tasks (Kraken's, with no all-reduce coming in) then leaves the second layer like
    # the rest. Layers are only ever written out from the last simulated one, whose
    # neighbours are alike either way.
    described = {task.name: _describe(task) for members in layers.values() for task in members}
    role = {}
    for members in layers.values():
        seen: dict[tuple, int] = {}
        for task in reversed(members):
            what = described[task.name]
            role[task.name] = (what, seen.get(what, 0))
            seen[what] = seen.get(what, 0) + 1
    pre_names = {task.name for task in pre}

    def signature(layer: int):
        out = []
        for task in layers[layer]:
            deps = []
            for dep in task.deps:
                if layer_of.get(dep) == layer:
                    deps.append(("s", index[dep]))
                elif layer_of.get(dep) == layer - 1:
                    deps.append(("p", role[dep]))
                elif dep in pre_names:
                    deps.append(("pre", dep))
                else:
                    return None
            out.append((described[task.name], tuple(deps)))
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


class _Boundaries:
    """The counters at the instant the last task of each watched layer ends.

    Called by the engine as each task ends (``Engine.run(on_task_end=...)``); it reads
    the counters without bringing any lazy account forward, so the run is unchanged.
    """

    def __init__(self, engine, rep: Repetition, layers) -> None:
        self.engine = engine
        self.left = {layer: len(rep.layers[layer]) for layer in layers}
        self.layer_of = {task.name: layer for layer in layers for task in rep.layers[layer]}
        self.at: dict[int, dict] = {}

    def __call__(self, name: str) -> None:
        layer = self.layer_of.get(name)
        if layer is None:
            return
        self.left[layer] -= 1
        if not self.left[layer]:
            self.at[layer] = _counters(self.engine.network, self.engine.env.now)
            self.at[layer]["events"] = events_so_far(self.engine.env)


def _counters(network, now_s: float | None = None) -> dict:
    """Every compute unit's, DRAM's and link's counters, at ``now_s`` (read-only) or as
    the run left them."""
    out = {}
    for name, device in network.devices.items():
        compute, dram = device.compute, device.dram
        out[("compute", name)] = compute.unit_busy_s if now_s is None else compute.busy_at(now_s)
        out[("dram", name)] = dram.busy_s if now_s is None else dram.busy_at(now_s)
        out[("dram_bytes", name)] = dram.total_bytes
    for key, link in network.links.items():
        out[("link_busy", key)] = link.busy_s
        out[("link_bytes", key)] = link.bytes_sent
    return out


def _allowance(total: float, extra: int) -> float:
    """How far two periods may differ for ``extra`` written-out layers to stay within
    :data:`TOLERANCE` of ``total``: a difference that grew by ``d`` each layer would add
    ``d (1 + 2 + ... + extra)`` by the end."""
    return TOLERANCE * abs(total) * 2.0 / (extra * (extra + 1))


def _same_growth(a: dict, b: dict, final: dict, extra: int) -> bool:
    """Whether two periods' counter growths ``a`` and ``b`` agree, each counter to the
    :func:`_allowance` of its full run's total (``final`` is the simulated run's end).

    The events scheduled are not state but the simulation's cost: a memo still learning
    (a kernel first alone in the earlier period, replayed in the later) changes them and
    nothing else, so they are not compared; the later period's count is written out.
    """
    for key, x in a.items():
        if key != "events" and not _close(x, b[key], _allowance(final[key] + extra * b[key], extra)):
            return False
    return True


def expand(graph: TaskGraph, rep: Repetition, m: int, run, marks: dict[int, dict], trace: Trace):
    """The full run from one run of ``m`` layers, or ``None`` if it does not repeat
    exactly over its last two layers (module docstring)."""
    extra = rep.last - m
    ends = {layer: max(run.task_end_s[t.name] for t in rep.layers[layer]) for layer in (m - 2, m - 1, m)}
    period = ends[m] - ends[m - 1]
    if not period > 0:
        return None
    # Every time compared to what the full run's end allows (see _allowance).
    tol = _allowance(run.latency_s + extra * period, extra)
    if not _close(ends[m - 1] - ends[m - 2], period, tol):
        return None
    for before, after in ((m - 2, m - 1), (m - 1, m)):
        for old, new in zip(rep.layers[before], rep.layers[after], strict=True):
            if not (_close(run.task_start_s[new.name] - run.task_start_s[old.name], period, tol)
                    and _close(run.task_end_s[new.name] - run.task_end_s[old.name], period, tol)):
                return None
    # A layer's counters grow the same in every period it is followed by another layer
    # (the last one, followed by what comes after, may differ by an event): so the
    # growth written out is that of the last two layers followed by a layer.
    if any(layer not in marks for layer in (m - 3, m - 2, m - 1)):
        return None
    growth = [{k: marks[later][k] - marks[earlier][k] for k in marks[later]}
              for earlier, later in ((m - 3, m - 2), (m - 2, m - 1))]
    final = _counters(run.network)
    final["events"] = run.events
    if not _same_growth(growth[0], growth[1], final, extra):
        return None
    names = {task.name for task in graph}
    layer_names = {layer: [t.name for t in rep.layers[layer]] for layer in rep.layers}
    layer_of_name = {name: layer for layer, members in layer_names.items() for name in members}
    post_names = {task.name for task in rep.post}
    by_layer: dict[int, list[Span]] = {m - 2: [], m - 1: [], m: []}
    kept, tail = [], []
    for span in run.trace.spans:
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

    def key(span: Span, shift: float, rename: dict) -> tuple:
        owner = _owner(span, names)
        return (span.device, span.resource, span.name.replace(owner, rename.get(owner, owner), 1), span.category,
                span.start_s - shift, span.end_s - shift)

    for before, after in ((m - 2, m - 1), (m - 1, m)):
        if len(by_layer[before]) != len(by_layer[after]):
            return None
        rename_back = dict(zip(layer_names[after], layer_names[before], strict=True))
        earlier = sorted(key(s, 0.0, {}) for s in by_layer[before])
        later = sorted(key(s, period, rename_back) for s in by_layer[after])
        for a, b in zip(earlier, later, strict=True):
            if a[:4] != b[:4] or not (_close(a[4], b[4], tol) and _close(a[5], b[5], tol)):
                return None
    # Write the full run out.
    starts, finish = dict(run.task_start_s), dict(run.task_end_s)
    collectives = dict(run.collectives)
    out_spans = list(kept)
    template = layer_names[m]
    template_spans = [(span, _owner(span, names)) for span in by_layer[m]]
    for step in range(1, extra + 1):
        target = layer_names[m + step]
        rename = dict(zip(template, target, strict=True))
        shift = step * period
        for old, new in rename.items():
            starts[new] = run.task_start_s[old] + shift
            finish[new] = run.task_end_s[old] + shift
            if old in run.collectives:
                c = run.collectives[old]
                collectives[new] = dataclasses.replace(c, start_s=c.start_s + shift, end_s=c.end_s + shift)
        out_spans += [Span(device, resource, name.replace(owner, rename[owner], 1), category, start + shift,
                           end + shift, args)
                      for (device, resource, name, category, start, end, args), owner in template_spans]
    shift = extra * period
    for task in rep.post:
        starts[task.name] = run.task_start_s[task.name] + shift
        finish[task.name] = run.task_end_s[task.name] + shift
        if task.name in run.collectives:
            c = run.collectives[task.name]
            collectives[task.name] = dataclasses.replace(c, start_s=c.start_s + shift, end_s=c.end_s + shift)
    out_spans += [Span(device, resource, name, category, start + shift, end + shift, args)
                  for device, resource, name, category, start, end, args in tail]
    out_spans.sort(key=lambda span: span.end_s)
    if trace.enabled:
        trace.spans.extend(out_spans)
    per_layer = growth[1]
    network = _ExtendedNetwork(run.network, {k: final[k] + extra * per_layer[k] for k in final if k != "events"})
    # Each task is a process the engine starts before the run (one event each, scheduled
    # at time zero rather than in its layer's period).
    events = run.events + extra * (per_layer["events"] + len(template))
    return dict(latency_s=run.latency_s + shift, task_start_s=starts, task_end_s=finish, collectives=collectives,
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
    or ``(None, 0)`` when the graph does not repeat or the run does not settle.

    ``make_engine(trace)`` builds a fresh engine like the caller's, recording into ``trace``.
    """
    rep = find_repetition(graph, min_layers=ATTEMPTS[0] + 2)
    if rep is None:
        return None, 0
    simulated = 0
    for attempt, kept in enumerate(ATTEMPTS):
        m = rep.first + kept
        if m >= rep.last or (attempt and m > ATTEMPT_SHARE * rep.last):
            break
        engine = make_engine(Trace(enabled=True, links=trace.links, steps=trace.steps))
        marks = _Boundaries(engine, rep, (m - 3, m - 2, m - 1))
        run = engine.run(truncated(rep, m), on_task_end=marks)
        simulated += run.events
        result = expand(graph, rep, m, run, marks.at, trace)
        if result is not None:
            logger.debug("fast path: %d of %d layers simulated", m, rep.last)
            return result, simulated
        logger.debug("fast path: %d layers did not repeat exactly", m)
    return None, simulated
