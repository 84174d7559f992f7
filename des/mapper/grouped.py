"""Grouped GEMM: many experts' GEMMs of one shape family in one kernel (MoE layers).

A grouped kernel (CUTLASS's grouped GEMM, the MoE kernels of vLLM and TensorRT-LLM)
walks the tiles of every expert's ``[tokens_i, K] @ [K, N]`` from one launch, handing
them to units as they free up, so one expert's partial last wave is filled with the next
expert's tiles instead of leaving units idle. Here each distinct expert GEMM is mapped
as a matmul (its best tiles for its own size), and their tiles are then pooled: the
kernel runs ``ceil(tiles / units)`` waves whose tile time is the tile-weighted mean of
the experts' and whose DRAM traffic is all the experts' together (each used expert's
weights once, every token's input and output) - or, where that is slower, the experts'
own waves one expert after another, which the tile scheduler can always fall back to.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from des.mapper.params import MapperParams
from des.mapper.schedule import TileSchedule
from des.mapper.waves import GroupBuilder
from des.operators import Matmul
from des.specs import DeviceSpec


def schedule_grouped_matmul(operator: Any, device: DeviceSpec, params: MapperParams) -> TileSchedule:
    """The pooled-tile schedule of a :class:`~des.operators.GroupedMatmul`."""
    from des.mapper import _params_of
    from des.mapper.matmul import schedule_matmul

    # Each expert with the parameters of its own shape (a one-token expert is a GEMV,
    # with the GEMV's DRAM efficiency), unless the caller gave parameters of its own.
    own = params == _params_of(device, operator)
    units = device.compute_units
    unit_seconds = 0.0
    tiles = 0
    dram_bus = 0.0
    bodies = []
    for count, experts in sorted(Counter(c for c in operator.tokens if c).items()):
        expert = Matmul(count, operator.K, operator.N, operator.dtype)
        single = schedule_matmul(expert, device, _params_of(device, expert) if own else params)
        # Its waves but the first-access latency (the grouped kernel pays one).
        body = [g for g in single.groups if not (g.dram_bytes == 0.0 and g.compute_s == params.dram_latency_s)]
        unit_seconds += experts * sum(g.count * g.units * g.compute_s for g in body)
        tiles += experts * single.tiles
        dram_bus += experts * sum(g.count * g.dram_bytes for g in single.groups)
        bodies.append((experts, body))
    tile_s = unit_seconds / tiles
    full, last = divmod(tiles, units)
    # GroupBuilder charges physical bytes as bus bytes; the experts' schedules hold bus bytes.
    physical = dram_bus * params.dram_efficiency
    builder = GroupBuilder(device, params)
    builder.add_latency(min(tiles, units))
    builder.add(full, units, tile_s, physical * units / tiles)
    builder.add(1 if last else 0, last, tile_s, physical * last / tiles)
    mapping = {"kind": "grouped_matmul", "experts": operator.experts_used, "tiles": tiles, "tile_s": tile_s}
    pooled = builder.build(operator, tiles, mapping)
    # A wave of mixed tiles lasts as long as its slowest, which the mean understates or
    # overstates; the kernel's tile scheduler can always hand the experts' tiles out
    # expert by expert, so it is never slower than that (one first access for all).
    serial = GroupBuilder(device, params)
    serial.add_latency(min(tiles, units))
    for experts, body in bodies:
        for group in body:
            serial.add(experts * group.count, group.units, group.compute_s, group.dram_bytes * params.dram_efficiency)
    apart = serial.build(operator, tiles, {**mapping, "kind": "grouped_matmul_by_expert"})
    return apart if apart.standalone_s < pooled.standalone_s else pooled
