"""Pipeline parallelism: stages of consecutive layers, point-to-point sends, micro-batches."""

from __future__ import annotations

import pytest
from helpers import call

from des.engine import Engine
from des.errors import DesError
from des.runtime import runtime_launch
from des.spans import Trace
from des.taskgraph import CollectiveTask, TaskGraph
from topologies import load_system
from workloads import build_workload

SYSTEM = load_system("dgx-h100")
MODEL = "llama-3-8b"


def latency(workload):
    engine = Engine(SYSTEM, trace=Trace(enabled=False), launch_fn=runtime_launch("graph"), comm_library="nccl")
    return engine.run(workload.graph).latency_s


def stage_time(tp, layers, batch, devices):
    return latency(build_workload(MODEL, "standard", "prefill", tp, devices, batch=batch, seq=256, layers=layers))


def send_time(src, dst, nbytes):
    graph = TaskGraph()
    graph.add(CollectiveTask("send", "send", (src, dst), nbytes))
    engine = Engine(SYSTEM, trace=Trace(enabled=False), comm_library="nccl")
    return engine.run(graph).latency_s


def test_one_microbatch_is_the_stages_one_after_another_plus_the_sends():
    devices = tuple(SYSTEM.devices[:4])
    pipe = build_workload(MODEL, "standard", "prefill", 2, devices, seq=256, layers=4, pp=2)
    first = stage_time(2, 2, 1, devices[:2])
    second = stage_time(2, 2, 1, devices[2:])
    send = send_time(devices[0], devices[2], 256 * 4096 * 2)
    assert latency(pipe) == pytest.approx(first + send + second, rel=1e-6)
    sends = [t for t in pipe.graph if isinstance(t, CollectiveTask) and t.kind == "send"]
    assert [t.group for t in sends] == [(devices[0], devices[2]), (devices[1], devices[3])]


@pytest.mark.parametrize(("pp", "microbatches"), [(2, 2), (2, 8), (4, 4), (4, 8)])
def test_the_bubble_shrinks_as_p_minus_1_over_m_plus_p_minus_1(pp, microbatches):
    tp, layers = 2, 4
    devices = tuple(SYSTEM.devices[:tp * pp])
    pipe = build_workload(MODEL, "standard", "prefill", tp, devices, batch=microbatches, seq=256, layers=layers,
                          pp=pp, microbatches=microbatches)
    per_stage = stage_time(tp, layers // pp, 1, devices[:tp])
    send = send_time(devices[0], devices[tp], 256 * 4096 * 2)
    # GPipe forward: (m + p - 1) stage slots, p - 1 sends on the critical path; each
    # device is busy m of the m + p - 1 slots.
    expected = (microbatches + pp - 1) * per_stage + (pp - 1) * send
    total = latency(pipe)
    assert total == pytest.approx(expected, rel=0.03)
    busy = microbatches * per_stage
    bubble = 1 - busy / (total - (pp - 1) * send)
    assert bubble == pytest.approx((pp - 1) / (microbatches + pp - 1), abs=0.02)


@pytest.mark.parametrize(("argv", "message"), [
    (["--pp", "3", "--layers", "4"], "PP=3 does not divide the 4 layers"),
    (["--pp", "2", "--microbatches", "3", "--batch", "4", "--layers", "4"], "does not divide the batch"),
    (["--pp", "2", "--arch", "kraken", "--layers", "4"], "crosses a stage boundary"),
    (["--pp", "8", "--layers", "8"], "needs 16 devices"),
])
def test_bad_pipeline_options_are_one_line(capsys, argv, message):
    code, _out, err = call(capsys, "run", "--system", "dgx-h100", "--model", MODEL, "--tp", "2", "--arch",
                           "standard", *argv) if "--arch" not in argv else call(
        capsys, "run", "--system", "dgx-h100", "--model", MODEL, "--tp", "2", *argv)
    assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1


def test_pipeline_counts_equal_the_graph():
    from test_workloads_graph import graph_counts

    workload = build_workload(MODEL, "standard", "prefill", 2, batch=4, seq=128, pp=2, microbatches=2)
    counted = graph_counts(workload)
    for key, value in workload.counts.items():
        assert counted[key] == pytest.approx(value, rel=1e-12), key


def test_layers_beyond_a_stage_boundary_are_refused_for_uneven_splits():
    with pytest.raises(DesError, match="PP=3 does not divide"):
        build_workload(MODEL, "standard", "prefill", 1, pp=3, layers=4)


def test_the_gantt_of_a_pipeline_is_its_whole_run():
    from des.names import DRAM, LINK
    from des.study import PointSpec, run_point
    from des.study.gantt import gantt_spans

    point = run_point(PointSpec(system="dgx-h100", model=MODEL, arch="standard", tp=2, pp=2, batch=2,
                                microbatches=2, layers=4, seq=128))
    drawn = gantt_spans(point)
    assert len(drawn) == sum(1 for s in point.trace.spans if s.category not in (LINK, DRAM))
    # The last stage idles while the first works on the first micro-batch: its first
    # kernel starts after the first stage's first send has arrived.
    first_send = min(point.result.task_end_s[t.name] for t in point.workload.graph if t.name.endswith("pp1.send.r0"))
    last_stage = [s for s in drawn if s.device in point.workload.devices[2:] and s.resource == "compute"]
    assert min(s.start_s for s in last_stage) >= first_send - 1e-12
