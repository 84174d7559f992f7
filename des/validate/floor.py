"""The noise floor of a measurement table: the least error any size-monotone model can reach.

Measured collective latencies at small sizes are not a function of the size alone: the
Vidur tables, for instance, hold neighbouring sizes at 20 us and at 60 us (host-side
stalls of ``torch.distributed``, timer granularity). No deterministic simulator can fit
both. To say how much of a table's error is the simulator's and how much is the table's,
:func:`monotone_fit` finds the non-decreasing curve (time never falls as the message
grows) with the least mean absolute percentage error against the measurements; its
error is a floor for every model whose time does not fall with size, des's included.

The fit is a weighted-L1 isotonic regression (the error ``|f - y| / y`` is an L1 loss
weighted by ``1 / y``) solved exactly by pooling adjacent violators, each pool taking
the weighted median of its measurements.
"""

from __future__ import annotations

from collections.abc import Sequence


def weighted_median(points: list[tuple[float, float]]) -> float:
    """The lower weighted median of ``(value, weight)`` pairs."""
    ordered = sorted(points)
    total = sum(weight for _value, weight in ordered)
    running = 0.0
    for value, weight in ordered:
        running += weight
        if running >= total / 2:
            return value
    return ordered[-1][0]


def monotone_fit(measured: Sequence[float]) -> list[float]:
    """The non-decreasing sequence of least mean absolute percentage error to ``measured``.

    Parameters
    ----------
    measured : sequence of float
        Positive measurements in the order of the quantity they must not fall along
        (message size, ascending).

    Returns
    -------
    list of float
        One fitted value per measurement, never decreasing.
    """
    pools: list[tuple[list[tuple[float, float]], float]] = []
    for value in measured:
        if not value > 0:
            raise ValueError(f"measurements must be positive, got {value!r}")
        points = [(float(value), 1.0 / value)]
        level = float(value)
        while pools and pools[-1][1] > level:
            previous, _ = pools.pop()
            points = previous + points
            level = weighted_median(points)
        pools.append((points, level))
    fitted: list[float] = []
    for points, level in pools:
        fitted.extend([level] * len(points))
    return fitted


def floor_errors(sizes: Sequence[float], measured: Sequence[float]) -> list[float]:
    """Absolute relative error of :func:`monotone_fit` at each row, in the rows' order.

    Rows are ordered by size for the fit (equal sizes keep their order) and the errors
    returned in the order given.
    """
    if len(sizes) != len(measured):
        raise ValueError("sizes and measurements differ in length")
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    fitted = monotone_fit([measured[i] for i in order])
    errors = [0.0] * len(sizes)
    for rank, index in enumerate(order):
        errors[index] = abs(fitted[rank] - measured[index]) / measured[index]
    return errors
