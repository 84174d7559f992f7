"""Hierarchical collectives: closed form, dispatch by algorithm, auto choice, bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest
import simpy

from des.cli import main
from des.collectives import (
    HierarchicalCollective,
    choose_algorithm,
    hierarchical_time_s,
    make_collective,
)
from des.engine import Engine, simulate_collective
from des.errors import DesError
from des.hardware import Network
from des.specs import CollectiveParams, LinkSpec
from des.taskgraph import CollectiveTask, TaskGraph
from des.trace import Trace
from topologies import load_device, load_system, multi_node, system_from_graph

A100 = load_device("a100")
#: Links far slower than A100 DRAM, so the collective's DRAM traffic never binds.
INTRA = LinkSpec(100e9, 1e-6)
NIC = LinkSpec(20e9, 0.5e-6)
PARAMS = CollectiveParams(
    launch_latency_s=5e-6,
    step_latency_s=2e-6,
    bandwidth_efficiency=0.8,
    channels=1,
    inter_node_step_latency_s=7e-6,
    inter_node_bandwidth_efficiency=0.5,
)


def two_level(nodes: int, per_node: int, params: CollectiveParams = PARAMS):
    """Machines with a direct NVLink ring inside, one NIC per device into one leaf."""
    graph = multi_node(nodes, per_node, {"builder": "ring", "link": INTRA}, NIC)
    return system_from_graph("two-level", graph, A100, params)


def run_alone(system, algorithm, group=None, nbytes=8e6, kind="allreduce"):
    env = simpy.Environment()
    net = Network(env, system)
    collective = make_collective(
        net, kind, group or system.devices, nbytes, system.collective, Trace(enabled=False), algorithm=algorithm
    )
    process = env.process(collective.run())
    env.run()
    return process.value


@pytest.mark.parametrize("nodes, per_node", [(2, 4), (3, 4), (2, 3), (4, 2)])
@pytest.mark.parametrize("nbytes", [1e4, 8e6 + 3])
def test_hierarchical_allreduce_matches_closed_form(nodes, per_node, nbytes):
    system = two_level(nodes, per_node)
    result = run_alone(system, "hierarchical", nbytes=nbytes)
    assert result.algorithm == "hierarchical"
    expected = hierarchical_time_s(
        per_node,
        nodes,
        nbytes,
        intra_bandwidth_bytes_per_s=INTRA.bandwidth_bytes_per_s * PARAMS.bandwidth_efficiency,
        intra_alpha_s=INTRA.latency_s + PARAMS.step_latency_s,
        inter_bandwidth_bytes_per_s=NIC.bandwidth_bytes_per_s * PARAMS.inter_node_bandwidth_efficiency,
        inter_alpha_s=2 * NIC.latency_s + PARAMS.inter_node_step_latency_s,
        launch_latency_s=PARAMS.launch_latency_s,
        inter_hops=2,  # device -> leaf -> device, store and forward
    )
    assert result.latency_s == pytest.approx(expected, rel=1e-9)
    # Bytes each rank sent: (G-1)/G S twice inside, 2(M-1)/M S/G across.
    sent = 2 * (per_node - 1) / per_node * nbytes + 2 * (nodes - 1) / nodes * nbytes / per_node
    assert result.bytes_sent_per_rank == pytest.approx(sent)


def test_hierarchical_beats_ring_when_the_network_is_slow():
    system = two_level(2, 4)
    ring = run_alone(system, "ring", nbytes=64e6)
    hier = run_alone(system, "hierarchical", nbytes=64e6)
    assert ring.algorithm == "ring" and hier.algorithm == "hierarchical"
    assert hier.latency_s < ring.latency_s


@pytest.mark.parametrize("kind", ["reducescatter", "allgather"])
def test_hierarchical_other_kinds_move_the_right_bytes(kind):
    system = two_level(2, 4)
    result = run_alone(system, "hierarchical", kind=kind, nbytes=8e6)
    assert result.algorithm == "hierarchical"
    # (G-1)/G S inside, (M-1)/M S/G across: 3/4 * 8e6 + 1/2 * 2e6.
    assert result.bytes_sent_per_rank == pytest.approx(6e6 + 1e6)


def test_hierarchical_falls_back_to_the_ring_it_equals():
    system = two_level(2, 4)
    one_machine = run_alone(system, "hierarchical", group=("gpu0", "gpu1", "gpu2", "gpu3"))
    one_per_machine = run_alone(system, "hierarchical", group=("gpu0", "gpu4"))
    assert one_machine.algorithm == "ring" and one_per_machine.algorithm == "ring"


def test_uneven_machines_are_rejected():
    system = two_level(2, 4)
    net = Network(simpy.Environment(), system)
    with pytest.raises(DesError, match="same number of ranks on every machine"):
        HierarchicalCollective(net, "allreduce", ("gpu0", "gpu1", "gpu4"), 1e6, PARAMS, Trace())


def test_auto_picks_the_faster_and_remembers():
    system = two_level(2, 4)
    for nbytes in (1e3, 64e6):
        ring = run_alone(system, "ring", nbytes=nbytes).latency_s
        hier = run_alone(system, "hierarchical", nbytes=nbytes).latency_s
        auto = run_alone(system, "auto", nbytes=nbytes)
        assert auto.latency_s == pytest.approx(min(ring, hier), rel=1e-12)
        assert auto.algorithm == ("hierarchical" if hier < ring else "ring")
    net = Network(simpy.Environment(), system)
    first = choose_algorithm(net, "allreduce", system.devices, 64e6, PARAMS)
    assert choose_algorithm(net, "allreduce", system.devices, 64e6, PARAMS) == first == "hierarchical"


def test_engine_dispatches_by_the_system_algorithm():
    system = two_level(2, 4, dataclasses.replace(PARAMS, algorithm="hierarchical"))
    graph = TaskGraph()
    graph.add(CollectiveTask("ar", "allreduce", system.devices, 4e6))
    result = Engine(system).run(graph)
    assert result.collectives["ar"].algorithm == "hierarchical"
    phases = {span.name for span in result.trace if span.category == "collective"}
    assert {"ar intra rs", "ar inter ar", "ar intra ag", "ar launch"} <= phases
    assert simulate_collective(system, "allreduce", system.devices, 4e6, algorithm="ring").algorithm == "ring"


def test_unknown_algorithm_is_an_error(tmp_path, capsys):
    with pytest.raises(DesError, match="unknown collective algorithm 'tree'; allowed: ring, hierarchical, auto"):
        CollectiveParams(algorithm="tree")
    net = Network(simpy.Environment(), two_level(2, 2))
    with pytest.raises(DesError, match="unknown collective algorithm 'tree'"):
        make_collective(net, "allreduce", ("gpu0", "gpu2"), 1e6, PARAMS, Trace(), algorithm="tree")
    path = tmp_path / "algo.yaml"
    path.write_text(
        "name: algo\ndevice: a100\n"
        "topology: {builder: switch, devices: 4, link: {bandwidth_bytes_per_s: 100 GB/s}}\n"
        "collective: {algorithm: tree}\n"
    )
    with pytest.raises(DesError, match=r"algo\.yaml: collective: field 'algorithm' is 'tree'; allowed: ring"):
        load_system(str(path))
    assert main(["collective", "allreduce", "--system", str(path)]) == 2
    assert "algorithm" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["collective", "allreduce", "--algorithm", "bogus"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize("algorithm", ["ring", "hierarchical", "auto"])
def test_cli_reports_the_algorithm(algorithm, capsys):
    code = main(
        [
            "collective", "allreduce", "--system", "2x-dgx-a100", "--ranks", "4", "--ranks-per-node", "2",
            "--bytes", "4MiB", "--algorithm", algorithm, "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["devices"] == ["gpu0", "gpu1", "gpu8", "gpu9"]
    assert out["algorithm"] in (("ring", "hierarchical") if algorithm == "auto" else (algorithm,))


def test_inter_node_parameters_apply_only_between_machines():
    system = load_system("2x-dgx-a100")
    inside = simulate_collective(system, "allreduce", ("gpu0", "gpu1"), 64 * 2**20, Trace(enabled=False))
    dgx = load_system("dgx-a100")
    alone = simulate_collective(dgx, "allreduce", ("gpu0", "gpu1"), 64 * 2**20, Trace(enabled=False))
    assert inside.latency_s == pytest.approx(alone.latency_s, rel=1e-12)
    across = simulate_collective(system, "allreduce", ("gpu0", "gpu8"), 64 * 2**20, Trace(enabled=False))
    assert across.latency_s > 10 * inside.latency_s
