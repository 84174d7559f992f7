"""Event-simulated ring collectives against their closed forms and structural properties.

Systems here use links far slower than DRAM, so DRAM traffic of the collective never
binds and the closed forms of :mod:`des.collectives.closed_form` apply exactly.
"""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from des.collectives import RingCollective, ring_bandwidth_bound_s, ring_time_s
from des.errors import DesError
from des.hardware import Network
from des.specs import CollectiveParams, LinkSpec
from des.trace import Trace
from topologies import fully_connected, load_device, ring, switch, system_from_graph

A100 = load_device("a100")
#: 100 GB/s per direction, 1 us per hop: about 20x slower than A100 DRAM.
LINK = LinkSpec(100e9, 1e-6)
STEP_LATENCY_S = 2e-6
LAUNCH_LATENCY_S = 5e-6
EFFICIENCY = 0.8
KINDS = ("allreduce", "allgather", "reducescatter")
BUILDERS = {"ring": ring, "switch": switch, "fully_connected": fully_connected}


def params(**changes) -> CollectiveParams:
    base = dict(
        launch_latency_s=LAUNCH_LATENCY_S,
        step_latency_s=STEP_LATENCY_S,
        bandwidth_efficiency=EFFICIENCY,
        channels=1,
    )
    base.update(changes)
    return CollectiveParams(**base)


def run_collective(graph, collective: CollectiveParams, kind="allreduce", nbytes=1e6, group=None):
    """Run one collective alone; return (result, network, trace)."""
    system = system_from_graph("test", graph, A100, collective)
    env = simpy.Environment()
    net = Network(env, system)
    trace = Trace()
    coll = RingCollective(net, kind, group or system.devices, nbytes, collective, trace)
    process = env.process(coll.run())
    env.run()
    return process.value, net, trace


def closed_form(kind, n, nbytes, collective: CollectiveParams, channels=1) -> float:
    alpha = LINK.latency_s + collective.step_latency_s
    bandwidth = LINK.bandwidth_bytes_per_s * collective.bandwidth_efficiency
    return ring_time_s(kind, n, nbytes, bandwidth, alpha, collective.launch_latency_s, channels)


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", range(2, 17))
def test_unchunked_ring_matches_closed_form(n, kind):
    collective = params()
    for nbytes in (1024.0, 1e6, 3e7 + 7):
        result, _net, _trace = run_collective(ring(n, LINK), collective, kind, nbytes)
        expected = closed_form(kind, n, nbytes, collective)
        assert result.latency_s == pytest.approx(expected, rel=1e-9), (n, kind, nbytes)
        assert result.pieces_per_step == 1


def test_closed_form_by_hand():
    # 4 ranks, 4 MB, 100 GB/s x 0.8, alpha = 3 us: 6 steps of (3 us + 12.5 us) + 5 us.
    collective = params()
    result, _net, _trace = run_collective(ring(4, LINK), collective, "allreduce", 4e6)
    assert result.latency_s == pytest.approx(5e-6 + 6 * (3e-6 + 12.5e-6), rel=1e-12)
    assert result.busbw_bytes_per_s == pytest.approx(result.algbw_bytes_per_s * 1.5)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=12),
    nbytes=st.floats(min_value=1e3, max_value=4e6),
    chunk=st.sampled_from([2048.0, 16384.0, 65536.0, 1e6]),
    kind=st.sampled_from(KINDS),
)
def test_pipelining_lies_between_bandwidth_bound_and_unchunked(n, nbytes, chunk, kind):
    collective = params(chunk_bytes=chunk, launch_latency_s=0.0)
    result, _net, _trace = run_collective(ring(n, LINK), collective, kind, nbytes)
    unchunked = closed_form(kind, n, nbytes, collective)
    bandwidth = LINK.bandwidth_bytes_per_s * EFFICIENCY
    bound = ring_bandwidth_bound_s(kind, n, nbytes, bandwidth)
    assert bound * (1 - 1e-9) <= result.latency_s <= unchunked * (1 + 1e-9)
    assert result.pieces_per_step == max(1, math.ceil(nbytes / n / chunk))


# --------------------------------------------------------------------------- properties


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=10),
    sizes=st.lists(st.floats(min_value=1.0, max_value=1e8), min_size=2, max_size=2, unique=True),
    kind=st.sampled_from(KINDS),
)
def test_unchunked_latency_is_non_decreasing_in_size(n, sizes, kind):
    small, big = sorted(sizes)
    collective = params()
    first, _, _ = run_collective(ring(n, LINK), collective, kind, small)
    second, _, _ = run_collective(ring(n, LINK), collective, kind, big)
    assert first.latency_s <= second.latency_s


def test_chunked_latency_is_non_decreasing_in_size():
    collective = params(chunk_bytes=1000.0, launch_latency_s=0.0)
    latencies = []
    # 4 ranks: a share of 3000 B is 3 pieces of 1000 B; 3001 B adds a 1 B fourth piece.
    for nbytes in (4 * 3000.0, 4 * 3001.0):
        result, _, _ = run_collective(ring(4, LINK), collective, "allreduce", nbytes)
        latencies.append(result.latency_s)
    assert latencies[0] <= latencies[1]


def bytes_sent_by_device(net: Network) -> dict[str, float]:
    """Bytes each device put on its own outgoing links (switch forwarding excluded)."""
    sent: dict[str, float] = defaultdict(float)
    for (src, _dst), link in net.links.items():
        if src in net.devices:
            sent[src] += link.bytes_sent
    return sent


@settings(max_examples=30, deadline=None)
@given(
    topology=st.sampled_from(sorted(BUILDERS)),
    n=st.integers(min_value=2, max_value=8),
    nbytes=st.floats(min_value=1e3, max_value=1e7),
    chunk=st.sampled_from([math.inf, 8192.0, 65536.0]),
    channels=st.sampled_from([0, 1, 2]),
)
def test_each_rank_sends_two_n_minus_one_over_n_of_the_data(topology, n, nbytes, chunk, channels):
    collective = params(chunk_bytes=chunk, channels=channels)
    result, net, _trace = run_collective(
        BUILDERS[topology](n, LINK), collective, "allreduce", nbytes
    )
    expected = 2 * (n - 1) / n * nbytes
    assert result.bytes_sent_per_rank == pytest.approx(expected, rel=1e-12)
    sent = bytes_sent_by_device(net)
    assert sorted(sent) == sorted(result.ranks)
    for device in result.ranks:
        assert sent[device] == pytest.approx(expected, rel=1e-12), device


@settings(max_examples=30, deadline=None)
@given(
    topology=st.sampled_from(sorted(BUILDERS)),
    n=st.integers(min_value=2, max_value=8),
    nbytes=st.floats(min_value=1e3, max_value=1e6),
    chunk=st.sampled_from([math.inf, 4096.0, 65536.0]),
    channels=st.sampled_from([0, 1, 3]),
    kind=st.sampled_from(KINDS),
)
def test_spans_are_well_formed_and_links_never_overlap(topology, n, nbytes, chunk, channels, kind):
    collective = params(chunk_bytes=chunk, channels=channels)
    result, _net, trace = run_collective(BUILDERS[topology](n, LINK), collective, kind, nbytes)
    assert len(trace) > 0
    assert all(span.end_s >= span.start_s for span in trace)
    assert all(result.start_s <= span.start_s and span.end_s <= result.end_s for span in trace)
    on_link: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for span in trace:
        if span.resource.startswith("->"):
            on_link[(span.device, span.resource)].append((span.start_s, span.end_s))
    assert on_link
    for key, intervals in on_link.items():
        intervals.sort()
        for (_s1, end), (start, _e2) in zip(intervals, intervals[1:], strict=False):
            assert start >= end, key


# --------------------------------------------------------------------------- ring order


def test_ring_order_follows_the_topology_not_the_rank_order():
    group = ("gpu0", "gpu3", "gpu1", "gpu4", "gpu2", "gpu5")
    graph = ring(6, LINK)
    result, net, _trace = run_collective(graph, params(), "allreduce", 6e5, group=group)
    (order,) = result.rings
    assert sorted(order) == sorted(group)
    hops = [(order[i], order[(i + 1) % 6]) for i in range(6)]
    assert all(graph.has_edge(a, b) for a, b in hops)
    # Only the six one-hop links of the chosen direction carry data.
    loaded = sorted(key for key, link in net.links.items() if link.bytes_sent > 0)
    assert loaded == sorted(hops)
    # Being one-hop, it meets the closed form of a ring in rank order.
    assert result.latency_s == pytest.approx(closed_form("allreduce", 6, 6e5, params()), rel=1e-9)


def test_four_fully_connected_devices_use_six_rings_loading_every_link_equally():
    result, net, _trace = run_collective(
        fully_connected(4, LINK), params(channels=0), "allreduce", 1.2e6
    )
    assert len(result.rings) == 6
    assert len(set(result.rings)) == 6
    loads = {key: link.bytes_sent for key, link in net.links.items()}
    assert len(loads) == 12
    expected = 2 * 3 / 4 * 1.2e6 / 3  # each device's share spread over its 3 links
    assert all(load == pytest.approx(expected, rel=1e-12) for load in loads.values())
    # Each directed link carries two of the six rings: no faster than six rings on
    # private links, no slower than three rings whose pieces always queue in pairs.
    fastest = closed_form("allreduce", 4, 1.2e6, params(), channels=6)
    slowest = closed_form("allreduce", 4, 1.2e6, params(), channels=3)
    assert fastest * (1 - 1e-9) <= result.latency_s <= slowest * (1 + 1e-9)


def test_switch_uses_the_group_order():
    group = ("gpu2", "gpu0", "gpu3", "gpu1")
    result, net, _trace = run_collective(switch(4, LINK), params(), "allreduce", 1e6, group=group)
    assert result.rings == (group,)
    assert result.ranks == group
    # Every device sends only to the switch, and the switch forwards to every device.
    assert all(net.links[(d, "nvswitch")].bytes_sent > 0 for d in group)


def test_a_ring_over_too_few_ranks_is_an_error():
    system = system_from_graph("test", ring(4, LINK), A100, params())
    net = Network(simpy.Environment(), system)
    with pytest.raises(DesError, match="at least two ranks"):
        RingCollective(net, "allreduce", ("gpu0",), 1e6, params(), Trace())
    with pytest.raises(DesError, match="positive"):
        RingCollective(net, "allreduce", system.devices, 0, params(), Trace())
    with pytest.raises(DesError, match="unknown collective"):
        RingCollective(net, "broadcast", system.devices, 1e6, params(), Trace())


# --------------------------------------------------------------------------- compute units


def test_collective_holds_its_compute_units_until_it_ends():
    collective = params(compute_units=8, launch_latency_s=0.0)
    system = system_from_graph("test", ring(2, LINK), A100, collective)
    env = simpy.Environment()
    net = Network(env, system)
    coll = RingCollective(net, "allreduce", system.devices, 1e7, collective, Trace())
    process = env.process(coll.run())
    pool = net.devices["gpu0"].compute
    log = []

    def kernel(name, units, at):
        yield env.timeout(at)
        granted = yield pool.acquire(units)
        log.append((f"{name} got {granted}", env.now))
        pool.release(granted)

    env.process(kernel("rest", A100.compute_units - 8, 1e-6))
    env.process(kernel("all", A100.compute_units, 2e-6))
    env.run()
    end = process.value.end_s
    assert end > 2e-6
    assert log == [("rest got 100", 1e-6), ("all got 108", end)]
