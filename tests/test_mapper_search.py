"""The vectorised matmul search finds what an exhaustive Python search finds."""

from __future__ import annotations

import pytest
from test_mapper_support import load_preset, tiny_device, with_fields

from des.mapper import MapperParams, search_schedule
from des.mapper.matmul import (
    MatmulShape,
    all_candidates,
    evaluate_candidate,
    search_matmul,
    search_matmul_exhaustive,
)
from des.operators import Attention, BatchedMatmul, Matmul, Softmax

A100 = load_preset("a100")
MI210 = load_preset("mi210")
#: An A100 with a small L2 and SRAM, so that L2 tiles, loop orders and buffering matter.
CRAMPED = with_fields(A100, name="cramped", l2_bytes=48 * 1024.0, sram_bytes_per_unit=16 * 1024.0)

CASES = [
    (A100, MatmulShape(1, 16, 16, 16, 2)),
    (A100, MatmulShape(1, 20, 40, 24, 2)),
    (A100, MatmulShape(1, 48, 200, 16, 2)),
    (A100, MatmulShape(3, 3, 100, 5, 2)),
    (A100, MatmulShape(2, 64, 64, 64, 2)),
    (MI210, MatmulShape(1, 33, 17, 130, 1)),
    (CRAMPED, MatmulShape(1, 64, 96, 128, 2)),
    (CRAMPED, MatmulShape(1, 128, 32, 64, 4)),
    (tiny_device(l2_bytes=8192.0), MatmulShape(1, 64, 40, 48, 2)),
]


@pytest.mark.parametrize("device, shape", CASES, ids=lambda x: getattr(x, "name", None) or repr(x))
def test_vectorised_search_equals_exhaustive(device, shape):
    params = MapperParams()
    fast, fast_cost = search_matmul(shape, device, params)
    # every candidate, one by one in plain Python
    costs = {}
    for cand in all_candidates(shape, device):
        cost = evaluate_candidate(shape, device, params, cand)
        if cost is not None:
            costs[cand] = cost.total_s
    best = min(costs.values())
    optimal = [cand for cand, total in costs.items() if total <= best * (1 + 1e-12)]
    # the same fastest time, and the vectorised choice is one of the optimal candidates
    assert fast_cost.total_s == pytest.approx(best, rel=1e-12)
    assert fast in optimal
    if len(optimal) == 1:
        assert fast == optimal[0]


@pytest.mark.parametrize("device, shape", CASES[:4], ids=lambda x: getattr(x, "name", None) or repr(x))
def test_exhaustive_search_function(device, shape):
    params = MapperParams()
    slow, slow_cost = search_matmul_exhaustive(shape, device, params)
    fast, fast_cost = search_matmul(shape, device, params)
    assert slow_cost.total_s == pytest.approx(fast_cost.total_s, rel=1e-12)


def test_exhaustive_mode_builds_the_same_schedule():
    op = BatchedMatmul(2, 40, 48, 24)
    fast = search_schedule(A100, op)
    slow = search_schedule(A100, op, exhaustive=True)
    assert slow.standalone_s == pytest.approx(fast.standalone_s, rel=1e-12)
    assert slow.mapping["search"] == "exhaustive" and fast.mapping["search"] == "vectorised"


def test_cramped_device_uses_its_l2_tiles():
    # with 48 KiB of L2 the operands cannot stay: the chosen L2 tile must fit it
    schedule = search_schedule(CRAMPED, Matmul(512, 512, 512))
    l2 = schedule.mapping["l2_tile"]
    footprint = (l2["M2"] * l2["K2"] + l2["K2"] * l2["N2"] + l2["M2"] * l2["N2"]) * 2
    limit = CRAMPED.l2_bytes / (2 if schedule.mapping["l2_double_buffered"] else 1)
    assert footprint <= limit
    assert schedule.mapping["dram_bytes_physical"] > Matmul(512, 512, 512).min_dram_bytes


@pytest.mark.parametrize(
    "operator",
    [
        Matmul(32768, 12288, 12288),
        BatchedMatmul(4096, 2048, 128, 2048),
        Attention(64, 128, 131072, 131072, 128, causal=True),
        Attention(1, 1, 10**7, 10**7, 64, causal=True),
        Softmax(32768, 32768),
    ],
    ids=lambda op: op.describe(),
)
def test_cold_search_memory_is_bounded(operator):
    import tracemalloc

    import numpy  # noqa: F401  (its import is not part of a search)

    tracemalloc.start()
    try:
        search_schedule(A100, operator)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200e6
