"""Row-wise (softmax, layernorm) and element-wise (GELU, add) mappings.

Row-wise operators
    Each compute unit takes a tile of ``r`` whole rows per wave; within the unit a row
    is split across ``p`` of its vector lanes (each lane a SIMD of ``width`` elements),
    so a lane group handles ``ceil(r / (lanes / p))`` rows, each over
    ``ceil(cols / (p * width))`` elements per SIMD slot, and each reduction over a row
    costs ``log2(width) + log2(p)`` steps. The vector unit does one fp32 operation per
    SIMD slot per cycle (``lanes * width`` per cycle): the reductions accumulate in
    fp32 (PyTorch's ``acc_type``), and an exponential costs ``exp_vector_flops`` of
    them. The row tile is double-buffered in half the SRAM, so DRAM traffic overlaps
    compute except the first wave's load and the last wave's store. How much of the
    SRAM one row may hold depends on the kernel (:data:`ROW_SHARE`): softmax stages a
    whole row in the unit's shared memory, normalisation kernels keep a row per lane
    group. A longer row is processed in column chunks and read from DRAM once per pass
    of its algorithm (:data:`CHUNKED_READS`). Search: ``r`` (powers of two) and ``p``
    (the divisors of the lane count), vectorised.
Element-wise operators
    A roofline: ``max(flops / vector peak, bytes / DRAM bandwidth)``, streamed over all
    units.
"""

from __future__ import annotations

from typing import Any

from des.mapper.params import MapperParams
from des.mapper.schedule import TileSchedule
from des.mapper.waves import GroupBuilder
from des.specs import DeviceSpec

#: Rows per unit per wave: powers of two (pruned to what the operator can use).
ROW_TILES = tuple(2**e for e in range(0, 21))

#: Softmax operations per element, as a three-pass "safe" softmax: a max pass (1), an
#: exp-sum pass (subtract, exp, add) and a normalise pass that recomputes the
#: exponential instead of keeping a second fp32 copy of the tile (subtract, exp,
#: multiply by the reciprocal of the sum); PyTorch's ``cunn_SoftMaxForward`` and
#: LLMCompass's softmax are structured this way. The exp terms are added per device.
SOFTMAX_OPS_PER_ELEMENT = 5
SOFTMAX_EXPS_PER_ELEMENT = 2
#: Softmax reductions per row: the max and the sum.
SOFTMAX_REDUCTIONS = 2

#: Layernorm operations per element: the mean (add), the variance (subtract, multiply,
#: add) and the normalisation (subtract, multiply by 1/std, scale, shift).
LAYERNORM_OPS_PER_ELEMENT = 8
#: Layernorm reductions per row: the sum and the sum of squares.
LAYERNORM_REDUCTIONS = 2

#: DRAM reads of a row too long to stay in the SRAM, per kind: one per pass of the
#: algorithm over the row. Layernorm: Welford's one-pass mean and variance, then the
#: normalisation (PyTorch's layer-norm kernels and Triton's looped reductions both
#: accumulate Welford statistics). Softmax: the online max-and-sum pass (Milakov and
#: Gimelshein, "Online normalizer calculation for softmax", 2018) and the normalisation;
#: the router's top-k softmax likewise. RMSNorm: the sum of squares and the scaling.
CHUNKED_READS = {"layernorm": 2, "softmax": 2, "topk_softmax": 2, "rmsnorm": 2}

#: The share of a unit's double buffer one row may hold before it must be chunked:
#: "unit" - the whole half SRAM (PyTorch's ``cunn_SoftMaxForwardSmem`` stages a row in
#: shared memory, one block per row, whenever it fits); "lane group" - half the SRAM over
#: the unit's lane groups (PyTorch's ``vectorized_layer_norm_kernel`` and Triton's
#: looped reductions keep no row in shared memory: each warp scheduler's warps stream
#: their own rows and re-read them for the next pass).
ROW_SHARE = {"softmax": "unit", "topk_softmax": "unit", "layernorm": "lane group", "rmsnorm": "lane group"}

#: Operations per row besides its elements: the reciprocal of the softmax sum or the
#: layernorm's 1/sqrt(variance), one special-function instruction per row.
ROW_OPS_PER_ROW = 1

#: GELU (tanh form) vector FLOPs per element besides its tanh: x^3, two multiply-adds,
#: the scale by sqrt(2/pi), 1 + tanh and the two final multiplies; tanh costs one
#: exponential (tanh(y) = 1 - 2 / (exp(2y) + 1)).
GELU_FLOPS_PER_ELEMENT = 8


#: RMSNorm operations per element: square and add (the mean of squares), then scale by
#: 1/rms and by the weight; one reduction per row.
RMSNORM_OPS_PER_ELEMENT = 4
RMSNORM_REDUCTIONS = 1


def _row_cost_parameters(operator: Any, device: DeviceSpec) -> tuple[float, int, float]:
    """(ops per element, reductions per row, ops per row) of a row-wise operator."""
    if operator.op_class == "softmax":
        exp = device.exp_vector_flops
        per_element = SOFTMAX_OPS_PER_ELEMENT + SOFTMAX_EXPS_PER_ELEMENT * exp
        if operator.kind == "topk_softmax":
            # The router keeps its k best as it goes: a compare per element and slot; the
            # exponentials are taken once (the top k are normalised from the kept ones).
            per_element = SOFTMAX_OPS_PER_ELEMENT + exp + operator.k
            return per_element, SOFTMAX_REDUCTIONS + 1, ROW_OPS_PER_ROW + operator.k
        return per_element, SOFTMAX_REDUCTIONS, ROW_OPS_PER_ROW
    if operator.kind == "rmsnorm":
        return RMSNORM_OPS_PER_ELEMENT, RMSNORM_REDUCTIONS, ROW_OPS_PER_ROW
    return LAYERNORM_OPS_PER_ELEMENT, LAYERNORM_REDUCTIONS, ROW_OPS_PER_ROW


def lane_splits(lanes: int) -> tuple[int, ...]:
    """The ways a row can be split across a unit's lanes: the divisors of ``lanes``."""
    return tuple(p for p in range(1, lanes + 1) if lanes % p == 0)


def schedule_rowwise(operator: Any, device: DeviceSpec, params: MapperParams) -> TileSchedule:
    """The fastest row-tiled schedule of a :class:`~des.operators.Softmax` or layernorm.

    Raises
    ------
    DesError
        Never for a real device: a row that does not fit is processed in chunks.
    """
    import numpy as np

    rows, cols, b = operator.rows, operator.cols, operator.bytes_per_element
    units = device.compute_units
    width = device.vector_lane_width
    half_sram = device.sram_bytes_per_unit / 2
    ops_element, reductions, ops_row = _row_cost_parameters(operator, device)

    # A row longer than its share of the double buffer is processed in chunks and read
    # once per pass.
    share = half_sram if ROW_SHARE[operator.kind] == "unit" else half_sram / device.vector_lanes_per_unit
    chunked = cols * b > share
    reads = CHUNKED_READS[operator.kind] if chunked else 1
    row_tiles = ROW_TILES[:1] if chunked else ROW_TILES
    r_values = [r for r in row_tiles if r == 1 or r * cols * b <= half_sram]
    r_values = [r for i, r in enumerate(r_values) if i == 0 or r_values[i - 1] < rows]
    splits = lane_splits(device.vector_lanes_per_unit)
    r = np.repeat(np.array(r_values, dtype=np.int64), len(splits))
    p = np.tile(np.array(splits, dtype=np.int64), len(r_values))

    r_eff = np.minimum(r, rows)
    rows_per_group = -(-r_eff // (device.vector_lanes_per_unit // p))
    slots = -(-cols // (p * width))
    steps = np.log2(width) + np.log2(p)
    cycles = rows_per_group * (slots * ops_element + reductions * steps + ops_row)
    tile_s = cycles / (device.clock_hz * params.vector_efficiency)

    bw = device.dram_bandwidth_bytes_per_s * params.dram_efficiency
    tiles = -(-rows // r)
    full, last = np.divmod(tiles, units)
    row_bytes = float(cols * b)
    rows_first = np.minimum(rows, units * r)
    # Per-column parameters read once (layernorm's scale and shift, RMSNorm's weight);
    # the router's top-k output (a weight and an index per kept expert) written.
    extra = {"layernorm": 2.0 * cols * b, "rmsnorm": 1.0 * cols * b}.get(operator.kind, 0.0)
    out_bytes = rows * row_bytes
    if operator.kind == "topk_softmax":
        out_bytes = rows * operator.k * (b + 4.0)
    total_bytes = rows * row_bytes * reads + out_bytes + extra
    prologue = rows_first * row_bytes + extra
    epilogue = rows_first * (out_bytes / rows)  # a full wave's output drains after compute ends
    steady = total_bytes - prologue - epilogue
    waves = -(-tiles // units)
    main_s = np.maximum(waves * tile_s, steady / bw)  # traffic spread evenly over the waves
    total = params.dram_latency_s + prologue / bw + main_s + epilogue / bw
    best = int(np.argmin(total))

    tiles_b, full_b, last_b = int(tiles[best]), int(full[best]), int(last[best])
    first_units = min(tiles_b, units)
    builder = GroupBuilder(device, params)
    builder.add_latency(first_units)
    builder.add_transfer(first_units, float(prologue[best]))
    wave_bytes = float(steady[best]) / int(waves[best])
    builder.add(full_b, units, float(tile_s[best]), wave_bytes)
    builder.add(1 if last_b else 0, last_b, float(tile_s[best]), wave_bytes)
    builder.add_transfer(last_b or units, float(epilogue[best]))
    mapping = {
        "kind": operator.op_class,
        "rows_per_unit": int(r[best]),
        "lanes_per_row": int(p[best]),
        "column_chunks": bool(chunked),
        "dram_reads": reads,
        "double_buffered": True,
        "tile_s": float(tile_s[best]),
        "ops_per_element": ops_element,
    }
    return builder.build(operator, tiles_b, mapping)


def schedule_elementwise(
    operator: Any, device: DeviceSpec, params: MapperParams
) -> TileSchedule:
    """Roofline schedule of :class:`~des.operators.Gelu` or an element-wise add."""
    units = device.compute_units
    if operator.kind == "gelu":
        flops = operator.elements * (GELU_FLOPS_PER_ELEMENT + device.exp_vector_flops)
    elif operator.kind in ("silu", "swiglu"):
        # Their arithmetic (4 or 5 per element) and one exponential each.
        flops = operator.flops - operator.elements + operator.elements * device.exp_vector_flops
    else:
        flops = operator.flops
    compute_s = flops / (device.vector_flops_per_s * params.vector_efficiency)
    builder = GroupBuilder(device, params)
    builder.add_latency(units)
    builder.add(1, units, compute_s, operator.min_dram_bytes)
    mapping = {"kind": "roofline", "units": units, "vector_flops": flops, "compute_s": compute_s}
    return builder.build(operator, units, mapping)
