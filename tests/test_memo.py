"""Kernels and collectives replayed when they run alone (des.memo) against simulating every run."""

from __future__ import annotations

import pytest

from des.engine import Engine
from des.errors import DesError
from des.faults import parse_faults
from des.memo import Memo
from des.metrics import summarize
from des.operators import Matmul
from des.runtime import runtime_launch
from des.spans import Trace
from des.taskgraph import CollectiveTask, KernelTask, TaskGraph
from topologies import load_system
from workloads import build_workload

SYSTEM = load_system("dgx-a100")
H100 = load_system("dgx-h100")


def run(system, graph, memo, devices=None, **options):
    engine = Engine(system, trace=Trace(), launch_fn=runtime_launch("graph"), memo=memo, **options)
    result = engine.run(graph)
    return engine, result, summarize(result, graph, devices)


def spans(result):
    return sorted((s.device, s.resource, s.name, s.category, s.start_s, s.end_s) for s in result.trace.spans)


def assert_same(a, b):
    (_, left, left_metrics), (_, right, right_metrics) = a, b
    assert right.latency_s == pytest.approx(left.latency_s, rel=1e-12)
    for name, end in left.task_end_s.items():
        assert right.task_end_s[name] == pytest.approx(end, rel=1e-12, abs=1e-18), name
    x, y = left_metrics.as_dict(), right_metrics.as_dict()
    for category, value in x["breakdown_s"].items():
        assert y["breakdown_s"][category] == pytest.approx(value, rel=1e-9, abs=1e-15), category
    for kind in ("devices", "links"):
        for name, stats in x["utilisation"][kind].items():
            for stat, value in stats.items():
                assert y["utilisation"][kind][name][stat] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, stat)
    p, q = spans(left), spans(right)
    assert [s[:4] for s in p] == [s[:4] for s in q]
    assert all(s[4] == pytest.approx(t[4], rel=1e-12, abs=1e-18) and s[5] == pytest.approx(t[5], rel=1e-12, abs=1e-18)
               for s, t in zip(p, q, strict=True))
    for name, result in left.collectives.items():
        assert right.collectives[name].end_s == pytest.approx(result.end_s, rel=1e-12)
        assert right.collectives[name].algorithm == result.algorithm


@pytest.mark.parametrize(("system", "arch", "phase"), [
    (SYSTEM, "standard", "prefill"), (SYSTEM, "parallel", "prefill"), (SYSTEM, "kraken", "prefill"),
    (SYSTEM, "ladder", "prefill"), (SYSTEM, "standard", "decode"), (H100, "standard", "prefill"),
])
def test_replayed_collectives_equal_simulated_ones(system, arch, phase):
    tokens = {"seq": 128} if phase == "prefill" else {"kv_len": 512, "batch": 4}
    workload = build_workload("gpt3-1.3b", arch, phase, 4, tuple(system.devices[:4]), layers=4, **tokens)
    simulated = run(system, workload.graph, False, workload.devices)
    replayed = run(system, workload.graph, True, workload.devices)
    assert_same(simulated, replayed)
    memo = replayed[0].memo
    if arch in ("standard", "parallel"):
        # Each layer's all-reduces wait on the whole group: all but the first are replays.
        calls = sum(isinstance(task, CollectiveTask) for task in workload.graph)
        recorded, replays = memo.recorded["collective"], memo.replayed["collective"]
        assert recorded >= 1 and replays >= calls - 2 * recorded
        assert memo.replayed["kernel"] > memo.recorded["kernel"] > 0
        assert replayed[1].events < simulated[1].events


def _beside(with_kernel: bool) -> TaskGraph:
    """Two all-reduces of one size with a GEMM on every rank between them, the second
    with (or without) a long GEMM on another stream of one rank beside it."""
    group = tuple(SYSTEM.devices[:4])
    graph = TaskGraph()
    graph.add(CollectiveTask("ar1", "allreduce", group, 8e6))
    for rank in group:
        graph.add(KernelTask(f"mm.{rank}", rank, operator=Matmul(1024, 1024, 1024), deps=("ar1",)))
    if with_kernel:
        graph.add(KernelTask("side", group[0], operator=Matmul(8192, 8192, 8192), deps=("ar1",), stream="side"))
    graph.add(CollectiveTask("ar2", "allreduce", group, 8e6, deps=tuple(f"mm.{rank}" for rank in group)))
    return graph


def test_a_collective_with_work_beside_it_is_simulated():
    for with_kernel in (False, True):
        graph = _beside(with_kernel)
        engine, result, _ = run(SYSTEM, graph, True)
        assert engine.memo.recorded["collective"] == 1
        assert engine.memo.replayed["collective"] == (0 if with_kernel else 1)
        assert_same(run(SYSTEM, graph, False), (engine, result, summarize(result, graph)))
    # The kernel slows the second call down: a replay would have missed that.
    _, alone, _ = run(SYSTEM, _beside(False), False)
    _, beside, _ = run(SYSTEM, _beside(True), False)
    assert beside.task_end_s["ar2"] - beside.task_start_s["ar2"] > alone.task_end_s["ar2"] - alone.task_start_s["ar2"]


def test_a_shared_memo_replays_across_engines_of_one_configuration():
    memo = Memo()
    first = run(SYSTEM, _beside(False), memo)
    second = run(SYSTEM, _beside(False), memo)
    assert memo.recorded["collective"] == 1 and memo.replayed["collective"] == 3
    assert_same(first, second)
    with pytest.raises(DesError, match="serves one system and engine configuration"):
        run(H100, _beside(False), memo)
    with pytest.raises(DesError, match="serves one system and engine configuration"):
        run(SYSTEM, _beside(False), memo, comm_library="fixed")


def test_timed_faults_turn_the_memo_off():
    system = load_system("hgx-a100-4")
    faults = parse_faults(system, ("gpu0-gpu1@1s",), ())
    graph = TaskGraph()
    graph.add(CollectiveTask("ar1", "allreduce", tuple(system.devices), 8e6))
    engine, _, _ = run(system, graph, True, faults=faults)
    assert engine.memo is None


def test_interpolated_sizes_equal_simulated_ones():
    # NVLS all-reduces of 8 H100s between 500 and 2500 tokens of 8192 fp16 values: the
    # plan changes twice (one, two, three pieces per shard), and its duration bends
    # inside the two-piece stretch; interpolation must follow all of it.
    group = tuple(H100.devices[:8])
    memo = Memo(interpolate=True)
    sizes = [t * 8192 * 2.0 for t in (600, 1000, 800, 700, 900, 1200, 2000, 1500, 1300, 1700, 1100, 2300, 2500, 2100,
                                      750, 950, 1250, 1400, 1800, 2400, 650, 1050)]
    for nbytes in sizes:
        graph = TaskGraph()
        graph.add(CollectiveTask("ar", "allreduce", group, nbytes))
        estimated = Engine(H100, trace=Trace(enabled=False), memo=memo).run(graph)
        simulated = Engine(H100, trace=Trace(enabled=False), memo=False).run(graph)
        assert estimated.latency_s == pytest.approx(simulated.latency_s, rel=1e-9), nbytes
        for key, link in simulated.network.links.items():
            assert estimated.network.links[key].bytes_sent == pytest.approx(link.bytes_sent, rel=1e-9)
        assert estimated.collectives["ar"].nbytes == nbytes
    assert memo.interpolated >= 4
    # A traced run replays only what was recorded with its trace.
    traced = Memo(interpolate=True)
    for nbytes in sizes:
        graph = TaskGraph()
        graph.add(CollectiveTask("ar", "allreduce", group, nbytes))
        Engine(H100, trace=Trace(), memo=traced).run(graph)
    assert traced.interpolated == 0
