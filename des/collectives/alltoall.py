"""All-to-all and point-to-point sends, simulated piece by piece over the links.

An all-to-all moves a matrix of bytes: rank ``i`` sends ``M[i][j]`` to rank ``j`` (MoE
dispatch and combine; the sizes follow the routing, so the matrix need not be uniform).
The diagonal stays on the device (a DRAM copy, read and written). Two schedules:

``direct``
    Every rank sends to every peer at once, as NCCL runs an all-to-all (a group of
    ``ncclSend`` / ``ncclRecv`` to every peer, rank ``i`` taking peers ``i + 1``,
    ``i + 2``... in turn so that no port receives from every rank at once).
    The links share what crosses them. On an idle ideal switch (ports of bandwidth B at
    efficiency e, wire latency w per edge, two edges through the switch, a launch L,
    messages cut into p pieces, the switch storing and forwarding each) the call takes
    ``L + max_i max(out_i, in_i) / (e B) + m / (p e B) + 2 w``, ``out_i`` and ``in_i``
    being rank i's off-diagonal row and column sums and ``m`` the largest message
    (:func:`direct_time_s`).
``pairwise``
    ``n - 1`` rounds; in round ``r`` rank ``i`` sends to ``(i + r) mod n`` and receives
    from ``(i - r) mod n``, starting its next round when both are done (the classic
    pairwise exchange of MPI libraries). On the ideal switch, for a uniform matrix of
    ``m`` bytes per pair: ``L + (n - 1) ((1 + 1 / p) m / (e B) + 2 w)``
    (:func:`pairwise_time_s`).

A point-to-point send (pipeline-parallel activations) is a two-rank all-to-all with one
entry. Pieces are read from the sender's DRAM while they go out and written to the
receiver's, as in every collective of des; the kernel holds ``compute_units`` units on
each rank for the call.
"""

from __future__ import annotations

import math

import simpy

from des.collectives.flows import Arrivals, piece_sizes, send_pieces
from des.collectives.ring import Collective, CollectiveResult
from des.errors import DesError
from des.units import format_bytes

#: The schedules of an all-to-all.
ALLTOALL_ALGORITHMS = ("direct", "pairwise")


def uniform_matrix(ranks: int, nbytes_per_pair: float) -> tuple[tuple[float, ...], ...]:
    """The matrix of an all-to-all that sends ``nbytes_per_pair`` between every two ranks
    (and keeps as much on each)."""
    return tuple(tuple(float(nbytes_per_pair) for _ in range(ranks)) for _ in range(ranks))


def check_matrix(matrix, ranks: int) -> tuple[tuple[float, ...], ...]:
    """``matrix`` as a tuple of ``ranks`` rows of ``ranks`` finite, non-negative floats."""
    try:
        rows = tuple(tuple(float(x) for x in row) for row in matrix)
    except (TypeError, ValueError):
        raise DesError("an all-to-all's matrix must be rows of numbers (bytes from rank i to rank j)") from None
    if len(rows) != ranks or any(len(row) != ranks for row in rows):
        raise DesError(f"an all-to-all over {ranks} ranks needs a {ranks} x {ranks} matrix of bytes")
    if any(not (x >= 0 and math.isfinite(x)) for row in rows for x in row):
        raise DesError("an all-to-all's matrix holds bytes: finite and zero or more")
    if not any(x > 0 for i, row in enumerate(rows) for j, x in enumerate(row) if i != j):
        raise DesError("an all-to-all must send something between two different ranks")
    return rows


def direct_time_s(matrix, link_bytes_per_s: float, efficiency: float, launch_s: float, wire_latency_s: float,
                  pieces: int = 1) -> float:
    """Closed form of the direct all-to-all on an idle ideal switch (module docstring),
    each message cut into ``pieces``: the busiest port's bytes, plus the last piece's
    second hop (a switch stores and forwards each piece)."""
    n = len(matrix)
    out = [sum(matrix[i][j] for j in range(n) if j != i) for i in range(n)]
    into = [sum(matrix[i][j] for i in range(n) if i != j) for j in range(n)]
    largest = max(matrix[i][j] for i in range(n) for j in range(n) if i != j)
    rate = efficiency * link_bytes_per_s
    return launch_s + max(max(out), max(into)) / rate + largest / pieces / rate + 2 * wire_latency_s


def pairwise_time_s(ranks: int, nbytes_per_pair: float, link_bytes_per_s: float, efficiency: float,
                    launch_s: float, wire_latency_s: float, pieces: int = 1) -> float:
    """Closed form of the pairwise all-to-all of a uniform matrix on the ideal switch:
    ``n - 1`` rounds of one message (and its last piece's second hop)."""
    rate = efficiency * link_bytes_per_s
    return launch_s + (ranks - 1) * (nbytes_per_pair * (1 + 1 / pieces) / rate + 2 * wire_latency_s)


class AllToAll(Collective):
    """An all-to-all of ``matrix`` (bytes from rank i to rank j) over ``group``.

    ``nbytes`` is the matrix's sum; ``algorithm`` one of :data:`ALLTOALL_ALGORITHMS`.
    Other parameters as :class:`~des.collectives.ring.Collective`.
    """

    def __init__(self, *args, matrix=None, algorithm: str = "direct", **kwargs) -> None:
        if algorithm not in ALLTOALL_ALGORITHMS:
            raise DesError(f"unknown all-to-all schedule {algorithm!r}; known: {', '.join(ALLTOALL_ALGORITHMS)}")
        self.algorithm = algorithm
        self.matrix = matrix
        super().__init__(*args, **kwargs)

    def _plan(self) -> None:
        n = len(self.group)
        if n < 2:
            raise DesError("an all-to-all needs at least two ranks")
        if len(set(self.group)) != n:
            raise DesError(f"an all-to-all's ranks must be distinct, got {', '.join(self.group)}")
        if self.matrix is None:
            self.matrix = uniform_matrix(n, self.nbytes / (n * n))
        self.matrix = check_matrix(self.matrix, n)
        chunk = self.params.chunk_bytes
        self.sizes = {
            (i, j): piece_sizes(self.matrix[i][j], chunk)
            for i in range(n) for j in range(n) if i != j and self.matrix[i][j] > 0
        }
        self.piece_transfers = sum(len(sizes) for sizes in self.sizes.values())
        limit = self.network.max_piece_transfers
        if self.piece_transfers > limit:
            raise DesError(
                f"{self.kind} of {format_bytes(self.nbytes)} over {n} ranks would simulate {self.piece_transfers:,} "
                f"piece transfers, more than the limit of {limit:,}; use a larger collective.chunk_bytes, or raise "
                "the limit (--max-pieces N, or $DES_MAX_PIECE_TRANSFERS)"
            )
        self.launch_s = self.params.launch_latency_s
        # NCCL spreads its point-to-point channels over the peers: each peer gets the
        # channels divided by the ranks, rounded down to a power of two, at least one
        # (p2pnChannelsPerPeer, src/graph/connect.cc); each channel is one block's pace.
        # A send has one peer, which takes them all.
        channels = max(1, int(self.params.channels or 1))
        share = channels if self.kind == "send" else channels // n
        self.channels_per_peer = 1 << max(0, (max(1, share)).bit_length() - 1)
        self.pace_bytes_per_s = self.channels_per_peer * self.params.channel_bandwidth_bytes_per_s

    def run(self):
        """SimPy process body: every rank's kernel; returns a :class:`CollectiveResult`."""
        env = self.env
        start = env.now
        arrivals = Arrivals(env)
        ranks = [env.process(self._as_kernel(rank, self._work(i, arrivals))) for i, rank in enumerate(self.group)]
        yield simpy.AllOf(env, ranks)
        n = len(self.group)
        sent = max(sum(self.matrix[i][j] for j in range(n) if j != i) for i in range(n))
        return CollectiveResult(
            kind=self.kind, ranks=self.group, nbytes=self.nbytes, start_s=start, end_s=env.now, rings=(),
            pieces_per_step=max((len(s) for s in self.sizes.values()), default=1), bytes_sent_per_rank=sent,
            algorithm=self.algorithm, protocol=None, channels=self.params.compute_units,
        )

    def _work(self, i: int, arrivals: Arrivals):
        env = self.env
        n = len(self.group)
        device = self.network.devices[self.group[i]]
        local = self.matrix[i][i]
        copied = device.dram.transfer(2 * local) if local > 0 else None
        if self.algorithm == "direct":
            # Peers in NCCL's order for a group of sends, i + 1, i + 2, ...: at any moment
            # every rank sends to a different peer, so no port takes n - 1 streams at once.
            peers = [(i + r) % n for r in range(1, n)]
            sends = [env.process(self._send(i, j, arrivals)) for j in peers if (i, j) in self.sizes]
            yield simpy.AllOf(env, sends)
            expected = sum(len(self.sizes[(k, i)]) for k in range(n) if (k, i) in self.sizes)
            done = arrivals.wait(i, expected)
            if done is not None:
                yield done
        else:
            for r in range(1, n):
                to, source = (i + r) % n, (i - r) % n
                if (i, to) in self.sizes:
                    yield env.process(self._send(i, to, arrivals, key=(i, r)))
                if (source, i) in self.sizes:
                    done = arrivals.wait((source, r), len(self.sizes[(source, i)]))
                    if done is not None:
                        yield done
        if copied is not None and not copied.processed:
            yield copied

    def _send(self, i: int, j: int, arrivals: Arrivals, key=None):
        params = self.params
        yield from send_pieces(
            self, self.group[i], self.group[j], self.sizes[(i, j)], arrivals, j if key is None else key, reads=1,
            efficiency=params.bandwidth_efficiency, step_latency_s=params.step_latency_s,
            pace_bytes_per_s=self.pace_bytes_per_s, label=f"{self.name} {self.algorithm}",
        )
