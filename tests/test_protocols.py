"""Per-protocol collectives (LL, LL128, Simple): choice, backward compatibility, closed form."""

from __future__ import annotations

import dataclasses

import pytest
import simpy

from des.collectives import RingCollective, choose_protocol, pipelined_ring_time_s, ring_time_s
from des.engine import simulate_collective
from des.errors import DesError
from des.hardware.network import Network
from des.specs import CollectiveParams, ProtocolParams, collective_from_mapping
from des.trace import Trace
from topologies import load_device, load_system, ring, system_from_graph
from topologies.edgelist import system_to_yaml

A100 = load_device("a100")


def run_alone(system, nbytes, kind="allreduce"):
    return simulate_collective(system, kind, system.select_ranks(len(system.devices)), nbytes, Trace(enabled=False))


def test_hgx_picks_ll_for_tiny_and_simple_for_huge_messages():
    system = load_system("hgx-a100-4")
    assert system.collective.library == "nccl"
    assert run_alone(system, 8).protocol == "ll"
    assert run_alone(system, 1 << 30).protocol == "simple"


def test_protocol_less_yaml_behaves_as_before():
    system = load_system("hgx-a100-4")
    plain = dataclasses.replace(system, collective=CollectiveParams(launch_latency_s=9e-6, bandwidth_efficiency=0.73))
    for nbytes in (8, 1 << 20, 1 << 28):
        result = run_alone(plain, nbytes)
        assert result.protocol is None
        # The single-protocol fields are what ran: the same as a system built from them.
        same = system_from_graph("x", system.graph, A100, plain.collective)
        assert result.latency_s == pytest.approx(run_alone(same, nbytes).latency_s, rel=1e-12)
    # And the protocol-less mapping reads back to the same parameters.
    params = collective_from_mapping({"launch_latency_s": "9 us", "bandwidth_efficiency": 0.73}, "test")
    assert params.protocols == ()


def two_protocols(chunk=float("inf")) -> CollectiveParams:
    return CollectiveParams(
        channels=1,
        protocols=(
            ("ll", ProtocolParams(5e-6, 0.0, 0.25, chunk)),
            ("simple", ProtocolParams(8e-6, 3e-6, 0.8, chunk)),
        ),
    )


@pytest.mark.parametrize("nbytes", [1024.0, 1e5, 1e6, 3e7 + 7])
@pytest.mark.parametrize("kind", ["allreduce", "allgather", "reducescatter"])
def test_chosen_protocol_runs_at_its_closed_form_on_an_idle_ring(kind, nbytes):
    from des.specs import LinkSpec

    link = LinkSpec(100e9, 1e-6)
    params = two_protocols()
    system = system_from_graph("test", ring(4, link), A100, params)
    env = simpy.Environment()
    coll = RingCollective(Network(env, system), kind, system.devices, nbytes, params, Trace(enabled=False))
    process = env.process(coll.run())
    env.run()
    result = process.value
    name, predicted = choose_protocol(params, kind, 4, nbytes, link.bandwidth_bytes_per_s, link.latency_s)
    assert result.protocol == name
    single = params.for_protocol(name)
    expected = ring_time_s(
        kind, 4, nbytes, link.bandwidth_bytes_per_s * single.bandwidth_efficiency,
        link.latency_s + single.step_latency_s, single.launch_latency_s,
    )
    assert result.latency_s == pytest.approx(expected, rel=1e-9)
    assert predicted == pytest.approx(expected, rel=1e-9)
    # The other protocol would have been no faster.
    for other in params.protocol_names():
        alt = params.for_protocol(other)
        other_s = pipelined_ring_time_s(
            kind, 4, nbytes, 100e9 * alt.bandwidth_efficiency, 1e-6 + alt.step_latency_s, alt.launch_latency_s
        )
        assert expected <= other_s * (1 + 1e-9)


def test_protocols_switch_from_ll_to_simple_as_messages_grow():
    params = two_protocols()
    assert choose_protocol(params, "allreduce", 4, 64, 100e9, 1e-6)[0] == "ll"
    assert choose_protocol(params, "allreduce", 4, 1e8, 100e9, 1e-6)[0] == "simple"


def test_hierarchical_phases_pick_their_own_protocol_and_report_them():
    system = load_system("2x-dgx-a100")
    group = system.select_ranks(4, 2)
    result = simulate_collective(system, "allreduce", group, 64 << 20, Trace(enabled=False), algorithm="hierarchical")
    assert result.algorithm == "hierarchical"
    assert result.library == "nccl" and result.protocol in {"ll", "ll128", "simple"}
    # The fixed library's protocols: each phase picks its own and the result joins them.
    fixed = dataclasses.replace(system, collective=two_protocols(256 * 1024))
    result = simulate_collective(fixed, "allreduce", group, 64 << 20, Trace(enabled=False), algorithm="hierarchical")
    phases = result.protocol.split("+")
    assert len(phases) == 3 and set(phases) <= {"ll", "simple"}


def test_protocol_yaml_errors_name_the_field():
    with pytest.raises(DesError, match="unknown protocol 'll129'"):
        collective_from_mapping({"protocols": {"ll129": {}}}, "x.yaml: collective")
    with pytest.raises(DesError, match="missing field 'bandwidth_efficiency'"):
        collective_from_mapping(
            {"protocols": {"ll": {"launch_latency_s": "6 us", "step_latency_s": 0}}}, "x.yaml: collective"
        )


def test_protocols_round_trip_through_an_edge_list(tmp_path):
    system = load_system("2x-dgx-h100")
    path = tmp_path / "s.yaml"
    path.write_text(system_to_yaml(system))
    assert load_system(str(path)).collective == system.collective
