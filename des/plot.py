"""Gantt charts of a run, drawn from the same span records as the Chrome trace.

:func:`gantt` draws one row per (device, resource) pair - a device's streams first, then
its outgoing links (``->gpu1``), devices before switches, names in natural order
(``gpu2`` before ``gpu10``) - with one bar per span coloured by its category and a
legend of the categories present. The time axis uses the unit that suits the span
range (:func:`time_unit_for`). Large traces stay fast because each row draws all its
bars of one category with a single ``broken_barh`` call.

matplotlib is imported only inside :func:`gantt` (on the Agg canvas, never pyplot), so
simulating never pays for it. The PNG carries no software version or timestamp, so
identical spans give identical bytes.
"""

from __future__ import annotations

import io
import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from des.names import SPAN_CATEGORIES, is_link_resource, natural_key
from des.outputs import write_bytes
from des.spans import Span
from des.units import MS, NS, US

logger = logging.getLogger(__name__)

#: Time units from largest to smallest: (name, seconds per unit).
_TIME_UNITS = (("s", 1.0), ("ms", MS), ("us", US), ("ns", NS))

#: A fixed colour per category (matplotlib's tab10, spelled out so the chart never
#: depends on the user's rc settings or colour cycle).
CATEGORY_COLOURS = dict(
    zip(
        SPAN_CATEGORIES,
        (
            "#1f77b4",  # gemm
            "#ff7f0e",  # attention
            "#2ca02c",  # norm
            "#d62728",  # elementwise
            "#393b79",  # lm_head
            "#9467bd",  # collective
            "#8c564b",  # collective-step
            "#e377c2",  # link
            "#7f7f7f",  # dram
            "#bcbd22",  # launch
            "#17becf",  # other
        ),
        strict=True,
    )
)
#: Colour of a category outside :data:`des.names.SPAN_CATEGORIES`.
_UNKNOWN_COLOUR = "#c7c7c7"

_DPI = 100
_WIDTH_IN = 12.0
#: Figure height: a margin for title and axis, plus a band per row, capped so a trace
#: with hundreds of rows still renders quickly.
_MARGIN_IN = 1.6
_ROW_IN = 0.28
_MAX_HEIGHT_IN = 60.0
#: Fraction of a row's band a bar fills.
_BAR_FILL = 0.8
#: Above this many rows the row labels get a smaller font.
_MANY_ROWS = 40


def save_png(canvas, path: str | Path) -> Path:
    """Write a matplotlib canvas to ``path`` as PNG, deterministically and safely.

    No "Software" entry: the PNG then holds nothing but the picture, byte-identical
    across runs and matplotlib versions. Drawn in memory first, then written by
    :func:`des.outputs.write_bytes`, so a failed write never leaves half a file over
    an old chart.
    """
    buffer = io.BytesIO()
    canvas.print_png(buffer, metadata={"Software": None})
    return write_bytes(path, buffer.getvalue())


def time_unit_for(seconds: float) -> tuple[str, float]:
    """The display unit for a duration: the largest unit in which it is at least 1.

    Parameters
    ----------
    seconds : float
        A duration (its magnitude is used).

    Returns
    -------
    (str, float)
        The unit's name (``"s"``, ``"ms"``, ``"us"`` or ``"ns"``) and its length in
        seconds, so a time in that unit is ``seconds / factor``. Zero and non-finite
        durations give ``("s", 1.0)``; durations below 1 ns give ns.

    Examples
    --------
    >>> time_unit_for(1e-5)
    ('us', 1e-06)
    """
    magnitude = abs(seconds)
    if magnitude == 0.0 or not math.isfinite(magnitude):
        return _TIME_UNITS[0]
    for name, factor in _TIME_UNITS:
        if magnitude >= factor:
            return name, factor
    return _TIME_UNITS[-1]


def _unit_named(name: str) -> tuple[str, float]:
    for unit in _TIME_UNITS:
        if unit[0] == name:
            return unit
    known = ", ".join(unit[0] for unit in _TIME_UNITS)
    raise ValueError(f"unknown time unit {name!r}; allowed: {known}")


def _row_order(spans: list[Span], switches: Iterable[str] | None) -> list[tuple[str, str]]:
    """Rows (device, resource): devices then switches, streams then links, natural order.

    Without an explicit ``switches`` set a node counts as a switch when every row it
    has is a link: switches forward chunks but run no streams.
    """
    resources: dict[str, set[str]] = defaultdict(set)
    for span in spans:
        resources[span.device].add(span.resource)
    if switches is None:
        switch_set = {
            node
            for node, rows in resources.items()
            if all(is_link_resource(r) for r in rows)
        }
        if len(switch_set) == len(resources):
            switch_set = set()  # only links were traced: nothing tells devices apart
    else:
        switch_set = set(switches)

    def node_key(node: str) -> tuple:
        return (node in switch_set, natural_key(node), node)

    def resource_key(resource: str) -> tuple:
        return (is_link_resource(resource), natural_key(resource), resource)

    rows = []
    for node in sorted(resources, key=node_key):
        for resource in sorted(resources[node], key=resource_key):
            rows.append((node, resource))
    return rows


def _category_order(categories: set[str]) -> list[str]:
    known = [c for c in SPAN_CATEGORIES if c in categories]
    return known + sorted(categories - set(SPAN_CATEGORIES))


def gantt(
    spans: Iterable[Span],
    path: str | Path,
    title: str | None = None,
    time_unit: str | None = None,
    *,
    switches: Iterable[str] | None = None,
) -> Path:
    """Draw spans as a Gantt chart and save it as a PNG.

    Parameters
    ----------
    spans : iterable of Span
        The spans to draw (e.g. a :class:`des.trace.Trace`).
    path : str or Path
        Where to write the PNG.
    title : str, optional
        Chart title.
    time_unit : {"s", "ms", "us", "ns"}, optional
        Unit of the time axis; by default chosen from the spans' range by
        :func:`time_unit_for`.
    switches : iterable of str, optional
        Nodes to list after the devices. By default a node whose rows are all links
        is taken for a switch.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If ``time_unit`` is not one of the allowed names.
    """
    spans = list(spans)
    if spans:
        first = min(span.start_s for span in spans)
        last = max(span.end_s for span in spans)
    else:
        first = last = 0.0
    extent = last - first if last > first else abs(last)
    unit_name, factor = _unit_named(time_unit) if time_unit is not None else time_unit_for(extent)
    rows = _row_order(spans, switches)
    row_of = {row: index for index, row in enumerate(rows)}

    # Bars grouped by (row, category), each as (start, width) in the display unit.
    bars: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    for span in spans:
        start = span.start_s / factor
        bars[(row_of[(span.device, span.resource)], span.category)].append(
            (start, span.end_s / factor - start)
        )
    categories = _category_order({span.category for span in spans})

    # Imported here so that simulating never pays for matplotlib; the Agg canvas needs
    # no display and, unlike pyplot, keeps no global figure state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    height = min(_MARGIN_IN + _ROW_IN * max(len(rows), 1), _MAX_HEIGHT_IN)
    fig = Figure(figsize=(_WIDTH_IN, height), dpi=_DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    half = _BAR_FILL / 2
    for (row, category), ranges in sorted(
        bars.items(), key=lambda item: (item[0][0], categories.index(item[0][1]))
    ):
        colour = CATEGORY_COLOURS.get(category, _UNKNOWN_COLOUR)
        ax.broken_barh(ranges, (row - half, _BAR_FILL), facecolors=colour, edgecolor="none")

    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(
        [f"{device} {resource}" for device, resource in rows],
        fontsize=6 if len(rows) > _MANY_ROWS else 8,
    )
    ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)  # first row at the top
    if last > first:
        pad = (last - first) / factor * 0.01
        ax.set_xlim(first / factor - pad, last / factor + pad)
    else:
        ax.set_xlim(first / factor - 1.0, first / factor + 1.0)
    ax.set_xlabel(f"time ({unit_name})")
    ax.grid(axis="x", linewidth=0.3, alpha=0.5)
    if not spans:
        ax.text(0.5, 0.5, "no spans", transform=ax.transAxes, ha="center", va="center")
    if categories:
        handles = [
            Patch(facecolor=CATEGORY_COLOURS.get(c, _UNKNOWN_COLOUR), label=c) for c in categories
        ]
        ax.legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False
        )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out = save_png(canvas, path)
    logger.debug("wrote Gantt chart of %d spans in %d rows to %s", len(spans), len(rows), out)
    return out
