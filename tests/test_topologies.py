"""Structural tests of the topology builders, and of describing and drawing topologies."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from des.errors import DesError
from des.plot_topology import describe_topology, draw_topology
from des.specs import CollectiveParams, LinkSpec
from topologies import builders
from topologies.builders import (
    BUILDERS,
    fully_connected,
    mesh2d,
    multi_node,
    ring,
    switch,
    torus2d,
)
from topologies.loader import load_device, load_system, system_from_graph, system_presets

LINK = LinkSpec(25e9, 0.7e-6)
NIC = LinkSpec(25e9, 0.5e-6)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def devices_of(graph: nx.Graph) -> list[str]:
    return [n for n, role in graph.nodes(data="role") if role == "device"]


def switches_of(graph: nx.Graph) -> list[str]:
    return [n for n, role in graph.nodes(data="role") if role == "switch"]


def assert_well_formed(graph: nx.Graph) -> None:
    """Attributes every builder promises, and rank order = insertion order."""
    assert isinstance(graph, nx.Graph) and not graph.is_directed()
    devices = devices_of(graph)
    assert devices == [f"gpu{i}" for i in range(len(devices))]
    for _, attrs in graph.nodes(data=True):
        assert attrs["role"] in ("device", "switch")
        assert isinstance(attrs["node"], int)
        assert "device" not in attrs, "builders must not attach device specs"
    for _, _, attrs in graph.edges(data=True):
        assert isinstance(attrs["bandwidth_bytes_per_s"], float)
        assert attrs["bandwidth_bytes_per_s"] > 0
        assert isinstance(attrs["latency_s"], float) and attrs["latency_s"] >= 0
        assert isinstance(attrs["links"], int) and attrs["links"] >= 1
    assert nx.is_connected(graph)


def wrap_edges(size: int) -> int:
    """Edges of one wrapped line of ``size`` devices."""
    return size if size >= 3 else size - 1


# --------------------------------------------------------------------------- ring


@given(st.integers(min_value=3, max_value=64))
def test_ring_has_n_edges_and_degree_two(n):
    graph = ring(n, LINK)
    assert_well_formed(graph)
    assert graph.number_of_nodes() == n
    assert graph.number_of_edges() == n
    assert {d for _, d in graph.degree()} == {2}
    assert nx.cycle_basis(graph) and len(nx.cycle_basis(graph)[0]) == n


def test_ring_of_two_is_one_edge():
    graph = ring(2, LINK)
    assert list(graph.edges()) == [("gpu0", "gpu1")]


def test_ring_neighbours_follow_rank_order():
    graph = ring(5, LINK)
    for i in range(5):
        assert graph.has_edge(f"gpu{i}", f"gpu{(i + 1) % 5}")
    edge = graph.edges["gpu0", "gpu1"]
    assert edge == {"bandwidth_bytes_per_s": 25e9, "latency_s": 0.7e-6, "links": 1}


# --------------------------------------------------------------------------- fully connected


@given(st.integers(min_value=1, max_value=24), st.integers(min_value=1, max_value=8))
def test_fully_connected_counts(n, links_per_pair):
    graph = fully_connected(n, LINK, links_per_pair=links_per_pair)
    assert_well_formed(graph)
    assert graph.number_of_nodes() == n
    assert graph.number_of_edges() == n * (n - 1) // 2
    assert all(d == n - 1 for _, d in graph.degree())
    for _, _, attrs in graph.edges(data=True):
        assert attrs["links"] == links_per_pair
        assert attrs["bandwidth_bytes_per_s"] == pytest.approx(links_per_pair * 25e9)


# --------------------------------------------------------------------------- switch


@given(st.integers(min_value=1, max_value=64))
def test_switch_is_a_star(n):
    graph = switch(n, LINK)
    assert_well_formed(graph)
    assert switches_of(graph) == ["nvswitch"]
    assert graph.number_of_nodes() == n + 1
    assert graph.number_of_edges() == n
    assert graph.degree("nvswitch") == n
    assert all(graph.degree(d) == 1 for d in devices_of(graph))
    assert graph.nodes["nvswitch"]["node"] == 0


def test_switch_name_is_configurable():
    graph = switch(4, LINK, name="pcie")
    assert switches_of(graph) == ["pcie"]


# --------------------------------------------------------------------------- grids


@given(st.integers(min_value=1, max_value=9), st.integers(min_value=1, max_value=9))
def test_torus_edge_count(rows, cols):
    graph = torus2d(rows, cols, LINK)
    assert_well_formed(graph)
    assert graph.number_of_nodes() == rows * cols
    assert graph.number_of_edges() == rows * wrap_edges(cols) + cols * wrap_edges(rows)


@given(st.integers(min_value=3, max_value=9), st.integers(min_value=3, max_value=9))
def test_torus_of_size_three_or_more_is_four_regular(rows, cols):
    graph = torus2d(rows, cols, LINK)
    assert graph.number_of_edges() == 2 * rows * cols
    assert {d for _, d in graph.degree()} == {4}


def test_torus_wraps_rows_and_columns():
    graph = torus2d(3, 4, LINK)
    assert graph.has_edge("gpu0", "gpu3")  # row 0 wraps
    assert graph.has_edge("gpu0", "gpu8")  # column 0 wraps
    assert graph.graph["shape"] == (3, 4)


def test_torus_of_size_two_has_no_duplicate_edge():
    graph = torus2d(2, 2, LINK)
    assert graph.number_of_edges() == 4
    assert nx.is_isomorphic(graph, nx.cycle_graph(4))


@given(st.integers(min_value=1, max_value=9), st.integers(min_value=1, max_value=9))
def test_mesh_edge_count_and_degrees(rows, cols):
    graph = mesh2d(rows, cols, LINK)
    assert_well_formed(graph)
    assert graph.number_of_nodes() == rows * cols
    assert graph.number_of_edges() == rows * (cols - 1) + cols * (rows - 1)
    assert max(d for _, d in graph.degree()) <= 4
    if rows >= 2 and cols >= 2:
        assert graph.degree("gpu0") == 2  # a corner


def test_mesh_is_row_major():
    graph = mesh2d(2, 3, LINK)
    assert graph.has_edge("gpu0", "gpu1") and graph.has_edge("gpu0", "gpu3")
    assert not graph.has_edge("gpu2", "gpu3")


# --------------------------------------------------------------------------- multi node


@settings(max_examples=30)
@given(st.integers(min_value=1, max_value=4), st.integers(min_value=1, max_value=8))
def test_multi_node_switch_counts(nodes, per_node):
    graph = multi_node(nodes, per_node, {"builder": "switch", "link": LINK}, NIC)
    assert_well_formed(graph)
    total = nodes * per_node
    assert graph.number_of_nodes() == total + nodes + 1
    assert graph.number_of_edges() == 2 * total
    assert sorted(switches_of(graph)) == sorted(
        [f"n{m}.nvswitch" for m in range(nodes)] + ["leaf0"]
    )
    assert graph.degree("leaf0") == total
    assert graph.nodes["leaf0"]["node"] == -1
    for m in range(nodes):
        assert graph.nodes[f"n{m}.nvswitch"]["node"] == m
        for i in range(per_node):
            device = f"gpu{m * per_node + i}"
            assert graph.nodes[device]["node"] == m
            assert graph.has_edge(device, f"n{m}.nvswitch")
            assert (
                graph.edges[device, "leaf0"]["bandwidth_bytes_per_s"] == NIC.bandwidth_bytes_per_s
            )


def test_multi_node_with_ring_fabric_and_fewer_nics():
    graph = multi_node(3, 4, {"builder": "ring", "link": LINK}, NIC, nics_per_node=2)
    assert_well_formed(graph)
    assert graph.number_of_nodes() == 12 + 1
    assert graph.number_of_edges() == 3 * 4 + 3 * 2
    with_nic = sorted(graph.neighbors("leaf0"), key=lambda n: int(n[3:]))
    assert with_nic == ["gpu0", "gpu1", "gpu4", "gpu5", "gpu8", "gpu9"]
    assert graph.has_edge("gpu4", "gpu7")  # machine 1's ring closes on itself


def test_multi_node_with_torus_fabric():
    graph = multi_node(2, 4, {"builder": "torus2d", "rows": 2, "cols": 2, "link": LINK}, NIC)
    assert_well_formed(graph)
    assert graph.number_of_edges() == 2 * 4 + 8


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call",
    [
        lambda: ring(1, LINK),
        lambda: ring(0, LINK),
        lambda: ring(2.5, LINK),
        lambda: ring(True, LINK),
        lambda: ring("4", LINK),
        lambda: ring(4, 25e9),
        lambda: fully_connected(0, LINK),
        lambda: fully_connected(4, LINK, links_per_pair=0),
        lambda: switch(-1, LINK),
        lambda: switch(4, LINK, name=""),
        lambda: switch(4, LINK, name="gpu1"),
        lambda: torus2d(0, 4, LINK),
        lambda: torus2d(4, -2, LINK),
        lambda: mesh2d(3, 0, LINK),
        lambda: multi_node(0, 8, {"builder": "switch", "link": LINK}, NIC),
        lambda: multi_node(2, 0, {"builder": "switch", "link": LINK}, NIC),
        lambda: multi_node(2, 8, {"builder": "switch", "link": LINK}, NIC, nics_per_node=9),
        lambda: multi_node(2, 8, {"builder": "switch", "link": LINK}, NIC, nics_per_node=0),
        lambda: multi_node(2, 8, {"builder": "nope", "link": LINK}, NIC),
        lambda: multi_node(2, 8, {"builder": "multi_node"}, NIC),
        lambda: multi_node(2, 8, {"link": LINK}, NIC),
        lambda: multi_node(2, 8, "switch", NIC),
        lambda: multi_node(2, 8, {"builder": "switch", "link": LINK, "n": 4}, NIC),
        lambda: multi_node(2, 8, {"builder": "switch", "link": LINK, "bogus": 1}, NIC),
        lambda: multi_node(2, 8, {"builder": "torus2d", "rows": 3, "cols": 3, "link": LINK}, NIC),
        lambda: multi_node(2, 8, {"builder": "switch", "link": LINK}, None),
        lambda: multi_node(2, 8, {"builder": "switch", "link": LINK}, NIC, spine={"leaves": 2}),
    ],
)
def test_builders_reject_bad_input(call):
    with pytest.raises(DesError):
        call()


def test_bad_count_message_names_the_argument():
    with pytest.raises(DesError, match=r"ring: n \(devices\) must be at least 2, got 1"):
        ring(1, LINK)
    with pytest.raises(DesError, match="nics_per_node"):
        multi_node(2, 8, {"builder": "switch", "link": LINK}, NIC, nics_per_node=9)


def test_registry_names_every_builder():
    assert BUILDERS == {
        "ring": builders.ring,
        "fully_connected": builders.fully_connected,
        "switch": builders.switch,
        "torus2d": builders.torus2d,
        "mesh2d": builders.mesh2d,
        "multi_node": builders.multi_node,
    }


def test_builders_are_deterministic():
    a = multi_node(2, 4, {"builder": "switch", "link": LINK}, NIC)
    b = multi_node(2, 4, {"builder": "switch", "link": LINK}, NIC)
    assert list(a.nodes(data=True)) == list(b.nodes(data=True))
    assert list(a.edges(data=True)) == list(b.edges(data=True))


# --------------------------------------------------------------------------- describe and draw


def built_system(graph: nx.Graph, name: str = "built"):
    return system_from_graph(name, graph, load_device("a100"), CollectiveParams())


@pytest.mark.parametrize("preset", system_presets())
def test_describe_lists_every_device_switch_and_link(preset):
    system = load_system(preset)
    text = describe_topology(system)
    assert text.splitlines()[0] == f"system: {preset}"
    lines = [line.strip() for line in text.splitlines()]
    for device in system.devices:
        assert any(line.startswith(f"{device}  ") for line in lines)
    for node in switches_of(system.graph):
        assert any(line.startswith(f"{node}  ") for line in lines)
    link_lines = [line for line in lines if line.endswith(tuple(f"x{k}" for k in range(1, 20)))]
    assert len(link_lines) == system.graph.number_of_edges()
    named = {frozenset(line.split()[0].split("-", 1)) for line in link_lines}
    assert named == {frozenset(edge) for edge in system.graph.edges()}
    assert describe_topology(system) == text


def test_describe_format_of_one_link():
    text = describe_topology(built_system(fully_connected(2, LINK, links_per_pair=4)))
    assert "  gpu0-gpu1  100 GB/s  700 ns  x4" in text.splitlines()
    assert "  gpu0  a100  machine 0" in text.splitlines()


def test_describe_sorts_names_naturally():
    text = describe_topology(built_system(switch(12, LINK)))
    links = [line.split()[0] for line in text.splitlines() if line.endswith("x1")]
    assert links == [f"gpu{i}-nvswitch" for i in range(12)]


@pytest.mark.parametrize("preset", system_presets())
def test_draw_every_preset_writes_a_png(preset, tmp_path):
    out = draw_topology(load_system(preset), tmp_path / f"{preset}.png")
    assert out.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    "graph",
    [
        ring(2, LINK),
        torus2d(3, 4, LINK),
        mesh2d(2, 3, LINK),
        multi_node(3, 4, {"builder": "ring", "link": LINK}, NIC, nics_per_node=2),
    ],
    ids=["ring2", "torus", "mesh", "multi-ring"],
)
def test_draw_built_topologies(graph, tmp_path):
    out = draw_topology(built_system(graph), tmp_path / "t.png")
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_draw_is_deterministic(tmp_path):
    system = load_system("2x-dgx-a100")
    a = draw_topology(system, tmp_path / "a.png").read_bytes()
    b = draw_topology(system, tmp_path / "b.png").read_bytes()
    assert a == b
