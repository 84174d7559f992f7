"""Cost of a device: die cost from wafer price, dies per wafer and yield, plus DRAM and interposer.

- Dies per wafer: the standard formula with edge loss (Hennessy & Patterson, *Computer
  Architecture: A Quantitative Approach*, ch. 1):
  ``pi (d/2)^2 / A - pi d / sqrt(2 A)`` for a wafer of diameter ``d`` and dies of area
  ``A``.
- Yield of a die with no redundancy: Murphy's model (B. T. Murphy, "Cost-size optima of
  monolithic integrated circuits", Proc. IEEE, 1964), ``((1 - exp(-A D0)) / (A D0))^2``;
  Poisson ``exp(-A D0)`` and negative binomial ``(1 + A D0 / alpha)^-alpha`` (Stapper,
  clustering ``alpha`` = 3) are available too.
- Harvesting: a product that enables ``k`` of a die's ``n`` identical units is good when
  the rest of the die is defect-free and at least ``k`` units are; a unit of area ``a``
  is defect-free with probability ``exp(-a D0)``, independently of the others (small
  blocks: the models agree). Compute units and memory partitions (a DRAM unit with its
  PHY, controller and share of L2) are the harvested groups.
- Die cost = wafer price / (dies per wafer x yield). DRAM costs its capacity times the
  technology's price per GB. HBM sits on a passive silicon interposer whose area is the
  die plus the stacks plus 10 % for spacing ([E]); it is priced as a 65 nm wafer
  ([CSET] in :mod:`des.area.technology`) cut with the same formula at full yield
  (assembly, substrate and test are not modelled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from des.area.model import AreaReport
from des.area.technology import INTERPOSER_WAFER_COST_USD, memory_technology, process_node
from des.errors import DesError
from des.specs import DeviceSpec
from des.units import GIGA

WAFER_DIAMETER_MM = 300.0
_MM2_PER_CM2 = 100.0
#: Clustering parameter of the negative-binomial yield model (Stapper; commonly 2-3).
NEGATIVE_BINOMIAL_ALPHA = 3.0
#: [E] Interposer spacing: 10 % beyond the die and the stacks it carries.
INTERPOSER_SPACING = 1.1
YIELD_MODELS = ("murphy", "poisson", "negative-binomial")


def dies_per_wafer(die_mm2: float, wafer_diameter_mm: float = WAFER_DIAMETER_MM) -> int:
    """Whole dies of ``die_mm2`` on one wafer, edge loss included.

    Parameters
    ----------
    die_mm2 : float
        Die area.
    wafer_diameter_mm : float
        Wafer diameter (default 300 mm).

    Returns
    -------
    int

    Raises
    ------
    DesError
        When the die is not positive or too large for a single die to fit.
    """
    if not die_mm2 > 0:
        raise DesError(f"die area must be positive, got {die_mm2!r} mm^2")
    radius = wafer_diameter_mm / 2
    count = math.pi * radius**2 / die_mm2 - math.pi * wafer_diameter_mm / math.sqrt(2 * die_mm2)
    if count < 1:
        raise DesError(f"a {die_mm2:.0f} mm^2 die does not fit on a {wafer_diameter_mm:.0f} mm wafer")
    return int(count)


def die_yield(die_mm2: float, defect_density_per_cm2: float, model: str = "murphy") -> float:
    """Probability that a die of ``die_mm2`` with no redundancy has no killer defect.

    Parameters
    ----------
    die_mm2 : float
    defect_density_per_cm2 : float
    model : {"murphy", "poisson", "negative-binomial"}

    Returns
    -------
    float
        In (0, 1].
    """
    defects = die_mm2 / _MM2_PER_CM2 * defect_density_per_cm2
    if model == "poisson":
        return math.exp(-defects)
    if model == "murphy":
        return 1.0 if defects == 0 else ((1 - math.exp(-defects)) / defects) ** 2
    if model == "negative-binomial":
        return (1 + defects / NEGATIVE_BINOMIAL_ALPHA) ** -NEGATIVE_BINOMIAL_ALPHA
    raise DesError(f"unknown yield model {model!r}; known: {', '.join(YIELD_MODELS)}")


def at_least_k_good(n: int, k: int, unit_yield: float) -> float:
    """Probability that at least ``k`` of ``n`` independent units are good."""
    return math.fsum(
        math.comb(n, good) * unit_yield**good * (1 - unit_yield) ** (n - good) for good in range(k, n + 1)
    )


def harvested_groups(device: DeviceSpec, report: AreaReport) -> list[tuple[int, int, float]]:
    """The redundant groups of a die as ``(physical, enabled, area_mm2 of one)``.

    Compute units form a group when the die has more than the product enables; memory
    partitions do when the die has more DRAM units than the product uses. Units with no
    spare belong to the rest of the die.
    """
    inputs = report.inputs
    groups = []
    if inputs.physical_compute_units > device.compute_units:
        groups.append((inputs.physical_compute_units, device.compute_units, report.core_area_mm2))
    if inputs.physical_dram_units > inputs.enabled_dram_units:
        memory = sum(report.breakdown_mm2[name] for name in ("global_buffer", "dram_phy", "dram_controllers"))
        groups.append((inputs.physical_dram_units, inputs.enabled_dram_units, memory / inputs.physical_dram_units))
    return groups


def good_die_yield(device: DeviceSpec, report: AreaReport, model: str = "murphy") -> float:
    """Yield of sellable dies, counting harvested units as spares.

    Parameters
    ----------
    device : DeviceSpec
        The product (its enabled counts).
    report : AreaReport
        Its area estimate.
    model : str
        Yield model of the non-redundant rest of the die.

    Returns
    -------
    float
    """
    d0 = process_node(report.inputs.process).defect_density_per_cm2
    groups = harvested_groups(device, report)
    rest_mm2 = report.total_mm2 - sum(n * area for n, _, area in groups)
    result = die_yield(max(rest_mm2, 0.0), d0, model)
    for n, k, area in groups:
        result *= at_least_k_good(n, k, math.exp(-area / _MM2_PER_CM2 * d0))
    return result


@dataclass(frozen=True)
class CostReport:
    """Cost estimate of one device.

    Attributes
    ----------
    dies_per_wafer : int
    die_yield : float
        Yield of a perfect die (no redundancy).
    good_die_yield : float
        Yield of sellable dies (harvested units as spares).
    cost_breakdown_usd : dict of str to float
        ``die``, ``dram`` and ``interposer``.
    """

    dies_per_wafer: int
    die_yield: float
    good_die_yield: float
    cost_breakdown_usd: dict[str, float]

    @property
    def cost_usd(self) -> float:
        """Total: die + DRAM + interposer."""
        return math.fsum(self.cost_breakdown_usd.values())


def estimate_cost(device: DeviceSpec, report: AreaReport, model: str = "murphy") -> CostReport:
    """Cost of ``device`` given its area estimate.

    Parameters
    ----------
    device : DeviceSpec
    report : AreaReport
        From :func:`des.area.model.estimate_area`.
    model : {"murphy", "poisson", "negative-binomial"}
        Yield model.

    Returns
    -------
    CostReport
    """
    node = process_node(report.inputs.process)
    tech = memory_technology(report.inputs.memory)
    area = report.total_mm2
    per_wafer = dies_per_wafer(area)
    perfect = die_yield(area, node.defect_density_per_cm2, model)
    good = good_die_yield(device, report, model)
    costs = {
        "die": node.wafer_cost_usd / (per_wafer * good),
        "dram": device.dram_capacity_bytes / GIGA * tech.cost_usd_per_gb,
        "interposer": 0.0,
    }
    if tech.footprint_mm2 > 0:
        interposer_mm2 = INTERPOSER_SPACING * (area + report.inputs.physical_dram_units * tech.footprint_mm2)
        costs["interposer"] = INTERPOSER_WAFER_COST_USD / dies_per_wafer(interposer_mm2)
    return CostReport(per_wafer, perfect, good, costs)
