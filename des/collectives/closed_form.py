"""Closed forms of ring collectives, for tests and quick estimates.

For n ranks on a ring whose hops have bandwidth B (already scaled by the protocol's
efficiency) and per-step latency alpha (link latency plus software step latency), with
no chunking and no contention:

- all-reduce: ``2 (n - 1) (alpha + S / (n B))``
- all-gather / reduce-scatter: ``(n - 1) (alpha + S / (n B))``

plus the collective's fixed launch latency. With pipelining into c pieces per step
the time lies between the bandwidth bound ``2 (n - 1) / n * S / B`` and the unchunked
form. With k channels, S becomes S / k per ring. A hop of h store-and-forward links
moves each unchunked piece h times: ``alpha + h S / (n B)`` per step.

A hierarchical all-reduce over M machines of G ranks (intra-machine rings with
bandwidth B_i and step latency alpha_i, rings among peers with B_e and alpha_e) is the
sum of its three phases, each as above:

``(G - 1) (alpha_i + S / (G B_i))`` (reduce-scatter inside)
``+ 2 (M - 1) (alpha_e + S / (G M B_e))`` (all-reduce of S / G among peers)
``+ (G - 1) (alpha_i + S / (G B_i))`` (all-gather inside), plus one launch latency.

:func:`pipelined_ring_time_s` adds the pieces of at most ``chunk_bytes``: with c equal
pieces of time t per hop and s steps, ``launch + (s - 1) max(c t, a + t) + a + c t``
where ``a = alpha + (h - 1) t``; with c = 1 it is :func:`ring_time_s`. It is what
:func:`choose_protocol` compares across protocols (NCCL picks its protocol per call
the same way, from its own closed-form model in ``src/graph/tuning.cc``).
"""

from __future__ import annotations

import math

import numpy as np

#: Steps as a multiple of (n - 1).
_STEP_FACTOR = {"allreduce": 2, "allgather": 1, "reducescatter": 1}


def ring_time_s(
    kind: str,
    ranks: int,
    nbytes: float,
    bandwidth_bytes_per_s: float,
    alpha_s: float,
    launch_latency_s: float = 0.0,
    channels: int = 1,
    hops: int = 1,
) -> float:
    """Unchunked, uncontended ring collective time.

    Parameters
    ----------
    kind : str
        ``allreduce``, ``allgather`` or ``reducescatter``.
    ranks : int
        n.
    nbytes : float
        S (nccl-tests convention).
    bandwidth_bytes_per_s : float
        Effective per-hop bandwidth B.
    alpha_s : float
        Latency per step.
    launch_latency_s : float
        Fixed cost per call.
    channels : int
        Rings sharing the data equally, each on its own links.
    hops : int
        Store-and-forward links on each ring hop (2 through a switch).
    """
    steps = _STEP_FACTOR[kind] * (ranks - 1)
    piece_s = nbytes / channels / (ranks * bandwidth_bytes_per_s)
    return launch_latency_s + steps * (alpha_s + hops * piece_s)


def hierarchical_time_s(
    ranks_per_node: int,
    nodes: int,
    nbytes: float,
    intra_bandwidth_bytes_per_s: float,
    intra_alpha_s: float,
    inter_bandwidth_bytes_per_s: float,
    inter_alpha_s: float,
    launch_latency_s: float = 0.0,
    intra_hops: int = 1,
    inter_hops: int = 1,
) -> float:
    """Unchunked, uncontended hierarchical all-reduce time.

    Parameters
    ----------
    ranks_per_node : int
        G, ranks in each machine.
    nodes : int
        M, machines.
    nbytes : float
        S, the buffer each rank holds.
    intra_bandwidth_bytes_per_s, intra_alpha_s : float
        Effective bandwidth and per-step latency of a hop inside a machine.
    inter_bandwidth_bytes_per_s, inter_alpha_s : float
        The same for a hop between machines (each peer ring on its own NICs).
    launch_latency_s : float
        Fixed cost per call, paid once.
    intra_hops, inter_hops : int
        Store-and-forward links on a hop inside a machine and between machines.
    """
    inside = 0.0
    if ranks_per_node > 1:
        inside = ring_time_s("reducescatter", ranks_per_node, nbytes, intra_bandwidth_bytes_per_s, intra_alpha_s, hops=intra_hops)
    across = ring_time_s(
        "allreduce", nodes, nbytes / ranks_per_node, inter_bandwidth_bytes_per_s, inter_alpha_s, hops=inter_hops
    )
    return launch_latency_s + 2 * inside + across


def ring_bandwidth_bound_s(kind: str, ranks: int, nbytes: float, bandwidth_bytes_per_s: float, channels: int = 1) -> float:
    """Lower bound: the bytes each rank must send over its link at full bandwidth."""
    steps = _STEP_FACTOR[kind] * (ranks - 1)
    return steps * nbytes / channels / (ranks * bandwidth_bytes_per_s)


def pipelined_ring_time_s(
    kind: str,
    ranks: int,
    nbytes,
    bandwidth_bytes_per_s,
    alpha_s,
    launch_latency_s=0.0,
    channels: int = 1,
    hops: int = 1,
    chunk_bytes: float = math.inf,
):
    """Uncontended ring time with each step's share pipelined in pieces.

    Parameters are those of :func:`ring_time_s` plus ``chunk_bytes``, the largest
    piece (``inf``: unchunked). ``nbytes``, the bandwidth and the latencies may be
    numpy arrays (the calibration script scores a grid at once).
    """
    steps = _STEP_FACTOR[kind] * (ranks - 1)
    share = np.asarray(nbytes, dtype=float) / channels / ranks
    if math.isfinite(chunk_bytes):
        pieces = np.maximum(1.0, np.ceil(share / chunk_bytes))
    else:
        pieces = np.ones_like(share)
    piece_s = share / pieces / bandwidth_bytes_per_s
    alpha = alpha_s + (hops - 1) * piece_s
    total = (
        launch_latency_s
        + (steps - 1) * np.maximum(pieces * piece_s, alpha + piece_s)
        + alpha
        + pieces * piece_s
    )
    return float(total) if np.ndim(total) == 0 else total


def choose_protocol(params, kind: str, ranks: int, nbytes: float, link_bandwidth_bytes_per_s: float,
                    link_latency_s: float, hops: int = 1, channels: int = 1, inter_node: bool = False):
    """The protocol of ``params`` with the least :func:`pipelined_ring_time_s`.

    Parameters
    ----------
    params : CollectiveParams
        With a non-empty ``protocols``.
    kind, ranks, nbytes, channels, hops
        As :func:`pipelined_ring_time_s`.
    link_bandwidth_bytes_per_s : float
        Raw bandwidth one ring gets on its slowest hop (before the protocol's efficiency).
    link_latency_s : float
        Wire latency of one ring hop (all its links).
    inter_node : bool
        Whether the ring's slowest hop runs between machines (its ``inter_node_*``).

    Returns
    -------
    (str, float)
        The protocol's name and its predicted time; ties go to the earlier of
        ``ll``, ``ll128``, ``simple``.
    """
    best = None
    for name in params.protocol_names():
        single = params.for_protocol(name)
        time_s = pipelined_ring_time_s(
            kind,
            ranks,
            nbytes,
            link_bandwidth_bytes_per_s * single.hop_efficiency(inter_node),
            link_latency_s + single.hop_step_latency_s(inter_node),
            single.launch_latency_s,
            channels,
            hops,
            single.chunk_bytes,
        )
        if best is None or time_s < best[1]:
            best = (name, time_s)
    return best
