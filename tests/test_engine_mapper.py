"""Mapper schedules executed by the engine (issue 3, item 4)."""

from __future__ import annotations

import pytest

from des.engine import Engine
from des.mapper.schedule import TileSchedule, WaveGroup
from des.operators import Attention, LayerNorm, Matmul, Softmax
from des.runtime import runtime_launch, runtime_profile
from des.taskgraph import KernelTask, TaskGraph
from topologies import load_system

OPERATORS = [Matmul(4096, 12288, 12288), Matmul(1, 12288, 12288), Softmax(4096, 4096), LayerNorm(2048, 8192), Attention(1, 16, 2048, 2048, 128, True)]


@pytest.fixture(scope="module")
def system():
    return load_system("dgx-a100")


@pytest.mark.parametrize("operator", OPERATORS, ids=lambda op: op.op_class)
@pytest.mark.parametrize("execution", ["wave", "tile"])
def test_alone_takes_standalone_latency_plus_launch(system, operator, execution):
    from des.mapper import schedule_for

    spec = system.device_spec("gpu0")
    schedule, _ = schedule_for(spec, operator)
    if execution == "tile" and schedule.tiles > 5000:
        pytest.skip("per-tile execution of very many tiles is slow to simulate")
    graph = TaskGraph()
    graph.add(KernelTask("k", "gpu0", operator=operator))
    result = Engine(system, launch_fn=runtime_launch("eager"), execution=execution).run(graph)
    launch = runtime_profile("eager").launch_for_device(schedule.op_class, spec)
    expected = schedule.standalone_s + launch
    tolerance = 1e-9 if execution == "wave" else 0.01
    assert result.latency_s == pytest.approx(expected, rel=tolerance)


def test_beside_a_dram_heavy_stream_it_takes_longer(system):
    operator = Softmax(16384, 4096)  # memory-bound
    alone = TaskGraph()
    alone.add(KernelTask("k", "gpu0", operator=operator))
    base = Engine(system).run(alone).task_end_s["k"]
    noisy = TaskGraph()
    noisy.add(KernelTask("k", "gpu0", operator=operator))
    hog = TileSchedule("copy", "a100", "elementwise", (WaveGroup(1, 1, 1e-9, 4e9),), 1, 4e9 / 2.039e12)
    noisy.add(KernelTask("hog", "gpu0", schedule=hog, stream="side"))
    slowed = Engine(system).run(noisy).task_end_s["k"]
    # The hog holds one of 108 units (about 1 % of the rounds) and half of the DRAM
    # bandwidth while it runs: the kernel's DRAM time doubles past its compute.
    assert slowed > 1.08 * base
