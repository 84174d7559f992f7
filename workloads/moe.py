"""Routing of a mixture-of-experts layer: how many tokens each expert gets, and from where.

Real routers send each token to its ``top_k`` experts by learned scores; what the cost
depends on is how many tokens land on each expert. :func:`expert_loads` gives the count
per expert for ``tokens`` tokens:

- **balanced** (``skew = 0``, the default): ``tokens x top_k / experts`` each, the
  remainder given one by one to the lowest-numbered experts (what an auxiliary
  load-balancing loss aims at);
- **skewed** (``skew = s > 0``): expert popularity follows a Zipf law, the expert of
  rank ``q`` (1 the most popular) drawing a share proportional to ``q^-s``, its rank a
  seeded permutation of the experts (:class:`random.Random`, so the same seed gives the
  same loads, and each layer takes ``seed + layer``). Counts are whole (largest
  remainder) and no expert takes more than ``tokens`` (a token picks distinct experts);
  the excess goes to the others.

:func:`dispatch_counts` splits the loads over the ranks holding the tokens (each
rank's tokens routed like the whole batch), giving the all-to-all's matrix.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from des.errors import DesError


def _largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` into whole counts (ties: lower index)."""
    mass = sum(weights)
    if total == 0 or mass <= 0:
        return [0] * len(weights)
    exact = [total * w / mass for w in weights]
    counts = [int(x) for x in exact]
    left = total - sum(counts)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:left]:
        counts[i] += 1
    return counts


def expert_loads(tokens: int, experts: int, top_k: int, skew: float = 0.0, seed: int = 0) -> tuple[int, ...]:
    """Tokens routed to each expert (their sum is ``tokens x top_k``).

    Raises
    ------
    DesError
        For a negative skew or ``top_k`` above the experts.
    """
    if not skew >= 0:
        raise DesError(f"MoE skew must be zero or more, got {skew!r}")
    if top_k > experts:
        raise DesError(f"top_k {top_k} is more than the {experts} experts")
    total = tokens * top_k
    if skew == 0:
        base, extra = divmod(total, experts)
        return tuple(base + (1 if e < extra else 0) for e in range(experts))
    ranks = list(range(1, experts + 1))
    random.Random(seed).shuffle(ranks)
    weights = [rank ** -skew for rank in ranks]
    loads = _largest_remainder(total, weights)
    # No expert takes a token twice: give what exceeds `tokens` to the others.
    while any(load > tokens for load in loads):
        excess = sum(max(0, load - tokens) for load in loads)
        loads = [min(load, tokens) for load in loads]
        room = [w if load < tokens else 0.0 for w, load in zip(weights, loads, strict=True)]
        extra = _largest_remainder(excess, room)
        loads = [load + more for load, more in zip(loads, extra, strict=True)]
    return tuple(loads)


def dispatch_counts(rows_per_rank: Sequence[int], loads: Sequence[int], top_k: int) -> list[list[int]]:
    """Tokens each rank sends to each expert: rank ``r``'s ``rows x top_k`` routed copies
    split in proportion to ``loads`` (whole counts, largest remainder)."""
    return [_largest_remainder(rows * top_k, loads) for rows in rows_per_rank]


def split_rows(rows: int, ranks: int) -> list[int]:
    """``rows`` tokens split over ``ranks`` as evenly as whole rows allow (first ranks one more)."""
    base, extra = divmod(rows, ranks)
    return [base + (1 if r < extra else 0) for r in range(ranks)]


class MoeLayout:
    """Where a workload's experts sit and how its tokens reach them, layer by layer.

    Parameters
    ----------
    moe : workloads.model.MoeConfig
        The model's experts.
    tp : int
        Ranks of the group (attention's tensor parallelism).
    ep : int
        Expert parallelism: 1 (every rank holds every expert, its FFN width split over
        the ``tp`` ranks) or ``tp`` (rank ``r`` holds experts ``r E / ep`` onwards whole).
    rows : int
        Token rows of the step (``batch x S``).
    skew, seed : float, int
        Routing skew (:func:`expert_loads`); layer ``l`` (0-based) uses ``seed + l``.
    """

    def __init__(self, moe, tp: int, ep: int, rows: int, skew: float = 0.0, seed: int = 0) -> None:
        if ep not in (1, tp):
            raise DesError(
                f"EP={ep}: experts are placed with EP 1 (TP inside every expert) or EP equal to TP={tp} "
                "(whole experts, tokens exchanged all-to-all)"
            )
        if moe.experts % ep:
            raise DesError(f"EP={ep} does not divide the {moe.experts} experts")
        if ep == 1 and (moe.ffn_hidden % tp or moe.shared_ffn_hidden * moe.shared_experts % tp):
            raise DesError(f"TP={tp} does not divide the experts' FFN width {moe.ffn_hidden}")
        self.experts, self.top_k, self.ep, self.tp = moe.experts, moe.top_k, ep, tp
        self.dense_layers = moe.dense_layers
        self.experts_local = moe.experts // ep
        self.expert_width = moe.ffn_hidden // (tp if ep == 1 else 1)
        shared = moe.shared_experts * moe.shared_ffn_hidden
        self.shared_width = shared // (tp if ep == 1 else 1)
        self.shared_gate = moe.shared_gate
        self.rows = rows
        self.rows_per_rank = split_rows(rows, tp) if ep > 1 else [rows] * tp
        self.skew, self.seed = float(skew), int(seed)
        self._loads: dict[int, tuple[int, ...]] = {}

    def is_moe(self, layer: int) -> bool:
        """Whether layer ``layer`` (0-based) has experts."""
        return layer >= self.dense_layers

    def loads(self, layer: int) -> tuple[int, ...]:
        """Tokens per expert in layer ``layer`` (all of the step's rows)."""
        if layer not in self._loads:
            self._loads[layer] = expert_loads(self.rows, self.experts, self.top_k, self.skew, self.seed + layer)
        return self._loads[layer]

    def dispatch(self, layer: int) -> list[list[int]]:
        """Tokens rank ``r`` sends to expert ``e`` (rows: ranks, columns: experts)."""
        return dispatch_counts(self.rows_per_rank, self.loads(layer), self.top_k)

    def exchange_matrix(self, layer: int, bytes_per_token: float) -> tuple[tuple[float, ...], ...]:
        """The dispatch all-to-all's bytes from rank to rank (each routed copy a token row)."""
        counts = self.dispatch(layer)
        per = self.experts_local
        return tuple(
            tuple(float(sum(row[d * per:(d + 1) * per]) * bytes_per_token) for d in range(self.tp)) for row in counts
        )
