"""Topologies as edge lists in YAML: loading, the DGX-1 example, round trip, bad input."""

from __future__ import annotations

import pytest

from des.cli import main
from des.collectives import ring_orders
from des.engine import simulate_collective
from des.errors import DesError
from des.specs import CollectiveParams, LinkSpec
from des.trace import Trace
from topologies import load_device, load_system, multi_node, system_from_graph
from topologies.edgelist import system_to_yaml, write_system

HEADER = "name: listed\ndevice: a100\ncollective: {step_latency_s: 1 us, chunk_bytes: 64 KiB}\ntopology:\n"


def write(tmp_path, topology: str, header: str = HEADER):
    path = tmp_path / "listed.yaml"
    path.write_text(header + topology)
    return str(path)


GOOD = """\
  nodes:
    - {name: gpu0}
    - {name: gpu1, device: h100, node: 0}
    - {name: gpu2, node: 1}
    - {name: sw0, role: switch, node: -1}
  edges:
    - {a: gpu0, b: gpu1, bandwidth_bytes_per_s: 300 GB/s, latency_s: 0.35 us, links: 12}
    - {a: gpu0, b: sw0, bandwidth_bytes_per_s: 25 GB/s, latency_s: 0.5 us}
    - {a: gpu2, b: sw0, bandwidth_bytes_per_s: 25 GB/s}
"""


def test_edge_list_loads(tmp_path):
    system = load_system(write(tmp_path, GOOD))
    graph = system.graph
    assert system.devices == ("gpu0", "gpu1", "gpu2")
    assert system.device_spec("gpu0").name == "a100" and system.device_spec("gpu1").name == "h100"
    assert graph.nodes["gpu2"]["node"] == 1 and graph.nodes["sw0"]["role"] == "switch"
    assert graph.edges["gpu0", "gpu1"]["bandwidth_bytes_per_s"] == 300e9
    assert graph.edges["gpu0", "gpu1"]["links"] == 12
    assert graph.edges["gpu2", "sw0"]["latency_s"] == 0.0
    result = simulate_collective(system, "allreduce", system.devices, 1e6, Trace(enabled=False))
    assert result.latency_s > 0


def test_dgx1_hybrid_cube_mesh():
    system = load_system("dgx1-hybrid-cube-mesh")
    graph = system.graph
    assert len(system.devices) == 8 and graph.number_of_edges() == 16
    for device in system.devices:  # six NVLinks of 25 GB/s per GPU
        assert sum(graph.edges[device, peer]["links"] for peer in graph[device]) == 6
        assert sum(graph.edges[device, peer]["bandwidth_bytes_per_s"] for peer in graph[device]) == 150e9
    # Rings come from the graph: every hop is one direct NVLink.
    for ring in ring_orders(graph, system.devices, 0):
        assert all(graph.has_edge(a, b) for a, b in zip(ring, ring[1:] + ring[:1], strict=True))


def spine_system():
    graph = multi_node(4, 2, {"builder": "ring", "link": LinkSpec(100e9, 1e-6)}, LinkSpec(25e9, 5e-7),
                       spine={"nodes_per_leaf": 2, "oversubscription": 2})
    params = CollectiveParams(launch_latency_s=3e-6, step_latency_s=1e-6, chunk_bytes=256 * 1024, channels=0,
                              inter_node_step_latency_s=3e-6, inter_node_bandwidth_efficiency=0.5)
    return system_from_graph("spine", graph, load_device("a100"), params)


@pytest.mark.parametrize("name", ["2x-dgx-a100", "dgx1-hybrid-cube-mesh", "hgx-a100-4", "spine"])
def test_round_trip_gives_identical_results(name, tmp_path):
    system = spine_system() if name == "spine" else load_system(name)
    path = write_system(system, tmp_path / f"{name}.yaml")
    again = load_system(str(path))
    assert again.devices == system.devices
    assert again.collective == system.collective
    assert list(again.graph.nodes(data=True)) == list(system.graph.nodes(data=True))
    assert sorted(map(sorted, again.graph.edges())) == sorted(map(sorted, system.graph.edges()))
    for a, b, attrs in system.graph.edges(data=True):
        assert again.graph.edges[a, b] == attrs
    groups = [system.devices, system.devices[:2], system.devices[1::2]]
    for group in groups:
        for nbytes in (4096.0, 3e7):
            for algorithm in ("ring", "hierarchical"):
                first = simulate_collective(system, "allreduce", group, nbytes, Trace(enabled=False), algorithm)
                second = simulate_collective(again, "allreduce", group, nbytes, Trace(enabled=False), algorithm)
                assert first.latency_s == second.latency_s
                assert first.rings == second.rings
    # Written again, the text is the same (bar the source line).
    assert system_to_yaml(again).splitlines()[1:] == system_to_yaml(system).splitlines()[1:]


@pytest.mark.parametrize(
    "topology, message",
    [
        (GOOD.replace("b: gpu1, bandwidth", "b: gpu9, bandwidth"), r"topology\.edges\[0\]: field 'b': unknown node 'gpu9'; known nodes: gpu0"),
        (GOOD + "    - {a: gpu1, b: gpu0, bandwidth_bytes_per_s: 1 GB/s}\n", r"edges\[3\]: duplicate link gpu1-gpu0 \(already edges\[0\]\)"),
        (GOOD.replace("25 GB/s}", "-25 GB/s}"), r"edges\[2\]: field 'bandwidth_bytes_per_s' must be positive"),
        (GOOD.replace("- {a: gpu2, b: sw0", "- {a: gpu1, b: sw0"), r"topology is disconnected: devices gpu2 cannot reach gpu0"),
        (GOOD.replace("a: gpu2, b: sw0", "a: sw0, b: sw0"), r"edges\[2\]: a link from 'sw0' to itself"),
        (GOOD.replace("- {name: gpu2, node: 1}", "- {name: gpu0, node: 1}"), r"nodes\[2\]: duplicate node name 'gpu0'"),
        (GOOD.replace("role: switch,", "role: switch, device: a100,"), r"switch 'sw0' cannot have a 'device'"),
        (GOOD.replace("role: switch", "role: router"), r"nodes\[3\]: field 'role' is 'router'; allowed: device, switch"),
        (GOOD.replace("latency_s: 0.5 us}", "latency_s: 0.5 us, colour: red}"), r"edges\[1\]: unknown field 'colour'"),
        ("  nodes: []\n  edges: []\n", r"field 'nodes' must be a non-empty list"),
    ],
)
def test_bad_edge_lists(tmp_path, capsys, topology, message):
    path = write(tmp_path, topology)
    with pytest.raises(DesError, match=message) as info:
        load_system(path)
    assert "listed.yaml" in str(info.value)
    assert main(["collective", "allreduce", "--system", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("des: error:") and "listed.yaml" in err and "Traceback" not in err


def test_device_is_optional_when_every_node_names_one(tmp_path):
    topology = GOOD.replace("{name: gpu0}", "{name: gpu0, device: a100}").replace("{name: gpu2, node: 1}", "{name: gpu2, node: 1, device: mi210}")
    path = write(tmp_path, topology, header="name: listed\ncollective: {}\ntopology:\n")
    system = load_system(path)
    assert [system.device_spec(d).name for d in system.devices] == ["a100", "h100", "mi210"]
    # Written back with a device per node, and read again.
    again = load_system(str(write_system(system, tmp_path / "again.yaml")))
    assert [again.device_spec(d) for d in again.devices] == [system.device_spec(d) for d in system.devices]
    missing = write(tmp_path, GOOD, header="name: listed\ncollective: {}\ntopology:\n")
    with pytest.raises(DesError, match=r"nodes\[0\]: device 'gpu0' has no 'device' and the system names none"):
        load_system(missing)
