"""Span records: the one list of work every output of a run is drawn from.

Each piece of simulated work - a kernel wave, a link transfer, a collective step - is a
:class:`Span` with the device (or switch) it ran on, the resource within it (a stream,
``compute``, ``dram``, a link ``->gpu1``), a name, a category and its start and end in
seconds. The hardware, the collectives and the engine append spans to a :class:`Trace`
as they simulate; the Chrome/Perfetto JSON (:mod:`des.trace`), the Gantt chart
(:mod:`des.plot`) and the metrics (:mod:`des.metrics`) are all computed from the same
list, so they never disagree. This module is pure data, below the hardware layer.
"""

from __future__ import annotations

from typing import NamedTuple


class Span(NamedTuple):
    """One interval of work.

    Attributes
    ----------
    device : str
        Device or switch node the work ran on.
    resource : str
        Resource within it: a stream (``compute``, ``comm``), or ``->B`` for the link
        from this node to node ``B``.
    name : str
        What ran, e.g. ``"allreduce rs step 2"``.
    category : str
        One of :data:`des.names.SPAN_CATEGORIES`.
    start_s, end_s : float
        Simulated start and end.
    args : tuple of (str, object), optional
        Extra facts about the work (a collective's library, algorithm, protocol and
        channels), exported as the trace event's ``args``.
    """

    device: str
    resource: str
    name: str
    category: str
    start_s: float
    end_s: float
    args: tuple | None = None


class Trace:
    """An append-only list of spans with exporters.

    Parameters
    ----------
    enabled : bool
        When false, :meth:`add` does nothing (for benchmarks and large sweeps).
    links : bool
        Whether link transfers are recorded (one span per chunk per hop: the bulk of a
        large trace).
    steps : bool
        Whether every step of a ring collective is recorded on its channel's row (one
        span per rank, channel and step: most of a model's trace without links).
    """

    def __init__(self, enabled: bool = True, links: bool = True, steps: bool = True) -> None:
        self.enabled = enabled
        self.links = enabled and links
        self.steps = enabled and steps
        self.spans: list[Span] = []

    def add(self, device: str, resource: str, name: str, category: str, start_s: float, end_s: float,
            args: tuple | None = None) -> None:
        """Record one span (no-op when disabled)."""
        if self.enabled:
            self.spans.append(Span(device, resource, name, category, start_s, end_s, args))

    def __len__(self) -> int:
        return len(self.spans)

    def __bool__(self) -> bool:
        # A trace is an object, not a container to test for emptiness: `trace or
        # Trace()` must keep a disabled trace.
        return True

    def __iter__(self):
        return iter(self.spans)

    def sorted(self) -> list[Span]:
        """Spans ordered by device, resource, start, end and name (deterministic)."""
        return sorted(self.spans, key=lambda s: (s.device, s.resource, s.start_s, s.end_s, s.name))

    def end_s(self) -> float:
        """Latest end of any span (0 for an empty trace)."""
        return max((span.end_s for span in self.spans), default=0.0)
