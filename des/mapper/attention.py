"""Fused attention in the flash style: tiles over heads and query blocks.

A tile is one block of ``Bq`` queries of one head (and, when the keys are split
across units as in flash-decoding, one of ``Sk`` key ranges). It keeps its Q block and
an fp32 output accumulator in SRAM and streams K and V in blocks of ``Bk`` keys from
L2, double-buffered; for each key block the systolic arrays compute ``S = Q K^T``
(``Bq x d x Bk``), the vector unit updates the online softmax (max, subtract,
exponential, sum: ``exp_vector_flops + 4`` vector FLOPs per score at the vector
unit's FLOP peak, plus rescaling the accumulator), and the arrays add ``P V`` (``Bq x Bk x d``). The three steps depend on
each other, so they add up; the K/V load overlaps them. The score matrix never goes
to DRAM: Q, K and V are read once and O written once, K and V of a head staying in L2
while its query blocks run (FlashAttention-2 launches a head's query blocks together);
when a head's K and V do not fit half the L2, the query blocks running at once (up to
one per unit) stream them together, so they are read once per ``units`` query blocks.

Causal masking skips the key blocks after a query block's diagonal, so tiles differ
in work; units take the heaviest tiles first (dynamic scheduling), so the waves run
from the longest tiles to the shortest. Split key ranges are merged at the end by a
vector-unit reduction of the fp32 partial outputs.

Search: ``Bq``, ``Bk`` (powers of two from 16 to 256) and ``Sk``, vectorised.
"""

from __future__ import annotations

from typing import Any

from des.errors import DesError
from des.mapper.matmul import grid
from des.mapper.params import ACCUMULATOR_BYTES, MapperParams
from des.mapper.schedule import TileSchedule
from des.mapper.waves import GroupBuilder
from des.specs import DeviceSpec

#: Query and key block sizes: FlashAttention-2 uses 64-128 rows per block; 16 (the
#: array side) to 256 covers decoding and long-context kernels.
BLOCK_SIZES = tuple(2**e for e in range(4, 9))
#: Key-range splits across units (flash-decoding, Dao et al. 2023).
KV_SPLITS = tuple(2**e for e in range(0, 7))
#: Most bands of query blocks the wave accounting distinguishes (bounds time and memory).
MAX_QUERY_BANDS = 1024
#: Online-softmax operations per score besides the exponential: the running max,
#: the subtraction, the sum and the 1/sqrt(d) scale.
ONLINE_SOFTMAX_OPS = 4


def _cdiv(a: Any, b: Any) -> Any:
    """Ceiling division of integers or integer arrays."""
    return -(-a // b)


def _tile_arrays(op: Any, device: DeviceSpec, params: MapperParams) -> dict[str, Any]:
    """Per-candidate, per-query-block tile seconds and the candidate axes (numpy)."""
    import numpy as np

    d, b = op.head_dim, op.bytes_per_element
    units = device.compute_units
    H, W = device.systolic_array_rows, device.systolic_array_cols
    arrays = device.systolic_arrays_per_unit
    l2_per_unit = device.l2_bandwidth_bytes_per_cycle / units
    macs = device.macs_per_pe_per_cycle * params.matrix_efficiency

    bq_axis, bk_axis = grid(BLOCK_SIZES, op.q_len), grid(BLOCK_SIZES, op.kv_len)
    sk_axis = grid(KV_SPLITS, -(-op.kv_len // BLOCK_SIZES[0]))
    Bq, Bk, Sk = (a.ravel() for a in np.meshgrid(bq_axis, bk_axis, sk_axis, indexing="ij"))
    bq, bk = np.minimum(Bq, op.q_len), np.minimum(Bk, op.kv_len)
    sram = (bq * d + 2 * bk * d + bq * bk) * b + bq * d * ACCUMULATOR_BYTES
    fits = sram <= device.sram_bytes_per_unit / 2

    # S = Q K^T split across the arrays along the keys, P V along the head dimension
    qk = _cdiv(bq, H) * _cdiv(_cdiv(bk, arrays), W) * d / macs
    pv = _cdiv(bq, H) * _cdiv(_cdiv(d, arrays), W) * bk / macs
    flops = device.vector_flops_per_cycle_per_unit
    softmax = bq * bk * (device.exp_vector_flops + ONLINE_SOFTMAX_OPS) / flops
    softmax = softmax + bq * d / flops + 2 * np.log2(device.vector_lane_width)
    load = 2 * bk * d * b / l2_per_unit
    block = np.maximum(qk + softmax + pv, load)

    nq = -(-op.q_len // Bq)
    # Query blocks are accounted in at most MAX_QUERY_BANDS bands of consecutive
    # blocks; a band's tiles take the time of its heaviest (last) block.
    band = -(-nq // MAX_QUERY_BANDS)
    bands = -(-nq // band)
    j = np.arange(int(bands.max()))[None, :]
    valid = j < bands[:, None]
    first_block = j * band[:, None]
    band_blocks = np.clip(nq[:, None] - first_block, 0, band[:, None])
    if op.causal:
        last_query = np.minimum((first_block + band_blocks) * Bq[:, None], op.q_len)
        visible = np.clip(op.kv_len - op.q_len + last_query, 0, op.kv_len)
        if op.window is not None:
            # A sliding window: the band's rows see from the first row's window start.
            rows = np.maximum(last_query - first_block * Bq[:, None], 0)
            visible = np.minimum(visible, op.window + rows - 1)
    else:
        visible = np.full(j.shape, op.visible_keys()) + 0 * Bq[:, None]
    keys = -(-visible // Sk[:, None])
    blocks = -(-keys // Bk[:, None])
    fixed = (bq * d * b + bq * d * ACCUMULATOR_BYTES) / l2_per_unit + (H + W)
    fixed = fixed + bq * d / flops
    cycles = fixed[:, None] + blocks * block[:, None]
    tile_s = np.where(valid, cycles / device.clock_hz, 0.0)
    return {"Bq": Bq, "Bk": Bk, "Sk": Sk, "bq": bq, "bk": bk, "nq": nq, "fits": fits,
            "tile_s": tile_s, "band_blocks": band_blocks, "sram": sram}


def _wave_runs(run_tiles: Any, units: int) -> Any:
    """Waves that start in each run of equal tiles (runs in execution order, 2-D)."""
    import numpy as np

    ends = np.cumsum(run_tiles, axis=1)
    starts = ends - run_tiles
    return -(-ends // units) - (-(-starts // units))


def schedule_attention(operator: Any, device: DeviceSpec, params: MapperParams) -> TileSchedule:
    """The fastest flash-attention schedule of an :class:`~des.operators.Attention`.

    Raises
    ------
    DesError
        If even the smallest blocks do not fit half the SRAM (a huge ``head_dim``).
    """
    import numpy as np

    op = operator
    d, b = op.head_dim, op.bytes_per_element
    units = device.compute_units
    bw = device.dram_bandwidth_bytes_per_s * params.dram_efficiency
    vector_ops = device.vector_lanes_per_unit * device.vector_lane_width
    t = _tile_arrays(op, device, params)
    if not t["fits"].any():
        raise DesError(
            f"{op.describe()}: even {BLOCK_SIZES[0]}-row blocks need {t['sram'].min():.0f} bytes"
            f" of SRAM, more than half of {device.name}'s {device.sram_bytes_per_unit:.0f}"
        )
    heads = op.batch * op.heads
    Sk, nq = t["Sk"], t["nq"]
    tiles = nq * heads * Sk
    # heaviest first: query blocks in decreasing order of work (the last ones, if causal)
    order = np.argsort(-t["tile_s"], axis=1, kind="stable")
    sorted_s = np.take_along_axis(t["tile_s"], order, axis=1)
    run_tiles = np.take_along_axis(t["band_blocks"], order, axis=1) * (heads * Sk)[:, None]
    runs = _wave_runs(run_tiles, units)

    read_keys = op.kv_len if op.window is None else min(op.kv_len, op.window + op.q_len - 1)
    head_kv = 2.0 * read_keys * d * b
    # query blocks of a head that run at once stream its K and V together through L2
    kv_reads = np.where(head_kv <= device.l2_bytes / 2, 1, -(-nq // units))
    qo = 2.0 * heads * op.q_len * d * b
    partials = np.where(Sk > 1, Sk * heads * op.q_len * d * float(ACCUMULATOR_BYTES), 0.0)
    partials_dram = np.where(partials > device.l2_bytes / 2, partials, 0.0)
    # K and V are read per KV head: the query heads that share one (grouped-query
    # attention) run their blocks together and stream it through L2 once.
    inputs = qo / 2 + op.batch * op.kv_heads * head_kv * kv_reads
    main_bytes = inputs + partials_dram + np.where(Sk > 1, 0.0, qo / 2)
    full, last = np.divmod(tiles, units)
    first_units = np.minimum(tiles, units)
    prologue = np.minimum(first_units * (t["bq"] + 2 * t["bk"]) * d * b, inputs)
    epilogue = np.where(Sk == 1, np.minimum(first_units * t["bq"] * d * b, qo / 2), 0.0)
    steady = np.maximum(0.0, main_bytes - prologue - epilogue)
    waves = -(-tiles // units)
    wave_bytes = steady / waves  # traffic spread evenly over the waves
    main_s = (runs * np.maximum(sorted_s, (wave_bytes / bw)[:, None])).sum(axis=1)
    merge_ops = 2.0 * heads * op.q_len * d * (Sk - 1)
    merge_compute = np.maximum(
        merge_ops / (units * vector_ops * device.clock_hz), partials / device.l2_bandwidth_bytes_per_s
    )
    merge_bytes = partials_dram + qo / 2
    merge_s = np.where(Sk > 1, np.maximum(merge_compute, merge_bytes / bw), 0.0)
    total = params.dram_latency_s + prologue / bw + main_s + merge_s + epilogue / bw
    total = np.where(t["fits"], total, np.inf)
    best = int(np.argmin(total))

    builder = GroupBuilder(device, params)
    n_tiles = int(tiles[best])
    builder.add_latency(min(n_tiles, units))
    builder.add_transfer(min(n_tiles, units), float(prologue[best]))
    wb = float(wave_bytes[best])
    remaining = int(full[best]) + (1 if last[best] else 0)
    for count, tile_s in zip(runs[best].tolist(), sorted_s[best].tolist(), strict=True):
        count = min(int(count), remaining)
        if count <= 0:
            continue
        remaining -= count
        partial = remaining == 0 and last[best] > 0
        builder.add(count - partial, units, tile_s, wb)
        if partial:
            builder.add(1, int(last[best]), tile_s, wb)
    if Sk[best] > 1:
        builder.add(1, units, float(merge_compute[best]), float(merge_bytes[best]))
    builder.add_transfer(int(first_units[best]), float(epilogue[best]))
    mapping = {
        "kind": "flash_attention",
        "q_block": int(t["Bq"][best]),
        "kv_block": int(t["Bk"][best]),
        "kv_splits": int(Sk[best]),
        "query_blocks": int(nq[best]),
        "sram_bytes": float(t["sram"][best]),
        "kv_reads_per_head": int(kv_reads[best]),
        "causal": op.causal,
        "double_buffered": True,
    }
    return builder.build(op, n_tiles, mapping)
