"""Chrome / Perfetto trace-event JSON of a run's spans.

The spans (:mod:`des.spans`) are the one record of a run; this module writes them as
Chrome trace-event JSON, pid a device, tid a resource on it. :class:`Span` and
:class:`Trace` are re-exported here for callers that think of them as "the trace".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from des.names import SPAN_CATEGORIES, natural_key
from des.outputs import write_text
from des.spans import Span, Trace
from des.units import US_PER_S

#: Span categories (:data:`des.names.SPAN_CATEGORIES`).
CATEGORIES = SPAN_CATEGORIES

__all__ = ["CATEGORIES", "Span", "Trace", "chrome_trace", "write_chrome_trace"]


def chrome_trace(spans: Iterable[Span]) -> dict:
    """Chrome trace-event JSON (as a dict) that Perfetto and chrome://tracing open.

    pid is the device, tid the resource; both are named with metadata events.
    Timestamps are in microseconds, as the format requires.
    """
    spans = sorted(spans, key=lambda s: (natural_key(s.device), natural_key(s.resource), s.start_s, s.end_s, s.name))
    devices = sorted({s.device for s in spans}, key=natural_key)
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
        event = {
            "name": span.name,
            "cat": span.category,
            "ph": "X",
            "pid": pid_of[span.device],
            "tid": tid_of[(span.device, span.resource)],
            "ts": span.start_s * US_PER_S,
            "dur": (span.end_s - span.start_s) * US_PER_S,
        }
        if span.args:
            event["args"] = dict(span.args)
        events.append(event)
    return {"traceEvents": events, "displayTimeUnit": "ns"}


def write_chrome_trace(spans: Iterable[Span], path: Path) -> None:
    """Write :func:`chrome_trace` to ``path`` (byte-identical for identical spans).

    The file is replaced only once the new one is complete (:mod:`des.outputs`); a
    failed write is a :class:`~des.errors.DesError` and leaves an old file as it was.
    """
    text = json.dumps(chrome_trace(spans), separators=(",", ":"), sort_keys=True)
    write_text(path, text + "\n")
