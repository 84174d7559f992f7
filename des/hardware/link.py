"""Directed links and multi-hop transfers over them.

A :class:`Link` is one direction of a physical link. It serialises chunks first come,
first served: a chunk holds the link for ``bytes / bandwidth`` and then travels for
``latency_s`` without holding it, so back-to-back chunks pipeline. Because the service
time of a chunk is known when it is queued, the FIFO queue is kept as the time the link
next falls free (``free_at_s``): queueing a chunk is one comparison, not a request,
a hold and a release. Chunks are queued at a hop when they arrive there, so the order
at a busy switch port is the order of arrival.

:func:`send` moves a chunk along a route hop by hop (store and forward at each hop)
with event callbacks rather than a process per chunk. A link that has gone down
(``up`` false, a fault during the run) is never queued on again: a chunk about to take
it asks ``reroute`` for a new route from where it is to where it goes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import simpy

from des.errors import DesError
from des.hardware.calls import call_later
from des.names import LINK, link_resource
from des.spans import Trace


class Link:
    """One direction of a link.

    Parameters
    ----------
    src, dst : str
        Endpoint node names.
    bandwidth_bytes_per_s : float
        Bandwidth of this direction.
    latency_s : float
        Pipelined latency added after a chunk leaves the link.
    """

    __slots__ = ("src", "dst", "bandwidth_bytes_per_s", "latency_s", "free_at_s", "bytes_sent", "busy_s", "resource", "up")

    def __init__(self, src: str, dst: str, bandwidth_bytes_per_s: float, latency_s: float) -> None:
        self.src = src
        self.dst = dst
        self.bandwidth_bytes_per_s = float(bandwidth_bytes_per_s)
        self.latency_s = float(latency_s)
        self.free_at_s = 0.0
        self.bytes_sent = 0.0
        self.busy_s = 0.0
        #: Trace row name on the source node.
        self.resource = link_resource(dst)
        self.up = True

    @property
    def name(self) -> str:
        """``src->dst``."""
        return f"{self.src}->{self.dst}"

    def reserve(self, now_s: float, nbytes: float, efficiency: float) -> tuple[float, float]:
        """Queue ``nbytes`` at time ``now_s``; return (start, end) of its hold."""
        start = self.free_at_s if self.free_at_s > now_s else now_s
        hold = nbytes / (self.bandwidth_bytes_per_s * efficiency)
        end = start + hold
        self.free_at_s = end
        self.bytes_sent += nbytes
        self.busy_s += hold
        return start, end


class _Hop:
    """Continuation of one chunk's journey, invoked when it reaches the next hop."""

    __slots__ = ("env", "route", "index", "nbytes", "efficiency", "extra_latency_s", "on_arrival", "trace", "label", "reroute")

    def __init__(self, env, route, nbytes, efficiency, extra_latency_s, on_arrival, trace, label, reroute=None):
        self.env = env
        self.route = route
        self.index = 0
        self.nbytes = nbytes
        self.efficiency = efficiency
        self.extra_latency_s = extra_latency_s
        self.on_arrival = on_arrival
        self.trace = trace
        self.label = label
        self.reroute = reroute

    def go(self, _event: object = None) -> float:
        """Queue the chunk on its current hop; return when the hold there ends."""
        env = self.env
        now = env.now
        link = self.route[self.index]
        if not link.up:
            link = self._detour(link)
        start, end = link.reserve(now, self.nbytes, self.efficiency)
        trace = self.trace
        if trace is not None and trace.links:
            trace.add(link.src, link.resource, self.label, LINK, start, end)
        self.index += 1
        last = self.index == len(self.route)
        delay = end + link.latency_s - now
        if last:
            delay += self.extra_latency_s
        call_later(env, delay, self.on_arrival if last else self.go)
        return end

    def _detour(self, down: Link) -> Link:
        """Replace the rest of the route, from ``down``'s source, by one that avoids it."""
        if self.reroute is None:
            raise DesError(f"link {down.src}-{down.dst} is down and this transfer cannot be rerouted")
        self.route = tuple(self.reroute(down.src, self.route[-1].dst))
        self.index = 0
        return self.route[0]


def send(
    env: simpy.Environment,
    route: Sequence[Link],
    nbytes: float,
    on_arrival: Callable[[object], None],
    *,
    efficiency: float = 1.0,
    extra_latency_s: float = 0.0,
    trace: Trace | None = None,
    label: str = "chunk",
    reroute: Callable[[str, str], Sequence[Link]] | None = None,
) -> float:
    """Send one chunk along ``route``, store-and-forward at every hop.

    Parameters
    ----------
    env : simpy.Environment
        The environment.
    route : sequence of Link
        The directed links in order; must not be empty.
    nbytes : float
        Chunk size.
    on_arrival : callable
        Called (with the firing event) when the chunk has fully arrived.
    efficiency : float
        Fraction of each link's bandwidth achieved.
    extra_latency_s : float
        Pipelined software latency added at the last hop.
    trace : Trace, optional
        Where to record one span per hop.
    label : str
        Span name.
    reroute : callable, optional
        ``reroute(src, dst) -> route`` for a chunk whose next link is down
        (:meth:`Network.route <des.hardware.network.Network.route>`); without it such
        a chunk raises :class:`~des.errors.DesError`.

    Returns
    -------
    float
        Simulated time at which the chunk has left the first link (the sender may
        start its next chunk then).
    """
    return _Hop(env, route, nbytes, efficiency, extra_latency_s, on_arrival, trace, label, reroute).go()


def send_one_hop(
    env: simpy.Environment,
    link: Link,
    nbytes: float,
    *,
    efficiency: float = 1.0,
    extra_latency_s: float = 0.0,
    trace: Trace | None = None,
    label: str = "chunk",
) -> tuple[float, float]:
    """Send one chunk over the single up ``link`` of its route, as :func:`send` does, but
    return ``(left, arrival)``: the time it has left the link and the time it arrives
    (both fixed by the link's reservation now), with no event for the arrival. For a
    receiver that only counts arrivals (:class:`~des.collectives.flows.KnownArrivals`)."""
    now = env.now
    start, end = link.reserve(now, nbytes, efficiency)
    if trace is not None and trace.links:
        trace.add(link.src, link.resource, label, LINK, start, end)
    # The arrival a timeout would fire at: now + ((end + latency - now) + extra).
    delay = end + link.latency_s - now
    delay += extra_latency_s
    return end, now + delay
