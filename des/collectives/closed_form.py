"""Closed forms of ring collectives, for tests and quick estimates.

For n ranks on a ring whose hops have bandwidth B (already scaled by the protocol's
efficiency) and per-step latency alpha (link latency plus software step latency), with
no chunking and no contention:

- all-reduce: ``2 (n - 1) (alpha + S / (n B))``
- all-gather / reduce-scatter: ``(n - 1) (alpha + S / (n B))``

plus the collective's fixed launch latency. With pipelining into c pieces per step
the time lies between the bandwidth bound ``2 (n - 1) / n * S / B`` and the unchunked
form. With k channels, S becomes S / k per ring.
"""

from __future__ import annotations

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
    """
    steps = _STEP_FACTOR[kind] * (ranks - 1)
    return launch_latency_s + steps * (alpha_s + nbytes / channels / (ranks * bandwidth_bytes_per_s))


def ring_bandwidth_bound_s(kind: str, ranks: int, nbytes: float, bandwidth_bytes_per_s: float, channels: int = 1) -> float:
    """Lower bound: the bytes each rank must send over its link at full bandwidth."""
    steps = _STEP_FACTOR[kind] * (ranks - 1)
    return steps * nbytes / channels / (ranks * bandwidth_bytes_per_s)
