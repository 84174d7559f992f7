"""Timelines of the SimPy hardware resources: links, routes, shared DRAM, compute units.

In SimPy's own style each test logs ``(name, env.now)`` pairs and asserts the whole
timeline at once. Sizes and bandwidths are chosen so every time is exact in binary
floating point (1000 bytes over 1000 B/s is one second).
"""

from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from des.hardware import ComputePool, Link, Network, SharedBandwidth, send
from des.specs import CollectiveParams, LinkSpec
from des.trace import Trace
from topologies import load_device, switch, system_from_graph

#: One second of link time per 1000 bytes, half a second of latency.
BANDWIDTH = 1000.0
LATENCY = 0.5


def arrive(env: simpy.Environment, log: list, name: str):
    """Callback that logs ``name`` with the time it fires."""
    return lambda _event: log.append((name, env.now))


# --------------------------------------------------------------------------- links


def test_one_transfer_takes_bytes_over_bandwidth_plus_latency():
    env = simpy.Environment()
    link = Link("a", "b", BANDWIDTH, LATENCY)
    log = []
    left = send(env, [link], 2000, arrive(env, log, "chunk"))
    env.run()
    assert left == 2.0
    assert log == [("chunk", 2.5)]
    assert (link.bytes_sent, link.busy_s) == (2000.0, 2.0)


def test_two_transfers_on_one_link_serialise_with_latency_pipelined():
    env = simpy.Environment()
    link = Link("a", "b", BANDWIDTH, LATENCY)
    trace = Trace()
    log = []
    send(env, [link], 1000, arrive(env, log, "first"), trace=trace, label="first")
    send(env, [link], 1000, arrive(env, log, "second"), trace=trace, label="second")
    env.run()
    # The second holds the link from the end of the first's hold, not after its latency.
    assert log == [("first", 1.5), ("second", 2.5)]
    assert [(s.name, s.start_s, s.end_s) for s in trace] == [
        ("first", 0.0, 1.0),
        ("second", 1.0, 2.0),
    ]
    assert trace.spans[0][:2] == ("a", "->b")


def test_transfer_queued_later_starts_when_link_frees():
    env = simpy.Environment()
    link = Link("a", "b", BANDWIDTH, LATENCY)
    log = []

    def later():
        yield env.timeout(0.25)
        send(env, [link], 1000, arrive(env, log, "late"))

    send(env, [link], 1000, arrive(env, log, "early"))
    env.process(later())
    env.run()
    assert log == [("early", 1.5), ("late", 2.5)]


def test_efficiency_scales_the_hold_only():
    env = simpy.Environment()
    link = Link("a", "b", BANDWIDTH, LATENCY)
    log = []
    send(env, [link], 1000, arrive(env, log, "chunk"), efficiency=0.5, extra_latency_s=0.25)
    env.run()
    assert log == [("chunk", 2.75)]


def test_two_hop_route_waits_at_a_busy_switch_port():
    graph = switch(3, LinkSpec(BANDWIDTH, LATENCY))
    system = system_from_graph("star", graph, load_device("a100"), CollectiveParams())
    env = simpy.Environment()
    net = Network(env, system)
    trace = Trace()
    log = []
    for src in ("gpu0", "gpu1"):
        route = net.route(src, "gpu2")
        assert [link.name for link in route] == [f"{src}->nvswitch", "nvswitch->gpu2"]
        send(env, route, 1000, arrive(env, log, src), trace=trace, label=src)
    env.run()
    # Both first hops run at once on their own ports; both chunks reach the switch at
    # 1.5, and the one from gpu1 queues behind gpu0's on the port to gpu2.
    assert log == [("gpu0", 3.0), ("gpu1", 4.0)]
    port = [(s.name, s.start_s, s.end_s) for s in trace if s.resource == "->gpu2"]
    assert port == [("gpu0", 1.5, 2.5), ("gpu1", 2.5, 3.5)]


# --------------------------------------------------------------------------- shared DRAM


def stream(env, dram, log, name, nbytes, at=0.0):
    """Process: start a DRAM transfer of ``nbytes`` at ``at``, log its end."""
    if at:
        yield env.timeout(at)
    yield dram.transfer(nbytes)
    log.append((name, env.now))


def test_two_equal_dram_streams_share_bandwidth():
    env = simpy.Environment()
    dram = SharedBandwidth(env, BANDWIDTH, "dram")
    log = []
    env.process(stream(env, dram, log, "a", 1000))
    env.process(stream(env, dram, log, "b", 1000))
    env.run()
    assert log == [("a", 2.0), ("b", 2.0)]


def test_unequal_dram_streams_small_ends_first():
    env = simpy.Environment()
    dram = SharedBandwidth(env, BANDWIDTH, "dram")
    log = []
    env.process(stream(env, dram, log, "big", 3000))
    env.process(stream(env, dram, log, "small", 1000))
    env.run()
    # small: 2 * small / bw; big: (small + big) / bw.
    assert log == [("small", 2.0), ("big", 4.0)]


def test_a_stream_joining_midway_slows_the_first():
    env = simpy.Environment()
    dram = SharedBandwidth(env, BANDWIDTH, "dram")
    log = []
    env.process(stream(env, dram, log, "first", 10_000))
    env.process(stream(env, dram, log, "joiner", 4000, at=2.0))
    env.run()
    # first alone moves 2000 B by t=2; both then move at 500 B/s until the joiner's
    # 4000 B are done at t=10; first's last 4000 B take 4 s alone.
    assert log == [("joiner", 10.0), ("first", 14.0)]
    assert (dram.busy_s, dram.total_bytes) == (14.0, 14_000.0)


def test_dram_statistics_count_busy_time_not_idle_time():
    env = simpy.Environment()
    dram = SharedBandwidth(env, BANDWIDTH, "dram")
    log = []
    env.process(stream(env, dram, log, "a", 1000))
    env.process(stream(env, dram, log, "b", 500, at=3.0))
    env.run()
    # The gap from 1 to 3 is idle and must not count; the last advance happens at the
    # last finish.
    assert log == [("a", 1.0), ("b", 3.5)]
    assert (dram.busy_s, dram.total_bytes, dram.active) == (1.5, 1500.0, 0)


def test_zero_byte_transfer_is_done_at_once():
    env = simpy.Environment()
    dram = SharedBandwidth(env, BANDWIDTH, "dram")
    event = dram.transfer(0)
    assert event.triggered and dram.active == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=12))
def test_transfers_starting_together_finish_by_total_over_bandwidth(sizes):
    env = simpy.Environment()
    dram = SharedBandwidth(env, 1e6, "dram")
    ends = {}

    def one(index, nbytes):
        yield dram.transfer(nbytes)
        ends[index] = env.now

    for index, nbytes in enumerate(sizes):
        env.process(one(index, nbytes))
    env.run()
    total = sum(sizes) / 1e6
    # Work-conserving: the last one ends when all bytes have moved at full bandwidth.
    assert max(ends.values()) == pytest.approx(total, rel=1e-9)
    # Processor sharing: a transfer ends after all smaller ones, and never before size / bw.
    for index, nbytes in enumerate(sizes):
        assert ends[index] >= nbytes / 1e6 * (1 - 1e-12)
    by_size = [ends[i] for i in sorted(range(len(sizes)), key=lambda i: sizes[i])]
    assert by_size == sorted(by_size)
    assert dram.total_bytes == sum(sizes)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=10**6), st.integers(min_value=0, max_value=2000)
        ),
        min_size=1,
        max_size=12,
    )
)
def test_no_transfer_beats_its_size_over_bandwidth(jobs):
    env = simpy.Environment()
    dram = SharedBandwidth(env, 1e6, "dram")
    took = {}

    def one(index, nbytes, at_ms):
        yield env.timeout(at_ms * 1e-3)
        start = env.now
        yield dram.transfer(nbytes)
        took[index] = env.now - start

    for index, (nbytes, at_ms) in enumerate(jobs):
        env.process(one(index, nbytes, at_ms))
    env.run()
    assert len(took) == len(jobs)
    for index, (nbytes, _at) in enumerate(jobs):
        assert took[index] >= nbytes / 1e6 * (1 - 1e-9)
    # Never idle while work is pending: busy time equals bytes over bandwidth.
    assert dram.busy_s == pytest.approx(dram.total_bytes / 1e6, rel=1e-9)


# --------------------------------------------------------------------------- compute units


def test_compute_pool_grants_first_come_first_served():
    env = simpy.Environment()
    pool = ComputePool(env, 4, "cu")
    log = []

    def user(name, wanted, hold, minimum=None):
        granted = yield pool.acquire(wanted, minimum)
        log.append((f"{name} got {granted}", env.now))
        yield env.timeout(hold)
        pool.release(granted)

    env.process(user("a", 3, 2.0))
    env.process(user("b", 2, 1.0))  # must wait for a: only one unit free
    env.process(user("c", 1, 1.0))  # one unit is free, but c queues behind b
    env.run()
    assert log == [("a got 3", 0.0), ("b got 2", 2.0), ("c got 1", 2.0)]
    pool.finish()
    # a holds 3 for 2 s, b 2 and c 1 for 1 s each.
    assert pool.unit_busy_s == 9.0 and pool.free == 4


def test_compute_pool_partial_grant_respects_minimum():
    env = simpy.Environment()
    pool = ComputePool(env, 4, "cu")
    log = []

    def user(name, wanted, hold, minimum=None, at=0.0):
        if at:
            yield env.timeout(at)
        granted = yield pool.acquire(wanted, minimum)
        log.append((f"{name} got {granted}", env.now))
        yield env.timeout(hold)
        pool.release(granted)

    env.process(user("holder", 3, 2.0))
    env.process(user("wave", 4, 1.0, minimum=1, at=0.5))  # takes the one free unit
    env.process(user("pair", 4, 1.0, minimum=2, at=0.75))  # needs two: waits
    env.process(user("huge", 99, 1.0, at=0.8))  # more than exist: asks for all 4
    env.run()
    assert log == [
        ("holder got 3", 0.0),
        ("wave got 1", 0.5),
        ("pair got 4", 2.0),  # at 1.5 only one unit is free; at 2.0 all four
        ("huge got 4", 3.0),
    ]
