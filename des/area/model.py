"""Die area of a device from its components, in the manner of LLMCompass (ISCA 2024).

A die is the sum of

- **cores** (``physical_compute_units`` of them), each made of systolic arrays (per
  processing element and MAC per cycle), a vector unit (per lane), a register file and
  local SRAM (per bit), plus the core's control logic (schedulers, dispatch, load/store,
  instruction caches, special-function and texture units) as a fraction of the core;
- the **global buffer** (L2, per bit);
- the **on-chip interconnect** (a crossbar whose wires carry the L2 bandwidth);
- **DRAM PHYs and controllers** (per HBM stack or DRAM channel);
- **off-chip link PHYs and controllers** (per SerDes lane);
- the **uncore** (front end, power and clock management, test, top-level routing) as a
  fraction of the die.

Logic areas are quoted at TSMC N7 and divided by the node's logic density, SRAM areas
are bits x the node's bit cell x a periphery factor, PHY areas divide by the node's
analog density. Every component is additive: doubling the cores adds exactly the
cores' area and the uncore's share of it, nothing else.

The datapath figures (a MAC, a lane, an SRAM bit) are engineering estimates; what a
designer adds around them is calibrated on a real die-shot breakdown of that
designer's reference die (:data:`des.area.technology.DIE_SHOTS`, [LC-F6]): the core's
control share so that a reference core has its die-shot area, the L2's area per bit,
the crossbar's area per byte per cycle, and scale factors on the PHY, controller and
SerDes estimates, each derived by arithmetic from the reference (:func:`design_style`).
A device is costed in its designer's style (GA100's for NVIDIA, Aldebaran's for AMD),
so the reference dies come out at their die shots and every other die is a prediction.

Sources (see also :mod:`des.area.technology`)
---------------------------------------------
- [Zen2] T. Singh et al., "Zen 2: The AMD 7nm Energy-Efficient High-Performance x86-64
  Microprocessor Core", ISSCC 2020: 74 mm^2 core complex die (CCD, TSMC N7) holding two
  31.3 mm^2 core complexes (CCX), each four 3.64 mm^2 cores (with their L2) and a 16 MB
  L3.
- [LC] H. Zhang et al., "LLMCompass: Enabling Efficient Hardware Design for Large
  Language Model Inference", ISCA 2024: the component breakdown (cores of systolic
  arrays, vector units, register files and local buffers; global buffer; NoC; memory
  and link I/O) and the cost model (wafer price, dies per wafer, yield, DRAM per GB).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from des.area.technology import (
    DEFAULT_LINKS,
    DEFAULT_MEMORY,
    DEFAULT_PROCESS,
    DEFAULT_REGISTER_BYTES_PER_LANE,
    PRODUCTS,
    LinkPort,
    die_shot,
    memory_technology,
    process_node,
    serdes_lane_area_mm2_n7,
)
from des.errors import DesError
from des.runtime import device_vendor
from des.specs import DeviceSpec

# ------------------------------------------------------------ per-component figures (N7)

#: [E] One fp16 multiply-accumulate per cycle of a systolic processing element at N7:
#: a multi-format (fp16/bf16/tf32/int8) multiplier, an fp32 accumulator and pipeline
#: registers, ~10k NAND2-equivalent gates at ~0.06 um^2 each once placed (0.041 um^2
#: cell: 57 nm gate pitch x 240 nm 6-track row; 70 % utilisation) = 600 um^2.
PE_AREA_MM2_PER_MAC_N7 = 600e-6
#: [E] One vector lane at N7: an fp32 FMA (~15k gates), an int32 ALU (~3k), a quarter of
#: an fp64 FMA (~12k, GPUs have one fp64 unit per 2-4 lanes) and pipeline/bypass
#: registers (~10k): ~40k gates x 0.06 um^2 = 2,400 um^2.
VECTOR_LANE_AREA_MM2_N7 = 2400e-6
#: [D] Area of one on-die cache bit in high-density bit cells, from Zen 2's N7 L3 [Zen2]:
#: 31.3 - 4 x 3.64 = 16.74 mm^2 for 16 MiB = 0.1247 um^2/bit = 4.62 x the 0.027 um^2
#: cell (arrays, sense amplifiers, decoders, redundancy, ECC, tags and cache control).
CACHE_AREA_PER_BIT_IN_BITCELLS = 16.74e6 / (16 * 2**20 * 8) / 0.027
#: [E] A register-file bit costs 1.5x a cache bit: two-port 8T cells (1.3-1.5x a 6T
#: cell) in small, finely banked arrays feeding operand collectors.
REGISTER_FILE_AREA_VS_CACHE = 1.5
_UM2_PER_MM2 = 1e6
_BITS_PER_BYTE = 8

#: Components of the breakdown, in the order they are reported.
CORE_COMPONENTS = ("systolic_arrays", "vector_units", "register_files", "local_sram", "core_control")
COMPONENTS = CORE_COMPONENTS + (
    "global_buffer",
    "noc",
    "dram_phy",
    "dram_controllers",
    "link_phy",
    "link_controllers",
    "uncore",
)


@dataclass(frozen=True)
class DesignStyle:
    """What a designer adds around the datapath estimates, derived from a die shot.

    Attributes
    ----------
    name : str
        ``nvidia`` or ``amd``.
    reference : str
        The die it is derived from.
    core_control_fraction : float
        Share of a core outside its arrays, lanes, register file and SRAM.
    l2_area_per_bit_in_bitcells : float
        L2 area per bit in high-density bit cells (arrays, banking, tags, ECC, ports).
    noc_mm2_per_byte_per_cycle_n7 : float
        Crossbar area per byte per cycle of L2 bandwidth at N7.
    dram_phy_scale, dram_controller_scale, link_phy_scale : float
        Factors on the memory-technology and SerDes estimates.
    link_controller_mm2_per_lane_n7 : float
        Link-layer controller logic per SerDes lane at N7 (0 where the die shot counts
        it with the rest).
    uncore_fraction : float
        Share of the die outside every listed component.
    """

    name: str
    reference: str
    core_control_fraction: float
    l2_area_per_bit_in_bitcells: float
    noc_mm2_per_byte_per_cycle_n7: float
    dram_phy_scale: float
    dram_controller_scale: float
    link_phy_scale: float
    link_controller_mm2_per_lane_n7: float
    uncore_fraction: float


def _datapath_mm2(macs_per_cycle: float, lanes: int, register_bytes: float, sram_bytes: float, node) -> dict[str, float]:
    """Arrays, lanes, register file and local SRAM of one core, by the estimates above."""
    return {
        "systolic_arrays": macs_per_cycle * PE_AREA_MM2_PER_MAC_N7 / node.logic_density_vs_n7,
        "vector_units": lanes * VECTOR_LANE_AREA_MM2_N7 / node.logic_density_vs_n7,
        "register_files": _sram_mm2(register_bytes, node.sram_bitcell_um2, REGISTER_FILE_AREA_VS_CACHE),
        "local_sram": _sram_mm2(sram_bytes, node.sram_bitcell_um2),
    }


@functools.cache
def design_style(name: str) -> DesignStyle:
    """The :class:`DesignStyle` ``name``, derived from its die shot (:func:`die_shot`).

    Each figure is the die-shot area of a category divided by what the estimates give
    for the reference die's contents, with its node's densities undone so that the
    figure is quoted at N7 like every other.
    """
    shot = die_shot(name)
    facts = PRODUCTS[shot.product]
    node = process_node(facts.process)
    tech = memory_technology(facts.memory)
    per_core = shot.cores / facts.physical_units
    datapath = math.fsum(_datapath_mm2(shot.macs_per_cycle_per_unit, shot.vector_lanes_per_unit,
                                       facts.register_file_bytes_per_unit, shot.sram_bytes_per_unit, node).values())
    if not datapath < per_core:
        raise DesError(f"design style {name}: the datapath estimate {datapath:.2f} mm^2 exceeds the die shot's core")
    l2_bits = facts.physical_l2_bytes * _BITS_PER_BYTE
    lanes = sum(port.lanes for port in facts.links)
    serdes = math.fsum(port.lanes * serdes_lane_area_mm2_n7(port.kind) for port in facts.links)
    return DesignStyle(
        name=name,
        reference=facts.die,
        core_control_fraction=1.0 - datapath / per_core,
        l2_area_per_bit_in_bitcells=shot.global_buffer * _UM2_PER_MM2 / (l2_bits * node.sram_bitcell_um2),
        noc_mm2_per_byte_per_cycle_n7=shot.noc * math.sqrt(node.logic_density_vs_n7) / shot.l2_bandwidth_bytes_per_cycle,
        dram_phy_scale=shot.dram_phy * node.analog_density_vs_n7 / (facts.physical_dram_units * tech.phy_area_mm2_n7),
        dram_controller_scale=shot.dram_controllers * node.logic_density_vs_n7
        / (facts.physical_dram_units * tech.controller_area_mm2_n7),
        link_phy_scale=shot.link_phy * node.analog_density_vs_n7 / serdes,
        link_controller_mm2_per_lane_n7=shot.link_controllers * node.logic_density_vs_n7 / lanes,
        uncore_fraction=shot.other / shot.total_mm2,
    )


@dataclass(frozen=True)
class AreaInputs:
    """Technology facts the device spec does not carry, for one area estimate.

    Attributes
    ----------
    process : str
        Process node (a key of :data:`des.area.technology.PROCESS_NODES`).
    memory : str
        DRAM technology (a key of :data:`des.area.technology.MEMORY_TECHNOLOGIES`).
    physical_compute_units : int
        Compute units on the die (enabled + harvested).
    physical_l2_bytes : float
        Global buffer on the die.
    enabled_dram_units : int
        HBM stacks or DRAM channels the product uses.
    physical_dram_units : int
        HBM stacks or DRAM channels the die has PHYs for.
    register_file_bytes_per_unit : float
        Register file of one compute unit.
    links : tuple of LinkPort
        Off-chip SerDes links.
    uncore_fraction : float or None
        Share of the die outside the listed components, in [0, 1); ``None``: the style's.
    style : str
        The designer whose die shot calibrates the area around the datapaths
        (:func:`design_style`).
    basis : str
        Where the facts come from (a product entry or the fallback), for the report.
    """

    process: str
    memory: str
    physical_compute_units: int
    physical_l2_bytes: float
    enabled_dram_units: int
    physical_dram_units: int
    register_file_bytes_per_unit: float
    links: tuple[LinkPort, ...] = field(default=DEFAULT_LINKS)
    uncore_fraction: float | None = None
    style: str = "nvidia"
    basis: str = "fallback"

    def __post_init__(self) -> None:
        process_node(self.process)
        memory_technology(self.memory)
        for port in self.links:
            serdes_lane_area_mm2_n7(port.kind)
            if port.links < 0 or port.lanes_per_link < 0:
                raise DesError(f"link port {port.kind}: counts must be zero or positive")
        if self.physical_compute_units < 1:
            raise DesError(f"physical_compute_units must be at least 1, got {self.physical_compute_units}")
        if not self.physical_dram_units >= self.enabled_dram_units >= 1:
            raise DesError(
                f"DRAM units: need physical ({self.physical_dram_units}) >= enabled "
                f"({self.enabled_dram_units}) >= 1"
            )
        if self.physical_l2_bytes < 0 or self.register_file_bytes_per_unit < 0:
            raise DesError("L2 and register-file sizes must be zero or positive")
        design_style(self.style)
        if self.uncore_fraction is not None and not 0 <= self.uncore_fraction < 1:
            raise DesError(f"uncore_fraction must be in [0, 1), got {self.uncore_fraction!r}")


def _ceil(value: float) -> int:
    """Round up, forgiving floating-point noise (5.0000000001 -> 5)."""
    return max(1, math.ceil(value - 1e-9))


def dram_units_for(device: DeviceSpec, memory: str) -> int:
    """HBM stacks or DRAM channels needed for the device's DRAM bandwidth and capacity.

    Parameters
    ----------
    device : DeviceSpec
    memory : str
        DRAM technology name.

    Returns
    -------
    int
        ``max(ceil(bandwidth / unit bandwidth), ceil(capacity / unit capacity))``.
    """
    tech = memory_technology(memory)
    by_bandwidth = device.dram_bandwidth_bytes_per_s / tech.bandwidth_bytes_per_s
    by_capacity = device.dram_capacity_bytes / tech.capacity_bytes
    return _ceil(max(by_bandwidth, by_capacity))


def area_inputs_for(
    device: DeviceSpec,
    process: str | None = None,
    memory: str | None = None,
    *,
    harvest: bool = True,
) -> AreaInputs:
    """Technology facts for ``device``: its product's entry, else the fallback.

    A device named like a known product (``a100``, ``h100``, ``mi210``) takes that
    product's process, DRAM type, links and register file, and its harvesting ratios:
    each enabled count of the spec (compute units, L2, DRAM units) is scaled by the
    product's ``physical / enabled`` so that area counts the whole die (GA100: 128 SMs
    for A100's 108). Other devices get N7, HBM2e, a PCIe Gen 4 x16 link, 2 KiB of
    registers per vector lane, no harvesting and their vendor's design style.

    Parameters
    ----------
    device : DeviceSpec
    process, memory : str, optional
        Override the process node or DRAM technology.
    harvest : bool
        Count the physical die (default) or only what the product enables.

    Returns
    -------
    AreaInputs

    Raises
    ------
    DesError
        For an unknown process or memory technology.
    """
    facts = PRODUCTS.get(device.name.lower())
    memory_name = memory or (facts.memory if facts else DEFAULT_MEMORY)
    memory_name = memory_technology(memory_name).name
    process_name = process_node(process or (facts.process if facts else DEFAULT_PROCESS)).name
    enabled_dram = dram_units_for(device, memory_name)
    if facts is None:
        return AreaInputs(
            process=process_name,
            memory=memory_name,
            physical_compute_units=device.compute_units,
            physical_l2_bytes=device.l2_bytes,
            enabled_dram_units=enabled_dram,
            physical_dram_units=enabled_dram,
            register_file_bytes_per_unit=DEFAULT_REGISTER_BYTES_PER_LANE
            * device.vector_lanes_per_unit
            * device.vector_lane_width,
            style=device_vendor(device.name),
        )
    unit_ratio = facts.physical_units / facts.enabled_units if harvest else 1.0
    l2_ratio = facts.physical_l2_bytes / facts.enabled_l2_bytes if harvest else 1.0
    dram_ratio = facts.physical_dram_units / facts.enabled_dram_units if harvest else 1.0
    return AreaInputs(
        process=process_name,
        memory=memory_name,
        physical_compute_units=_ceil(device.compute_units * unit_ratio),
        physical_l2_bytes=device.l2_bytes * l2_ratio,
        enabled_dram_units=enabled_dram,
        physical_dram_units=_ceil(enabled_dram * dram_ratio),
        register_file_bytes_per_unit=facts.register_file_bytes_per_unit,
        links=facts.links,
        style=facts.style,
        basis=f"{facts.die} ({'physical die' if harvest else 'enabled units only'})",
    )


@dataclass(frozen=True)
class AreaReport:
    """Area estimate of one die.

    Attributes
    ----------
    device : str
        Device name.
    inputs : AreaInputs
        The technology facts used.
    breakdown_mm2 : dict of str to float
        Area of each component (keys :data:`COMPONENTS`).
    core_area_mm2 : float
        Area of one compute unit (its share of ``CORE_COMPONENTS``).
    reported_die_mm2 : float or None
        Published die area of the product, where known.
    """

    device: str
    inputs: AreaInputs
    breakdown_mm2: dict[str, float]
    core_area_mm2: float
    reported_die_mm2: float | None = None

    @property
    def total_mm2(self) -> float:
        """Die area: the sum of the breakdown."""
        return math.fsum(self.breakdown_mm2.values())

    @property
    def cores_mm2(self) -> float:
        """Area of all compute units together."""
        return math.fsum(self.breakdown_mm2[name] for name in CORE_COMPONENTS)


def _sram_mm2(size_bytes: float, bitcell_um2: float, factor: float = 1.0) -> float:
    bits = size_bytes * _BITS_PER_BYTE
    return bits * bitcell_um2 * CACHE_AREA_PER_BIT_IN_BITCELLS * factor / _UM2_PER_MM2


def core_breakdown_mm2(device: DeviceSpec, inputs: AreaInputs) -> dict[str, float]:
    """Area of one compute unit by component (keys :data:`CORE_COMPONENTS`).

    Parameters
    ----------
    device : DeviceSpec
    inputs : AreaInputs

    Returns
    -------
    dict of str to float
    """
    node = process_node(inputs.process)
    pes = device.systolic_arrays_per_unit * device.systolic_array_rows * device.systolic_array_cols
    parts = _datapath_mm2(pes * device.macs_per_pe_per_cycle, device.vector_lanes_per_unit * device.vector_lane_width,
                          inputs.register_file_bytes_per_unit, device.sram_bytes_per_unit, node)
    control = design_style(inputs.style).core_control_fraction
    parts["core_control"] = math.fsum(parts.values()) * control / (1 - control)
    return parts


def estimate_area(device: DeviceSpec, inputs: AreaInputs | None = None) -> AreaReport:
    """Die area of ``device`` by component.

    Parameters
    ----------
    device : DeviceSpec
    inputs : AreaInputs, optional
        Technology facts; default :func:`area_inputs_for` ``(device)``.

    Returns
    -------
    AreaReport
    """
    inputs = inputs or area_inputs_for(device)
    node = process_node(inputs.process)
    tech = memory_technology(inputs.memory)
    per_core = core_breakdown_mm2(device, inputs)
    breakdown = {name: area * inputs.physical_compute_units for name, area in per_core.items()}
    style = design_style(inputs.style)
    bits = inputs.physical_l2_bytes * _BITS_PER_BYTE
    breakdown["global_buffer"] = bits * node.sram_bitcell_um2 * style.l2_area_per_bit_in_bitcells / _UM2_PER_MM2
    # Wire pitch shrinks with the square root of logic density.
    breakdown["noc"] = (
        device.l2_bandwidth_bytes_per_cycle * style.noc_mm2_per_byte_per_cycle_n7 / math.sqrt(node.logic_density_vs_n7)
    )
    breakdown["dram_phy"] = (
        inputs.physical_dram_units * tech.phy_area_mm2_n7 * style.dram_phy_scale / node.analog_density_vs_n7
    )
    breakdown["dram_controllers"] = (
        inputs.physical_dram_units * tech.controller_area_mm2_n7 * style.dram_controller_scale / node.logic_density_vs_n7
    )
    breakdown["link_phy"] = math.fsum(
        port.lanes * serdes_lane_area_mm2_n7(port.kind) * style.link_phy_scale / node.analog_density_vs_n7
        for port in inputs.links
    )
    breakdown["link_controllers"] = math.fsum(
        port.lanes * style.link_controller_mm2_per_lane_n7 / node.logic_density_vs_n7 for port in inputs.links
    )
    uncore = style.uncore_fraction if inputs.uncore_fraction is None else inputs.uncore_fraction
    rest = math.fsum(breakdown.values())
    breakdown["uncore"] = rest * uncore / (1 - uncore)
    # The published die area is comparable only with the product's own die.
    facts = PRODUCTS.get(device.name.lower())
    reported = None
    if facts is not None and inputs == area_inputs_for(device):
        reported = facts.reported_die_mm2
    return AreaReport(
        device=device.name,
        inputs=inputs,
        breakdown_mm2=breakdown,
        core_area_mm2=math.fsum(per_core.values()),
        reported_die_mm2=reported,
    )
