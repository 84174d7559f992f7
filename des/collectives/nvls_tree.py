"""NVLS-tree all-reduce across machines: NVLink SHARP inside each machine, a tree between them.

NCCL's NVLS_TREE algorithm (NCCL 2.18 and later, DGX H100 machines joined by a
network) reduces inside every machine in the NVSwitch, sends each machine's partial
sums between machines along a binary tree, and multicasts the total back through the
switch. Each of a machine's G ranks owns ``1 / G`` of the buffer and carries that shard
between machines over its own NIC, so every NIC moves ``S / G`` up and down the tree.

Per channel and piece of a shard:

1. every rank of a machine sends its copy of the piece up to the machine's switch; when
   the switch holds all G copies it returns the machine's sum to the shard's owner
   (``multimem.ld_reduce``);
2. the owners of that shard on every machine reduce it up a binary tree of machines
   (tree 0 heap-ordered over machines 0..M-1, tree 1 mirrored, alternating by channel as
   :mod:`des.collectives.tree` does) and broadcast the total back down;
3. each owner stores the total to the multicast address: up to its switch once, down to
   every rank of its machine.

Pieces pipeline through the three stages, so inside-machine and between-machine
traffic overlap as NCCL's do. One thread block per channel on each rank drives all
that rank sends on the channel (:class:`~des.collectives.flows.Pacer`).
"""

from __future__ import annotations

import itertools
import math

import simpy

from des.collectives.flows import Arrivals, Pacer, piece_sizes, send_pieces
from des.collectives.nvls import nvls_switch
from des.collectives.ring import Collective, CollectiveResult
from des.collectives.rings import machine_groups
from des.collectives.tree import binary_tree
from des.errors import DesError


class NvlsTreeAllReduce(Collective):
    """All-reduce by NVLS inside machines and a tree between them (parameters as :class:`Collective`).

    Raises
    ------
    DesError
        For a kind other than all-reduce, a group on one machine, machines holding
        different numbers of ranks, or a machine whose ranks share no switch.
    """

    def _plan(self) -> None:
        if self.kind != "allreduce":
            raise DesError(f"NVLS-tree runs all-reduce only, not {self.kind}")
        graph = self.network.graph
        machines = machine_groups(graph, self.group)
        if len(machines) < 2:
            raise DesError("NVLS-tree runs across machines; this group is on one")
        sizes = {len(members) for members in machines}
        if len(sizes) > 1:
            raise DesError("NVLS-tree needs the same number of ranks on every machine")
        switches = [nvls_switch(graph, members) for members in machines]
        if any(switch is None for switch in switches):
            raise DesError("NVLS-tree needs every machine's ranks joined directly to one switch")
        self.machines = machines
        self.switches = switches
        self.local = sizes.pop()
        self.channels = max(1, self.params.channels)
        self.trees = [binary_tree(len(machines), mirrored=c % 2 == 1) for c in range(self.channels)]
        self.shard_sizes = piece_sizes(self.nbytes / self.local / self.channels, self.params.chunk_bytes)
        m, g = len(machines), self.local
        # Per channel and piece: G*M copies up, M*G sums to owners, 2(M-1)*G tree hops,
        # M*G multicast stores up and M*G*G down.
        self.piece_transfers = self.channels * len(self.shard_sizes) * (g * m * g + m * g + 2 * (m - 1) * g + m * g + m * g * g)
        self.launch_s = self.params.launch_latency_s
        self._keys = itertools.count()

    def run(self):
        """SimPy process body: run on every rank, return a :class:`CollectiveResult`."""
        env = self.env
        start = env.now
        queues = {name: Arrivals(env) for name in ("switch", "hop", "up", "down", "rank")}
        # One thread block per channel on each rank drives everything the rank sends on
        # that channel (as in NvlsAllReduce); the switch's reads and multicasts are the links'.
        pace = self.params.channel_bandwidth_bytes_per_s
        self._pacers = {(rank, c): Pacer(pace) for rank in self.group for c in range(self.channels)}
        ranks = []
        for m, members in enumerate(self.machines):
            for i, rank in enumerate(members):
                ranks.append(env.process(self._as_kernel(rank, self._work(m, i, rank, queues))))
        yield simpy.AllOf(env, ranks)
        g = self.local
        return CollectiveResult(
            kind=self.kind, ranks=self.group, nbytes=self.nbytes, start_s=start, end_s=env.now, rings=(),
            pieces_per_step=len(self.shard_sizes), bytes_sent_per_rank=self.nbytes * (1 + 1 / g) + 2 * self.nbytes / g,
            algorithm="nvls_tree", protocol="simple", channels=self.channels,
        )

    def _send(self, src, dst, sizes, arrivals, key, reads, inter=False, channel=None):
        params = self.params
        # A rank's sends are its block's; the switch's reads and multicast writes are
        # bounded by the links alone.
        return send_pieces(
            self, src, dst, sizes, arrivals, key, reads=reads, efficiency=params.hop_efficiency(inter),
            step_latency_s=params.hop_step_latency_s(inter), pace_bytes_per_s=math.inf,
            label=f"{self.name} nvls-tree", pacer=self._pacers.get((src, channel)),
        )

    def _work(self, m, i, rank, queues):
        env = self.env
        switch = self.switches[m]
        work = []
        for channel in range(self.channels):
            # This rank's copy of every shard goes up to the switch, shard by shard.
            for owner in range(self.local):
                work.append(env.process(
                    self._send(rank, switch, self.shard_sizes, queues["switch"], (m, owner, channel), 1, channel=channel)
                ))
            # As the owner of shard i: every piece through the three stages.
            work.append(env.process(self._own(m, i, rank, channel, queues)))
        yield simpy.AllOf(env, work)
        for channel in range(self.channels):
            event = queues["rank"].wait((rank, channel), self.local * len(self.shard_sizes))
            if event is not None:
                yield event

    def _own(self, m, i, rank, channel, queues):
        env = self.env
        pieces = []
        for index, size in enumerate(self.shard_sizes):
            event = queues["switch"].wait((m, i, channel), self.local * (index + 1))
            if event is not None:
                yield event
            pieces.append(env.process(self._piece(m, i, rank, channel, index, size, queues)))
        yield simpy.AllOf(env, pieces)

    def _hop(self, src, dst, size, queues, channel):
        """Generator: one piece from ``src`` to ``dst``, waited for."""
        key = next(self._keys)
        yield from self._send(src, dst, [size], queues["hop"], key, 0, channel=channel)
        event = queues["hop"].wait(key, 1)
        if event is not None:
            yield event

    def _piece(self, m, i, rank, channel, index, size, queues):
        env = self.env
        switch = self.switches[m]
        # 1. The machine's sum of this piece comes back to its owner.
        yield from self._hop(switch, rank, size, queues, channel)
        # 2. Up the tree of machines, then the total back down.
        parents = self.trees[channel]
        parent = parents[m]
        children = [child for child, p in parents.items() if p == m]
        for child in children:
            event = queues["up"].wait((child, i, channel), index + 1)
            if event is not None:
                yield event
        if parent is None:
            queues["down"].add((m, i, channel))
        else:
            peer = self.machines[parent][i]
            yield from self._send(
                rank, peer, [size], queues["up"], (m, i, channel), 2 if children else 1, inter=True, channel=channel
            )
        event = queues["down"].wait((m, i, channel), index + 1)
        if event is not None:
            yield event
        sends = [
            env.process(self._send(
                rank, self.machines[child][i], [size], queues["down"], (child, i, channel), 1, inter=True, channel=channel
            ))
            for child in children
        ]
        # 3. The total stored through the multicast address: up once, down to every rank.
        yield from self._hop(rank, switch, size, queues, channel)
        sends.extend(
            env.process(self._send(switch, peer, [size], queues["rank"], (peer, channel), 0))
            for peer in self.machines[m]
        )
        yield simpy.AllOf(env, sends)
