"""Span records: the one trace every output of a run is drawn from.

Each piece of simulated work - a kernel wave, a link transfer, a collective step - is a
:class:`Span` with the device (or switch) it ran on, the resource within it (a stream,
``compute``, ``dram``, a link ``->gpu1``), a name, a category and its start and end in
seconds. The Chrome/Perfetto JSON, the Gantt chart and the metrics are all computed from
the same list, so they never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

# Categories: a small closed set so charts and metrics can rely on them.
CATEGORIES = (
    "gemm",
    "attention",
    "norm",
    "elementwise",
    "lm_head",
    "collective",
    "collective-step",
    "link",
    "dram",
    "launch",
    "other",
)


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
        One of :data:`CATEGORIES`.
    start_s, end_s : float
        Simulated start and end.
    """

    device: str
    resource: str
    name: str
    category: str
    start_s: float
    end_s: float


class Trace:
    """An append-only list of spans with exporters.

    Parameters
    ----------
    enabled : bool
        When false, :meth:`add` does nothing (for benchmarks and large sweeps).
    links : bool
        Whether link transfers are recorded (one span per chunk per hop: the bulk of a
        large trace).
    """

    def __init__(self, enabled: bool = True, links: bool = True) -> None:
        self.enabled = enabled
        self.links = enabled and links
        self.spans: list[Span] = []

    def add(self, device: str, resource: str, name: str, category: str, start_s: float, end_s: float) -> None:
        """Record one span (no-op when disabled)."""
        if self.enabled:
            self.spans.append(Span(device, resource, name, category, start_s, end_s))

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


def _natural_key(text: str) -> tuple:
    """Sort ``gpu2`` before ``gpu10``."""
    parts = []
    number = ""
    for char in text:
        if char.isdigit():
            number += char
        else:
            if number:
                parts.append((0, int(number), ""))
                number = ""
            parts.append((1, 0, char))
    if number:
        parts.append((0, int(number), ""))
    return tuple(parts)


def chrome_trace(spans: Iterable[Span]) -> dict:
    """Chrome trace-event JSON (as a dict) that Perfetto and chrome://tracing open.

    pid is the device, tid the resource; both are named with metadata events.
    Timestamps are in microseconds, as the format requires.
    """
    spans = sorted(spans, key=lambda s: (_natural_key(s.device), _natural_key(s.resource), s.start_s, s.end_s, s.name))
    devices = sorted({s.device for s in spans}, key=_natural_key)
    pid_of = {device: index for index, device in enumerate(devices)}
    tid_of: dict[tuple[str, str], int] = {}
    events: list[dict] = []
    for device in devices:
        events.append({"name": "process_name", "ph": "M", "pid": pid_of[device], "tid": 0, "args": {"name": device}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": pid_of[device], "tid": 0, "args": {"sort_index": pid_of[device]}})
    for span in spans:
        key = (span.device, span.resource)
        if key not in tid_of:
            tid = sum(1 for other in tid_of if other[0] == span.device)
            tid_of[key] = tid
            events.append({"name": "thread_name", "ph": "M", "pid": pid_of[span.device], "tid": tid, "args": {"name": span.resource}})
    for span in spans:
        events.append(
            {
                "name": span.name,
                "cat": span.category,
                "ph": "X",
                "pid": pid_of[span.device],
                "tid": tid_of[(span.device, span.resource)],
                "ts": span.start_s * 1e6,
                "dur": (span.end_s - span.start_s) * 1e6,
            }
        )
    return {"traceEvents": events, "displayTimeUnit": "ns"}


def write_chrome_trace(spans: Iterable[Span], path: Path) -> None:
    """Write :func:`chrome_trace` to ``path`` (byte-identical for identical spans)."""
    text = json.dumps(chrome_trace(spans), separators=(",", ":"), sort_keys=True)
    Path(path).write_text(text + "\n", encoding="utf-8")
