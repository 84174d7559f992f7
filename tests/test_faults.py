"""Faults and degradation: parsing, the reduced system, collectives that route around a
lost link (before the run and mid-collective), runs that a fault breaks (a clear error,
never a hang, never a latency), and the ``--fail``/``--degrade`` command-line contract.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import simpy
from helpers import call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from des.engine import simulate_collective
from des.errors import DesError
from des.faults import FaultError, apply_faults, parse_degrade, parse_fault, parse_faults
from des.hardware import Network, send
from des.specs import CollectiveParams, LinkSpec
from des.study import PointSpec, run_point
from des.trace import Trace
from topologies import load_device, load_system, ring, system_from_graph

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024**2
HGX = load_system("hgx-a100-4")
DGX = load_system("dgx-a100")
GROUP4 = ("gpu0", "gpu1", "gpu2", "gpu3")
SIZE = 16 * MIB


def allreduce(system, faults=(), trace=None, group=GROUP4, nbytes=SIZE):
    return simulate_collective(system, "allreduce", group, nbytes, trace, faults=faults)


# --------------------------------------------------------------------------- parsing


def test_link_named_either_way_round_and_with_a_time():
    fault = parse_fault("gpu1-gpu0@150us", HGX)
    assert (fault.action, fault.target, fault.endpoints, fault.is_link) == ("fail", "gpu0-gpu1", ("gpu1", "gpu0"), True)
    assert fault.at_s == pytest.approx(150e-6)
    assert parse_fault("gpu2-gpu3@0.001", HGX).at_s == 0.001
    node = parse_fault("nvswitch", DGX)
    assert (node.target, node.is_link, node.at_s) == ("nvswitch", False, None)


def test_degrade_factor_and_time():
    fault = parse_degrade("gpu1-nvswitch=0.25@2ms", DGX)
    assert (fault.action, fault.target, fault.factor, fault.at_s) == ("degrade", "gpu1-nvswitch", 0.25, 0.002)
    assert parse_degrade("gpu0-gpu1=4", HGX).factor == 4.0  # an upgrade is allowed
    assert fault.as_dict() == {
        "action": "degrade", "target": "gpu1-nvswitch", "kind": "link", "at_s": 0.002, "factor": 0.25,
        "spec": "gpu1-nvswitch=0.25@2ms",
    }


def test_node_names_with_dashes_resolve():
    system = load_system("2x-dgx-a100")
    assert parse_fault("gpu3-n0.nvswitch", system).endpoints == ("gpu3", "n0.nvswitch")


def test_unknown_name_lists_close_matches():
    with pytest.raises(DesError, match=r"--fail gpu0-gpu4: .*no link or node named 'gpu0-gpu4'; close matches: gpu0-gpu3"):
        parse_fault("gpu0-gpu4", HGX)
    with pytest.raises(DesError, match="close matches: nvswitch"):
        parse_fault("nvswich", DGX)


def test_two_nodes_without_a_link_between_them():
    with pytest.raises(DesError, match="no link between gpu0 and gpu1; links of gpu0: gpu0-nvswitch"):
        parse_fault("gpu0-gpu1", DGX)


@pytest.mark.parametrize(
    "text, message",
    [
        ("gpu0-gpu1=0", "factor must be a positive number"),
        ("gpu0-gpu1=-2", "factor must be a positive number"),
        ("gpu0-gpu1=fast", "is not a number"),
        ("gpu0-gpu1", "expected LINK=FACTOR"),
        ("gpu0-gpu1=0.5@soon", "bad time"),
        ("gpu0-gpu1=0.5@5 GB", "bad time"),
    ],
)
def test_bad_degrade_values(text, message):
    with pytest.raises(DesError, match=message):
        parse_degrade(text, HGX)


def test_negative_time():
    with pytest.raises(DesError, match="zero or positive"):
        parse_fault("gpu0-gpu1@-1", HGX)


# --------------------------------------------------------------------------- before the run


def test_apply_faults_changes_a_copy():
    faults = parse_faults(DGX, ["gpu7"], ["gpu0-nvswitch=0.5"])
    reduced = apply_faults(DGX, faults)
    assert "gpu7" not in reduced.graph and "gpu7" in DGX.graph
    assert reduced.devices == DGX.devices[:7]
    bandwidth = DGX.graph.edges["gpu0", "nvswitch"]["bandwidth_bytes_per_s"]
    assert reduced.graph.edges["gpu0", "nvswitch"]["bandwidth_bytes_per_s"] == bandwidth / 2
    assert DGX.graph.edges["gpu0", "nvswitch"]["bandwidth_bytes_per_s"] == bandwidth


def test_lost_ring_link_reforms_the_rings_and_is_slower():
    base = allreduce(HGX)
    faulted = allreduce(HGX, parse_faults(HGX, ["gpu0-gpu1"]))
    assert faulted.latency_s > 1.2 * base.latency_s
    for order in faulted.rings:
        pairs = {frozenset((order[i], order[(i + 1) % 4])) for i in range(4)}
        assert frozenset(("gpu0", "gpu1")) not in pairs, "the re-formed rings avoid the lost link"
    assert len(faulted.rings) < len(base.rings)


def test_ring_without_a_hamiltonian_cycle_uses_a_detour():
    # A 4-device ring less one link is a path: no ring of direct links is left, so the
    # one ring runs in rank order and the hop between the path's ends goes the long way
    # round (three hops), where the two rings (both directions) ran before.
    params = CollectiveParams(chunk_bytes=MIB, channels=0)
    system = system_from_graph("ring4", ring(4, LinkSpec(50e9, 1e-6)), load_device("a100"), params)
    base = allreduce(system)
    trace = Trace(links=True)
    faulted = allreduce(system, parse_faults(system, ["gpu3-gpu0"]), trace)
    assert (len(base.rings), faulted.rings) == (2, (GROUP4,))
    assert faulted.latency_s > 1.5 * base.latency_s
    assert [s for s in trace if (s.device, s.resource) == ("gpu1", "->gpu0")], "the detour runs back along the path"
    assert not [s for s in trace if s.category == "link" and (s.device, s.resource) in (("gpu3", "->gpu0"), ("gpu0", "->gpu3"))]


def test_unused_failed_device_does_not_matter():
    faults = parse_faults(DGX, ["gpu7"])
    assert allreduce(DGX, faults).latency_s == pytest.approx(allreduce(DGX).latency_s)


def test_failed_device_in_the_group_is_named():
    with pytest.raises(FaultError, match="--fail gpu2: device gpu2 has failed but task 'allreduce' runs on it"):
        allreduce(DGX, parse_faults(DGX, ["gpu2"]))


def test_device_cut_off_names_the_links():
    faults = parse_faults(HGX, ["gpu0-gpu1", "gpu0-gpu2", "gpu0-gpu3"])
    with pytest.raises(FaultError, match=r"gpu0 is cut off from gpu1, gpu2, gpu3 \(broken links: gpu0-gpu1, gpu0-gpu2, gpu0-gpu3\)"):
        allreduce(HGX, faults)
    with pytest.raises(FaultError, match=r"gpu1 is cut off from gpu0, gpu2, gpu3 \(broken link: gpu1-nvswitch\)"):
        allreduce(DGX, parse_faults(DGX, ["gpu1-nvswitch"]))


def test_failed_switch_cuts_the_machines_apart():
    system = load_system("2x-dgx-a100")
    group = system.select_ranks(4, 2)
    with pytest.raises(FaultError, match="gpu0, gpu1 are cut off from gpu8, gpu9 .*gpu0-leaf0"):
        allreduce(system, parse_faults(system, ["leaf0"]), group=group)


def test_degraded_link_slows_the_collective():
    base = allreduce(DGX)
    slow = allreduce(DGX, parse_faults(DGX, (), ["gpu1-nvswitch=0.5"]))
    fast = allreduce(DGX, parse_faults(DGX, (), ["nvswitch=2"]))
    assert slow.latency_s > 1.5 * base.latency_s
    assert fast.latency_s < base.latency_s


# --------------------------------------------------------------------------- during the run


def test_link_lost_mid_collective_completes_slower():
    base = allreduce(HGX)
    at_s = base.latency_s / 3
    trace = Trace(links=True)
    faulted = allreduce(HGX, parse_faults(HGX, [f"gpu0-gpu1@{at_s}"]), trace)
    before_run = allreduce(HGX, parse_faults(HGX, ["gpu0-gpu1"]))
    assert faulted.latency_s > 1.1 * base.latency_s
    assert faulted.rings == base.rings, "rings are not re-formed mid-run; their hops detour"
    # Chunks queued on the lost link before it failed still cross it; none after.
    lost = [s for s in trace if (s.device, s.resource) in (("gpu0", "->gpu1"), ("gpu1", "->gpu0"))]
    assert lost and max(s.end_s for s in lost) < at_s + base.latency_s / 10
    assert before_run.latency_s > base.latency_s


def test_fault_after_the_work_is_not_applied():
    base = allreduce(HGX)
    faults = parse_faults(HGX, [f"gpu0-gpu1@{2 * base.latency_s}"])
    graph_result = allreduce(HGX, faults)
    assert graph_result.latency_s == base.latency_s


def test_degrade_mid_collective():
    base = allreduce(DGX)
    half = allreduce(DGX, parse_faults(DGX, (), ["gpu1-nvswitch=0.5"]))
    mid = allreduce(DGX, parse_faults(DGX, (), [f"gpu1-nvswitch=0.5@{base.latency_s / 2}"]))
    assert base.latency_s < mid.latency_s < half.latency_s


def test_cut_off_mid_collective_names_link_and_task():
    base = allreduce(DGX)
    with pytest.raises(FaultError, match=r"at .*--fail gpu1-nvswitch@.*: gpu1 is cut off .*broken link: gpu1-nvswitch.*1 task \('allreduce'\) could not finish"):
        allreduce(DGX, parse_faults(DGX, [f"gpu1-nvswitch@{base.latency_s / 2}"]))


def test_device_failing_mid_run_stops_the_run():
    base = allreduce(HGX)
    with pytest.raises(FaultError, match="device gpu3 has failed; 1 task \\('allreduce'\\) could not finish"):
        allreduce(HGX, parse_faults(HGX, [f"gpu3@{base.latency_s / 2}"]))


def test_chunk_detours_at_the_hop_whose_link_went_down():
    # Four devices on a ring of 1000 B/s links with 0.5 s latency: a 1000-byte chunk from
    # gpu0 to gpu2 goes gpu0 -> gpu1 -> gpu2. gpu1-gpu2 fails while the chunk is on its
    # first hop, so at gpu1 it turns back: gpu1 -> gpu0 -> gpu3 -> gpu2.
    system = system_from_graph("ring4", ring(4, LinkSpec(1000.0, 0.5)), load_device("a100"), CollectiveParams())
    env = simpy.Environment()
    network = Network(env, system)
    route = network.route("gpu0", "gpu2")
    assert [link.name for link in route] == ["gpu0->gpu1", "gpu1->gpu2"]
    log = []
    send(env, route, 1000, lambda _e: log.append(("arrived", env.now)), reroute=network.route)
    env.run(until=0.25)
    network.fail_link("gpu1", "gpu2")
    env.run()
    assert log == [("arrived", 1.5 + 3 * 1.5)]
    assert network.links[("gpu1", "gpu2")].bytes_sent == 0


def test_chunk_with_nowhere_to_go_raises():
    system = system_from_graph("ring4", ring(4, LinkSpec(1000.0, 0.5)), load_device("a100"), CollectiveParams())
    env = simpy.Environment()
    network = Network(env, system)
    send(env, network.route("gpu0", "gpu1"), 1000, lambda _e: None)
    network.fail_link("gpu0", "gpu1")
    with pytest.raises(DesError, match="link gpu0-gpu1 is down"):
        send(env, network.route("gpu0", "gpu3")[:0] + (network.links[("gpu0", "gpu1")],), 1000, lambda _e: None)


# --------------------------------------------------------------------------- never hangs

# The fault machinery under a fixed ring (the fixed library): NCCL would re-plan a
# degraded topology with other channels and protocols, which is not what this checks.
TORUS = dataclasses.replace(
    load_system("hgx-a100-4"),
    collective=CollectiveParams(launch_latency_s=9e-6, step_latency_s=0.5e-6, bandwidth_efficiency=0.73,
                                chunk_bytes=256 * 1024, channels=0),
)
EDGES = sorted(f"{u}-{v}" for u, v in TORUS.graph.edges)
BASE_S = allreduce(TORUS, nbytes=4 * MIB).latency_s


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(EDGES), st.one_of(st.none(), st.floats(0.0, 2.0))),
        min_size=1, max_size=4, unique_by=lambda pair: pair[0],
    )
)
def test_faulted_run_completes_no_faster_or_raises(faults):
    texts = [edge if at is None else f"{edge}@{at * BASE_S}" for edge, at in faults]
    start = time.perf_counter()
    try:
        latency_s = allreduce(TORUS, parse_faults(TORUS, texts), nbytes=4 * MIB).latency_s
    except DesError as exc:
        assert "cut off" in str(exc) or "could not finish" in str(exc)
    else:
        assert latency_s >= BASE_S * (1 - 1e-9)
    assert time.perf_counter() - start < 10.0


# --------------------------------------------------------------------------- command line


def test_collective_cli_reports_faults(capsys):
    code, out, err = call(capsys, "collective", "allreduce", "--system", "hgx-a100-4", "--bytes", "16MiB", "--json")
    assert code == 0, err
    base = json.loads(out)
    code, out, err = call(
        capsys, "collective", "allreduce", "--system", "hgx-a100-4", "--bytes", "16MiB", "--json",
        "--fail", "gpu0-gpu1", "--degrade", "gpu2-gpu3=0.5@10us",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["latency_s"] > base["latency_s"] and base["faults"] == []
    assert [(f["action"], f["target"], f["at_s"]) for f in result["faults"]] == [
        ("fail", "gpu0-gpu1", None), ("degrade", "gpu2-gpu3", pytest.approx(10e-6)),
    ]
    code, out, err = call(capsys, "collective", "allreduce", "--system", "hgx-a100-4", "--fail", "gpu0-gpu1@10us")
    assert code == 0 and "fault     gpu0-gpu1 fails at 10 us" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--system", "hgx-a100-4", "--fail", "gpu0-gpu1", "--fail", "gpu0-gpu2", "--fail", "gpu0-gpu3"], "broken links: gpu0-gpu1, gpu0-gpu2, gpu0-gpu3"),
        (["--system", "dgx-a100", "--fail", "gpu1-nvswitch@20us"], "broken link: gpu1-nvswitch"),
        (["--system", "dgx-a100", "--fail", "gpu9"], "close matches: gpu7"),
        (["--system", "dgx-a100", "--ranks", "4", "--fail", "gpu2"], "device gpu2 has failed"),
    ],
)
def test_collective_cli_errors_are_one_line(capsys, argv, message):
    code, out, err = call(capsys, "collective", "allreduce", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("des: error: ") and message in err


def test_cut_off_via_the_console_script_has_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "des", "collective", "allreduce", "--system", "dgx-a100", "--fail", "nvswitch"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "(broken link: gpu0-nvswitch; failed node: nvswitch)" in result.stderr


MODEL_RUN = ("run", "--system", "hgx-a100-4", "--model", "gpt3-1.3b", "--arch", "standard", "--tp", "4", "--seq", "512", "--layers", "2", "--json")


def test_model_run_with_a_failed_link_is_slower(capsys):
    code, out, err = call(capsys, *MODEL_RUN)
    assert code == 0, err
    base = json.loads(out)
    code, out, err = call(capsys, *MODEL_RUN, "--fail", "gpu0-gpu1")
    assert code == 0, err
    faulted = json.loads(out)
    assert faulted["latency_s"] > base["latency_s"]
    assert faulted["breakdown_s"]["exposed_allreduce"] > base["breakdown_s"]["exposed_allreduce"]
    assert faulted["faults"] == [
        {"action": "fail", "target": "gpu0-gpu1", "kind": "link", "at_s": None, "factor": 1.0, "spec": "gpu0-gpu1", "applied": True}
    ]
    mid = json.loads(call(capsys, *MODEL_RUN, "--fail", f"gpu0-gpu1@{base['latency_s'] / 2}")[1])
    assert base["latency_s"] < mid["latency_s"] and mid["faults"][0]["applied"]


def test_model_run_on_a_failed_device_stops_before_running(capsys):
    code, out, err = call(capsys, *MODEL_RUN, "--fail", "gpu3")
    assert code == 2 and out == ""
    assert "device gpu3 has failed but the run (devices gpu0, gpu1, gpu2, gpu3) runs on it" in err


def test_point_spec_takes_faults_and_a_built_system():
    spec = PointSpec(system=HGX, model="gpt3-1.3b", arch="kraken", tp=4, seq=128, layers=1, degrade=("gpu0-gpu1=0.5",))
    point = run_point(spec)
    assert point.record["system"] == "hgx-a100-4"
    assert point.record["faults"][0]["factor"] == 0.5
