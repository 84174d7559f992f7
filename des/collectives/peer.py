"""All-reduce through NVLink peer memory: the inference engines' one-shot and two-shot kernels.

TensorRT-LLM's and vLLM's custom all-reduce kernels do not pass a ring: every rank maps
every peer's buffer (CUDA IPC) and loads from it directly.

- **one-shot**: each rank copies its input into its shared buffer, all ranks meet at a
  barrier (flags written into each peer's memory), then each rank reads the whole
  buffer of every peer and sums locally. Each rank's ingress carries ``(n - 1) S``: a
  one-shot all-reduce on 8 GPUs moves 7x the message per rank, on all links at once.
- **two-shot**: after the copy and the barrier, rank r reads only shard r (``S / n``)
  of every peer and writes the sum into its own buffer (a reduce-scatter), a second
  barrier, then reads every other rank's reduced shard (an all-gather): ``2 (n - 1) S / n``
  per rank, like a ring, in two steps instead of ``2 (n - 1)``.

On an ideal switch (ports of bandwidth B at efficiency e, no contention, DRAM much
faster than the links), with launch L, barrier latency b, wire latency w per edge (two
edges through the switch) and each rank's share cut into p pieces: every rank's port
carries ``(n - 1)`` shares out (its buffer, read by every peer) and ``(n - 1)`` in, and
the pieces pipeline, so a phase takes ``(n - 1 + 1 / p) h + 2 w`` with
``h = share / (e B)``:

- one-shot (share S): ``L + 2 S / D + b + [(n - 1 + 1 / p) h + 2 w + b]``
- two-shot (share S / n): ``L + 2 S / D + b + 2 [(n - 1 + 1 / p) h + 2 w + b]``

where ``2 S / D`` is the copy into the shared buffer at DRAM bandwidth D.
:func:`oneshot_time_s` and :func:`twoshot_time_s` are these closed forms.
"""

from __future__ import annotations

import simpy

from des.collectives.flows import (
    Arrivals,
    Barrier,
    piece_sizes,
    send_pieces,
    start_piece,
    wait_sent,
)
from des.collectives.ring import Collective, CollectiveResult
from des.errors import DesError

#: The peer-memory algorithms.
PEER_ALGORITHMS = ("oneshot", "twoshot")


def _phase_s(ranks, share, link_bytes_per_s, efficiency, barrier_s, wire_latency_s, pieces):
    hop = share / (efficiency * link_bytes_per_s)
    return (ranks - 1 + 1 / pieces) * hop + 2 * wire_latency_s + barrier_s


def oneshot_time_s(ranks: int, nbytes: float, link_bytes_per_s: float, efficiency: float, launch_s: float,
                   barrier_s: float, wire_latency_s: float, dram_bytes_per_s: float, pieces: int = 1) -> float:
    """Closed form of the one-shot all-reduce on an idle ideal switch (module docstring)."""
    phase = _phase_s(ranks, nbytes, link_bytes_per_s, efficiency, barrier_s, wire_latency_s, pieces)
    return launch_s + 2 * nbytes / dram_bytes_per_s + barrier_s + phase


def twoshot_time_s(ranks: int, nbytes: float, link_bytes_per_s: float, efficiency: float, launch_s: float,
                   barrier_s: float, wire_latency_s: float, dram_bytes_per_s: float, pieces: int = 1) -> float:
    """Closed form of the two-shot all-reduce on an idle ideal switch (module docstring)."""
    phase = _phase_s(ranks, nbytes / ranks, link_bytes_per_s, efficiency, barrier_s, wire_latency_s, pieces)
    return launch_s + 2 * nbytes / dram_bytes_per_s + barrier_s + 2 * phase


class PeerAllReduce(Collective):
    """One-shot or two-shot all-reduce over peer memory (parameters as :class:`Collective`).

    ``params.algorithm`` is ignored; the algorithm is the ``algorithm`` argument. The
    kernel holds ``params.compute_units`` units per rank (its thread blocks);
    ``params.step_latency_s`` is the barrier's signalling latency.
    """

    def __init__(self, *args, algorithm: str = "oneshot", **kwargs) -> None:
        if algorithm not in PEER_ALGORITHMS:
            raise DesError(f"unknown peer-memory all-reduce {algorithm!r}; known: {', '.join(PEER_ALGORITHMS)}")
        self.algorithm = algorithm
        super().__init__(*args, **kwargs)

    def _plan(self) -> None:
        if self.kind != "allreduce":
            raise DesError(f"the peer-memory {self.algorithm} kernel runs all-reduce only, not {self.kind}")
        n = len(self.group)
        if n < 2:
            raise DesError("a collective needs at least two ranks")
        share = self.nbytes if self.algorithm == "oneshot" else self.nbytes / n
        self.sizes = piece_sizes(share, self.params.chunk_bytes)
        phases = 1 if self.algorithm == "oneshot" else 2
        self.piece_transfers = phases * n * (n - 1) * len(self.sizes)
        self.launch_s = self.params.launch_latency_s

    def run(self):
        """SimPy process body: run the kernel on every rank, return a :class:`CollectiveResult`."""
        env = self.env
        start = env.now
        barrier = Barrier(env, len(self.group), self.params.step_latency_s)
        arrivals = Arrivals(env)
        ranks = [env.process(self._rank(rank, barrier, arrivals)) for rank in self.group]
        yield simpy.AllOf(env, ranks)
        n = len(self.group)
        sent = (n - 1) * self.nbytes if self.algorithm == "oneshot" else 2 * (n - 1) * self.nbytes / n
        return CollectiveResult(
            kind=self.kind, ranks=self.group, nbytes=self.nbytes, start_s=start, end_s=env.now, rings=(),
            pieces_per_step=len(self.sizes), bytes_sent_per_rank=sent, algorithm=self.algorithm, protocol=None,
            channels=self.params.compute_units,
        )

    def _rank(self, rank: str, barrier: Barrier, arrivals: Arrivals):
        yield from self._as_kernel(rank, self._work(rank, barrier, arrivals))

    def _work(self, rank: str, barrier: Barrier, arrivals: Arrivals):
        env = self.env
        device = self.network.devices[rank]
        # Copy the input into this rank's shared buffer (read and write it).
        copied = device.dram.transfer(2 * self.nbytes)
        yield copied
        yield from barrier.meet(0)
        phases = ("rs", "ag") if self.algorithm == "twoshot" else ("all",)
        for index, phase in enumerate(phases):
            # Every peer's piece is a load this rank issues; it is modelled as the peer
            # sending it, so it leaves the peer's DRAM and crosses the peer's egress and
            # this rank's ingress. The peers' streams run at once.
            peers = [peer for peer in self.group if peer != rank]
            if len(self.sizes) == 1:
                # One piece from each: all sent now, in the order their processes would.
                params = self.params
                yield from wait_sent(env, [
                    start_piece(self, peer, rank, self.sizes[0], arrivals, (rank, phase), reads=1,
                                efficiency=params.bandwidth_efficiency, step_latency_s=0.0,
                                pace_bytes_per_s=params.channel_bandwidth_bytes_per_s,
                                label=f"{self.name} {self.algorithm}")
                    for peer in peers
                ])
            else:
                yield simpy.AllOf(env, [env.process(self._pull(peer, rank, arrivals, (rank, phase), index))
                                        for peer in peers])
            done = arrivals.wait((rank, phase), (len(self.group) - 1) * len(self.sizes))
            if done is not None:
                yield done
            # Sum into the output (or the reduced shard): one read of the local part, one write.
            local = self.nbytes if phase == "all" else self.nbytes / len(self.group)
            written = device.dram.transfer(2 * local)
            yield from barrier.meet(index + 1)
            if not written.processed:
                yield written

    def _pull(self, peer: str, rank: str, arrivals: Arrivals, key, index: int):
        params = self.params
        yield from send_pieces(
            self, peer, rank, self.sizes, arrivals, key, reads=1, efficiency=params.bandwidth_efficiency,
            step_latency_s=0.0, pace_bytes_per_s=params.channel_bandwidth_bytes_per_s,
            label=f"{self.name} {self.algorithm}",
        )
