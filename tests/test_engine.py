"""The engine: kernels as waves on shared units and DRAM, streams, dependencies, collectives.

Kernels here carry explicit tile schedules (no mapper), so each expected time follows
from the schedule and the device spec alone.
"""

from __future__ import annotations

import pytest
from helpers import schedule

from des.engine import Engine, simulate
from des.errors import DesError
from des.mapper.schedule import WaveGroup
from des.specs import CollectiveParams, LinkSpec
from des.taskgraph import CollectiveTask, KernelTask, TaskGraph
from des.units import NS
from topologies import load_device, switch, system_from_graph

A100 = load_device("a100")
DRAM_BW = A100.dram_bandwidth_bytes_per_s
UNITS = A100.compute_units  # 108


def system(compute_units: int = 54):
    collective = CollectiveParams(step_latency_s=1e-6, compute_units=compute_units)
    return system_from_graph("pair", switch(2, LinkSpec(100e9, 1e-6)), A100, collective)


#: Compute-bound by a little: 10 us of compute per wave against 9.8 us of DRAM time.
#: The full waves leave 8 units free, so a one-unit neighbour takes no units from them.
BALANCED = schedule(
    WaveGroup(count=4, units=100, compute_s=10e-6, dram_bytes=0.98 * 10e-6 * DRAM_BW),
    WaveGroup(count=1, units=20, compute_s=3e-6, dram_bytes=1e7),
)
#: Half the device for 20 us.
HALF = schedule(WaveGroup(count=2, units=UNITS // 2, compute_s=10e-6, dram_bytes=1e6))
#: One unit streaming a gigabyte: almost pure DRAM traffic.
DRAM_HOG = schedule(
    WaveGroup(count=1, units=1, compute_s=1e-6, dram_bytes=1e9), op_class="elementwise"
)


def graph_of(*tasks) -> TaskGraph:
    graph = TaskGraph()
    for task in tasks:
        graph.add(task)
    return graph


def ns(seconds: float) -> float:
    """Seconds as nanoseconds, rounded so float noise below a femtosecond vanishes."""
    return round(seconds / NS, 6)


def timeline(result, *names) -> list[tuple[str, float, float]]:
    """``(task, start ns, end ns)`` of the named tasks."""
    return [(n, ns(result.task_start_s[n]), ns(result.task_end_s[n])) for n in names]


def test_a_kernel_alone_takes_its_replay_time():
    result = simulate(system(), graph_of(KernelTask("k", "gpu0", schedule=BALANCED)))
    assert BALANCED.replay_s(DRAM_BW) == pytest.approx(4 * 10e-6 + 1e7 / DRAM_BW, rel=1e-15)
    assert result.latency_s == pytest.approx(BALANCED.replay_s(DRAM_BW), rel=1e-12)
    (span,) = result.trace.spans
    assert span[:4] == ("gpu0", "compute", "k", "gemm")


def test_a_kernel_beside_a_dram_heavy_stream_is_slower():
    alone = simulate(system(), graph_of(KernelTask("k", "gpu0", schedule=BALANCED)))
    both = simulate(
        system(),
        graph_of(
            KernelTask("hog", "gpu0", schedule=DRAM_HOG, stream="copy"),
            KernelTask("k", "gpu0", schedule=BALANCED),
        ),
    )
    took = both.task_end_s["k"] - both.task_start_s["k"]
    # Every wave now gets half the DRAM bandwidth: a full wave takes 19.6 us, not 10 us.
    assert took > 1.5 * alone.latency_s
    assert took == pytest.approx(4 * 2 * 0.98 * 10e-6 + 2 * 1e7 / DRAM_BW, rel=1e-9)


def test_wave_and_tile_execution_agree_alone():
    graph = graph_of(KernelTask("k", "gpu0", schedule=BALANCED))
    wave = simulate(system(), graph, execution="wave")
    tile = simulate(system(), graph, execution="tile")
    assert tile.latency_s == pytest.approx(wave.latency_s, rel=0.01)


def test_two_kernels_on_one_stream_serialise():
    result = simulate(
        system(),
        graph_of(KernelTask("a", "gpu0", schedule=HALF), KernelTask("b", "gpu0", schedule=HALF)),
    )
    assert timeline(result, "a", "b") == [("a", 0.0, 20_000.0), ("b", 20_000.0, 40_000.0)]


def test_two_kernels_on_two_streams_overlap():
    result = simulate(
        system(),
        graph_of(
            KernelTask("a", "gpu0", schedule=HALF),
            KernelTask("b", "gpu0", schedule=HALF, stream="side"),
        ),
    )
    # Each takes half the units, and 1 MB per 10 us is far below DRAM bandwidth.
    assert timeline(result, "a", "b") == [("a", 0.0, 20_000.0), ("b", 0.0, 20_000.0)]


def test_dependencies_cross_devices():
    result = simulate(
        system(),
        graph_of(
            KernelTask("a", "gpu0", schedule=HALF),
            KernelTask("b", "gpu1", schedule=HALF, deps=("a",)),
            KernelTask("c", "gpu1", schedule=HALF, stream="side"),
        ),
    )
    assert timeline(result, "a", "b", "c") == [
        ("a", 0.0, 20_000.0),
        ("b", 20_000.0, 40_000.0),
        ("c", 0.0, 20_000.0),
    ]


def test_a_task_on_an_unknown_device_is_an_error_before_the_run():
    graph = graph_of(KernelTask("k", "gpu7", schedule=HALF))
    engine = Engine(system())
    with pytest.raises(DesError, match="gpu7"):
        engine.run(graph)
    assert engine.env.now == 0
    with pytest.raises(DesError, match="gpu9"):
        simulate(system(), graph_of(CollectiveTask("ar", "allreduce", ("gpu0", "gpu9"), 1e6)))


def test_a_kernel_given_as_operator_needs_a_schedule_function():
    graph = graph_of(KernelTask("k", "gpu0", operator=object()))
    with pytest.raises(DesError, match="mapper"):
        simulate(system(), graph)


def test_a_collective_overlapping_a_kernel_slows_it():
    alone = simulate(system(), graph_of(KernelTask("k", "gpu0", schedule=BALANCED)))
    both = simulate(
        system(compute_units=54),
        graph_of(
            CollectiveTask("ar", "allreduce", ("gpu0", "gpu1"), 64e6),
            KernelTask("k", "gpu0", schedule=BALANCED),
        ),
    )
    took = both.task_end_s["k"] - both.task_start_s["k"]
    assert both.task_start_s["k"] == 0.0
    assert both.task_end_s["ar"] > both.task_end_s["k"]  # the overlap lasts the whole kernel
    # With 54 of 108 units left a 100-tile wave runs in two rounds. (The kernel's first
    # wave may still get all units: the collective's rank processes start a few events
    # after the kernel's task process, at the same simulated time.)
    assert took > 1.5 * alone.latency_s
    assert both.collectives["ar"].latency_s > 0


def test_a_kernel_starting_after_a_collective_runs_every_full_wave_in_two_rounds():
    tiny = schedule(WaveGroup(count=1, units=1, compute_s=1e-9, dram_bytes=0.0))
    result = simulate(
        system(compute_units=54),
        graph_of(
            CollectiveTask("ar", "allreduce", ("gpu0", "gpu1"), 64e6),
            KernelTask("tiny", "gpu0", schedule=tiny),
            KernelTask("k", "gpu0", schedule=BALANCED),
        ),
    )
    took = result.task_end_s["k"] - result.task_start_s["k"]
    assert result.task_end_s["ar"] > result.task_end_s["k"]
    # Four full waves of 2 x 10 us, then the small wave (its DRAM shared with the collective).
    assert (4 * 20e-6 + 1e7 / DRAM_BW) * (1 - 1e-9) <= took <= 4 * 20e-6 + 2 * 1e7 / DRAM_BW


def test_launch_overhead_is_paid_per_kernel():
    launch_s = 3e-6
    result = simulate(
        system(),
        graph_of(KernelTask("a", "gpu0", schedule=HALF), KernelTask("b", "gpu0", schedule=HALF)),
        launch_fn=lambda _schedule, _spec: launch_s,
    )
    assert timeline(result, "a", "b") == [("a", 0.0, 23_000.0), ("b", 23_000.0, 46_000.0)]
    launches = [
        (s.name, ns(s.start_s), ns(s.end_s)) for s in result.trace if s.category == "launch"
    ]
    assert launches == [("launch a", 0.0, 3_000.0), ("launch b", 23_000.0, 26_000.0)]


def test_runs_are_deterministic():
    def run():
        return simulate(
            system(),
            graph_of(
                KernelTask("hog", "gpu1", schedule=DRAM_HOG, stream="copy"),
                KernelTask("k", "gpu0", schedule=BALANCED),
                CollectiveTask("ar", "allreduce", ("gpu0", "gpu1"), 8e6, deps=("k",)),
                KernelTask("k2", "gpu1", schedule=HALF, deps=("ar",)),
            ),
        )

    first, second = run(), run()
    assert first.trace.spans == second.trace.spans
    assert len(first.trace.spans) > 4
    assert first.latency_s == second.latency_s


def _beside_a_long_collective(kernel_schedule, held_units: int):
    """The kernel's time while a collective holds ``held_units`` units the whole time."""
    tiny = schedule(WaveGroup(count=1, units=1, compute_s=1e-9, dram_bytes=0.0))
    result = simulate(
        system(compute_units=held_units),
        graph_of(
            CollectiveTask("ar", "allreduce", ("gpu0", "gpu1"), 256e6),
            KernelTask("tiny", "gpu0", schedule=tiny),
            KernelTask("k", "gpu0", schedule=kernel_schedule),
        ),
    )
    assert result.task_end_s["ar"] > result.task_end_s["k"]
    return result.task_end_s["k"] - result.task_start_s["k"]


def test_a_one_wave_kernel_that_loses_a_few_units_needs_a_second_round():
    # 108 tiles, one per unit; the collective holds 8 units: 100 tiles, then 8 more
    # in a second, nearly empty round (the tail effect): exactly 2x.
    one_wave = schedule(WaveGroup(count=1, units=UNITS, compute_s=10e-6, dram_bytes=0.0))
    assert _beside_a_long_collective(one_wave, 8) == pytest.approx(2 * 10e-6, rel=1e-9)


def test_a_many_wave_kernel_loses_only_the_share_of_units_it_lacks():
    # 20 waves of 108 tiles = 2160 tiles on the 100 free units: ceil(2160 / 100) = 22
    # rounds of 10 us (1.1x), not 20 waves of 2 rounds each (2x).
    many = schedule(WaveGroup(count=20, units=UNITS, compute_s=10e-6, dram_bytes=0.0))
    assert _beside_a_long_collective(many, 8) == pytest.approx(22 * 10e-6, rel=1e-9)
    # A quarter of the units held: ceil(2160 / 81) = 27 rounds.
    assert _beside_a_long_collective(many, 27) == pytest.approx(27 * 10e-6, rel=1e-9)


def test_the_cyclic_collector_is_paused_during_a_run_and_restored_after_it_even_on_error():
    import gc

    from des.gcpause import collector_paused

    seen = []

    class Probe(Engine):
        def _prepare_kernel(self, task):
            seen.append(gc.isenabled())
            return super()._prepare_kernel(task)

    assert gc.isenabled()
    Probe(system()).run(graph_of(KernelTask("a", "gpu0", schedule=HALF)))
    assert seen == [False] and gc.isenabled()
    with pytest.raises(DesError, match="gpu9"):  # raised inside the run
        Probe(system()).run(graph_of(KernelTask("b", "gpu9", schedule=HALF)))
    assert gc.isenabled()
    # Nested: the inner block leaves the collector to the outer one.
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
    # A caller that disabled it keeps it disabled.
    gc.disable()
    try:
        Probe(system()).run(graph_of(KernelTask("c", "gpu0", schedule=HALF)))
        assert not gc.isenabled()
    finally:
        gc.enable()
