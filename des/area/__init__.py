"""Die area and cost of a device, from its components (LLMCompass-style).

Public API
----------
- :func:`area_inputs_for` - the technology facts a device spec lacks (process, DRAM
  technology and unit count, link PHYs, register file, the physical die behind a
  harvested product), from a product table with an N7 / HBM2e fallback.
- :func:`estimate_area` -> :class:`AreaReport` - area by component.
- :func:`estimate_cost` -> :class:`CostReport` - dies per wafer, yield, die, DRAM and
  interposer cost.
- :func:`area_and_cost` - both as one JSON-ready dict (what ``des area --json`` prints).

The model lives in :mod:`des.area.model` (area), :mod:`des.area.cost` (cost) and
:mod:`des.area.technology` (tables, each figure with its source).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from des.area.cost import YIELD_MODELS, CostReport, die_yield, dies_per_wafer, estimate_cost
from des.area.model import (
    COMPONENTS,
    CORE_COMPONENTS,
    AreaInputs,
    AreaReport,
    area_inputs_for,
    design_style,
    dram_units_for,
    estimate_area,
)
from des.area.technology import (
    MEMORY_TECHNOLOGIES,
    PROCESS_NODES,
    PRODUCTS,
    LinkPort,
    memory_technology,
    process_node,
)
from des.specs import DeviceSpec

__all__ = [
    "COMPONENTS",
    "CORE_COMPONENTS",
    "MEMORY_TECHNOLOGIES",
    "PROCESS_NODES",
    "PRODUCTS",
    "YIELD_MODELS",
    "AreaInputs",
    "AreaReport",
    "CostReport",
    "LinkPort",
    "area_and_cost",
    "area_inputs_for",
    "design_style",
    "die_yield",
    "dies_per_wafer",
    "dram_units_for",
    "estimate_area",
    "estimate_cost",
    "format_area_and_cost",
    "memory_technology",
    "process_node",
]


def area_and_cost(
    device: DeviceSpec,
    process: str | None = None,
    memory: str | None = None,
    *,
    harvest: bool = True,
    yield_model: str = "murphy",
) -> dict[str, Any]:
    """Area and cost of ``device`` as one JSON-ready dict.

    Parameters
    ----------
    device : DeviceSpec
    process, memory : str, optional
        Override the process node / DRAM technology of :func:`area_inputs_for`.
    harvest : bool
        Count the physical die of a harvested product (default) or only its enabled part.
    yield_model : {"murphy", "poisson", "negative-binomial"}

    Returns
    -------
    dict
        ``total_mm2``, ``breakdown_mm2`` (component -> mm^2), ``cores_mm2``,
        ``core_area_mm2``, ``cost_usd``, ``cost_breakdown_usd``, ``die_yield``,
        ``good_die_yield``, ``dies_per_wafer``, ``reported_die_mm2`` (or null),
        ``error_vs_reported`` (or null) and ``inputs``.

    Raises
    ------
    DesError
        For an unknown process, memory technology or yield model.
    """
    inputs = area_inputs_for(device, process, memory, harvest=harvest)
    area = estimate_area(device, inputs)
    cost = estimate_cost(device, area, yield_model)
    reported = area.reported_die_mm2
    return {
        "device": device.name,
        "total_mm2": area.total_mm2,
        "breakdown_mm2": dict(area.breakdown_mm2),
        "cores_mm2": area.cores_mm2,
        "core_area_mm2": area.core_area_mm2,
        "reported_die_mm2": reported,
        "error_vs_reported": None if reported is None else area.total_mm2 / reported - 1,
        "cost_usd": cost.cost_usd,
        "cost_breakdown_usd": dict(cost.cost_breakdown_usd),
        "die_yield": cost.die_yield,
        "good_die_yield": cost.good_die_yield,
        "dies_per_wafer": cost.dies_per_wafer,
        "yield_model": yield_model,
        "inputs": asdict(inputs),
    }


def format_area_and_cost(result: dict[str, Any]) -> str:
    """A human-readable table of :func:`area_and_cost`'s result."""
    inputs = result["inputs"]
    total = result["total_mm2"]
    tech = memory_technology(inputs["memory"])
    lines = [
        f"{result['device']}: {inputs['basis']}, {inputs['process']}, {inputs['memory']}",
        f"  {inputs['physical_compute_units']} compute units of {result['core_area_mm2']:.2f} mm^2, "
        f"{inputs['physical_l2_bytes'] / 2**20:.0f} MiB L2, "
        f"{inputs['physical_dram_units']} DRAM {tech.unit}s ({inputs['enabled_dram_units']} used), "
        + ", ".join(f"{p['links']} x{p['lanes_per_link']} {p['kind']}" for p in inputs["links"]),
        f"  design style {inputs['style']}: what surrounds the datapaths is scaled from the "
        f"{design_style(inputs['style']).reference} die shot (LLMCompass, Figure 6)",
        "",
        f"  {'component':<18} {'mm^2':>8} {'share':>7}",
    ]
    for name, value in result["breakdown_mm2"].items():
        lines.append(f"  {name:<18} {value:8.1f} {value / total:7.1%}")
    lines.append(f"  {'total':<18} {total:8.1f}")
    if result["reported_die_mm2"] is not None:
        lines.append(
            f"  {'reported die':<18} {result['reported_die_mm2']:8.1f} ({result['error_vs_reported']:+.1%})"
        )
    costs = result["cost_breakdown_usd"]
    lines += [
        "",
        f"  dies per wafer {result['dies_per_wafer']}, yield {result['die_yield']:.1%} perfect, "
        f"{result['good_die_yield']:.1%} sellable ({result['yield_model']})",
        "  cost  " + ", ".join(f"{name} ${value:,.0f}" for name, value in costs.items())
        + f"; total ${result['cost_usd']:,.0f}",
    ]
    return "\n".join(lines)
