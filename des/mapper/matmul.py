"""Matmul mapping: two tiling levels, systolic timing, waves of one tile per unit.

The model, after LLMCompass (Zhang et al., ISCA 2024), evaluated for every candidate
at once with numpy.

Candidates
    L1 tile ``(M1, N1, K1)`` in a compute unit's SRAM, always double-buffered, so
    ``(M1*K1 + K1*N1 + sk*M1*N1) * bytes`` must fit half the SRAM; its split
    ``(sm, sn, sk)`` across the unit's systolic arrays (``sm*sn*sk`` = arrays per
    unit, a K split adds a vector-unit reduction of the ``sk`` partial tiles); a
    split-K factor ``Ks`` across units (partials in fp32, reduced on the vector units
    after the main waves); an L2 tile ``(M2, N2, K2) >= (M1, N1, K1)`` that sets the
    DRAM traffic for its loop order, double-buffered when A, B and C tiles fit in
    half the L2 (DRAM overlapped with compute), else loaded and computed in turn.
    Tile sides are powers of two (16 = the array side, as in LLMCompass); a tile
    larger than the matrix is clipped to it.

Time of one tile on one unit (cycles)
    ``steps = ceil(K/Ks / K1)``; each step streams its A and B slices from L2 at the
    unit's share of L2 bandwidth while the arrays compute, double-buffered:
    ``step = max(systolic, l2)``, ``systolic = ceil(m/H)*ceil(n/W) * k / macs /
    matrix_efficiency`` for the ``(m, k, n)`` part of each array (folds stream back to
    back); plus the first step's load, one fill and drain ``H + W``, the array-split
    reduction and writing C to L2.

Waves
    ``tiles = batch * ceil(M/M1) * ceil(N/N1) * Ks`` run in waves of one tile per
    unit. The kernel pays one DRAM latency, loads the first wave's operands, runs
    the waves with DRAM traffic spread evenly over them (loads run ahead across
    waves), reduces split-K partials, and writes the last wave's C.

GEMV (``M`` or ``N`` is 1) takes ``max(flops / vector peak, bytes / DRAM bandwidth)``.

:func:`search_matmul` is the vectorised search; :func:`search_matmul_exhaustive`
evaluates every candidate with plain Python (:func:`evaluate_candidate`), for tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from des.errors import DesError
from des.mapper.params import ACCUMULATOR_BYTES, MapperParams
from des.mapper.schedule import TileSchedule
from des.mapper.waves import GroupBuilder
from des.specs import DeviceSpec

#: L1 tile sides along M and N: powers of two from the array side (16, as in
#: LLMCompass) to 512, beyond which even the C tile alone overflows every preset's SRAM.
TILE_MN = tuple(2**e for e in range(4, 10))
#: L1 tile depths along K, 16 to 1024 (a 16x1024 + 1024x16 fp16 slice pair is 64 KiB).
TILE_K = tuple(2**e for e in range(4, 11))
#: Split-K factors across compute units (CUTLASS/cuBLAS "split-K" and "stream-K").
K_SPLITS = tuple(2**e for e in range(0, 8))
#: L2 tile sides: powers of two from 16 upwards, as far as the matrix needs.
L2_TILES = tuple(2**e for e in range(4, 32))
#: Loop orders over L2 tiles, outer to inner; the innermost index decides which
#: operand stays in L2: k inner keeps C (no partial sums), n inner keeps A, m inner B.
LOOP_ORDERS = ("mnk", "mkn", "nkm")


@dataclass(frozen=True)
class MatmulShape:
    """``batch`` matmuls of ``M x K`` by ``K x N`` with ``bytes_per_element``."""

    batch: int
    M: int
    K: int
    N: int
    bytes_per_element: int


class Candidate(NamedTuple):
    """One point of the mapping space."""

    M1: int
    N1: int
    K1: int
    sm: int
    sn: int
    sk: int
    Ks: int
    M2: int
    N2: int
    K2: int
    order: str
    l2_double_buffered: bool


class Cost(NamedTuple):
    """The parts of a candidate's time, enough to rebuild its wave groups."""

    total_s: float
    tile_s: float
    tiles: int
    full_waves: int
    last_units: int
    prologue_bytes: float
    steady_bytes: float
    epilogue_bytes: float
    reduce_compute_s: float
    reduce_bytes: float
    l1_bytes: float
    l2_bytes: float


def grid(values: tuple[int, ...], dim: int) -> tuple[int, ...]:
    """``values`` up to and including the first one that covers ``dim``.

    Larger tiles clip to the matrix and cost the same, so they are left out.
    """
    out = []
    for value in values:
        out.append(value)
        if value >= dim:
            break
    return tuple(out)


def array_splits(arrays: int) -> tuple[tuple[int, int, int], ...]:
    """All ``(sm, sn, sk)`` with ``sm * sn * sk == arrays``."""
    out = []
    for sm in range(1, arrays + 1):
        if arrays % sm:
            continue
        for sn in range(1, arrays // sm + 1):
            if (arrays // sm) % sn:
                continue
            out.append((sm, sn, arrays // sm // sn))
    return tuple(out)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------- scalar model


def l2_traffic_bytes(shape: MatmulShape, M2: int, N2: int, K2: int, order: str) -> float:
    """DRAM bytes of A, B and partial sums for one matmul under an L2 tiling.

    C's final write is counted elsewhere (once, by whoever writes it).
    """
    M, K, N, b = shape.M, shape.K, shape.N, shape.bytes_per_element
    a_bytes, b_bytes = M * K * b, K * N * b
    m_tiles, n_tiles, k_tiles = _ceil_div(M, M2), _ceil_div(N, N2), _ceil_div(K, K2)
    partials = 2.0 * (k_tiles - 1) * M * N * ACCUMULATOR_BYTES
    if order == "mnk":  # C stays: A re-read per N tile, B per M tile
        return float(a_bytes * n_tiles + b_bytes * m_tiles)
    if order == "mkn":  # A stays: B re-read per M tile, C partials re-read per K tile
        return float(a_bytes + b_bytes * m_tiles + partials)
    return float(a_bytes * n_tiles + b_bytes + partials)  # "nkm": B stays


def l2_footprint_bytes(shape: MatmulShape, M2: int, N2: int, K2: int) -> float:
    """Bytes of one L2 tile's A, B and C blocks."""
    m2, n2, k2 = min(M2, shape.M), min(N2, shape.N), min(K2, shape.K)
    return float((m2 * k2 + k2 * n2 + m2 * n2) * shape.bytes_per_element)


def evaluate_candidate(
    shape: MatmulShape, device: DeviceSpec, params: MapperParams, cand: Candidate
) -> Cost | None:
    """Time of one candidate, in plain Python; ``None`` when it does not fit.

    This is the reference the vectorised search is tested against, and what builds
    the chosen schedule.
    """
    M, K, N, b = shape.M, shape.K, shape.N, shape.bytes_per_element
    units = device.compute_units
    Kc = _ceil_div(K, cand.Ks)
    m1, n1, k1 = min(cand.M1, M), min(cand.N1, N), min(cand.K1, Kc)
    l1_bytes = float((m1 * k1 + k1 * n1 + cand.sk * m1 * n1) * b)
    if l1_bytes > device.sram_bytes_per_unit / 2:
        return None
    l2_bytes = l2_footprint_bytes(shape, cand.M2, cand.N2, cand.K2)
    l2_limit = device.l2_bytes / 2 if cand.l2_double_buffered else device.l2_bytes
    if l2_bytes > l2_limit:
        return None
    if cand.M2 < cand.M1 or cand.N2 < cand.N1 or cand.K2 < cand.K1:
        return None
    tile_s = _tile_seconds(device, params, b, m1, n1, k1, Kc, cand.sm, cand.sn, cand.sk, cand.Ks)
    return _assemble(
        shape,
        device,
        params,
        tile_s=tile_s,
        m1=m1,
        n1=n1,
        k1=k1,
        M1=cand.M1,
        N1=cand.N1,
        Ks=cand.Ks,
        traffic=shape.batch * l2_traffic_bytes(shape, cand.M2, cand.N2, cand.K2, cand.order),
        double_buffered=cand.l2_double_buffered,
        l1_bytes=l1_bytes,
        l2_bytes=l2_bytes,
        units=units,
    )


def _tile_seconds(
    device: DeviceSpec,
    params: MapperParams,
    b: int,
    m1: int,
    n1: int,
    k1: int,
    Kc: int,
    sm: int,
    sn: int,
    sk: int,
    Ks: int,
) -> float:
    H, W = device.systolic_array_rows, device.systolic_array_cols
    l2_per_unit = device.l2_bandwidth_bytes_per_cycle / device.compute_units
    vector_ops = device.vector_lanes_per_unit * device.vector_lane_width
    m, n, k = _ceil_div(m1, sm), _ceil_div(n1, sn), _ceil_div(k1, sk)
    folds = _ceil_div(m, H) * _ceil_div(n, W)
    steps = _ceil_div(Kc, k1)
    systolic = folds * k / (device.macs_per_pe_per_cycle * params.matrix_efficiency)
    load = (m1 * k1 + k1 * n1) * b / l2_per_unit
    c_bytes = b if Ks == 1 else ACCUMULATOR_BYTES
    cycles = (
        load
        + steps * max(systolic, load)
        + (H + W)
        + (sk - 1) * m1 * n1 / vector_ops
        + m1 * n1 * c_bytes / l2_per_unit
    )
    return cycles / device.clock_hz


def _assemble(
    shape: MatmulShape,
    device: DeviceSpec,
    params: MapperParams,
    *,
    tile_s: float,
    m1: int,
    n1: int,
    k1: int,
    M1: int,
    N1: int,
    Ks: int,
    traffic: float,
    double_buffered: bool,
    l1_bytes: float,
    l2_bytes: float,
    units: int,
) -> Cost:
    """Waves, DRAM split and total time of a candidate (scalar)."""
    M, N, b = shape.M, shape.N, shape.bytes_per_element
    bw = device.dram_bandwidth_bytes_per_s * params.dram_efficiency
    tiles = shape.batch * _ceil_div(M, M1) * _ceil_div(N, N1) * Ks
    full, last = divmod(tiles, units)
    waves = full + (1 if last else 0)
    c_total = float(shape.batch * M * N * b)
    partials = float(shape.batch * Ks * M * N * ACCUMULATOR_BYTES) if Ks > 1 else 0.0
    partials_dram = partials if partials > device.l2_bytes / 2 else 0.0
    main = traffic + (c_total if Ks == 1 else partials_dram)
    prologue = min(min(tiles, units) * (m1 * k1 + k1 * n1) * b, traffic)
    # the C tiles of the last full wave's worth of tiles drain after compute ends
    epilogue = min(min(tiles, units) * m1 * n1 * b, c_total) if Ks == 1 else 0.0
    steady = max(0.0, main - prologue - epilogue)
    # the steady traffic spreads evenly over the waves (loads run ahead across waves)
    if double_buffered:
        main_s = max(waves * tile_s, steady / bw)
    else:
        main_s = waves * tile_s + steady / bw
    reduce_compute = 0.0
    reduce_bytes = 0.0
    reduce_s = 0.0
    if Ks > 1:
        vector_ops = device.vector_lanes_per_unit * device.vector_lane_width
        adds = shape.batch * M * N * (Ks - 1)
        reduce_compute = max(
            adds / (units * vector_ops * device.clock_hz),
            partials / device.l2_bandwidth_bytes_per_s,
        )
        reduce_bytes = partials_dram + c_total
        reduce_s = max(reduce_compute, reduce_bytes / bw)
    total = params.dram_latency_s + prologue / bw + main_s + reduce_s + epilogue / bw
    return Cost(
        total_s=total,
        tile_s=tile_s,
        tiles=tiles,
        full_waves=full,
        last_units=last,
        prologue_bytes=prologue,
        steady_bytes=steady,
        epilogue_bytes=epilogue,
        reduce_compute_s=reduce_compute,
        reduce_bytes=reduce_bytes,
        l1_bytes=l1_bytes,
        l2_bytes=l2_bytes,
    )


# --------------------------------------------------------------------------- candidate sets


def candidate_axes(shape: MatmulShape, device: DeviceSpec) -> dict[str, tuple]:
    """The axes of the mapping space for ``shape`` (shared by both search modes)."""
    return {
        "M1": grid(TILE_MN, shape.M),
        "N1": grid(TILE_MN, shape.N),
        "K1": grid(TILE_K, shape.K),
        "split": array_splits(device.systolic_arrays_per_unit),
        "Ks": grid(K_SPLITS, shape.K),
        "M2": grid(L2_TILES, shape.M),
        "N2": grid(L2_TILES, shape.N),
        "K2": grid(L2_TILES, shape.K),
        "order": LOOP_ORDERS,
        "l2_double_buffered": (True, False),
    }


def _no_fit(shape: MatmulShape, device: DeviceSpec, what: str) -> DesError:
    b = shape.bytes_per_element
    smallest = min(TILE_MN[0], shape.M), min(TILE_MN[0], shape.N), min(TILE_K[0], shape.K)
    need = (smallest[0] * smallest[2] + smallest[2] * smallest[1] + smallest[0] * smallest[1]) * b
    if what == "sram":
        return DesError(
            f"matmul(M={shape.M}, K={shape.K}, N={shape.N}): the smallest tile "
            f"{smallest[0]}x{smallest[1]}x{smallest[2]} needs {need} bytes of SRAM, more than "
            f"half of {device.name}'s {device.sram_bytes_per_unit:.0f} bytes per unit"
        )
    return DesError(
        f"matmul(M={shape.M}, K={shape.K}, N={shape.N}): no tile fits "
        f"{device.name}'s L2 of {device.l2_bytes:.0f} bytes"
    )


# --------------------------------------------------------------------------- exhaustive


def all_candidates(shape: MatmulShape, device: DeviceSpec) -> Iterator[Candidate]:
    """Every point of the mapping space, in the order the vectorised search ranks ties."""
    axes = candidate_axes(shape, device)
    l1 = itertools.product(axes["M1"], axes["N1"], axes["K1"], axes["split"], axes["Ks"])
    l2 = list(
        itertools.product(
            axes["order"], axes["M2"], axes["N2"], axes["K2"], axes["l2_double_buffered"]
        )
    )
    for (M1, N1, K1, (sm, sn, sk), Ks), (order, M2, N2, K2, db) in itertools.product(l1, l2):
        yield Candidate(M1, N1, K1, sm, sn, sk, Ks, M2, N2, K2, order, db)


def search_matmul_exhaustive(
    shape: MatmulShape, device: DeviceSpec, params: MapperParams
) -> tuple[Candidate, Cost]:
    """Evaluate every candidate one by one in plain Python; keep the fastest.

    Slow (a Python call per candidate): for tests on small shapes.
    """
    best: tuple[Candidate, Cost] | None = None
    for cand in all_candidates(shape, device):
        cost = evaluate_candidate(shape, device, params, cand)
        if cost is not None and (best is None or cost.total_s < best[1].total_s):
            best = (cand, cost)
    if best is None:
        raise _no_fit(shape, device, "sram")
    return best


# --------------------------------------------------------------------------- vectorised


def _l2_tables(shape: MatmulShape, device: DeviceSpec, axes: dict[str, tuple]) -> dict[str, Any]:
    """Least DRAM traffic over L2 tiles no smaller than each L1 tile, per buffering mode.

    Returns suffix-minimum tables indexed by the (M, N, K) grid positions of the L1
    tile (the L1 grids are prefixes of the L2 grid), and the raw per-order traffic
    and footprints to recover the chosen L2 tile.
    """
    import numpy as np

    M, K, N, b = shape.M, shape.K, shape.N, shape.bytes_per_element
    M2 = np.array(axes["M2"], dtype=np.int64)[:, None, None]
    N2 = np.array(axes["N2"], dtype=np.int64)[None, :, None]
    K2 = np.array(axes["K2"], dtype=np.int64)[None, None, :]
    m2, n2, k2 = np.minimum(M2, M), np.minimum(N2, N), np.minimum(K2, K)
    footprint = ((m2 * k2 + k2 * n2 + m2 * n2) * b).astype(np.float64)
    m_tiles, n_tiles, k_tiles = -(-M // M2), -(-N // N2), -(-K // K2)
    a_bytes, b_bytes = float(M * K * b), float(K * N * b)
    partials = 2.0 * (k_tiles - 1) * M * N * ACCUMULATOR_BYTES
    traffic = np.stack(
        np.broadcast_arrays(
            a_bytes * n_tiles + b_bytes * m_tiles,  # "mnk": C stays
            a_bytes + b_bytes * m_tiles + partials,  # "mkn": A stays
            a_bytes * n_tiles + b_bytes + partials,  # "nkm": B stays
        )
    ).astype(np.float64)
    tables = {"traffic": traffic, "footprint": footprint}
    for mode, limit in (("db", device.l2_bytes / 2), ("any", device.l2_bytes)):
        best = np.where(footprint <= limit, traffic, np.inf).min(axis=0)
        for axis in range(3):
            best = np.flip(np.minimum.accumulate(np.flip(best, axis), axis=axis), axis)
        tables[mode] = best
    return tables


def search_matmul(
    shape: MatmulShape, device: DeviceSpec, params: MapperParams
) -> tuple[Candidate, Cost]:
    """Vectorised search: every L1 candidate at once, the best L2 tile by table.

    Because the time is non-decreasing in DRAM traffic for a fixed L1 candidate and
    buffering mode, the best L2 tile for each L1 candidate is the one with the least
    traffic among those that fit and are no smaller, which :func:`_l2_tables`
    gives for all L1 candidates at once. Ties go to the first candidate in the order
    of :func:`all_candidates`.
    """
    import numpy as np

    axes = candidate_axes(shape, device)
    M, K, N, b = shape.M, shape.K, shape.N, shape.bytes_per_element
    units = device.compute_units
    H, W = device.systolic_array_rows, device.systolic_array_cols
    splits = np.array(axes["split"], dtype=np.int64)
    dims = (len(axes["M1"]), len(axes["N1"]), len(axes["K1"]), len(splits), len(axes["Ks"]))

    def along(values, axis: int):
        # One axis of the candidate grid (M1, N1, K1, split, Ks), broadcast against the
        # others: each quantity is computed over the axes it depends on, with the same
        # arithmetic element by element as over the whole grid.
        shape_ = [1] * 5
        shape_[axis] = -1
        return np.asarray(values).reshape(shape_)

    M1 = along(np.array(axes["M1"], dtype=np.int64), 0)
    N1 = along(np.array(axes["N1"], dtype=np.int64), 1)
    K1 = along(np.array(axes["K1"], dtype=np.int64), 2)
    sm, sn, sk = along(splits[:, 0], 3), along(splits[:, 1], 3), along(splits[:, 2], 3)
    Ks = along(np.array(axes["Ks"], dtype=np.int64), 4)

    Kc = -(-K // Ks)
    m1, n1, k1 = np.minimum(M1, M), np.minimum(N1, N), np.minimum(K1, Kc)
    l1_bytes = ((m1 * k1 + k1 * n1 + sk * m1 * n1) * b).astype(np.float64)
    fits = l1_bytes <= device.sram_bytes_per_unit / 2

    # one tile on one unit (same arithmetic as _tile_seconds)
    l2_per_unit = device.l2_bandwidth_bytes_per_cycle / units
    vector_ops = device.vector_lanes_per_unit * device.vector_lane_width
    m, n, k = -(-m1 // sm), -(-n1 // sn), -(-k1 // sk)
    folds = (-(-m // H)) * (-(-n // W))
    steps = -(-Kc // k1)
    systolic = folds * k / (device.macs_per_pe_per_cycle * params.matrix_efficiency)
    load = (m1 * k1 + k1 * n1) * b / l2_per_unit
    c_bytes = np.where(Ks == 1, b, ACCUMULATOR_BYTES)
    cycles = (
        load
        + steps * np.maximum(systolic, load)
        + (H + W)
        + (sk - 1) * m1 * n1 / vector_ops
        + m1 * n1 * c_bytes / l2_per_unit
    )
    tile_s = cycles / device.clock_hz

    # waves and DRAM (same arithmetic as _assemble)
    tables = _l2_tables(shape, device, axes)
    bw = device.dram_bandwidth_bytes_per_s * params.dram_efficiency
    tiles = shape.batch * (-(-M // M1)) * (-(-N // N1)) * Ks
    waves = -(-tiles // units)
    c_total = float(shape.batch * M * N * b)
    partials = np.where(Ks > 1, shape.batch * Ks * float(M * N * ACCUMULATOR_BYTES), 0.0)
    partials_dram = np.where(partials > device.l2_bytes / 2, partials, 0.0)
    epilogue = np.where(Ks == 1, np.minimum(np.minimum(tiles, units) * m1 * n1 * b, c_total), 0.0)
    adds = shape.batch * M * N * (Ks - 1)
    reduce_compute = np.maximum(
        adds / (units * vector_ops * device.clock_hz), partials / device.l2_bandwidth_bytes_per_s
    )
    reduce_bytes = partials_dram + c_total
    reduce_s = np.where(Ks > 1, np.maximum(reduce_compute, reduce_bytes / bw), 0.0)

    totals = {}
    wave_s = waves * tile_s
    with np.errstate(invalid="ignore", over="ignore"):
        for mode in ("db", "any"):
            traffic = shape.batch * tables[mode][: dims[0], : dims[1], : dims[2], None, None]
            main = traffic + np.where(Ks == 1, c_total, partials_dram)
            prologue = np.minimum(np.minimum(tiles, units) * (m1 * k1 + k1 * n1) * b, traffic)
            steady = np.maximum(0.0, main - prologue - epilogue)
            if mode == "db":
                main_s = np.maximum(wave_s, steady / bw)
            else:
                main_s = wave_s + steady / bw
            total = params.dram_latency_s + prologue / bw + main_s + reduce_s + epilogue / bw
            totals[mode] = np.where(fits & np.isfinite(traffic), total, np.inf).ravel()
    use_db = totals["db"] <= totals["any"]
    total = np.where(use_db, totals["db"], totals["any"])
    best = int(np.argmin(total))
    if not np.isfinite(total[best]):
        raise _no_fit(shape, device, "sram" if not fits.any() else "l2")
    b_m, b_n, b_k, b_s, b_ks = (int(i) for i in np.unravel_index(best, dims))

    db = bool(use_db[best])
    limit = device.l2_bytes / 2 if db else device.l2_bytes
    ok = tables["footprint"] <= limit
    ok = ok & (np.arange(len(axes["M2"]))[:, None, None] >= b_m)
    ok = ok & (np.arange(len(axes["N2"]))[None, :, None] >= b_n)
    ok = ok & (np.arange(len(axes["K2"]))[None, None, :] >= b_k)
    traffic = np.where(ok[None], tables["traffic"], np.inf)
    i_order, i_m2, i_n2, i_k2 = np.unravel_index(int(np.argmin(traffic)), traffic.shape)
    cand = Candidate(
        axes["M1"][b_m],
        axes["N1"][b_n],
        axes["K1"][b_k],
        int(splits[b_s, 0]),
        int(splits[b_s, 1]),
        int(splits[b_s, 2]),
        axes["Ks"][b_ks],
        int(axes["M2"][i_m2]),
        int(axes["N2"][i_n2]),
        int(axes["K2"][i_k2]),
        axes["order"][i_order],
        db,
    )
    cost = evaluate_candidate(shape, device, params, cand)
    assert cost is not None  # the table only offers tiles that fit
    return cand, cost


# --------------------------------------------------------------------------- schedules


def _shape_of(operator: Any) -> MatmulShape:
    return MatmulShape(
        operator.batch, operator.M, operator.K, operator.N, operator.bytes_per_element
    )


def schedule_gemv(operator: Any, device: DeviceSpec, params: MapperParams) -> TileSchedule:
    """A matrix-vector product: ``max(flops / vector peak, bytes / DRAM bandwidth)``.

    One output row (or column) per lane, the matrix streamed once from DRAM; the
    vector unit does the multiply-adds, since a GEMV would use one row of a systolic
    array.
    """
    units = device.compute_units
    builder = GroupBuilder(device, params)
    builder.add_latency(units)
    compute_s = operator.flops / device.vector_flops_per_s
    builder.add(1, units, compute_s, operator.min_dram_bytes)
    mapping = {"kind": "gemv", "units": units, "vector_compute_s": compute_s}
    return builder.build(operator, units, mapping)


def schedule_matmul(
    operator: Any, device: DeviceSpec, params: MapperParams, *, exhaustive: bool = False
) -> TileSchedule:
    """The fastest tile schedule of a :class:`~des.operators.Matmul` or batched matmul.

    Parameters
    ----------
    operator : Matmul or BatchedMatmul
        The operator.
    device : DeviceSpec
        The device.
    params : MapperParams
        Physical constants of the model.
    exhaustive : bool
        Evaluate every candidate in plain Python instead of the vectorised search.

    Raises
    ------
    DesError
        If no tile fits the device's SRAM or L2.
    """
    if operator.is_gemv:
        return schedule_gemv(operator, device, params)
    shape = _shape_of(operator)
    search = search_matmul_exhaustive if exhaustive else search_matmul
    cand, cost = search(shape, device, params)
    units = device.compute_units
    bw = device.dram_bandwidth_bytes_per_s * params.dram_efficiency
    builder = GroupBuilder(device, params)
    first_units = min(cost.tiles, units)
    builder.add_latency(first_units)
    builder.add_transfer(first_units, cost.prologue_bytes)
    waves = cost.full_waves + (1 if cost.last_units else 0)
    wave_bytes = cost.steady_bytes / waves
    for count, wave_units in ((cost.full_waves, units), (1 if cost.last_units else 0, cost.last_units)):
        if cand.l2_double_buffered:
            builder.add(count, wave_units, cost.tile_s, wave_bytes)
        else:  # load, then compute: the wave's DRAM time is not hidden
            builder.add(count, wave_units, cost.tile_s + wave_bytes / bw, wave_bytes)
    if cand.Ks > 1:
        builder.add(1, units, cost.reduce_compute_s, cost.reduce_bytes)
    builder.add_transfer(first_units, cost.epilogue_bytes)
    mapping = {
        "kind": "matmul",
        "l1_tile": {"M1": cand.M1, "N1": cand.N1, "K1": cand.K1},
        "array_split": {"m": cand.sm, "n": cand.sn, "k": cand.sk},
        "k_split_units": cand.Ks,
        "l2_tile": {"M2": cand.M2, "N2": cand.N2, "K2": cand.K2},
        "loop_order": cand.order,
        "l1_double_buffered": True,
        "l2_double_buffered": cand.l2_double_buffered,
        "l1_bytes": cost.l1_bytes,
        "l2_bytes": cost.l2_bytes,
        "tile_s": cost.tile_s,
        "search": "exhaustive" if exhaustive else "vectorised",
    }
    return builder.build(operator, cost.tiles, mapping)
