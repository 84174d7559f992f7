"""Metrics from a trace: hand-worked breakdowns, a brute-force reference, per-operator
sums, utilisation of a real run, overlap pairs and determinism."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from helpers import schedule
from hypothesis import given, settings
from hypothesis import strategies as st

from des.engine import simulate
from des.mapper.schedule import WaveGroup
from des.metrics import (
    BREAKDOWN_CATEGORIES,
    RunMetrics,
    device_breakdown,
    format_breakdown,
    overlapping_spans,
    summarize,
)
from des.specs import CollectiveParams, LinkSpec
from des.taskgraph import CollectiveTask, KernelTask, TaskGraph
from des.trace import Trace
from des.units import US
from topologies import load_device, switch, system_from_graph

A100 = load_device("a100")
UNITS = A100.compute_units


#: Half the device for 20 us.
HALF = schedule(WaveGroup(count=2, units=UNITS // 2, compute_s=10e-6, dram_bytes=1e6))
NO_NETWORK = SimpleNamespace(devices={}, links={})


def fake_result(trace: Trace, latency_s: float) -> SimpleNamespace:
    return SimpleNamespace(latency_s=latency_s, trace=trace, network=NO_NETWORK, events=7)


def graph_of(*tasks) -> TaskGraph:
    graph = TaskGraph()
    for task in tasks:
        graph.add(task)
    return graph


def kernel(name: str, device: str = "gpu0", label: str = "", **options) -> KernelTask:
    return KernelTask(name, device, schedule=HALF, label=label, **options)


def us(breakdown: dict[str, float]) -> dict[str, float]:
    """Non-zero entries in microseconds, rounded so float noise vanishes."""
    return {key: round(value / US, 9) for key, value in breakdown.items() if value}


# --------------------------------------------------------------------- hand-worked


def test_gemm_half_beside_a_collective():
    trace = Trace()
    trace.add("gpu0", "compute", "k", "gemm", 0 * US, 10 * US)
    trace.add("gpu0", "comm", "ar", "collective", 5 * US, 15 * US)
    breakdown, overlap_s = device_breakdown(trace.spans, 20 * US)
    assert us(breakdown) == {"gemm": 5, "overlapped_gemm": 5, "exposed_allreduce": 5, "idle": 5}
    assert overlap_s == pytest.approx(5 * US)
    assert list(breakdown) == list(BREAKDOWN_CATEGORIES)


def test_overlapping_kernels_go_to_the_earliest_started():
    trace = Trace()
    trace.add("gpu0", "compute", "attn", "attention", 0 * US, 10 * US)
    trace.add("gpu0", "compute2", "ln", "norm", 4 * US, 12 * US)
    trace.add("gpu0", "compute2", "ln2", "norm", 4 * US, 6 * US)  # wholly inside attention
    breakdown, overlap_s = device_breakdown(trace.spans, 12 * US)
    assert us(breakdown) == {"attention": 10, "norm": 2}
    assert overlap_s == 0


def test_launch_counts_only_where_nothing_else_runs_and_detail_spans_are_ignored():
    trace = Trace()
    trace.add("gpu0", "compute", "launch k1", "launch", 0 * US, 2 * US)
    trace.add("gpu0", "compute", "k1", "elementwise", 2 * US, 6 * US)
    trace.add("gpu0", "compute", "launch k2", "launch", 6 * US, 8 * US)
    trace.add("gpu0", "comm", "ar", "collective", 7 * US, 9 * US)
    trace.add("gpu0", "comm steps", "ar rs step 0", "collective-step", 7 * US, 9 * US)
    trace.add("gpu0", "->gpu1", "chunk", "link", 0 * US, 10 * US)
    trace.add("gpu0", "dram", "x", "dram", 0 * US, 10 * US)
    breakdown, _ = device_breakdown(trace.spans, 10 * US)
    assert us(breakdown) == {"launch": 3, "elementwise": 4, "exposed_allreduce": 2, "idle": 1}


def test_summarize_averages_devices_and_sums_per_op_on_the_first():
    graph = graph_of(
        kernel("l0.qkv", label="qkv"),
        kernel("l0.qkv@1", device="gpu1", label="qkv"),
        CollectiveTask("l0.ar", "allreduce", ("gpu0", "gpu1"), 1e6, deps=("l0.qkv", "l0.qkv@1")),
        kernel("l1.qkv", label="qkv", deps=("l0.ar",)),
        kernel("l1.ln", label="layernorm", deps=("l1.qkv",)),
    )
    trace = Trace()
    trace.add("gpu0", "compute", "launch l0.qkv", "launch", 0 * US, 1 * US)
    trace.add("gpu0", "compute", "l0.qkv", "gemm", 1 * US, 4 * US)
    trace.add("gpu1", "compute", "l0.qkv@1", "gemm", 0 * US, 4 * US)
    trace.add("gpu0", "comm", "l0.ar", "collective", 4 * US, 8 * US)
    trace.add("gpu1", "comm", "l0.ar", "collective", 4 * US, 9 * US)
    trace.add("gpu0", "compute", "l1.qkv", "gemm", 9 * US, 11 * US)
    trace.add("gpu0", "compute", "l1.ln", "norm", 11 * US, 12 * US)
    metrics = summarize(fake_result(trace, 12 * US), graph)
    assert metrics.devices == ("gpu0", "gpu1")
    # gpu0: launch 1, gemm 5, exposed 4, norm 1, idle 1; gpu1: gemm 4, exposed 5, idle 3.
    assert us(metrics.breakdown_s) == {"launch": 0.5, "gemm": 4.5, "exposed_allreduce": 4.5, "norm": 0.5, "idle": 2}
    assert sum(metrics.breakdown_s.values()) == pytest.approx(12 * US, rel=1e-12)
    # Unlabelled collectives are named by their kind; launches are not operator time.
    assert list(metrics.per_op_s) == ["qkv", "allreduce", "layernorm"]
    assert us(metrics.per_op_s) == {"qkv": 5, "allreduce": 4, "layernorm": 1}
    assert metrics.events == 7
    only_second = summarize(fake_result(trace, 12 * US), graph, devices=["gpu1"])
    assert us(only_second.per_op_s) == {"qkv": 4, "allreduce": 5}


# --------------------------------------------------------------------- property


def reference_breakdown(spans, latency_s):
    """Brute force: classify the midpoint of every elementary segment."""
    points = sorted({0.0, latency_s} | {min(max(t, 0.0), latency_s) for s in spans for t in (s.start_s, s.end_s)})
    kernels = sorted(
        (s for s in spans if s.category in ("norm", "gemm", "attention", "elementwise", "lm_head")),
        key=lambda s: (s.start_s, s.end_s, s.resource, s.name),
    )
    out = dict.fromkeys(BREAKDOWN_CATEGORIES, 0.0)
    overlap = 0.0
    for a, b in zip(points, points[1:], strict=False):
        if b <= a:
            continue
        mid = (a + b) / 2

        def running(span, mid=mid):
            return span.start_s <= mid < span.end_s

        comm = any(running(s) for s in spans if s.category == "collective")
        active = [s for s in kernels if running(s)]
        if active:
            category = active[0].category
            key = "overlapped_gemm" if category == "gemm" and comm else category
            overlap += (b - a) if comm else 0.0
        elif comm:
            key = "exposed_allreduce"
        elif any(running(s) for s in spans if s.category == "launch"):
            key = "launch"
        else:
            key = "idle"
        out[key] += b - a
    return out, overlap


span_strategy = st.tuples(
    st.sampled_from(["gemm", "attention", "norm", "lm_head", "collective", "launch", "link", "collective-step"]),
    st.sampled_from(["compute", "compute2", "comm"]),
    st.integers(0, 40),
    st.integers(0, 15),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(span_strategy, max_size=14), st.integers(1, 60))
def test_breakdown_matches_brute_force_and_sums_to_latency(raw, latency_us):
    trace = Trace()
    for index, (category, resource, start, length) in enumerate(raw):
        trace.add("gpu0", resource, f"s{index}", category, start * US, (start + length) * US)
    latency_s = latency_us * US
    breakdown, overlap_s = device_breakdown(trace.spans, latency_s)
    assert all(value >= 0 for value in breakdown.values())
    assert sum(breakdown.values()) == pytest.approx(latency_s, rel=1e-12)
    expected, expected_overlap = reference_breakdown(trace.spans, latency_s)
    for key in BREAKDOWN_CATEGORIES:
        assert breakdown[key] == pytest.approx(expected[key], abs=1e-15), key
    assert overlap_s == pytest.approx(expected_overlap, abs=1e-15)


# --------------------------------------------------------------------- overlap pairs


def test_overlapping_spans_needs_a_shared_positive_interval_on_one_device():
    trace = Trace()
    trace.add("gpu0", "comm", "ar", "collective", 5 * US, 15 * US)
    trace.add("gpu0", "compute", "a1", "attention", 0 * US, 5 * US)  # touches only
    trace.add("gpu0", "compute", "a2", "attention", 6 * US, 7 * US)
    trace.add("gpu0", "compute2", "a3", "attention", 0 * US, 30 * US)  # long, started early
    trace.add("gpu0", "compute", "g", "gemm", 8 * US, 9 * US)
    trace.add("gpu1", "compute", "a4", "attention", 6 * US, 7 * US)  # other device
    pairs = overlapping_spans(trace.spans)
    assert [(device, a.name, b.name) for device, a, b in pairs] == [("gpu0", "ar", "a3"), ("gpu0", "ar", "a2")]
    both = overlapping_spans(trace.spans, "collective", ("attention", "gemm"))
    assert {b.name for _, _, b in both} == {"a2", "a3", "g"}


# --------------------------------------------------------------------- real runs


def pair_system():
    collective = CollectiveParams(step_latency_s=1e-6, compute_units=8, launch_latency_s=2e-6)
    return system_from_graph("pair", switch(2, LinkSpec(100e9, 1e-6)), A100, collective)


def overlapped_graph() -> TaskGraph:
    attention = schedule(WaveGroup(count=4, units=UNITS // 2, compute_s=10e-6, dram_bytes=1e6), op_class="attention")
    return graph_of(
        kernel("qkv0", label="qkv"),
        kernel("qkv1", device="gpu1", label="qkv"),
        CollectiveTask("ar", "allreduce", ("gpu0", "gpu1"), 16e6, deps=("qkv0", "qkv1"), label="allreduce"),
        KernelTask("attn0", "gpu0", schedule=attention, deps=("qkv0",), label="attention"),
        KernelTask("attn1", "gpu1", schedule=attention, deps=("qkv1",), label="attention"),
        kernel("wo0", label="wo", deps=("ar", "attn0")),
        kernel("wo1", device="gpu1", label="wo", deps=("ar", "attn1")),
    )


def run_metrics() -> RunMetrics:
    graph = overlapped_graph()
    return summarize(simulate(pair_system(), graph, launch_fn=lambda _s, _d: 1e-6), graph)


def test_a_real_run_has_bounded_utilisation_and_a_consistent_breakdown():
    metrics = run_metrics()
    assert sum(metrics.breakdown_s.values()) == pytest.approx(metrics.latency_s, rel=1e-12)
    assert all(value >= 0 for value in metrics.breakdown_s.values())
    assert metrics.breakdown_s["launch"] > 0
    assert metrics.overlap_s > 0
    assert metrics.events > 0
    devices = metrics.utilisation["devices"]
    links = metrics.utilisation["links"]
    assert list(devices) == ["gpu0", "gpu1"]
    for entry in list(devices.values()) + list(links.values()):
        for key, value in entry.items():
            assert value >= 0
            if not key.endswith("bytes"):
                assert value <= 1 + 1e-12, (key, value)
    assert all(entry["compute"] > 0 and entry["dram_bytes"] > 0 for entry in devices.values())
    assert sum(entry["bytes"] for entry in links.values()) > 0
    assert list(metrics.per_op_s) == ["qkv", "allreduce", "attention", "wo"]
    assert metrics.per_op_s["qkv"] == pytest.approx(20e-6, rel=1e-9)  # alone: its replay time
    text = format_breakdown(metrics)
    assert "exposed_allreduce" in text and "utilisation" in text


def test_a_real_run_shows_the_collective_beside_attention():
    graph = overlapped_graph()
    result = simulate(pair_system(), graph)
    pairs = overlapping_spans(result.trace.spans)
    assert {(device, a.name, b.name) for device, a, b in pairs} == {("gpu0", "ar", "attn0"), ("gpu1", "ar", "attn1")}


def test_as_dict_is_json_ready_and_deterministic():
    first = json.dumps(run_metrics().as_dict())
    second = json.dumps(run_metrics().as_dict())
    assert first == second
    data = json.loads(first)
    assert list(data) == ["latency_s", "breakdown_s", "per_op", "overlap_s", "utilisation", "devices", "events"]
    assert list(data["breakdown_s"]) == list(BREAKDOWN_CATEGORIES)


def test_an_empty_run_is_all_zero():
    metrics = summarize(fake_result(Trace(), 0.0), TaskGraph())
    assert metrics.devices == ()
    assert metrics.breakdown_s == dict.fromkeys(BREAKDOWN_CATEGORIES, 0.0)
    assert metrics.per_op_s == {}
