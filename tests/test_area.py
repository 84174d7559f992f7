"""The area and cost model (des.area) and ``des area``."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from des.area import (
    COMPONENTS,
    CORE_COMPONENTS,
    area_and_cost,
    area_inputs_for,
    die_yield,
    dies_per_wafer,
    dram_units_for,
    estimate_area,
    estimate_cost,
)
from des.area.model import design_style
from des.area.technology import DIE_SHOTS
from des.cli import main
from des.errors import DesError
from des.units import GiB, MiB
from topologies import load_device

A100 = load_device("a100")
H100 = load_device("h100")
MI210 = load_device("mi210")
#: An A100-like design with no product entry: no harvesting, fallback technology.
GENERIC = replace(A100, name="test-chip")


def area_of(device, **changes):
    inputs = area_inputs_for(device)
    if changes:
        inputs = replace(inputs, **changes)
    return estimate_area(device, inputs)


# --------------------------------------------------------------------------- targets


def test_ga100_within_ten_percent_of_826_mm2():
    report = estimate_area(A100)
    assert report.reported_die_mm2 == 826.0
    assert report.total_mm2 == pytest.approx(826.0, rel=0.10)


@pytest.mark.parametrize("style", sorted(DIE_SHOTS))
def test_each_reference_die_comes_out_at_its_die_shot(style):
    """GA100 and Aldebaran, component by component, against their die shots [LC-F6]."""
    shot = DIE_SHOTS[style]
    report = estimate_area(load_device(shot.product))
    got = report.breakdown_mm2
    expected = {
        "cores": (report.cores_mm2, shot.cores),
        "noc": (got["noc"], shot.noc),
        "global_buffer": (got["global_buffer"], shot.global_buffer),
        "dram_phy": (got["dram_phy"], shot.dram_phy),
        "dram_controllers": (got["dram_controllers"], shot.dram_controllers),
        "link_phy": (got["link_phy"], shot.link_phy),
        "link_controllers": (got["link_controllers"], shot.link_controllers),
        "other": (got["uncore"], shot.other),
    }
    for name, (value, want) in expected.items():
        assert value == pytest.approx(want, rel=1e-9, abs=1e-9), name
    assert set(got) == set(COMPONENTS)


def test_the_styles_derived_from_the_die_shots_are_physical():
    for name in DIE_SHOTS:
        style = design_style(name)
        # Control is most of a GPU core, but the datapaths are not nothing.
        assert 0.3 < style.core_control_fraction < 0.8, name
        # An L2 bit costs more than a bare 6T cell and less than twenty of them.
        assert 4 < style.l2_area_per_bit_in_bitcells < 20, name
        for value in (style.dram_phy_scale, style.dram_controller_scale, style.link_phy_scale):
            assert 0.3 < value < 5, name
        assert 0 <= style.uncore_fraction < 0.2, name
    # GA100's SM (3.75 mm^2 in LLMCompass's Figure 6b) and one Aldebaran CU (4.02 mm^2).
    assert estimate_area(A100).core_area_mm2 == pytest.approx(3.75, rel=0.01)
    assert estimate_area(MI210).core_area_mm2 == pytest.approx(4.02, rel=0.015)


def test_gh100_is_predicted_from_ga100s_style():
    # Held out: the style comes from GA100 (N7); GH100 (4N, 144 SMs, HBM3, NVLink 4) is
    # 814 mm^2 [H100-WP]. Before the die-shot styles the estimate was 15.6 % short.
    report = estimate_area(H100)
    assert report.inputs.style == "nvidia"
    assert report.total_mm2 == pytest.approx(814.0, rel=0.10)


def test_harvesting_counts_the_physical_die():
    inputs = area_inputs_for(A100)
    assert inputs.physical_compute_units == 128
    assert inputs.physical_l2_bytes == 48 * MiB
    assert (inputs.enabled_dram_units, inputs.physical_dram_units) == (5, 6)
    enabled = area_inputs_for(A100, harvest=False)
    assert enabled.physical_compute_units == 108
    assert enabled.physical_l2_bytes == 40 * MiB
    assert enabled.physical_dram_units == 5
    assert estimate_area(A100, enabled).total_mm2 < estimate_area(A100).total_mm2
    # The product's ratio carries over to a scaled design: twice A100's SMs, twice the die's.
    assert area_inputs_for(replace(A100, compute_units=216)).physical_compute_units == 256
    h100 = area_inputs_for(H100)
    assert (h100.physical_compute_units, h100.physical_l2_bytes) == (144, 60 * MiB)


def test_dram_units_follow_bandwidth_and_capacity():
    assert dram_units_for(A100, "hbm2e") == 5  # 2039 GB/s / 460.8; 80 GiB / 16 GiB
    assert dram_units_for(H100, "hbm3") == 5  # 3.35 TB/s / 819.2 GB/s
    assert dram_units_for(MI210, "hbm2e") == 4
    assert dram_units_for(A100, "ddr5") == 40  # 2039 / 51.2
    big = replace(A100, dram_capacity_bytes=200 * GiB)
    assert dram_units_for(big, "hbm2e") == 13  # capacity-bound


def test_fallback_technology_for_unknown_devices():
    inputs = area_inputs_for(GENERIC)
    assert (inputs.process, inputs.memory, inputs.basis) == ("N7", "hbm2e", "fallback")
    assert inputs.physical_compute_units == GENERIC.compute_units
    assert estimate_area(GENERIC).reported_die_mm2 is None


def test_other_presets_give_a_die():
    for device in (H100, MI210):
        report = estimate_area(device)
        assert 400 < report.total_mm2 < 1000


# --------------------------------------------------------------------------- scaling


@pytest.mark.parametrize("device", [GENERIC, A100], ids=["generic", "a100"])
def test_doubling_cores_doubles_the_core_components_only(device):
    base = area_of(device, uncore_fraction=0.0)
    doubled_device = replace(device, compute_units=2 * device.compute_units)
    doubled = area_of(doubled_device, uncore_fraction=0.0)
    for name in CORE_COMPONENTS:
        assert doubled.breakdown_mm2[name] == pytest.approx(2 * base.breakdown_mm2[name])
    for name in set(COMPONENTS) - set(CORE_COMPONENTS):
        assert doubled.breakdown_mm2[name] == pytest.approx(base.breakdown_mm2[name])
    assert doubled.total_mm2 - base.total_mm2 == pytest.approx(base.cores_mm2)
    # With the uncore (a fixed share of the die), the die grows by cores / (1 - share).
    with_uncore = estimate_area(device)
    doubled_with_uncore = estimate_area(doubled_device)
    assert doubled_with_uncore.total_mm2 - with_uncore.total_mm2 == pytest.approx(
        with_uncore.cores_mm2 / (1 - design_style(with_uncore.inputs.style).uncore_fraction)
    )


def test_doubling_sram_doubles_the_sram_components():
    base = area_of(GENERIC)
    local = area_of(replace(GENERIC, sram_bytes_per_unit=2 * GENERIC.sram_bytes_per_unit))
    assert local.breakdown_mm2["local_sram"] == pytest.approx(2 * base.breakdown_mm2["local_sram"])
    for name in ("systolic_arrays", "vector_units", "register_files", "global_buffer", "dram_phy", "noc"):
        assert local.breakdown_mm2[name] == pytest.approx(base.breakdown_mm2[name])
    l2 = area_of(replace(GENERIC, l2_bytes=2 * GENERIC.l2_bytes))
    assert l2.breakdown_mm2["global_buffer"] == pytest.approx(2 * base.breakdown_mm2["global_buffer"])
    assert l2.cores_mm2 == pytest.approx(base.cores_mm2)


def test_a_newer_process_shrinks_the_die_and_hbm_gives_way_to_ddr():
    assert area_of(GENERIC, process="N5").total_mm2 < area_of(GENERIC).total_mm2
    hbm = area_and_cost(A100)
    ddr = area_and_cost(A100, memory="ddr5")
    assert ddr["cost_breakdown_usd"]["dram"] < hbm["cost_breakdown_usd"]["dram"]
    assert ddr["cost_breakdown_usd"]["interposer"] == 0 < hbm["cost_breakdown_usd"]["interposer"]
    assert ddr["reported_die_mm2"] is None  # another memory: not the GA100 die any more


_COUNTS = {
    "compute_units": st.integers(1, 512),
    "systolic_arrays_per_unit": st.integers(1, 16),
    "systolic_array_rows": st.integers(1, 256),
    "systolic_array_cols": st.integers(1, 256),
    "vector_lanes_per_unit": st.integers(1, 16),
    "vector_lane_width": st.integers(1, 64),
    "sram_bytes_per_unit": st.floats(1e3, 4e6),
    "l2_bytes": st.floats(1e5, 1e9),
    "l2_bandwidth_bytes_per_cycle": st.floats(64, 65536),
    "dram_bandwidth_bytes_per_s": st.floats(1e10, 2e13),
    "dram_capacity_bytes": st.floats(1e9, 1e12),
}


@settings(max_examples=60, deadline=None)
@given(
    field=st.sampled_from(sorted(_COUNTS)),
    data=st.data(),
    factor=st.sampled_from([1.5, 2.0, 4.0]),
)
def test_area_is_monotone_in_every_count(field, data, factor):
    value = data.draw(_COUNTS[field])
    small = replace(GENERIC, **{field: value})
    big_value = math.ceil(value * factor) if isinstance(value, int) else value * factor
    big = replace(GENERIC, **{field: big_value})
    small_report, big_report = estimate_area(small), estimate_area(big)
    for name in COMPONENTS:
        assert big_report.breakdown_mm2[name] >= small_report.breakdown_mm2[name] - 1e-9
    assert big_report.total_mm2 >= small_report.total_mm2


# --------------------------------------------------------------------------- cost


def test_wafer_formulas():
    # pi 150^2 / 100 - pi 300 / sqrt(200) = 706.9 - 66.6
    assert dies_per_wafer(100.0) == 640
    assert die_yield(0.0, 0.09) == 1.0
    defects = 8.26 * 0.09
    assert die_yield(826.0, 0.09) == pytest.approx(((1 - math.exp(-defects)) / defects) ** 2)
    assert die_yield(826.0, 0.09, "poisson") == pytest.approx(math.exp(-defects))
    assert die_yield(826.0, 0.09, "negative-binomial") == pytest.approx((1 + defects / 3) ** -3)
    with pytest.raises(DesError, match="does not fit"):
        dies_per_wafer(1e6)
    with pytest.raises(DesError, match="yield model"):
        die_yield(100.0, 0.09, "bose")


@settings(max_examples=30, deadline=None)
@given(units=st.integers(16, 200), more=st.integers(1, 100))
def test_cost_grows_with_area_and_yield_falls(units, more):
    small = replace(GENERIC, compute_units=units)
    big = replace(GENERIC, compute_units=units + more)
    reports = [estimate_area(device) for device in (small, big)]
    costs = [estimate_cost(device, report) for device, report in zip((small, big), reports, strict=True)]
    assert reports[1].total_mm2 > reports[0].total_mm2
    assert costs[1].die_yield < costs[0].die_yield
    assert costs[1].dies_per_wafer <= costs[0].dies_per_wafer
    assert costs[1].cost_breakdown_usd["die"] > costs[0].cost_breakdown_usd["die"]
    assert costs[1].cost_usd > costs[0].cost_usd


def test_harvesting_raises_the_sellable_yield():
    result = area_and_cost(A100)
    assert 0 < result["die_yield"] < result["good_die_yield"] < 1
    assert 30 < result["dies_per_wafer"] < 120
    assert result["cost_usd"] == pytest.approx(sum(result["cost_breakdown_usd"].values()))


# --------------------------------------------------------------------------- bad input and CLI


def test_unknown_technology_is_a_des_error():
    with pytest.raises(DesError, match="unknown process node 'N9'"):
        area_inputs_for(A100, process="N9")
    with pytest.raises(DesError, match="unknown memory technology 'hbm5'.*did you mean 'hbm3'"):
        area_inputs_for(A100, memory="hbm5")
    with pytest.raises(DesError, match="uncore_fraction"):
        replace(area_inputs_for(A100), uncore_fraction=1.0)
    with pytest.raises(DesError, match="physical"):
        replace(area_inputs_for(A100), physical_dram_units=4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["area", "nope"], "unknown device preset 'nope'"),
        (["area", "missing/device.yaml"], "no such file"),
        (["area", "a100", "--process", "N9"], "unknown process node"),
        (["area", "a100", "--memory", "hbm5"], "unknown memory technology"),
        (["area", "a100", "--yield-model", "bose"], "unknown yield model"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("des: error:") and message in lines[0]


def test_cli_json(capsys):
    assert main(["area", "a100", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("total_mm2", "breakdown_mm2", "cost_usd", "cost_breakdown_usd", "die_yield", "dies_per_wafer"):
        assert key in result
    assert set(result["breakdown_mm2"]) == set(COMPONENTS)
    assert result["total_mm2"] == pytest.approx(sum(result["breakdown_mm2"].values()))
    assert set(result["cost_breakdown_usd"]) == {"die", "dram", "interposer"}


def test_cli_text_and_options(capsys, tmp_path):
    assert main(["area", "a100"]) == 0
    text = capsys.readouterr().out
    assert "GA100" in text and "reported die" in text and "total" in text
    path = tmp_path / "chip.yaml"
    source = Path(topologies.__file__).parent / "devices" / "a100.yaml"
    path.write_text(source.read_text(encoding="utf-8").replace("name: a100", "name: chip"), encoding="utf-8")
    assert main(["area", str(path), "--process", "n5", "--memory", "lpddr5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["inputs"]["process"] == "N5" and result["inputs"]["memory"] == "lpddr5"
    assert result["reported_die_mm2"] is None
