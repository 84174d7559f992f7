"""NVLink SHARP (NVLS) all-reduce: the switch reduces and multicasts.

On a third-generation NVSwitch (DGX H100) NCCL's NVLS algorithm has each rank own
``1 / n`` of the buffer: it asks the switch for the sum of its shard over all ranks
(``multimem.ld_reduce``: the switch reads that shard from every GPU and reduces it in
the fabric) and stores the sum back through the multicast address (``multimem.st``:
the switch writes it into every GPU). Each rank's port thus carries ``S`` out (its
buffer read shard by shard by the switch) plus its ``S / n`` result, and ``S`` in (all
results) plus its ``S / n`` sum: about ``S (1 + 1 / n)`` each way, against a ring's
``2 (n - 1) / n S``, with two hops instead of ``2 (n - 1)`` steps.

Here each piece of each rank's buffer goes up to the switch; when the switch holds a
piece from every rank it sends the reduced piece to the rank that owns that shard, which
multicasts it back down to every rank. Pieces pipeline. Each channel is one thread
block per rank, and that block drives every store the rank makes on the channel (NCCL
copies the user buffer into the NVLS buffer and stores the rank's own shard to the
multicast address), so one shared ceiling per rank and channel
(:class:`~des.collectives.flows.Pacer`) bounds them all; the switch's own reads and
multicast writes are bounded by the links alone.
"""

from __future__ import annotations

import itertools
import math

import simpy

from des.collectives.flows import (
    KnownArrivals,
    Pacer,
    piece_sizes,
    send_pieces,
    start_piece,
    wait_sent,
)
from des.collectives.ring import Collective, CollectiveResult
from des.errors import DesError
from des.specs import ROLE_SWITCH


def nvls_switch(graph, group) -> str | None:
    """The one switch inside their machine that every member of ``group`` is joined to
    directly, or ``None`` (a network switch between machines reduces nothing)."""
    common = None
    for node in group:
        machine = graph.nodes[node].get("node", 0)
        switches = {
            peer for peer in graph.neighbors(node)
            if graph.nodes[peer].get("role") == ROLE_SWITCH and graph.nodes[peer].get("node", 0) == machine
        }
        common = switches if common is None else common & switches
    if not common:
        return None
    return sorted(common)[0]


class NvlsAllReduce(Collective):
    """All-reduce reduced in the switch (parameters as :class:`Collective`)."""

    def _plan(self) -> None:
        if self.kind != "allreduce":
            raise DesError(f"NVLS runs all-reduce only here, not {self.kind}")
        switch = nvls_switch(self.network.graph, self.group)
        if switch is None:
            raise DesError("NVLS needs every rank joined directly to one switch")
        self.switch = switch
        n = len(self.group)
        channels = max(1, self.params.channels)
        self.channels = channels
        self.shard_sizes = piece_sizes(self.nbytes / n / channels, self.params.chunk_bytes)
        # Up: n ranks x n shards; reduced: n; multicast down: n x n; per channel.
        self.piece_transfers = channels * (2 * n * n + n) * len(self.shard_sizes)
        self.launch_s = self.params.launch_latency_s
        self._keys = itertools.count()

    def run(self):
        """SimPy process body: run on every rank, return a :class:`CollectiveResult`."""
        env = self.env
        start = env.now
        # Every piece crosses one link, so its arrival is known when it is sent.
        at_switch = KnownArrivals(env)
        at_owner = KnownArrivals(env)
        at_rank = KnownArrivals(env)
        # One thread block per channel on each rank drives all that rank's stores (its
        # buffer copied in for every owner, and its own shard's multicast store).
        pace = self.params.channel_bandwidth_bytes_per_s
        self._pacers = {(rank, c): Pacer(pace) for rank in self.group for c in range(self.channels)}
        ranks = [env.process(self._rank(rank, at_switch, at_owner, at_rank)) for rank in self.group]
        yield simpy.AllOf(env, ranks)
        n = len(self.group)
        return CollectiveResult(
            kind=self.kind, ranks=self.group, nbytes=self.nbytes, start_s=start, end_s=env.now, rings=(),
            pieces_per_step=len(self.shard_sizes), bytes_sent_per_rank=self.nbytes * (1 + 1 / n),
            algorithm="nvls", protocol="simple", channels=self.channels,
        )

    def _rank(self, rank, at_switch, at_owner, at_rank):
        yield from self._as_kernel(rank, self._work(rank, at_switch, at_owner, at_rank))

    def _work(self, rank, at_switch, at_owner, at_rank):
        env = self.env
        n = len(self.group)
        work = []
        sent = []
        pieces = len(self.shard_sizes)
        for channel in range(self.channels):
            # This rank's buffer goes up shard by shard (the switch's reads for every owner).
            if pieces == 1:
                # One piece each: sent now, in the order the flows' processes would.
                sent += [self._start(rank, self.switch, self.shard_sizes[0], at_switch, (owner, channel), 1,
                                     self._pacers[rank, channel], self.params.channel_bandwidth_bytes_per_s)
                         for owner in self.group]
            elif pieces == 2:
                work.append(env.process(self._ups_two(rank, channel, at_switch)))
            else:
                work += [env.process(self._up(rank, owner, channel, at_switch)) for owner in self.group]
            # The owner side: wait for the switch to hold this shard from all ranks, get
            # the sum, multicast it down.
            work.append(env.process(self._own(rank, channel, at_switch, at_owner, at_rank)))
        yield simpy.AllOf(env, work)
        yield from wait_sent(env, sent)
        for channel in range(self.channels):
            event = at_rank.wait((rank, channel), n * len(self.shard_sizes))
            if event is not None:
                yield event

    def _send(self, src, dst, arrivals, key, reads, pacer):
        params = self.params
        return send_pieces(
            self, src, dst, self.shard_sizes, arrivals, key, reads=reads, efficiency=params.bandwidth_efficiency,
            step_latency_s=params.step_latency_s, pace_bytes_per_s=params.channel_bandwidth_bytes_per_s,
            label=f"{self.name} nvls", pacer=pacer,
        )

    def _start(self, src, dst, size, arrivals, key, reads, pacer, pace_bytes_per_s):
        params = self.params
        return start_piece(
            self, src, dst, size, arrivals, key, reads=reads, efficiency=params.bandwidth_efficiency,
            step_latency_s=params.step_latency_s, pace_bytes_per_s=pace_bytes_per_s, label=f"{self.name} nvls",
            pacer=pacer,
        )

    def _ups_two(self, rank, channel, at_switch):
        """Two pieces up for every owner on one channel, in one process rather than one a
        flow: the first pieces all leave now; each flow's second leaves once its first
        has left and been read, and those times rise with the owner's place (one pacer
        and one link take the first pieces in that order, and their equal reads, begun
        together, end together), so the flows' second pieces go in owner order, each
        when its own process would send it."""
        env = self.env
        pacer = self._pacers[rank, channel]
        pace = self.params.channel_bandwidth_bytes_per_s
        first, second = self.shard_sizes
        lefts = [self._start(rank, self.switch, first, at_switch, (owner, channel), 1, pacer, pace)
                 for owner in self.group]
        seconds = []
        for owner, sent in zip(self.group, lefts, strict=True):
            yield from wait_sent(env, [sent])
            seconds.append(self._start(rank, self.switch, second, at_switch, (owner, channel), 1, pacer, pace))
        yield from wait_sent(env, seconds)

    def _up(self, rank, owner, channel, at_switch):
        yield from self._send(rank, self.switch, at_switch, (owner, channel), 1, self._pacers[rank, channel])

    def _own(self, rank, channel, at_switch, at_owner, at_rank):
        env = self.env
        n = len(self.group)
        pieces = []
        for index, size in enumerate(self.shard_sizes):
            event = at_switch.wait((rank, channel), n * (index + 1))
            if event is not None:
                yield event
            if len(self.shard_sizes) == 1:
                yield from self._reduce_piece(rank, channel, size, at_owner, at_rank)
                return
            pieces.append(env.process(self._reduce_piece(rank, channel, size, at_owner, at_rank)))
        yield simpy.AllOf(env, pieces)

    def _reduce_piece(self, rank, channel, size, at_owner, at_rank):
        """The sum of one piece comes back to its owner, which stores it to the
        multicast address: up once more, then down to every rank."""
        env = self.env
        for src, dst in ((self.switch, rank), (rank, self.switch)):
            key = next(self._keys)
            # A rank's store is its block's; the switch's reads and multicast writes
            # are bounded by the links alone.
            sent = self._start(src, dst, size, at_owner, key, 0, self._pacers.get((src, channel)), math.inf)
            arrival = at_owner.time_of(key, 1)
            if arrival is not None:
                # Known (one link): one wait for the later of its leaving and arriving.
                ready = max(sent[0], arrival)
                if ready > env.now:
                    yield env.timeout(ready - env.now)
                continue
            yield from wait_sent(env, [sent])
            event = at_owner.wait(key, 1)
            if event is not None:
                yield event
        # The multicast: one piece down to every rank, sent at once.
        downs = [self._start(self.switch, peer, size, at_rank, (peer, channel), 0, None, math.inf)
                 for peer in self.group]
        yield from wait_sent(env, downs)
