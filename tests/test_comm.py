"""The communication-library layer: NCCL's choice, the engines' kernels, physical bounds."""

from __future__ import annotations

import dataclasses

import pytest
import simpy

from des.collectives.peer import oneshot_time_s, twoshot_time_s
from des.comm import plan_call
from des.comm.engines import trtllm_choice, vllm_choice
from des.comm.facts import group_facts
from des.comm.nccl import nccl_graph, runtime_channels
from des.engine import simulate_collective
from des.hardware.network import Network
from des.spans import Trace
from des.specs import CollectiveParams, LinkSpec
from topologies import load_device, load_system, switch, system_from_graph

A100 = load_device("a100")


def facts_of(system, ranks=None, per_node=None):
    return group_facts(system.graph, system.select_ranks(ranks, per_node), system.collective.nvls)


def plan(system, nbytes, ranks=None, per_node=None, library=None):
    network = Network(simpy.Environment(), system)
    return plan_call(network, "allreduce", system.select_ranks(ranks, per_node), nbytes, system.collective, library)


def test_nccl_graph_of_a_dgx_a100():
    # 12 NVLink3 links x 20 GB/s (NCCL's SM80 figure) = 240 GB/s: 6 channels of 40 GB/s,
    # duplicated to 12 of 20 (>= 25 GB/s each), and 24 at run time.
    graph = nccl_graph(facts_of(load_system("dgx-a100")))
    assert (graph.channels, graph.bw_intra_gbps, graph.runtime_channels) == (12, 20.0, 24)


@pytest.mark.parametrize(
    "nbytes, protocol, threshold",
    # enqueue.cc: channels drop while bytes < channels x threads x threshold; ring LL's
    # threshold is 8 B x ranks, LL128's 8 B (640 threads), Simple's 64 B (512 threads).
    [(16 * 1024, "ll", 8 * 8 * 512), (60 * 1024, "ll128", 8 * 640), (300 * 1024, "simple", 64 * 512)],
)
def test_channel_cut_follows_the_thread_threshold(nbytes, protocol, threshold):
    facts = facts_of(load_system("dgx-a100"))
    graph = nccl_graph(facts)
    channels, _threads = runtime_channels(facts, "ring", protocol, nbytes, graph)
    expected = 24
    while nbytes < expected * threshold and expected >= 2:
        expected -= 1
    assert channels == expected
    assert channels < 24


def test_protocol_goes_ll_then_ll128_then_simple_as_messages_grow():
    system = load_system("dgx-a100")
    chosen = [plan(system, nbytes, 4).protocol for nbytes in (4096, 2 << 20, 256 << 20)]
    assert chosen == ["ll", "ll128", "simple"]
    # Hand-worked from NCCL's model at 4 ranks, 12 channels x 20 GB/s: LL 10.2 us +
    # S / 40 GB/s, LL128 25.4 us + S / 147.2 GB/s, Simple 28.8 us + S / 160 GB/s:
    # LL128 overtakes LL near 0.83 MB, Simple overtakes LL128 near 6.3 MB.
    assert plan(system, 700_000, 4).protocol == "ll"
    assert plan(system, 1_000_000, 4).protocol == "ll128"
    assert plan(system, 5_500_000, 4).protocol == "ll128"
    assert plan(system, 7_000_000, 4).protocol == "simple"


def test_nvls_only_where_the_switch_reduces_and_tree_only_across_machines():
    h100 = load_system("dgx-h100")
    assert plan(h100, 64 << 20).algorithm == "nvls"
    assert plan(h100, 64 << 20, 2).algorithm == "ring"  # NVLS needs more than two GPUs
    plain = dataclasses.replace(h100, collective=dataclasses.replace(h100.collective, nvls=False))
    assert plan(plain, 64 << 20).algorithm == "ring"
    a100 = load_system("dgx-a100")
    assert {plan(a100, n).algorithm for n in (4096, 1 << 20, 1 << 28)} == {"ring"}
    two = load_system("2x-dgx-a100")
    assert plan(two, 64 << 10).algorithm == "tree"
    assert "nvls_tree" not in {plan(two, n).algorithm for n in (64 << 10, 1 << 20, 1 << 28)}


def test_nvls_tree_across_dgx_h100_machines_only_with_more_than_two_gpus_each():
    two = load_system("2x-dgx-h100")
    assert plan(two, 64 << 20).algorithm == "nvls_tree"
    assert plan(two, 64 << 20, 4, 2).algorithm != "nvls_tree"   # two GPUs per machine
    plain = dataclasses.replace(two, collective=dataclasses.replace(two.collective, nvls=False))
    assert plan(plain, 64 << 20).algorithm in ("ring", "tree")
    # Eight ranks in one machine of the pair reduce in that machine's NVSwitch, not in
    # the InfiniBand leaf every GPU is also joined to.
    from des.collectives.nvls import nvls_switch

    assert nvls_switch(two.graph, two.select_ranks(8)) == "n0.nvswitch"
    assert plan(two, 64 << 20, 8).algorithm == "nvls"


@pytest.mark.parametrize("ranks", [4, 8])
def test_nvls_is_bounded_by_its_thread_blocks(ranks):
    # Each rank's channels (one thread block each) drive its whole buffer into the
    # switch and its own shard's multicast store: S (1 + 1 / n) at channels x pace.
    system = load_system("dgx-h100")
    nbytes = 64 << 20
    chosen = plan(system, nbytes, ranks)
    assert chosen.algorithm == "nvls"
    blocks = chosen.params.channels * chosen.params.channel_bandwidth_bytes_per_s
    result = simulate_collective(system, "allreduce", system.select_ranks(ranks), nbytes, Trace(enabled=False))
    assert result.latency_s >= nbytes * (1 + 1 / ranks) / blocks
    # ... and no slower than those blocks plus the call's fixed latency and a piece's fill.
    fill = chosen.params.launch_latency_s + 4 * chosen.params.chunk_bytes / chosen.params.channel_bandwidth_bytes_per_s
    assert result.latency_s <= nbytes * (1 + 1 / ranks) / blocks + fill


@pytest.mark.parametrize("nbytes", [1 << 20, 64 << 20])
def test_nvls_tree_is_bounded_by_its_nics_and_ports(nbytes):
    system = load_system("2x-dgx-h100")
    group = system.select_ranks()
    result = simulate_collective(system, "allreduce", group, nbytes, Trace(enabled=False), algorithm="nvls_tree")
    assert (result.algorithm, result.protocol) == ("nvls_tree", "simple")
    graph = system.graph
    nic = graph.edges["gpu0", "leaf0"]["bandwidth_bytes_per_s"]
    port = graph.edges["gpu0", "n0.nvswitch"]["bandwidth_bytes_per_s"]
    local = 8
    # Each GPU's NIC carries its machine's sum of one shard (S / G) out and the total in;
    # each NVSwitch port carries S (1 + 1 / G) each way.
    assert result.latency_s >= (nbytes / local) / nic
    assert result.latency_s >= nbytes * (1 + 1 / local) / port


def test_trtllm_and_vllm_pick_their_kernels_by_size_and_ranks():
    facts8 = facts_of(load_system("dgx-a100"))
    facts4 = facts_of(load_system("dgx-a100"), 4)
    facts2 = facts_of(load_system("dgx-a100"), 2)
    assert [trtllm_choice(facts8, "allreduce", n) for n in (499_999, 500_000, 8_000_000, 8_000_001)] == [
        "oneshot", "twoshot", "twoshot", "nccl"]
    assert [trtllm_choice(facts4, "allreduce", n) for n in (999_999, 1_000_000)] == ["oneshot", "twoshot"]
    assert [trtllm_choice(facts2, "allreduce", n) for n in (15_000_000, 16_000_001)] == ["oneshot", "nccl"]
    assert trtllm_choice(facts8, "allgather", 1000) == "nccl"
    assert [vllm_choice(facts8, "allreduce", n) for n in (256 * 1024 - 16, 256 * 1024, 8 << 20)] == [
        "oneshot", "twoshot", "nccl"]
    system = load_system("dgx-a100")
    assert plan(system, 1 << 16, library="trtllm").algorithm == "oneshot"
    assert plan(system, 4 << 20, library="trtllm").algorithm == "twoshot"
    assert plan(system, 64 << 20, library="trtllm").algorithm == "ring"


def ideal_switch(ranks, bandwidth=100e9, latency=1e-6):
    return system_from_graph("ideal", switch(ranks, LinkSpec(bandwidth, latency)), A100, CollectiveParams())


@pytest.mark.parametrize("algorithm, closed_form", [("oneshot", oneshot_time_s), ("twoshot", twoshot_time_s)])
@pytest.mark.parametrize("ranks", [2, 4, 8])
def test_peer_all_reduce_meets_its_closed_form_on_an_ideal_switch(algorithm, closed_form, ranks):
    from des.collectives.peer import PeerAllReduce

    system = ideal_switch(ranks)
    env = simpy.Environment()
    network = Network(env, system)
    nbytes = 2e6
    pieces = 100
    share = nbytes if algorithm == "oneshot" else nbytes / ranks
    params = CollectiveParams(launch_latency_s=3e-6, step_latency_s=1e-6, bandwidth_efficiency=0.9,
                              chunk_bytes=share / pieces, compute_units=8, channels=8)
    collective = PeerAllReduce(network, "allreduce", system.devices, nbytes, params, Trace(), algorithm=algorithm)
    process = env.process(collective.run())
    env.run()
    expected = closed_form(ranks, nbytes, 100e9, 0.9, 3e-6, 1e-6, 1e-6, A100.dram_bandwidth_bytes_per_s, pieces)
    # DRAM (2 TB/s against 90 GB/s of port) stays off the critical path but for the copy.
    assert process.value.latency_s == pytest.approx(expected, rel=0.04)


@pytest.mark.parametrize("system_name, ranks", [("dgx-a100", 8), ("dgx-h100", 8), ("hgx-a100-4", 4), ("dgx-a100", 2)])
@pytest.mark.parametrize("library", ["nccl", "trtllm"])
def test_busbw_never_exceeds_the_links(system_name, ranks, library):
    system = load_system(system_name)
    group = system.select_ranks(ranks)
    port = sum(system.graph.edges[group[0], peer]["bandwidth_bytes_per_s"] for peer in system.graph.neighbors(group[0]))
    for nbytes in (1 << 16, 1 << 20, 16 << 20, 128 << 20):
        result = simulate_collective(system, "allreduce", group, nbytes, Trace(enabled=False), comm_library=library)
        # A rank's port carries at least 2(n-1)/n S (ring) each way; NVLS carries S(1 + 1/n)
        # each way for a reduction the switch does: busbw is bounded by 2(n-1)/n x port / (1 + 1/n).
        bound = port if result.algorithm != "nvls" else port * 2 * (ranks - 1) / ranks / (1 + 1 / ranks)
        assert result.busbw_bytes_per_s <= bound * (1 + 1e-9), (nbytes, result)


def test_more_channels_never_make_a_large_message_slower():
    system = load_system("dgx-a100")
    group = system.devices
    times = []
    for channels in (4, 8, 16, 24):
        base = plan(system, 256 << 20)
        params = dataclasses.replace(base.params, channels=channels, compute_units=channels)
        from des.collectives.ring import RingCollective

        env = simpy.Environment()
        network = Network(env, system)
        ring = RingCollective(network, "allreduce", group, 256 << 20, params, Trace(enabled=False))
        process = env.process(ring.run())
        env.run()
        times.append(process.value.latency_s)
    assert all(later <= earlier * (1 + 1e-9) for earlier, later in zip(times, times[1:], strict=False)), times


def test_the_plan_is_in_the_result_and_on_the_span():
    system = load_system("dgx-a100")
    trace = Trace()
    result = simulate_collective(system, "allreduce", system.devices, 1 << 20, trace)
    assert (result.library, result.algorithm, result.protocol) == ("nccl", "ring", plan(system, 1 << 20).protocol)
    spans = [s for s in trace if s.category == "collective" and s.resource == "comm"]
    assert spans and all(dict(s.args)["library"] == "nccl" and dict(s.args)["channels"] == result.channels for s in spans)
