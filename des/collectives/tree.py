"""NCCL's tree all-reduce across machines: a double binary tree of machines, chains inside.

NCCL builds, per channel, a binary tree over the *machines* and a chain through the
ranks of each machine; the chain's head is the rank whose NIC the channel uses. Data
flows up (every rank adds what its children sent and passes the sum to its parent)
and then down (the root's result is broadcast back along the same edges), piece by
piece, so up and down overlap. Two trees run at once (a *double* binary tree): every
machine that is an inner node in one is a leaf in the other, so each NIC sends and
receives about the message once per direction; each tree carries half the data.

Here tree 0 is the heap-ordered binary tree over machines 0, 1, ..., M-1 (machine i's
children are 2i+1 and 2i+2) and tree 1 the same over the machines in reverse order.
Channel c runs on tree c mod 2 with its chain head on the c-th NIC-equipped rank of
each machine (round robin), the chain continuing through the machine's ranks in order.
"""

from __future__ import annotations

import simpy

from des.collectives.flows import Arrivals, piece_sizes, send_pieces
from des.collectives.ring import Collective, CollectiveResult
from des.collectives.rings import has_nic, machine_groups
from des.errors import DesError


def binary_tree(count: int, mirrored: bool) -> dict[int, int | None]:
    """Parent of each of ``count`` positions in a heap-ordered binary tree (root: None).

    ``mirrored`` numbers the machines from the other end, so the leaves of one tree
    are the inner nodes of the other.
    """
    order = list(range(count))[::-1] if mirrored else list(range(count))
    parents: dict[int, int | None] = {}
    for position, machine in enumerate(order):
        parents[machine] = None if position == 0 else order[(position - 1) // 2]
    return parents


def tree_channel(graph, group, channel: int) -> dict[str, str | None]:
    """Parent of every rank in channel ``channel``'s tree (the root's is ``None``)."""
    machines = machine_groups(graph, group)
    trees = binary_tree(len(machines), mirrored=channel % 2 == 1)
    heads = []
    chains = []
    for members in machines:
        nics = [rank for rank in members if has_nic(graph, rank)] or list(members)
        head = nics[(channel // 2) % len(nics)] if len(machines) > 1 else members[0]
        start = members.index(head)
        chain = members[start:] + members[:start]
        heads.append(head)
        chains.append(chain)
    parents: dict[str, str | None] = {}
    for index, chain in enumerate(chains):
        parent_machine = trees[index]
        parents[chain[0]] = None if parent_machine is None else heads[parent_machine]
        for previous, rank in zip(chain, chain[1:], strict=False):
            parents[rank] = previous
    return parents


class TreeAllReduce(Collective):
    """Double-binary-tree all-reduce (parameters as :class:`Collective`).

    ``params.channels`` trees run at once (alternating the two trees), each carrying
    an equal share; ``params.step_latency_s`` is paid per hop inside a machine and
    ``params.inter_node_step_latency_s`` (else the same) per hop between machines.
    """

    def _plan(self) -> None:
        if self.kind != "allreduce":
            raise DesError(f"the tree algorithm runs all-reduce only, not {self.kind}")
        graph = self.network.graph
        machines = machine_groups(graph, self.group)
        if len(machines) < 2:
            raise DesError("the tree algorithm runs across machines; this group is on one")
        self.channels = max(2, self.params.channels)
        self.trees = [tree_channel(graph, self.group, c) for c in range(self.channels)]
        self.sizes = piece_sizes(self.nbytes / self.channels, self.params.chunk_bytes)
        machine = {rank: graph.nodes[rank].get("node", 0) for rank in self.group}
        self._machine = machine
        # Every rank but the root sends each piece up once and receives it down once.
        self.piece_transfers = self.channels * 2 * (len(self.group) - 1) * len(self.sizes)
        self.launch_s = self.params.launch_latency_s

    def run(self):
        """SimPy process body: run on every rank, return a :class:`CollectiveResult`."""
        env = self.env
        start = env.now
        up = Arrivals(env)
        down = Arrivals(env)
        ranks = [env.process(self._rank(rank, up, down)) for rank in self.group]
        yield simpy.AllOf(env, ranks)
        return CollectiveResult(
            kind=self.kind, ranks=self.group, nbytes=self.nbytes, start_s=start, end_s=env.now, rings=(),
            pieces_per_step=len(self.sizes), bytes_sent_per_rank=2 * self.nbytes, algorithm="tree",
            protocol=None, channels=self.channels,
        )

    def _rank(self, rank, up, down):
        yield from self._as_kernel(rank, self._work(rank, up, down))

    def _work(self, rank, up, down):
        env = self.env
        yield simpy.AllOf(env, [env.process(self._channel(rank, c, up, down)) for c in range(self.channels)])

    def _hop(self, src, dst):
        params = self.params
        inter = self._machine[src] != self._machine[dst]
        return params.hop_efficiency(inter), params.hop_step_latency_s(inter)

    def _up(self, rank, channel, up, down):
        parents = self.trees[channel]
        parent = parents[rank]
        children = [child for child, p in parents.items() if p == rank]
        label = f"{self.name} tree ch{channel}"
        pace = self.params.channel_bandwidth_bytes_per_s
        for index, size in enumerate(self.sizes):
            # Up: wait for this piece from every child, add, pass the sum on.
            for child in children:
                event = up.wait((child, channel), index + 1)
                if event is not None:
                    yield event
            if parent is not None:
                efficiency, step = self._hop(rank, parent)
                yield from send_pieces(
                    self, rank, parent, [size], up, (rank, channel), reads=2 if children else 1,
                    efficiency=efficiency, step_latency_s=step, pace_bytes_per_s=pace, label=label,
                )
            else:
                down.add((rank, channel))  # the root holds the total of this piece

    def _channel(self, rank, channel, up, down):
        env = self.env
        yield simpy.AllOf(env, [env.process(self._up(rank, channel, up, down)), env.process(self._down(rank, channel, down))])

    def _down(self, rank, channel, down):
        env = self.env
        parents = self.trees[channel]
        children = [child for child, p in parents.items() if p == rank]
        label = f"{self.name} tree ch{channel}"
        pace = self.params.channel_bandwidth_bytes_per_s
        # Every piece from the parent (the root has them), passed to the children.
        for index, size in enumerate(self.sizes):
            event = down.wait((rank, channel), index + 1)
            if event is not None:
                yield event
            sends = []
            for child in children:
                efficiency, step = self._hop(rank, child)
                sends.append(
                    env.process(
                        send_pieces(
                            self, rank, child, [size], down, (child, channel), reads=1, efficiency=efficiency,
                            step_latency_s=step, pace_bytes_per_s=pace, label=label,
                        )
                    )
                )
            if sends:
                yield simpy.AllOf(env, sends)
