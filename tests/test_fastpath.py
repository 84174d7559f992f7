"""The exact fast path for repeated layers (des.fastpath) against the full simulation."""

from __future__ import annotations

import pytest

from des.engine import Engine
from des.metrics import summarize
from des.runtime import runtime_launch
from des.spans import Trace
from topologies import load_system
from workloads import build_workload

SYSTEM = load_system("dgx-a100")


def both(workload, **options):
    out = []
    for fast in (False, True):
        engine = Engine(SYSTEM, trace=Trace(), launch_fn=runtime_launch("graph"), fast_path=fast, **options)
        result = engine.run(workload.graph)
        out.append((result, summarize(result, workload.graph, workload.devices)))
    return out


def spans(result):
    return sorted((s.device, s.resource, s.name, s.category, s.start_s, s.end_s) for s in result.trace.spans)


@pytest.mark.parametrize(("arch", "phase"), [("standard", "prefill"), ("parallel", "prefill"), ("kraken", "prefill"),
                                             ("standard", "decode")])
def test_the_fast_path_equals_the_full_run(arch, phase):
    tokens = {"seq": 128} if phase == "prefill" else {"kv_len": 512, "batch": 4}
    workload = build_workload("gpt3-1.3b", arch, phase, 4, tuple(SYSTEM.devices[:4]), **tokens)
    (full, full_metrics), (fast, fast_metrics) = both(workload)
    assert fast.fast_path and not full.fast_path
    assert fast.latency_s == pytest.approx(full.latency_s, rel=1e-9)
    assert fast.events == full.events
    for name, end in full.task_end_s.items():
        assert fast.task_end_s[name] == pytest.approx(end, rel=1e-9, abs=1e-15), name
    a, b = full_metrics.as_dict(), fast_metrics.as_dict()
    for category, value in a["breakdown_s"].items():
        assert b["breakdown_s"][category] == pytest.approx(value, rel=1e-9, abs=1e-15), category
    for op, value in a["per_op"].items():
        assert b["per_op"][op] == pytest.approx(value, rel=1e-9, abs=1e-15), op
    left, right = spans(full), spans(fast)
    assert [s[:4] for s in left] == [s[:4] for s in right]
    assert all(x[4] == pytest.approx(y[4], rel=1e-9, abs=1e-15) and x[5] == pytest.approx(y[5], rel=1e-9, abs=1e-15)
               for x, y in zip(left, right, strict=True))


def test_layers_that_differ_are_simulated_in_full():
    # A skewed router gives every layer its own loads: nothing repeats.
    workload = build_workload("mixtral-8x7b", "standard", "prefill", 8, tuple(SYSTEM.devices[:8]), seq=64, layers=8,
                              ep=8, moe_skew=1.0)
    (full, _), (fast, _) = both(workload)
    assert not fast.fast_path and fast.latency_s == full.latency_s


def test_a_timed_fault_forces_the_full_run():
    from des.faults import parse_faults

    system = load_system("hgx-a100-4")
    workload = build_workload("gpt3-1.3b", "standard", "prefill", 4, tuple(system.devices[:4]), seq=128)
    faults = parse_faults(system, ("gpu0-gpu1@1ms",), ())
    runs = [Engine(system, trace=Trace(), launch_fn=runtime_launch("graph"), fast_path=fast, faults=faults).run(
        workload.graph) for fast in (False, True)]
    assert not runs[1].fast_path and runs[1].latency_s == runs[0].latency_s
    assert [f.as_dict() for f in runs[1].faults_applied] == [f.as_dict() for f in runs[0].faults_applied]
