"""Several machines: leaf-spine builder, presets, flat rings across machines, NIC contention."""

from __future__ import annotations

import dataclasses

import pytest

from des.cli import main
from des.collectives import ring_orders
from des.engine import Engine, simulate_collective
from des.errors import DesError
from des.specs import CollectiveParams, LinkSpec
from des.taskgraph import CollectiveTask, TaskGraph
from des.trace import Trace
from des.validate.calibration import calibration_dir, read_rows
from topologies import load_device, load_system, multi_node, system_from_graph

NVLINK = LinkSpec(300e9, 0.35e-6)
NIC = LinkSpec(25e9, 0.5e-6)
SWITCH = {"builder": "switch", "link": NVLINK}
A100 = load_device("a100")


def machine(graph, node):
    return graph.nodes[node]["node"]


# --------------------------------------------------------------------------- builder


def test_spine_builds_leaves_and_oversubscribed_uplinks():
    graph = multi_node(5, 2, SWITCH, NIC, spine={"nodes_per_leaf": 2, "oversubscription": 2})
    leaves = sorted(n for n in graph if str(n).startswith("leaf"))
    assert leaves == ["leaf0", "leaf1", "leaf2"]
    assert graph.nodes["spine0"]["node"] == -1
    # Machines 0-1 under leaf0, 2-3 under leaf1, 4 alone under leaf2.
    assert graph.has_edge("gpu0", "leaf0") and graph.has_edge("gpu7", "leaf1") and graph.has_edge("gpu9", "leaf2")
    # Uplink = NICs under the leaf x NIC bandwidth / oversubscription.
    assert graph.edges["leaf0", "spine0"]["bandwidth_bytes_per_s"] == pytest.approx(4 * 25e9 / 2)
    assert graph.edges["leaf2", "spine0"]["bandwidth_bytes_per_s"] == pytest.approx(2 * 25e9 / 2)
    assert graph.edges["leaf0", "spine0"]["latency_s"] == NIC.latency_s


@pytest.mark.parametrize(
    "spine, message",
    [
        ({"nodes_per_leaf": 1, "oversubscription": 0}, "'oversubscription' must be positive"),
        ({"nodes_per_leaf": 1, "oversubscription": -2}, "'oversubscription' must be positive"),
        ({"nodes_per_leaf": 3}, r"nodes_per_leaf \(3\) exceeds nodes \(2\)"),
        ({"leaves": 2}, "unknown field 'leaves'"),
        ({"oversubscription": 2}, "missing field 'nodes_per_leaf'"),
    ],
)
def test_bad_spine(spine, message):
    with pytest.raises(DesError, match=message):
        multi_node(2, 2, SWITCH, NIC, spine=spine)


def test_oversubscription_error_names_file_and_field(tmp_path, capsys):
    path = tmp_path / "spine.yaml"
    path.write_text(
        """
name: bad-spine
device: a100
topology:
  builder: multi_node
  nodes: 2
  devices_per_node: 2
  intra: {builder: switch, link: {bandwidth_bytes_per_s: 300 GB/s}}
  nic_link: {bandwidth_bytes_per_s: 25 GB/s}
  spine: {nodes_per_leaf: 1, oversubscription: 0}
collective: {}
"""
    )
    with pytest.raises(DesError, match=r"spine\.yaml: topology: multi_node: spine: field 'oversubscription'"):
        load_system(str(path))
    assert main(["collective", "allreduce", "--system", str(path)]) == 2
    assert "oversubscription" in capsys.readouterr().err


def test_spine_oversubscription_slows_cross_leaf_traffic():
    """Four machines, two per leaf, 1:1 vs 4:1: only the cross-leaf ring is slower."""
    params = CollectiveParams(chunk_bytes=1 << 20, channels=0)
    times = {}
    for ratio in (1, 4):
        graph = multi_node(4, 2, SWITCH, NIC, spine={"nodes_per_leaf": 2, "oversubscription": ratio})
        system = system_from_graph("spine", graph, A100, params)
        group = system.select_ranks(8)
        times[ratio] = simulate_collective(system, "allreduce", group, 64 * 2**20, Trace(enabled=False)).latency_s
    assert times[4] > 1.5 * times[1]


# --------------------------------------------------------------------------- presets


@pytest.mark.parametrize(
    "name, devices, nic_bandwidth, spec",
    [("2x-dgx-a100", 16, 25e9, "a100"), ("4x-dgx-a100", 32, 25e9, "a100"), ("2x-dgx-h100", 16, 50e9, "h100")],
)
def test_multi_node_presets(name, devices, nic_bandwidth, spec):
    system = load_system(name)
    graph = system.graph
    assert len(system.devices) == devices
    assert {machine(graph, d) for d in system.devices} == set(range(devices // 8))
    assert all(graph.nodes[d]["device"].name == spec for d in system.devices)
    for device in system.devices:  # one NIC per GPU
        assert graph.edges[device, "leaf0"]["bandwidth_bytes_per_s"] == nic_bandwidth
    # NCCL plans the calls: inter-node hops take the network's latency and fraction.
    import simpy

    from des.comm import plan_call
    from des.hardware.network import Network

    plan = plan_call(Network(simpy.Environment(), system), "allreduce", system.devices, 64 << 20, system.collective)
    # DGX H100 machines reduce in their NVSwitches and between them along a tree.
    assert plan.library == "nccl" and plan.algorithm in (("nvls_tree",) if spec == "h100" else ("ring", "tree"))
    params = plan.params
    assert params.inter_node_step_latency_s is not None and params.inter_node_bandwidth_efficiency is not None
    assert params.hop_efficiency(True) != params.hop_efficiency(False)


def test_ranks_per_node_spreads_over_machines():
    system = load_system("4x-dgx-a100")
    assert system.select_ranks(8, 2) == ("gpu0", "gpu1", "gpu8", "gpu9", "gpu16", "gpu17", "gpu24", "gpu25")
    assert system.select_ranks(4) == ("gpu0", "gpu1", "gpu2", "gpu3")


# --------------------------------------------------------------------------- flat rings


def crossings(graph, ring):
    return sum(machine(graph, a) != machine(graph, b) for a, b in zip(ring, ring[1:] + ring[:1], strict=True))


@pytest.mark.parametrize("name", ["2x-dgx-a100", "4x-dgx-a100"])
def test_flat_ring_crosses_each_boundary_once(name):
    system = load_system(name)
    machines = len(system.devices) // 8
    rings = ring_orders(system.graph, system.devices, 0)
    assert len(rings) == 8  # one ring per NIC
    assert all(crossings(system.graph, ring) == machines for ring in rings)
    # Each channel leaves every machine through its own NIC.
    exits = [
        a for ring in rings for a, b in zip(ring, ring[1:] + ring[:1], strict=True) if machine(system.graph, a) != machine(system.graph, b)
    ]
    assert len(set(exits)) == len(exits)


def test_interleaved_group_is_reordered_machine_by_machine():
    system = load_system("2x-dgx-a100")
    group = ("gpu0", "gpu8", "gpu1", "gpu9", "gpu2", "gpu10")
    for ring in ring_orders(system.graph, group, 0):
        assert sorted(ring) == sorted(group)
        assert crossings(system.graph, ring) == 2


def test_flat_ring_sends_two_streams_across_per_step():
    """One channel over 16 ranks of two machines: exactly two NIC directions carry data."""
    system = load_system("2x-dgx-a100")
    system = dataclasses.replace(system, collective=CollectiveParams(channels=1, chunk_bytes=256 * 1024))
    nbytes = 16 * 2**20
    group = system.devices
    engine = Engine(system, trace=Trace(enabled=False))
    graph = TaskGraph()
    graph.add(CollectiveTask("ar", "allreduce", group, nbytes))
    result = engine.run(graph).collectives["ar"]
    n = len(group)
    out_of_machines = {
        name: link.bytes_sent
        for name, link in engine.network.links.items()
        if name[1] == "leaf0" and link.bytes_sent > 0
    }
    # Two crossings (gpu7 -> gpu8 and gpu15 -> gpu0), each one share per step for 2(n-1) steps.
    assert sorted(out_of_machines) == [("gpu15", "leaf0"), ("gpu7", "leaf0")]
    for sent in out_of_machines.values():
        assert sent == pytest.approx(2 * (n - 1) * nbytes / n)
    assert result.algorithm == "ring"


def test_shared_nic_contention_doubles_time():
    """With one NIC per machine, two transfers through it take about twice as long as one."""
    graph = multi_node(2, 4, SWITCH, NIC, nics_per_node=1)
    params = CollectiveParams(chunk_bytes=1 << 20, channels=1)
    system = system_from_graph("one-nic", graph, A100, params)
    nbytes = 64 * 2**20

    def run(groups):
        tasks = TaskGraph()
        for i, group in enumerate(groups):
            tasks.add(CollectiveTask(f"ar{i}", "allreduce", group, nbytes, stream=f"s{i}"))
        return Engine(system, trace=Trace(enabled=False)).run(tasks)

    alone = run([("gpu1", "gpu5")]).latency_s
    both = run([("gpu1", "gpu5"), ("gpu2", "gpu6")])
    for name in ("ar0", "ar1"):
        assert both.collectives[name].latency_s == pytest.approx(2 * alone, rel=0.05)
    # Different NICs: no contention.
    apart = multi_node(2, 4, SWITCH, NIC)
    system = system_from_graph("all-nics", apart, A100, params)
    assert run([("gpu1", "gpu5"), ("gpu2", "gpu6")]).latency_s == pytest.approx(alone, rel=0.01)


# --------------------------------------------------------------------------- calibration


def test_two_node_calibration_within_target():
    try:
        folder = calibration_dir()
    except DesError as exc:
        pytest.skip(str(exc))
    rows = [
        r
        for r in read_rows(folder / "dgx_allreduce.csv")
        if (r["gpu"], r["ranks"], r["ranks_per_node"]) == ("a100", "2", "1")
    ]
    assert rows
    system = load_system("2x-dgx-a100")
    group = system.select_ranks(2, 1)
    errors = []
    for row in rows[::25]:
        result = simulate_collective(system, "allreduce", group, float(row["bytes"]), Trace(enabled=False))
        errors.append(abs(result.latency_s / float(row["median_s"]) - 1))
    assert sum(errors) / len(errors) <= 0.25


def test_drawing_puts_leaves_over_their_machines_and_the_spine_on_top(tmp_path):
    from des.plot_topology import _layout, describe_topology, draw_topology

    graph = multi_node(4, 2, SWITCH, NIC, spine={"nodes_per_leaf": 2, "oversubscription": 2})
    system = system_from_graph("spine", graph, A100, CollectiveParams())
    pos = _layout(system)
    assert pos["spine0"][1] > pos["leaf0"][1] > pos["gpu0"][1]
    assert pos["leaf0"][0] < pos["spine0"][0] < pos["leaf1"][0]
    assert "leaf0-spine0  50 GB/s" in describe_topology(system)  # 4 NICs x 25 GB/s / 2
    out = draw_topology(system, tmp_path / "spine.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
