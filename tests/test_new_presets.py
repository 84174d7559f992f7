"""The chips people ask about: each preset is its datasheet, and runs."""

from __future__ import annotations

import pytest
from helpers import call

from des.engine import simulate_collective
from des.spans import Trace
from topologies import DEVICE_DIR, load_device, load_system

#: preset -> (dense fp16/bf16 matrix FLOP/s, DRAM bytes/s, DRAM bytes): the datasheet
#: figures each preset cites (H200 [DS] 989 TFLOP/s / 4.8 TB/s / 141 GB; HGX B200 2.25
#: PFLOP/s / 8 TB/s / 180 GB; MI300X 1,307.4 TFLOP/s / 5.3 TB/s / 192 GB; L40S 362.05
#: TFLOP/s / 864 GB/s / 48 GB; RTX 4090 165.2 TFLOP/s (fp32 accumulate) / 1,008 GB/s / 24 GB).
DATASHEETS = {
    "h200": (989e12, 4.8e12, 141e9),
    "b200": (2.25e15, 8e12, 180e9),
    "mi300x": (1307.4e12, 5.3e12, 192e9),
    "l40s": (362.05e12, 864e9, 48e9),
    "rtx4090": (165.2e12, 1008e9, 24e9),
}


@pytest.mark.parametrize("name", sorted(DATASHEETS))
def test_a_preset_is_its_datasheet(name):
    spec = load_device(name)
    flops, bandwidth, capacity = DATASHEETS[name]
    assert spec.matrix_flops_per_s == pytest.approx(flops, rel=0.005)
    assert spec.dram_bandwidth_bytes_per_s == pytest.approx(bandwidth, rel=1e-9)
    assert spec.dram_capacity_bytes == pytest.approx(capacity, rel=1e-9)
    # Until calibrated on measurements (des calibrate) a preset says it is the datasheet only.
    assert "Datasheet only" in (DEVICE_DIR / f"{name}.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(DATASHEETS))
def test_a_preset_runs_a_gemm_no_faster_than_its_peak(name, capsys):
    import json

    code, out, err = call(capsys, "op", "matmul", "4096", "4096", "4096", "--device", name, "--json")
    assert code == 0, err
    result = json.loads(out)
    latency = result["latency_s"]
    assert result["calibration"] == "datasheet only"
    flops = 2 * 4096**3
    assert flops / DATASHEETS[name][0] <= latency <= 4 * flops / DATASHEETS[name][0] + 50e-6


@pytest.mark.parametrize("name, ranks", [("hgx-h200-8", 8), ("mi300x-8", 8), ("4x-rtx4090-pcie", 4)])
def test_a_new_system_runs_an_all_reduce_within_its_links(name, ranks):
    system = load_system(name)
    group = system.select_ranks(ranks)
    result = simulate_collective(system, "allreduce", group, 64 << 20, Trace(enabled=False))
    graph = system.graph
    port = sum(graph.edges[group[0], peer]["bandwidth_bytes_per_s"] for peer in graph.neighbors(group[0]))
    bound = port * (1 if result.algorithm != "nvls" else 2 * (ranks - 1) / ranks / (1 + 1 / ranks))
    assert 0 < result.busbw_bytes_per_s <= bound * (1 + 1e-9)


def test_the_pcie_box_has_no_nvlink_and_crosses_the_host_bridge():
    system = load_system("4x-rtx4090-pcie")
    import simpy

    from des.comm.facts import group_facts
    from des.hardware.network import Network

    facts = group_facts(system.graph, system.devices, system.collective.nvls)
    assert facts.intra == "pcie" and not facts.nvls
    route = Network(simpy.Environment(), system).route("gpu0", "gpu2")
    assert [link.dst for link in route] == ["plx0", "host", "plx1", "gpu2"]


@pytest.mark.parametrize("name", sorted(DATASHEETS))
def test_des_area_runs_for_every_new_preset(name, capsys):
    import json

    code, out, err = call(capsys, "area", name, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["total_mm2"] > 100 and sum(result["breakdown_mm2"].values()) == pytest.approx(result["total_mm2"])


def test_the_ada_and_h200_products_take_their_own_process_and_memory():
    from des.area import area_inputs_for

    assert (area_inputs_for(load_device("rtx4090")).process, area_inputs_for(load_device("rtx4090")).memory) == ("4N", "gddr6")
    assert area_inputs_for(load_device("h200")).memory == "hbm3"
