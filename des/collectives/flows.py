"""Pieces that flow between ranks: what the tree, NVLS and peer-memory collectives share.

A *flow* sends a buffer from one node to another cut into pieces, each piece read from
the sender's DRAM (when the sender is a device) while it goes out, as the ring does.
:class:`Arrivals` counts the pieces that reached a place and wakes one waiter when the
count it waits for is reached; :class:`Barrier` releases every rank when all have
arrived, plus a signalling latency (the flags peer-memory kernels write to each other).
"""

from __future__ import annotations

import bisect
import math

import simpy

from des.hardware.calls import call_later
from des.hardware.link import send, send_one_hop


def piece_sizes(nbytes: float, chunk_bytes: float) -> list[float]:
    """``nbytes`` cut into pieces of ``chunk_bytes`` and a smaller last one (one piece if unchunked)."""
    if not math.isfinite(chunk_bytes) or nbytes <= chunk_bytes:
        return [nbytes]
    count = math.ceil(nbytes / chunk_bytes)
    return [chunk_bytes] * (count - 1) + [nbytes - chunk_bytes * (count - 1)]


class Arrivals:
    """Pieces arrived per key, with waiters woken when a count is reached."""

    __slots__ = ("env", "counts", "waiting")

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.counts: dict[object, int] = {}
        self.waiting: dict[object, list[tuple[int, simpy.Event]]] = {}

    def add(self, key: object, count: int = 1) -> None:
        """Count ``count`` more arrivals at ``key`` and wake those waiting for them."""
        total = self.counts.get(key, 0) + count
        self.counts[key] = total
        waiters = self.waiting.get(key)
        if waiters:
            keep = []
            for wanted, event in waiters:
                if total >= wanted:
                    event.succeed()
                else:
                    keep.append((wanted, event))
            self.waiting[key] = keep

    def wait(self, key: object, count: int):
        """An event to yield until ``key`` has ``count`` arrivals, or ``None`` if it has."""
        if self.counts.get(key, 0) >= count:
            return None
        event = self.env.event()
        self.waiting.setdefault(key, []).append((count, event))
        return event

    def callback(self, key: object, receiver_dram=None, nbytes: float = 0.0):
        """A link-arrival callback that writes ``nbytes`` into ``receiver_dram`` and counts."""

        def arrived(_event: object) -> None:
            if receiver_dram is not None:
                receiver_dram.post(nbytes)
            self.add(key)

        return arrived


class KnownArrivals:
    """Arrivals each known when its piece is sent: a piece on one link arrives when the
    link's reservation says (:func:`~des.hardware.link.send_one_hop`), and its write into
    a device's DRAM is posted for then (:meth:`SharedBandwidth.post_at
    <des.hardware.bandwidth.SharedBandwidth.post_at>`). A waiter for ``count`` arrivals is woken
    at the ``count``-th earliest time known, and again earlier if an earlier arrival
    becomes known; a piece costs no event of its own.
    """

    __slots__ = ("env", "times", "waiting")

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.times: dict[object, list[float]] = {}
        # key -> waiters [count, event, time its wake-up is set for (or None)]
        self.waiting: dict[object, list[list]] = {}

    def add_at(self, key: object, when_s: float) -> None:
        """Count an arrival at ``key`` at ``when_s`` (now or later)."""
        times = self.times.get(key)
        if times is None:
            times = self.times[key] = []
        bisect.insort(times, when_s)
        for waiter in self.waiting.get(key, ()):
            self._schedule(key, waiter)

    def wait(self, key: object, count: int):
        """An event to yield until ``key`` has ``count`` arrivals, or ``None`` if it has."""
        times = self.times.get(key, ())
        if len(times) >= count and times[count - 1] <= self.env.now:
            return None
        waiter = [count, self.env.event(), None]
        self.waiting.setdefault(key, []).append(waiter)
        self._schedule(key, waiter)
        return waiter[1]

    def time_of(self, key: object, count: int) -> float | None:
        """When ``key`` has its ``count``-th arrival, if that many are known."""
        times = self.times.get(key, ())
        return times[count - 1] if len(times) >= count else None

    def callback(self, key: object, receiver_dram=None, nbytes: float = 0.0):
        """A link-arrival callback (for a piece rerouted over more than one link)."""

        def arrived(_event: object) -> None:
            if receiver_dram is not None:
                receiver_dram.post(nbytes)
            self.add_at(key, self.env.now)

        return arrived

    def _schedule(self, key: object, waiter: list) -> None:
        count, _event, set_for = waiter
        times = self.times.get(key, ())
        if len(times) < count:
            return
        at = times[count - 1]
        if set_for is not None and set_for <= at:
            return
        waiter[2] = at
        now = self.env.now
        call_later(self.env, at - now if at > now else 0.0, lambda _call: self._wake(key, waiter, at))

    def _wake(self, key: object, waiter: list, at: float) -> None:
        if waiter[2] != at:
            return  # superseded by an earlier arrival
        self.waiting[key].remove(waiter)
        waiter[1].succeed()


class Barrier:
    """All ranks meet, then each leaves ``latency_s`` later (flag signalling)."""

    def __init__(self, env: simpy.Environment, ranks: int, latency_s: float) -> None:
        self.env = env
        self.ranks = ranks
        self.latency_s = latency_s
        self._arrivals: dict[int, int] = {}
        self._events: dict[int, simpy.Event] = {}

    def meet(self, round_index: int):
        """Generator: arrive at barrier ``round_index`` and wait for the others."""
        event = self._events.get(round_index)
        if event is None:
            event = self._events[round_index] = self.env.event()
        count = self._arrivals.get(round_index, 0) + 1
        self._arrivals[round_index] = count
        if count == self.ranks:
            event.succeed()
        if not event.processed:
            yield event
        if self.latency_s > 0:
            yield self.env.timeout(self.latency_s)


class Pacer:
    """One thread block's ceiling shared by every flow it drives: each piece it sends
    takes ``bytes / pace`` of the block's time, one after another."""

    __slots__ = ("pace_bytes_per_s", "free_at")

    def __init__(self, pace_bytes_per_s: float) -> None:
        self.pace_bytes_per_s = pace_bytes_per_s
        self.free_at = 0.0

    def reserve(self, now: float, nbytes: float) -> float:
        """Book ``nbytes`` from ``now`` on; return when the block has pushed them."""
        self.free_at = max(now, self.free_at) + nbytes / self.pace_bytes_per_s
        return self.free_at


def start_piece(collective, src: str, dst: str, piece_bytes: float, arrivals: Arrivals, key, *, reads: int,
                efficiency: float, step_latency_s: float, pace_bytes_per_s: float, label: str,
                pacer: Pacer | None = None, route=None):
    """Send one piece from ``src`` to ``dst`` now (as :func:`send_pieces` sends each);
    return when it has left (its first hop's hold, and the pace) and its DRAM read (a
    :class:`~des.hardware.bandwidth.Transfer`, or ``None``)."""
    network = collective.network
    env = network.env
    devices = network.devices
    now = env.now
    dram = devices[src].dram if src in devices else None
    receiver_dram = devices[dst].dram if dst in devices else None
    read = dram.begin(reads * piece_bytes) if dram is not None and reads else None
    if route is None:
        route = network.route(src, dst)
    if type(arrivals) is KnownArrivals and len(route) == 1 and route[0].up:
        # One link: the arrival is fixed now, and is counted (and written, as a posted
        # write starting then) with no event of its own.
        left, arrival_s = send_one_hop(env, route[0], piece_bytes, efficiency=efficiency,
                                       extra_latency_s=step_latency_s, trace=collective.trace, label=label)
        if receiver_dram is not None:
            receiver_dram.post_at(piece_bytes, arrival_s)
        arrivals.add_at(key, arrival_s)
    else:
        left = send(
            env, route, piece_bytes, arrivals.callback(key, receiver_dram, piece_bytes), efficiency=efficiency,
            extra_latency_s=step_latency_s, trace=collective.trace, label=label, reroute=network.route,
        )
    if pacer is not None and math.isfinite(pacer.pace_bytes_per_s):
        left = max(left, pacer.reserve(now, piece_bytes))
    elif math.isfinite(pace_bytes_per_s):
        left = max(left, now + piece_bytes / pace_bytes_per_s)
    if network.progress is not None:
        network.progress.advance()
    return left, (read, dram)


def wait_sent(env, sent):
    """Generator: wait until every ``(left, (read, dram))`` of :func:`start_piece` has left
    and been read (one wait for the latest, where the reads are done by then)."""
    now = env.now
    latest = max((left for left, _read in sent), default=now)
    if latest > now:
        yield env.timeout(latest - now)
    for _left, (read, dram) in sent:
        if read is not None and not read.done:
            waited = dram.wait(read)
            if waited is not None:
                yield waited


def send_pieces(collective, src: str, dst: str, sizes, arrivals: Arrivals, key, *, reads: int = 1,
                efficiency: float, step_latency_s: float, pace_bytes_per_s: float, label: str,
                pacer: Pacer | None = None):
    """Generator: send ``sizes`` pieces from ``src`` to ``dst`` one after another.

    Each piece is read ``reads`` times from the sender's DRAM (when ``src`` is a device)
    while it goes out, leaves no faster than ``pace_bytes_per_s`` (one thread block's
    ceiling) or, given a ``pacer``, than that block's shared ceiling allows, and is
    counted at ``arrivals[key]`` (written to the receiver's DRAM when ``dst`` is a
    device) when it has arrived.
    """
    env = collective.network.env
    route = collective.network.route(src, dst)
    for piece_bytes in sizes:
        now = env.now
        left, (read, dram) = start_piece(
            collective, src, dst, piece_bytes, arrivals, key, reads=reads, efficiency=efficiency,
            step_latency_s=step_latency_s, pace_bytes_per_s=pace_bytes_per_s, label=label, pacer=pacer, route=route,
        )
        if left > now:
            yield env.timeout(left - now)
        if read is not None and not read.done:
            waited = dram.wait(read)
            if waited is not None:
                yield waited
