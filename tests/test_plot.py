"""Gantt charts: valid, deterministic PNGs, for small and large span lists."""

from __future__ import annotations

import pytest

from des.plot import CATEGORY_COLOURS, _row_order, gantt, time_unit_for
from des.trace import CATEGORIES, Span

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

SPANS = [
    Span("gpu10", "compute", "k", "gemm", 0.0, 2e-6),
    Span("gpu2", "->nvswitch", "chunk", "link", 0.0, 1e-6),
    Span("gpu2", "comm", "allreduce", "collective", 0.0, 4e-6),
    Span("gpu2", "compute", "norm", "norm", 1e-6, 2e-6),
    Span("nvswitch", "->gpu2", "chunk", "link", 1e-6, 2e-6),
]


def test_time_unit_for_picks_a_readable_unit():
    assert time_unit_for(1e-5) == ("us", 1e-6)
    assert [time_unit_for(s)[0] for s in (2.0, 3e-3, 4e-7, 5e-10, 0.0)] == [
        "s",
        "ms",
        "ns",
        "ns",
        "s",
    ]


def test_rows_are_devices_then_switches_in_natural_order():
    assert _row_order(SPANS, None) == [
        ("gpu2", "comm"),
        ("gpu2", "compute"),
        ("gpu2", "->nvswitch"),
        ("gpu10", "compute"),
        ("nvswitch", "->gpu2"),
    ]


def test_every_category_has_its_own_colour():
    assert set(CATEGORY_COLOURS) == set(CATEGORIES)
    assert len(set(CATEGORY_COLOURS.values())) == len(CATEGORIES)


def test_gantt_writes_a_png_and_returns_its_path(tmp_path):
    path = gantt(SPANS, tmp_path / "g.png", title="small")
    assert path == tmp_path / "g.png"
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_identical_spans_give_identical_bytes(tmp_path):
    first = gantt(SPANS, tmp_path / "a.png").read_bytes()
    second = gantt(list(reversed(SPANS)), tmp_path / "b.png").read_bytes()
    assert first == second
    assert b"Software" not in first


@pytest.mark.parametrize(
    "spans",
    [
        [],
        [Span("gpu0", "compute", "empty", "gemm", 1.0, 1.0)],
        [Span("gpu0", "compute", "odd", "not-a-category", 0.0, 1e-9)],
    ],
    ids=["no spans", "zero length", "unknown category"],
)
def test_gantt_copes_with_empty_ish_input(tmp_path, spans):
    path = gantt(spans, tmp_path / "e.png", time_unit="us")
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_unknown_time_unit_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="allowed"):
        gantt(SPANS, tmp_path / "x.png", time_unit="fortnights")


def test_gantt_of_many_link_spans(tmp_path):
    spans = [
        Span(f"gpu{i % 16}", f"->gpu{(i + 1) % 16}", "chunk", "link", i * 1e-7, i * 1e-7 + 9e-8)
        for i in range(30_000)
    ]
    spans += [Span(f"gpu{d}", "comm", "allreduce", "collective", 0.0, 3e-3) for d in range(16)]
    path = gantt(spans, tmp_path / "big.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
