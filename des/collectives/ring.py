"""Ring collectives, simulated step by step over the network.

A ring all-reduce of S bytes over n ranks is a reduce-scatter (n-1 steps) followed by
an all-gather (n-1 steps); in every step each rank sends one S/n share to its successor
and receives one from its predecessor. Each share is cut into pieces of at most
``chunk_bytes`` so steps pipeline: a rank forwards piece p of step s as soon as piece p
of step s-1 has arrived, while later pieces are still on the wire. With several
channels the data is split evenly across rings that run at once.

What each rank does costs what it costs on hardware: the collective kernel first waits
for ``compute_units`` free compute units and holds them to the end; every piece sent is
read from DRAM (twice when it is reduced with the received partial sum) and every piece
received is written to DRAM, through the device's shared DRAM bandwidth; the link
transfer and the DRAM read of a piece overlap, the piece leaves when both are done.
Pieces pay ``step_latency_s`` as a pipelined delay on arrival.

Rings are formed once, on the graph as it is when the collective is built (faults
before the run are already in it). When a link fails during the run, each sender asks
the network for its hop's route again at its next piece (the network's
``topology_version`` says when), so a hop over the lost link takes a multi-hop detour
and the collective completes, slower; pieces already on their way detour at their next
hop (:func:`~des.hardware.link.send`'s ``reroute``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import simpy

from des.collectives.closed_form import choose_protocol
from des.collectives.rings import ring_orders
from des.errors import DesError
from des.hardware.link import send
from des.hardware.network import Network
from des.names import COLLECTIVE, COLLECTIVE_STEP
from des.spans import Trace
from des.specs import CollectiveParams
from des.units import format_bytes

#: Collective kinds and the steps each runs: (reduce-scatter steps, all-gather steps)
#: as multiples of (n - 1).
KINDS = {
    "allreduce": (1, 1),
    "reducescatter": (1, 0),
    "allgather": (0, 1),
    # Not ring collectives: des.collectives.alltoall runs them (no ring steps).
    "alltoall": (0, 0),
    "send": (0, 0),
}
#: The kinds that move a matrix of bytes between ranks rather than reduce or gather.
EXCHANGE_KINDS = ("alltoall", "send")


@dataclass(frozen=True)
class CollectiveResult:
    """Outcome of one simulated collective.

    Attributes
    ----------
    kind : str
        ``allreduce``, ``allgather`` or ``reducescatter``.
    ranks : tuple of str
        Devices in rank order.
    nbytes : float
        Message size (nccl-tests convention: the buffer each rank holds for
        all-reduce, the total gathered output for all-gather, the input for
        reduce-scatter).
    start_s, end_s : float
        When the call was issued and when the last rank finished.
    rings : tuple of tuple of str
        The ring order of each channel.
    pieces_per_step : int
        How many pieces one step's share was cut into.
    bytes_sent_per_rank : float
        Bytes each rank put on the wire.
    algorithm : str
        ``ring`` or ``hierarchical``: the algorithm that ran.
    protocol : str or None
        The protocol that ran (``ll``, ``ll128``, ``simple``; a hierarchical call joins
        its phases' with ``+``), ``None`` where the system describes no protocols.
    channels : int
        Channels (rings, trees or thread blocks) that ran in parallel.
    library : str
        The communication library that planned the call (:mod:`des.comm`).
    """

    kind: str
    ranks: tuple[str, ...]
    nbytes: float
    start_s: float
    end_s: float
    rings: tuple[tuple[str, ...], ...]
    pieces_per_step: int
    bytes_sent_per_rank: float
    algorithm: str = "ring"
    protocol: str | None = None
    channels: int = 0
    library: str = "fixed"

    @property
    def latency_s(self) -> float:
        """End-to-end time of the call."""
        return self.end_s - self.start_s

    @property
    def algbw_bytes_per_s(self) -> float:
        """Algorithm bandwidth, nccl-tests' definition: size / time."""
        return self.nbytes / self.latency_s if self.latency_s > 0 else math.inf

    @property
    def busbw_bytes_per_s(self) -> float:
        """Bus bandwidth, nccl-tests' definition (algbw times the ring factor)."""
        n = len(self.ranks)
        factor = 2.0 * (n - 1) / n if self.kind == "allreduce" else (n - 1) / n
        return self.algbw_bytes_per_s * factor


class _Channel:
    """One ring's state: arrivals per rank per step, and waiting senders."""

    __slots__ = ("ring", "arrived", "waiting")

    def __init__(self, ring: tuple[str, ...], steps: int) -> None:
        self.ring = ring
        n = len(ring)
        self.arrived = [[0] * steps for _ in range(n)]
        # Per rank: (step, piece, event) a sender waits on, or None.
        self.waiting: list[tuple[int, int, simpy.Event] | None] = [None] * n


def buffer_bytes(kind: str, nbytes: float, ranks: int) -> float:
    """Bytes of send and receive buffers one rank holds for a call (nccl-tests' layout).

    All-reduce: ``nbytes`` in and ``nbytes`` out; all-gather: ``nbytes / ranks`` in and
    the gathered ``nbytes`` out; reduce-scatter: ``nbytes`` in and ``nbytes / ranks`` out;
    all-to-all (``nbytes`` the whole matrix): an average rank's ``nbytes / ranks`` out and
    as much in; a send: its message.
    """
    check_kind(kind)
    if kind == "allreduce":
        return 2.0 * nbytes
    if kind == "alltoall":
        return 2.0 * nbytes / ranks  # an average rank's row out and column in
    if kind == "send":
        return float(nbytes)
    return nbytes + nbytes / ranks


def check_kind(kind: str) -> None:
    """Raise :class:`DesError` unless ``kind`` is one of :data:`KINDS`."""
    if kind not in KINDS:
        raise DesError(f"unknown collective '{kind}'; known: {', '.join(KINDS)}")


class Collective:
    """What every simulated collective holds: its call's arguments, checked.

    Subclasses plan the collective in :meth:`_plan` (called last by the constructor)
    and run it in a ``run()`` generator that returns a :class:`CollectiveResult`.

    Parameters
    ----------
    network : Network
        The live network.
    kind : str
        One of :data:`KINDS`.
    group : sequence of str
        Devices in rank order.
    nbytes : float
        Message size (see :class:`CollectiveResult`).
    params : CollectiveParams
        Protocol parameters of the system.
    trace : Trace
        Where spans go.
    name : str, optional
        Label for spans (default: the kind).
    stream : str
        Trace row of the collective on each device.

    Raises
    ------
    DesError
        For an unknown kind or a size that is not positive and finite (and what
        a subclass's plan rejects).
    """

    def __init__(
        self,
        network: Network,
        kind: str,
        group,
        nbytes: float,
        params: CollectiveParams,
        trace: Trace,
        name: str | None = None,
        stream: str = "comm",
    ) -> None:
        check_kind(kind)
        if not (nbytes > 0 and math.isfinite(nbytes)):
            raise DesError(f"collective size must be positive, got {nbytes!r}")
        self.network = network
        self.env = network.env
        self.kind = kind
        self.group = tuple(group)
        self.nbytes = float(nbytes)
        self.params = params
        self.trace = trace
        self.name = name or kind
        self.stream = stream
        #: Facts recorded on the collective's span (the library's plan; set by des.comm).
        self.span_args: tuple | None = None
        self._plan()

    def _plan(self) -> None:
        """Work out the collective's structure from the checked arguments."""
        raise NotImplementedError

    def _as_kernel(self, rank: str, work):
        """Generator: one rank's collective kernel around ``work``.

        Pays the call's launch, takes the kernel's compute units (``params.compute_units``,
        at most the device's), runs ``work`` (a generator, which starts only once the
        units are held), gives the units back and records the collective's span.
        """
        env = self.env
        device = self.network.devices[rank]
        start = env.now
        if self.launch_s > 0:
            yield env.timeout(self.launch_s)
        units = yield device.compute.acquire(self.params.compute_units)
        yield from work
        device.compute.release(units)
        self.trace.add(rank, self.stream, self.name, COLLECTIVE, start, env.now, self.span_args)


class RingCollective(Collective):
    """A ring collective over a group of devices (parameters as :class:`Collective`)."""

    def _plan(self) -> None:
        network, params = self.network, self.params
        n = len(self.group)
        rs, ag = KINDS[self.kind]
        steps = (rs + ag) * (n - 1)
        # Before the rings are searched for (itself costly on a huge group): every rank
        # sends at least one piece per step, and at least ceil(share / chunk) pieces.
        least = max(1.0, self.nbytes / n / params.chunk_bytes) if math.isfinite(params.chunk_bytes) else 1.0
        self._check_budget(n * steps * least, params, "at least")
        self.rings = tuple(ring_orders(network.graph, self.group, params.channels))
        self._routes = [
            [network.route(ring[i], ring[(i + 1) % n]) for i in range(n)] for ring in self.rings
        ]
        machine = {node: network.graph.nodes[node].get("node", 0) for node in self.group}
        inter_hops = [
            [machine[ring[i]] != machine[ring[(i + 1) % n]] for i in range(n)] for ring in self.rings
        ]
        self.protocol = None
        if params.protocols:
            self.protocol, self.predicted_s = self._choose_protocol(inter_hops)
            params = self.params = params.for_protocol(self.protocol)
        #: Launch latency this ring pays (a hierarchical phase pays none of its own).
        self.launch_s = params.launch_latency_s
        self.reduce_steps = rs * (n - 1)
        self.steps = steps
        share = self.nbytes / len(self.rings) / n
        # Pieces of exactly chunk_bytes and a smaller last one, as NCCL slices a step:
        # one more byte then never makes every piece smaller (and the run faster).
        pieces = max(1, math.ceil(share / params.chunk_bytes)) if math.isfinite(params.chunk_bytes) else 1
        #: Piece transfers the call simulates (every rank, channel, step and piece).
        self.piece_transfers = len(self.rings) * n * steps * pieces
        self._check_budget(self.piece_transfers, params, "")
        self.pieces = pieces
        self.share_bytes = share
        full = min(params.chunk_bytes, share)
        self.piece_sizes = [full] * (pieces - 1) + [share - full * (pieces - 1)]
        # A hop between machines runs over the network transport, with its own step
        # latency and achieved bandwidth (CollectiveParams.inter_node_*).
        self._hop_params = [
            [(params.hop_efficiency(inter), params.hop_step_latency_s(inter)) for inter in hops]
            for hops in inter_hops
        ]

    def _check_budget(self, transfers: float, params: CollectiveParams, qualifier: str) -> None:
        """Refuse a call that would simulate more piece transfers than the network allows."""
        limit = self.network.max_piece_transfers
        if transfers <= limit:
            return
        chunk = "one piece per step" if not math.isfinite(params.chunk_bytes) else f"pieces of {format_bytes(params.chunk_bytes)}"
        raise DesError(
            f"{self.kind} of {format_bytes(self.nbytes)} over {len(self.group)} ranks would simulate "
            f"{(qualifier + ' ') if qualifier else ''}{transfers:.3g} piece transfers ({chunk}), more than the limit of "
            f"{limit:,}; use a smaller message or fewer ranks, a larger collective.chunk_bytes, or raise "
            f"the limit (--max-pieces N, or $DES_MAX_PIECE_TRANSFERS) and expect a long run"
        )

    def _choose_protocol(self, inter_hops) -> tuple[str, float]:
        """The protocol with the least predicted time on these rings, as NCCL picks one.

        Each ring is summarised by its worst hop: the least bandwidth a hop's links
        leave it (a link carried by k of the rings gives each 1/k), the largest wire
        latency and link count; a ring that crosses machines takes the inter-node
        fields. On the presets' rings every hop is alike, so on an idle system this is
        the chosen protocol's closed form.
        """
        uses: dict[int, int] = {}
        for routes in self._routes:
            for route in routes:
                for link in route:
                    uses[id(link)] = uses.get(id(link), 0) + 1
        bandwidth, latency, hops = math.inf, 0.0, 1
        for routes in self._routes:
            for route in routes:
                bandwidth = min(bandwidth, min(link.bandwidth_bytes_per_s / uses[id(link)] for link in route))
                latency = max(latency, sum(link.latency_s for link in route))
                hops = max(hops, len(route))
        # A ring that leaves a machine moves at the pace of its network hops.
        inter = any(any(hops_) for hops_ in inter_hops)
        name, predicted_s = choose_protocol(
            self.params, self.kind, len(self.group), self.nbytes, bandwidth, latency, hops,
            channels=len(self.rings), inter_node=inter,
        )
        return name, predicted_s

    def run(self):
        """SimPy process body: run the collective, return a :class:`CollectiveResult`."""
        env = self.env
        start = env.now
        channels = [_Channel(ring, self.steps) for ring in self.rings]
        rank_procs = [env.process(self._rank(rank, channels)) for rank in self.group]
        yield simpy.AllOf(env, rank_procs)
        return CollectiveResult(
            kind=self.kind,
            ranks=self.group,
            nbytes=self.nbytes,
            start_s=start,
            end_s=env.now,
            rings=self.rings,
            pieces_per_step=self.pieces,
            bytes_sent_per_rank=self.steps * self.share_bytes * len(self.rings),
            protocol=self.protocol,
            channels=len(self.rings),
        )

    def _rank(self, rank: str, channels: list[_Channel]):
        """One rank's kernel: launch, take compute units, run every channel, finish."""
        yield from self._as_kernel(rank, self._senders(rank, channels))

    def _senders(self, rank: str, channels: list[_Channel]):
        env = self.env
        yield simpy.AllOf(env, [env.process(self._sender(rank, channel, index)) for index, channel in enumerate(channels)])

    def _wait(self, channel: _Channel, position: int, step: int, piece: int):
        """Event a sender waits on until piece ``piece`` of ``step`` has arrived (or None)."""
        if channel.arrived[position][step] > piece:
            return None
        event = self.env.event()
        channel.waiting[position] = (step, piece, event)
        return event

    def _arrival(self, channel: _Channel, position: int, step: int, receiver_dram, piece_bytes: float):
        """Callback for a piece of ``piece_bytes`` that has arrived at ring position ``position``."""

        def arrived(_event: object) -> None:
            receiver_dram.post(piece_bytes)  # posted write into the receive buffer
            counts = channel.arrived[position]
            counts[step] += 1
            waiter = channel.waiting[position]
            if waiter is not None and waiter[0] == step and counts[step] > waiter[1]:
                channel.waiting[position] = None
                waiter[2].succeed()

        return arrived

    def _sender(self, rank: str, channel: _Channel, channel_index: int):
        env = self.env
        ring = channel.ring
        n = len(ring)
        position = ring.index(rank)
        successor = (position + 1) % n
        network = self.network
        version = network.topology_version
        route = self._routes[channel_index][position]
        if version:
            route = network.route(rank, ring[successor])
        efficiency, step_latency_s = self._hop_params[channel_index][position]
        dram = self.network.devices[rank].dram
        receiver_dram = self.network.devices[ring[successor]].dram
        trace = self.trace
        piece_sizes = self.piece_sizes
        reduce_steps = self.reduce_steps
        label = f"{self.name} ch{channel_index}"
        step_row = f"{self.stream} ch{channel_index}" if len(self.rings) > 1 else f"{self.stream} steps"
        progress = network.progress
        # One thread block per channel moves at most this many bytes per second.
        pace = self.params.channel_bandwidth_bytes_per_s
        paced = math.isfinite(pace)
        for step in range(self.steps):
            # A piece reduced here is read twice: the local share and the received partial.
            reads = 2 if 0 < step <= reduce_steps else 1
            on_arrival = None
            step_start = None
            for piece, piece_bytes in enumerate(piece_sizes):
                if step > 0:
                    event = self._wait(channel, position, step - 1, piece)
                    if event is not None:
                        yield event
                if network.topology_version != version:
                    # The topology changed (a fault): this hop's route is recomputed.
                    version = network.topology_version
                    route = network.route(rank, ring[successor])
                now = env.now
                if step_start is None:
                    step_start = now
                if on_arrival is None or piece == len(piece_sizes) - 1:
                    on_arrival = self._arrival(channel, successor, step, receiver_dram, piece_bytes)
                read = dram.begin(reads * piece_bytes)
                left = send(
                    env,
                    route,
                    piece_bytes,
                    on_arrival,
                    efficiency=efficiency,
                    extra_latency_s=step_latency_s,
                    trace=trace,
                    label=label,
                    reroute=network.route,
                )
                if paced:
                    left = max(left, now + piece_bytes / pace)
                if progress is not None:
                    progress.advance()
                if left > now:
                    yield env.timeout(left - now)
                if not read.done:
                    waited = dram.wait(read)
                    if waited is not None:
                        yield waited
            phase = "rs" if step < reduce_steps else "ag"
            if trace.steps:
                trace.add(rank, step_row, f"{self.name} {phase} step {step}", COLLECTIVE_STEP, step_start, env.now)
        # Done when the last step's pieces have all arrived here too.
        last = self.steps - 1
        event = self._wait(channel, position, last, self.pieces - 1)
        if event is not None:
            yield event
