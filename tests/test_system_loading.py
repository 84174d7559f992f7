"""Loading device and system presets and user YAML files; errors name the file and field."""

from __future__ import annotations

import math
import textwrap
from dataclasses import asdict
from pathlib import Path

import networkx as nx
import pytest

from des.errors import DesError
from des.specs import CollectiveParams, DeviceSpec, LinkSpec, SystemSpec
from topologies import (
    DEVICE_DIR,
    SYSTEM_DIR,
    device_presets,
    load_device,
    load_system,
    system_from_graph,
    system_presets,
)
from topologies.builders import ring, switch

#: preset -> (device count, device spec name, switch count, edge count)
PRESETS = {
    "hgx-a100-4": (4, "a100", 0, 6),
    "dgx-a100": (8, "a100", 1, 8),
    "dgx-h100": (8, "h100", 1, 8),
    "2x-dgx-a100": (16, "a100", 3, 32),
    "4x-dgx-a100": (32, "a100", 5, 64),
    "2x-dgx-h100": (16, "h100", 3, 32),
    "dgx1-hybrid-cube-mesh": (8, "a100", 0, 16),
    "hgx-a100-40gb-8": (8, "a100-40gb", 1, 8),
    "hgx-h200-8": (8, "h200", 1, 8),
    "mi300x-8": (8, "mi300x", 0, 28),
    "4x-rtx4090-pcie": (4, "rtx4090", 3, 6),
}

GOOD = """\
name: tiny
description: two devices on a ring
device: a100
topology:
  builder: ring
  devices: 4
  link:
    bandwidth_bytes_per_s: 25 GB/s
    latency_s: 1 us
collective:
  launch_latency_s: 10 us
  step_latency_s: 1 us
  bandwidth_efficiency: 0.8
  chunk_bytes: 1 MiB
  compute_units: 8
  channels: 0
"""


def write(tmp_path: Path, text: str, name: str = "system.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- presets


def test_preset_folders_are_beside_the_package():
    import topologies

    package = Path(topologies.__file__).resolve().parent
    assert DEVICE_DIR == package / "devices" and SYSTEM_DIR == package / "systems"


def test_preset_lists_are_sorted_and_complete():
    assert device_presets() == ["a100", "a100-40gb", "b200", "h100", "h200", "l40s", "mi210", "mi300x", "rtx4090"]
    assert system_presets() == sorted(PRESETS)


def test_presets_load_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_system("dgx-a100").name == "dgx-a100"
    assert load_device("h100").name == "h100"


@pytest.mark.parametrize("preset", device_presets())
def test_every_device_preset_loads(preset):
    spec = load_device(preset)
    assert isinstance(spec, DeviceSpec) and spec.name == preset
    assert spec.matrix_flops_per_s > 0


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_system_preset_loads(preset):
    count, device, switch_count, edge_count = PRESETS[preset]
    system = load_system(preset)
    assert isinstance(system, SystemSpec)
    assert system.name == preset
    assert system.source == str(SYSTEM_DIR / f"{preset}.yaml")
    assert system.description
    assert system.devices == tuple(f"gpu{i}" for i in range(count))
    assert {system.device_spec(d).name for d in system.devices} == {device}
    switches = [n for n, r in system.graph.nodes(data="role") if r == "switch"]
    assert len(switches) == switch_count
    assert system.graph.number_of_edges() == edge_count
    assert nx.is_connected(system.graph)
    # Every preset's calls are planned by NCCL's model; NVLS only where the switch has it.
    assert system.collective.library == "nccl"
    assert system.collective.nvls == (device in ("h100", "h200"))
    # What the plan runs with lies in physical ranges: a fraction of line rate,
    # microseconds of software latency (a PCIe step, NCCL's 5.7 us stretched as the fits
    # stretch Simple's, about 22 us), a slice of the order of NCCL's step slot, at most
    # NCCL's 32 channels of one SM each.
    import simpy

    from des.comm import plan_call
    from des.hardware.network import Network

    network = Network(simpy.Environment(), system)
    for nbytes in (4096, 1 << 20, 64 << 20):
        params = asdict(plan_call(network, "allreduce", system.devices, nbytes, system.collective).params)
        assert 0.1 <= params["bandwidth_efficiency"] <= 1.0
        assert 0.0 <= params["launch_latency_s"] <= 100e-6
        assert 0.0 <= params["step_latency_s"] <= 25e-6
        assert 16 * 1024 <= params["chunk_bytes"] <= 4 * 1024**2
        assert 1 <= params["compute_units"] <= 32


def test_preset_link_figures():
    hgx = load_system("hgx-a100-4").graph.edges["gpu0", "gpu1"]
    assert hgx["bandwidth_bytes_per_s"] == pytest.approx(100e9) and hgx["links"] == 4
    assert load_system("dgx-a100").graph.edges["gpu0", "nvswitch"][
        "bandwidth_bytes_per_s"
    ] == pytest.approx(300e9)
    assert load_system("dgx-h100").graph.edges["gpu0", "nvswitch"][
        "bandwidth_bytes_per_s"
    ] == pytest.approx(450e9)
    two = load_system("2x-dgx-a100").graph
    assert two.edges["gpu9", "n1.nvswitch"]["bandwidth_bytes_per_s"] == pytest.approx(300e9)
    assert two.edges["gpu9", "leaf0"]["bandwidth_bytes_per_s"] == pytest.approx(25e9)
    assert two.nodes["gpu9"]["node"] == 1


def test_load_device_by_path(tmp_path):
    path = write(tmp_path, (DEVICE_DIR / "a100.yaml").read_text(), "mine.yaml")
    assert load_device(str(path)) == load_device("a100")


def test_unknown_device_preset_lists_known():
    with pytest.raises(DesError, match=r"unknown device preset 'x'; known: a100, a100-40gb, b200, h100, h200, l40s, mi210, mi300x, rtx4090"):
        load_device("x")


# --------------------------------------------------------------------------- user files


def test_user_file_loads(tmp_path):
    system = load_system(str(write(tmp_path, GOOD)))
    assert system.name == "tiny" and system.devices == ("gpu0", "gpu1", "gpu2", "gpu3")
    assert system.graph.edges["gpu0", "gpu1"]["latency_s"] == pytest.approx(1e-6)


def test_device_path_is_relative_to_the_system_file(tmp_path):
    (tmp_path / "chips").mkdir()
    write(tmp_path, (DEVICE_DIR / "mi210.yaml").read_text(), "chips/mine.yaml")
    path = write(tmp_path, GOOD.replace("device: a100", "device: chips/mine.yaml"))
    system = load_system(str(path))
    assert system.device_spec("gpu0").name == "mi210"


def test_inline_device_mapping(tmp_path):
    fields = textwrap.indent((DEVICE_DIR / "h100.yaml").read_text(), "  ")
    path = write(tmp_path, GOOD.replace("device: a100", "device:\n" + fields))
    assert load_system(str(path)).device_spec("gpu3").name == "h100"


def test_multi_node_user_file(tmp_path):
    path = write(
        tmp_path,
        """\
        device: a100
        topology:
          builder: multi_node
          nodes: 2
          devices_per_node: 4
          nics_per_node: 1
          intra:
            builder: torus2d
            rows: 2
            cols: 2
            link: {bandwidth_bytes_per_s: 50 GB/s}
          nic_link: {bandwidth_bytes_per_s: 25 GB/s, latency_s: 1 us}
        collective: {}
        """,
        "mn.yaml",
    )
    system = load_system(str(path))
    assert system.name == "mn"  # defaults to the file's stem
    assert len(system.devices) == 8
    assert system.graph.degree("leaf0") == 2
    assert system.collective == CollectiveParams()
    assert math.isclose(system.graph.edges["gpu0", "gpu1"]["latency_s"], 0.0)


# --------------------------------------------------------------------------- bad files


def broken(tmp_path: Path, old: str, new: str) -> Path:
    assert old in GOOD
    return write(tmp_path, GOOD.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "  devices: 4\n",
            "  devics: 4\n",
            r"topology: unknown field 'devics' \(did you mean 'devices'\?\)",
        ),
        ("  devices: 4\n", "", r"topology: missing field 'devices'"),
        ("topology:\n", "topologyx:\n", r"unknown field 'topologyx'|missing field 'topology'"),
        ("25 GB/s", "-25 GB/s", r"topology\.link: field 'bandwidth_bytes_per_s' must be positive"),
        ("25 GB/s", "0 GB/s", r"topology\.link: field 'bandwidth_bytes_per_s' must be positive"),
        ("25 GB/s", "200 Gb/s", r"topology\.link: field 'bandwidth_bytes_per_s'.*bits"),
        (
            "builder: ring",
            "builder: hypercube",
            r"topology: field 'builder' is 'hypercube'; allowed: ring",
        ),
        (
            "device: a100",
            "device: a1000",
            r"field 'device': unknown device preset 'a1000'.*known: a100, a100-40gb, b200, h100, h200",
        ),
        ("device: a100", "device: nothere.yaml", r"field 'device'.*nothere\.yaml: no such file"),
        ("device: a100", "device: 7", r"field 'device' must be a preset name"),
        ("  devices: 4\n", "  devices: 1\n", r"topology: .*ring: n \(devices\) must be at least 2"),
        ("  devices: 4\n", "  devices: 2.5\n", r"topology: field 'devices' must be a whole number"),
        (
            "  compute_units: 8\n",
            "  compute_unit: 8\n",
            r"collective: unknown field 'compute_unit' \(did you mean 'compute_units'\?\)",
        ),
        (
            "bandwidth_efficiency: 0.8",
            "bandwidth_efficiency: 1.5",
            r"collective: field 'bandwidth_efficiency' must be at most 1",
        ),
        ("name: tiny\n", "name: tiny\ncolour: blue\n", r"unknown field 'colour'"),
        ("  link:\n", "  links:\n", r"topology: unknown field 'links'"),
    ],
)
def test_bad_system_file_names_file_and_field(tmp_path, old, new, expected):
    path = broken(tmp_path, old, new)
    with pytest.raises(DesError, match=expected) as info:
        load_system(str(path))
    assert str(path) in str(info.value)


def test_missing_collective_is_an_error(tmp_path):
    path = write(tmp_path, GOOD.split("collective:")[0])
    with pytest.raises(DesError, match=r"system\.yaml: missing field 'collective'"):
        load_system(str(path))


def test_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(DesError, match=r"absent\.yaml: no such file"):
        load_system(str(path))


def test_yaml_syntax_error(tmp_path):
    path = write(tmp_path, "name: x\ntopology: [unclosed\n")
    with pytest.raises(DesError, match=r"system\.yaml: YAML syntax error at line \d+"):
        load_system(str(path))


@pytest.mark.parametrize("text", ["- a list\n- of things\n", "just a string\n", ""])
def test_file_that_is_not_a_mapping(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(DesError, match=r"system\.yaml: expected a mapping"):
        load_system(str(path))


def test_unknown_system_preset_lists_known():
    with pytest.raises(
        DesError, match=r"unknown system preset 'dgx-a10'.*known: 2x-dgx-a100, 2x-dgx-h100, 4x-dgx-a100, 4x-rtx4090-pcie, dgx-a100"
    ):
        load_system("dgx-a10")


def test_unknown_multi_node_key_lists_allowed(tmp_path):
    path = write(
        tmp_path,
        """\
        device: a100
        topology:
          builder: multi_node
          nodes: 2
          devices_per_node: 8
          intra: {builder: switch, link: {bandwidth_bytes_per_s: 300 GB/s}, ports: 2}
          nic_link: {bandwidth_bytes_per_s: 25 GB/s}
        collective: {}
        """,
    )
    with pytest.raises(
        DesError,
        match=r"topology\.intra: unknown field 'ports'.*allowed: builder, devices, link, name",
    ):
        load_system(str(path))


def test_intra_cannot_be_multi_node(tmp_path):
    path = write(
        tmp_path,
        """\
        device: a100
        topology:
          builder: multi_node
          nodes: 2
          devices_per_node: 8
          intra: {builder: multi_node}
          nic_link: {bandwidth_bytes_per_s: 25 GB/s}
        collective: {}
        """,
    )
    with pytest.raises(DesError, match=r"topology\.intra: field 'builder' is 'multi_node'"):
        load_system(str(path))


# --------------------------------------------------------------------------- built in code


def test_system_from_graph_attaches_the_device_and_copies():
    graph = ring(4, LinkSpec(1e9))
    device = load_device("a100")
    system = system_from_graph("r", graph, device, CollectiveParams())
    assert system.devices == ("gpu0", "gpu1", "gpu2", "gpu3")
    assert all(system.device_spec(d) is device for d in system.devices)
    assert "device" not in graph.nodes["gpu0"]
    assert system.source == "<built>"


def test_system_from_graph_rejects_disconnected_devices():
    graph = nx.union(ring(3, LinkSpec(1e9)), switch(2, LinkSpec(1e9)), rename=("", "b."))
    with pytest.raises(DesError, match=r"disconnected: devices b\.gpu0, b\.gpu1 cannot reach gpu0"):
        system_from_graph("broken", graph, load_device("a100"), CollectiveParams())


def test_system_from_graph_rejects_missing_edge_attribute():
    graph = ring(3, LinkSpec(1e9))
    del graph.edges["gpu0", "gpu1"]["latency_s"]
    with pytest.raises(DesError, match=r"link gpu0-gpu1 has no valid 'latency_s'"):
        system_from_graph("broken", graph, load_device("a100"), CollectiveParams())


def test_system_from_graph_needs_specs_when_no_device_given():
    with pytest.raises(DesError, match="has no device spec"):
        system_from_graph("bare", ring(3, LinkSpec(1e9)), None, CollectiveParams())
