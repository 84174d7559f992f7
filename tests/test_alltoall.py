"""All-to-all and point-to-point sends (des.collectives.alltoall) against closed forms."""

from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from des.collectives.alltoall import AllToAll, direct_time_s, pairwise_time_s, uniform_matrix
from des.engine import Engine
from des.errors import DesError
from des.hardware.network import Network
from des.spans import Trace
from des.specs import CollectiveParams, LinkSpec
from des.taskgraph import CollectiveTask, TaskGraph
from topologies import load_device, switch, system_from_graph

A100 = load_device("a100")
BANDWIDTH, LATENCY = 100e9, 1e-6
PARAMS = CollectiveParams(launch_latency_s=3e-6, step_latency_s=0.0, bandwidth_efficiency=0.9,
                          chunk_bytes=float("inf"), compute_units=8, channels=8)


def ideal_switch(ranks):
    return system_from_graph("ideal", switch(ranks, LinkSpec(BANDWIDTH, LATENCY)), A100, PARAMS)


def run_alltoall(ranks, matrix, algorithm="direct", params=PARAMS):
    system = ideal_switch(ranks)
    env = simpy.Environment()
    network = Network(env, system)
    trace = Trace()
    total = sum(map(sum, matrix))
    collective = AllToAll(network, "alltoall", system.devices, total, params, trace, matrix=matrix, algorithm=algorithm)
    process = env.process(collective.run())
    env.run()
    return process.value, trace


@pytest.mark.parametrize("pieces", [1, 20])
@pytest.mark.parametrize("ranks", [2, 4, 8])
def test_direct_uniform_alltoall_meets_its_closed_form(ranks, pieces):
    import dataclasses

    matrix = uniform_matrix(ranks, 4e6)
    params = dataclasses.replace(PARAMS, chunk_bytes=4e6 / pieces)
    result, _ = run_alltoall(ranks, matrix, params=params)
    expected = direct_time_s(matrix, BANDWIDTH, 0.9, 3e-6, LATENCY, pieces)
    # Every rank's egress carries (n - 1) messages, its ingress as many.
    assert result.latency_s == pytest.approx(expected, rel=0.02)
    assert result.bytes_sent_per_rank == pytest.approx((ranks - 1) * 4e6)


@pytest.mark.parametrize("pieces", [1, 20])
@pytest.mark.parametrize("ranks", [2, 4, 8])
def test_pairwise_uniform_alltoall_meets_its_closed_form(ranks, pieces):
    import dataclasses

    params = dataclasses.replace(PARAMS, chunk_bytes=4e6 / pieces)
    result, _ = run_alltoall(ranks, uniform_matrix(ranks, 4e6), "pairwise", params=params)
    expected = pairwise_time_s(ranks, 4e6, BANDWIDTH, 0.9, 3e-6, LATENCY, pieces)
    assert result.latency_s == pytest.approx(expected, rel=0.02)


def test_each_rank_sends_exactly_its_share_to_each_peer():
    # A non-uniform matrix: the bytes each link carries are the matrix's entries.
    matrix = ((0, 1e6, 2e6, 3e6), (4e6, 0, 5e6, 0), (0, 6e6, 0, 7e6), (8e6, 0, 9e6, 0))
    system = ideal_switch(4)
    env = simpy.Environment()
    network = Network(env, system)
    collective = AllToAll(network, "alltoall", system.devices, sum(map(sum, matrix)), PARAMS, Trace(),
                          matrix=matrix, algorithm="direct")
    env.process(collective.run())
    env.run()
    carried = {key: link.bytes_sent for key, link in network.links.items()}
    devices = system.devices
    for i, src in enumerate(devices):
        out = sum(matrix[i][j] for j in range(4) if j != i)
        into = sum(matrix[j][i] for j in range(4) if j != i)
        assert carried[(src, "nvswitch")] == pytest.approx(out)
        assert carried[("nvswitch", src)] == pytest.approx(into)


@settings(max_examples=25, deadline=None)
@given(ranks=st.sampled_from([2, 4, 8]), skew=st.floats(0.1, 3.0), seed=st.integers(0, 1000))
def test_a_skewed_load_is_never_faster_than_a_balanced_one(ranks, skew, seed):
    # The same total bytes, one rank's share grown at the others' expense.
    import random

    rng = random.Random(seed)
    total_per_rank = 8e6
    hot = rng.randrange(ranks)
    weights = [1.0 + (skew if j == hot else 0.0) for j in range(ranks)]
    skewed = tuple(tuple(total_per_rank * w / sum(weights) for w in weights) for _ in range(ranks))
    balanced = uniform_matrix(ranks, total_per_rank / ranks)
    for algorithm in ("direct", "pairwise"):
        fast, _ = run_alltoall(ranks, balanced, algorithm)
        slow, _ = run_alltoall(ranks, skewed, algorithm)
        assert slow.latency_s >= fast.latency_s * (1 - 1e-9)


def test_a_send_is_one_message_over_the_route():
    system = ideal_switch(2)
    graph = TaskGraph()
    graph.add(CollectiveTask("p2p", "send", tuple(system.devices), 8e6))
    result = Engine(system, comm_library="fixed").run(graph)
    expected = PARAMS.launch_latency_s + 2 * 8e6 / (0.9 * BANDWIDTH) + 2 * LATENCY  # stored and forwarded
    assert result.collectives["p2p"].latency_s == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("matrix, message", [
    (((0, 1), (1, 0), (1, 1)), "2 x 2 matrix"),
    (((0, -1), (3, 0)), "finite and zero or more"),
    (((5, 0), (0, 5)), "between two different ranks"),
])
def test_a_bad_matrix_is_one_clear_error(matrix, message):
    with pytest.raises(DesError, match=message):
        run_alltoall(2, matrix)
