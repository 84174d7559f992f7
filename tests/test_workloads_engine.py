"""Workload graphs run on the engine: no overlap where none is possible, overlap for Kraken."""

from __future__ import annotations

import pytest

from des.engine import simulate, simulate_collective
from des.mapper import schedule_for
from des.taskgraph import CollectiveTask, KernelTask
from topologies import load_system
from workloads import ModelSpec, build_workload, load_model

TINY = ModelSpec("tiny", layers=2, hidden=512, heads=8, ffn_hidden=2048, vocab_size=1000, max_positions=512)


@pytest.fixture(scope="module")
def dgx():
    return load_system("dgx-a100")


def kernel_seconds(system, workload, device):
    spec = system.device_spec(device)
    return sum(
        schedule_for(spec, task.operator)[0].standalone_s
        for task in workload.graph
        if isinstance(task, KernelTask) and task.device == device
    )


def collective_seconds(system, workload):
    return sum(
        simulate_collective(system, task.kind, task.group, task.nbytes).latency_s
        for task in workload.graph
        if isinstance(task, CollectiveTask)
    )


@pytest.mark.parametrize(
    ("model", "layers", "attention"),
    [(TINY, None, "fused"), (TINY, None, "unfused"), ("gpt3-1.3b", 1, "fused")],
)
def test_tp1_latency_is_the_sum_of_standalone_kernels(dgx, model, layers, attention):
    device = dgx.devices[0]
    workload = build_workload(model, "standard", "prefill", 1, (device,), seq=128, layers=layers, attention=attention)
    assert not any(isinstance(task, CollectiveTask) for task in workload.graph)
    result = simulate(dgx, workload.graph)
    assert result.latency_s == pytest.approx(kernel_seconds(dgx, workload, device), rel=1e-9)


def test_tp8_standard_layer_is_kernels_plus_blocking_allreduces(dgx):
    devices = dgx.select_ranks(8)
    workload = build_workload("gpt3-1.3b", "standard", "prefill", 8, devices, seq=128, layers=1)
    result = simulate(dgx, workload.graph)
    expected = kernel_seconds(dgx, workload, devices[0]) + collective_seconds(dgx, workload)
    assert collective_seconds(dgx, workload) > 0.1 * expected  # communication is not trivial here
    assert result.latency_s == pytest.approx(expected, rel=1e-6)


def test_kraken_overlaps_allreduce_with_attention(dgx):
    devices = dgx.select_ranks(8)
    model = load_model("gpt3-1.3b")
    workload = build_workload(model, "kraken", "prefill", 8, devices, seq=2048, layers=3)
    result = simulate(dgx, workload.graph)
    parts = kernel_seconds(dgx, workload, devices[0]) + collective_seconds(dgx, workload)
    assert result.latency_s < 0.95 * parts
    start, end = result.task_start_s, result.task_end_s
    for layer in (2, 3):
        ar = f"L{layer}.ar"
        for rank in range(8):
            attn = f"L{layer}.attn.r{rank}"
            assert start[ar] < end[attn] and start[attn] < end[ar], (layer, rank)
            assert end[ar] <= start[f"L{layer}.ln2.r{rank}"]
    # Kernels beside the all-reduce run slower than alone (they share units and DRAM).
    spec = dgx.device_spec(devices[0])
    slowed = []
    for step in ("qkv", "attn", "wo"):
        alone = schedule_for(spec, workload.graph.tasks[f"L2.{step}.r0"].operator)[0].standalone_s
        slowed.append(end[f"L2.{step}.r0"] - start[f"L2.{step}.r0"] > 1.001 * alone)
    assert any(slowed), slowed


def test_kraken_faster_than_standard_at_tp8(dgx):
    devices = dgx.select_ranks(8)
    times = {
        arch: simulate(dgx, build_workload("gpt3-1.3b", arch, "prefill", 8, devices, seq=128, layers=2).graph).latency_s
        for arch in ("standard", "parallel", "kraken")
    }
    assert times["kraken"] < times["parallel"] < times["standard"]


def test_simulating_twice_gives_identical_timelines(dgx):
    devices = dgx.select_ranks(4)
    runs = [
        simulate(dgx, build_workload(TINY, "kraken", "decode", 4, devices, kv_len=300).graph)
        for _ in range(2)
    ]
    assert runs[0].task_end_s == runs[1].task_end_s
    assert runs[0].trace.sorted() == runs[1].trace.sorted()


def test_each_kraken_allreduce_overlaps_the_next_attention_block_on_every_device(dgx):
    """Where the QKV GEMM alone outlasts the all-reduce (13B, seq 2048), the overlap is
    with the attention block (LN1, QKV, attention, Wo) rather than the attention kernel;
    every all-reduce must still be in flight beside that block's compute on each rank,
    and a standard model's collectives never run beside any kernel."""
    from des.metrics import KERNEL_CATEGORIES

    devices = dgx.select_ranks(8)
    block = ("ln1", "qkv", "attn", "wo")
    for model, seq in (("gpt3-13b", 2048), ("gpt3-1.3b", 128)):
        workload = build_workload(model, "kraken", "prefill", 8, devices, seq=seq, layers=3)
        result = simulate(dgx, workload.graph)
        start, end = result.task_start_s, result.task_end_s
        for layer in (2, 3):
            ar = f"L{layer}.ar"
            for rank in range(8):
                shared = sum(
                    max(0.0, min(end[ar], end[f"L{layer}.{step}.r{rank}"]) - max(start[ar], start[f"L{layer}.{step}.r{rank}"]))
                    for step in block
                )
                # Large messages: most of the all-reduce hides behind the block; small
                # ones are mostly launch latency, longer than the block, but overlap it.
                least = 0.5 if seq == 2048 else 0.1
                assert shared > least * (end[ar] - start[ar]), (model, layer, rank)

    workload = build_workload("gpt3-13b", "standard", "prefill", 8, devices, seq=2048, layers=2)
    result = simulate(dgx, workload.graph)
    collectives = [s for s in result.trace.spans if s.category == "collective"]
    kernels = [s for s in result.trace.spans if s.category in KERNEL_CATEGORIES]
    assert collectives and kernels
    for c in collectives:
        assert not any(k.device == c.device and k.start_s < c.end_s and c.start_s < k.end_s for k in kernels)
