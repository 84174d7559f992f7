"""Runtime profiles: launch overhead by operator class, runtime and vendor."""

from __future__ import annotations

import pytest

from des.errors import DesError
from des.runtime import OP_CLASSES, RuntimeProfile, device_vendor, runtime_names, runtime_profile
from des.units import US


def test_eager_uses_the_published_a100_figures():
    eager = runtime_profile("eager")
    assert eager.launch_overhead("matmul") == pytest.approx(21 * US)
    assert eager.launch_overhead("softmax") == pytest.approx(12 * US)
    assert eager.launch_overhead("layernorm") == pytest.approx(45 * US)
    assert eager.launch_overhead("gelu") == pytest.approx(45 * US)
    for op_class in OP_CLASSES:
        assert 0 < eager.launch_overhead(op_class) < 100 * US


def test_eager_on_amd_uses_the_mi210_figures():
    eager = runtime_profile("eager")
    assert eager.launch_overhead("matmul", "amd") == pytest.approx(34 * US)
    assert eager.launch_overhead("softmax", "amd") == pytest.approx(22 * US)
    assert eager.launch_overhead("layernorm", "amd") == pytest.approx(28 * US)
    assert eager.launch_overhead("gelu", "amd") == pytest.approx(21 * US)
    assert eager.launch_overhead_for("gelu", "mi210") == pytest.approx(21 * US)
    assert eager.launch_overhead_for("gelu", "a100") == pytest.approx(45 * US)
    assert device_vendor("mi210") == "amd" and device_vendor("h100") == "nvidia"


def test_graph_costs_a_few_microseconds():
    graph = runtime_profile("graph")
    eager = runtime_profile("eager")
    for op_class in OP_CLASSES:
        assert 0 < graph.launch_overhead(op_class) <= 5 * US
        assert graph.launch_overhead(op_class) < eager.launch_overhead(op_class)
        assert graph.launch_overhead_for(op_class, "mi210") <= 5 * US


def test_unknown_names_list_the_known_ones():
    assert runtime_names() == ["eager", "graph"]
    with pytest.raises(DesError, match=r"unknown runtime profile 'eagr' \(did you mean 'eager'\?\); known: eager, graph"):
        runtime_profile("eagr")
    with pytest.raises(DesError, match="unknown operator class"):
        runtime_profile("eager").launch_overhead("conv")


def test_profiles_are_checked():
    full = {op_class: 1 * US for op_class in OP_CLASSES}
    with pytest.raises(DesError, match="no launch overhead for attention"):
        RuntimeProfile("x", {k: v for k, v in full.items() if k != "attention"})
    with pytest.raises(DesError, match="zero or positive"):
        RuntimeProfile("x", {**full, "gelu": -1.0})
    with pytest.raises(DesError, match="unknown vendor"):
        RuntimeProfile("x", full, {"intel": {"gelu": 1.0}})
    with pytest.raises(DesError, match="unknown operator class"):
        RuntimeProfile("x", {**full, "conv": 1.0})
    custom = RuntimeProfile("custom", full, {"amd": {"matmul": 3 * US}})
    assert custom.launch_overhead("matmul", "amd") == 3 * US
    assert custom.launch_overhead("softmax", "amd") == 1 * US


def test_profiles_are_frozen():
    with pytest.raises(AttributeError):
        runtime_profile("eager").name = "other"  # type: ignore[misc]
