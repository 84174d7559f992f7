"""Technology tables of the area and cost model: process nodes, DRAM types, SerDes, products.

Every figure carries its source in a comment. Tags: ``[S]`` a published figure (paper,
vendor document, public analysis); ``[D]`` derived from published figures by the
arithmetic shown; ``[E]`` an engineering estimate, with the reasoning given. The ``[E]``
figures are the weakest links of the model and are listed as such in the report.

Sources
-------
- [ADA-WP] NVIDIA Ada GPU Architecture whitepaper (2022): full AD102 has 144 SMs, 96 MB
  of L2 and a 384-bit memory interface on 608.5 mm^2 of TSMC 4N; RTX 4090 enables 128
  SMs and 72 MB; the L40S datasheet (2023) 142 SMs and the full 96 MB. No NVLink. A
  graphics die: its RT cores, texture units, ROPs, display and media engines are not
  in the model, whose estimate therefore falls short of the die.
- [H200-DS] NVIDIA H200 datasheet (2024): the GH100 die with six HBM3e stacks, all
  enabled (141 GB, 4.8 TB/s: 800 GB/s per stack, HBM3's rate).
- [N7-SRAM] S.-Y. Wu et al., "A 7nm CMOS platform technology featuring 4th generation
  FinFET transistors with a 0.027 um^2 high density 6-T SRAM cell", IEDM 2016; J. Chang
  et al., "A 7nm 256Mb SRAM in high-k metal-gate FinFET technology", ISSCC 2017.
- [N5] G. Yeap et al., "5nm CMOS production technology platform featuring full-fledged
  EUV ...", IEDM 2019: 0.021 um^2 HD SRAM cell, 1.84x logic density of N7. TSMC's N5
  announcement: 1.8x logic, 1.3x SRAM, 1.2x analog density over N7.
- [N6] TSMC N6 announcement (2019): 18 % higher logic density than N7, N7 design rules.
- [N4] TSMC N4 announcement (2021): 6 % die-area reduction over N5.
- [N3] TSMC N3E (2022 Technology Symposium): 1.6x logic density of N5; HD SRAM cell
  0.021 um^2 (no shrink over N5, IEDM 2022 reports).
- [N16] TSMC 16FF+ HD SRAM cell 0.07 um^2; peak logic densities 28.9 (16FF) and 91.2
  (N7) MTr/mm^2 (WikiChip, from TSMC figures).
- [CSET] S. M. Khan, A. Mann, "AI Chips: What They Are and Why They Matter", CSET, 2020,
  appendix table of foundry sale price per 300 mm wafer: 5 nm $16,988; 7 nm $9,346;
  10 nm $5,992; 16/12 nm $3,984; 65 nm $1,937.
- [D0] TSMC 2020 Technology Symposium as reported (AnandTech, 2020): N7 and N5 defect
  density in volume production about 0.09-0.1 per cm^2.
- [JEDEC] JESD235 (HBM2/2E; SK hynix HBM2E at 3.6 Gb/s/pin, 16 GB 8-Hi stacks;
  package 7.75 x 11.87 mm), JESD238 (HBM3, 6.4 Gb/s/pin, up to 12-Hi 24 GB),
  JESD79-5 (DDR5-6400), JESD209-5 (LPDDR5-6400), JESD250 (GDDR6, 16 Gb/s).
- [DRAM$] Industry price trackers (TrendForce / DRAMeXchange, 2023): DDR5, LPDDR5 and
  GDDR6 contract prices of about $3-4 per GB; HBM sells at several times DDR5's price
  per bit (TrendForce 2023 estimates about 5x).
- [A100-WP] NVIDIA A100 Tensor Core GPU Architecture whitepaper (2020): full GA100 has
  128 SMs, 6 HBM2 stacks, 12 512-bit memory controllers; A100 enables 108 SMs, 40 MB
  L2, 5 stacks; 12 third-generation NVLinks, 4 signal pairs per direction at 50 Gb/s;
  65,536 32-bit registers (256 KB) per SM; GA100 826 mm^2, 54.2 B transistors, TSMC N7.
- [H100-WP] NVIDIA H100 Tensor Core GPU Architecture whitepaper (2022): full GH100 has
  144 SMs, 60 MB L2, 6 HBM3/HBM2e stacks; H100 SXM5 enables 132 SMs, 50 MB L2, 5 HBM3
  stacks; 18 fourth-generation NVLinks of 2 pairs per direction; PCIe Gen 5;
  GH100 814 mm^2, 80 B transistors, TSMC 4N.
- [LC-F6] H. Zhang et al., LLMCompass (ISCA 2024), Figure 6: die-shot area breakdowns
  of the real GA100 and the real Aldebaran GCD (cores, on-chip interconnect, global
  buffer, memory PHY and control, off-chip link PHY and control, other), published in
  the paper's artifact (github.com/PrincetonUniversity/LLMCompass,
  ae/figure6/real_hardware/die_area.csv), with one SM of GA100 at 3.75 mm^2 and one CU
  of Aldebaran at 4.02 mm^2.
- [CDNA2-WP] AMD CDNA 2 architecture whitepaper (2021) and MI210 datasheet (2022):
  Aldebaran graphics compute die (GCD) with 112 CUs (104 enabled on MI210), 8 MB L2,
  4 HBM2e stacks, 512 KB of vector registers per CU, TSMC N6; MI210: 3 Infinity
  Fabric links (x16) and PCIe Gen 4 x16. AMD does not publish the GCD's area.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from des.errors import DesError
from des.units import GIGA, GiB, KiB, MiB


@dataclass(frozen=True)
class ProcessNode:
    """Figures of one foundry process that the area and cost model needs.

    Attributes
    ----------
    name : str
        Node name, e.g. ``"N7"``.
    logic_density_vs_n7 : float
        Standard-cell logic density relative to TSMC N7 (logic areas divide by it).
    sram_bitcell_um2 : float
        High-density 6T SRAM bit-cell area.
    analog_density_vs_n7 : float
        Analog / I/O density relative to N7 (PHY areas divide by it; PHYs are bound by
        bump pitch and analog devices and shrink little).
    wafer_cost_usd : float
        Foundry sale price of one 300 mm wafer.
    defect_density_per_cm2 : float
        Random defect density D0 of the mature process.
    """

    name: str
    logic_density_vs_n7: float
    sram_bitcell_um2: float
    analog_density_vs_n7: float
    wafer_cost_usd: float
    defect_density_per_cm2: float


_N5_LOGIC = 1.84  # [N5]
PROCESS_NODES: dict[str, ProcessNode] = {
    # 16FF+/12FFC: logic 28.9/91.2 of N7 [N16]; bit cell 0.07 um^2 [N16]; wafer [CSET];
    # analog: [E] 16 nm analog taken as 1/1.3 of N7's (no published ratio; PHYs shrink little).
    "N16": ProcessNode("N16", 28.9 / 91.2, 0.070, 1 / 1.3, 3984.0, 0.09),
    "N12": ProcessNode("N12", 28.9 / 91.2, 0.070, 1 / 1.3, 3984.0, 0.09),
    # The reference node: every per-component figure below is quoted at N7.
    "N7": ProcessNode("N7", 1.0, 0.027, 1.0, 9346.0, 0.09),  # [N7-SRAM], [CSET], [D0]
    # N6 keeps N7's bit cell and design rules [N6]; wafer price: [E] taken equal to N7's.
    "N6": ProcessNode("N6", 1.18, 0.027, 1.0, 9346.0, 0.09),
    "N5": ProcessNode("N5", _N5_LOGIC, 0.021, 1.2, 16988.0, 0.09),  # [N5], [CSET], [D0]
    # N4: 6 % smaller than N5 [N4]; wafer price: [E] taken equal to N5's.
    "N4": ProcessNode("N4", _N5_LOGIC / 0.94, 0.021, 1.2, 16988.0, 0.09),
    # NVIDIA's "4N" is a customised N5-family node with no published density: N5 figures.
    "4N": ProcessNode("4N", _N5_LOGIC, 0.021, 1.2, 16988.0, 0.09),
    # N3E: 1.6x N5 logic, N5's bit cell [N3]; wafer ~$20,000 ([E] press reports, 2022).
    "N3": ProcessNode("N3", _N5_LOGIC * 1.6, 0.021, 1.2, 20000.0, 0.09),
}

#: Passive silicon interposers are built on old nodes; [CSET]'s 65 nm wafer price is the proxy.
INTERPOSER_WAFER_COST_USD = 1937.0


@dataclass(frozen=True)
class MemoryTechnology:
    """One DRAM technology, counted in interface units (an HBM stack, a DDR channel...).

    Attributes
    ----------
    name : str
        ``hbm2e``, ``hbm3``, ``ddr5``, ``lpddr5`` or ``gddr6``.
    unit : str
        What one interface unit is (for the report).
    bandwidth_bytes_per_s : float
        Peak bandwidth of one unit at the fastest standard speed grade.
    capacity_bytes : float
        Largest capacity one unit holds.
    phy_area_mm2_n7 : float
        PHY area of one unit at N7 (scaled by the node's analog density).
    controller_area_mm2_n7 : float
        Memory-controller logic of one unit at N7 (scaled by the node's logic density).
    cost_usd_per_gb : float
        Price of the DRAM itself, per 10^9 bytes.
    footprint_mm2 : float
        Package footprint on a 2.5D interposer (0 when the memory sits off-package).
    """

    name: str
    unit: str
    bandwidth_bytes_per_s: float
    capacity_bytes: float
    phy_area_mm2_n7: float
    controller_area_mm2_n7: float
    cost_usd_per_gb: float
    footprint_mm2: float


MEMORY_TECHNOLOGIES: dict[str, MemoryTechnology] = {
    # 1024 pins x 3.6 Gb/s = 460.8 GB/s; 16 GB 8-Hi; 7.75 x 11.87 mm [JEDEC].
    # PHY: [E] 15 mm^2, the footprint of the ~1,700-signal 55 um micro-bump field it sits
    # under; die shots of N7 HBM2 GPUs (GA100, MI100, Vega 20) show PHYs of 10-18 mm^2.
    # Controller: [E] 3 mm^2, two 512-bit controllers per stack [A100-WP] of ~1.5 mm^2
    # of logic each. Price: [E] $12/GB, about 3.5x DDR5 [DRAM$].
    "hbm2e": MemoryTechnology("hbm2e", "stack", 460.8 * GIGA, 16 * GiB, 15.0, 3.0, 12.0, 7.75 * 11.87),
    # 1024 pins x 6.4 Gb/s = 819.2 GB/s; 24 GB 12-Hi [JEDEC]; PHY and controller as HBM2e
    # (same bump field and channel width) [E]; price [E] $15/GB [DRAM$].
    "hbm3": MemoryTechnology("hbm3", "stack", 819.2 * GIGA, 24 * GiB, 15.0, 3.0, 15.0, 7.75 * 11.87),
    # One 64-bit DDR5-6400 channel (two 32-bit sub-channels) = 51.2 GB/s [JEDEC]; one 64 GB
    # RDIMM per channel; PHY [E] 3 mm^2 (x64 DDR PHYs are a few mm^2 at N7), controller
    # [E] 1 mm^2; $3.5/GB [DRAM$].
    "ddr5": MemoryTechnology("ddr5", "64-bit channel", 51.2 * GIGA, 64 * GiB, 3.0, 1.0, 3.5, 0.0),
    # One x16 LPDDR5-6400 channel = 12.8 GB/s [JEDEC]; 4 GB per channel; PHY [E] 0.6 mm^2,
    # controller [E] 0.3 mm^2; $4/GB [DRAM$].
    "lpddr5": MemoryTechnology("lpddr5", "x16 channel", 12.8 * GIGA, 4 * GiB, 0.6, 0.3, 4.0, 0.0),
    # One x32 GDDR6 device at 16 Gb/s = 64 GB/s, 2 GB (16 Gb) [JEDEC]; PHY [E] 3 mm^2,
    # controller [E] 0.5 mm^2; $3.5/GB [DRAM$].
    "gddr6": MemoryTechnology("gddr6", "x32 device", 64.0 * GIGA, 2 * GiB, 3.0, 0.5, 3.5, 0.0),
}

#: Off-chip SerDes kinds -> PHY area of one lane (a transmit and a receive pair) at N7,
#: link-layer controller share included. [E]: published N7 transceivers of 25-112 Gb/s
#: occupy roughly 0.2-0.6 mm^2 per lane with their share of PLLs and bumps; the faster,
#: the larger.
SERDES_LANE_AREA_MM2_N7: dict[str, float] = {
    "pcie4": 0.25,    # 16 GT/s NRZ
    "pcie5": 0.30,    # 32 GT/s NRZ
    "xgmi": 0.30,     # AMD Infinity Fabric, 25 Gb/s NRZ [CDNA2-WP]
    "nvlink3": 0.40,  # 50 Gb/s NRZ [A100-WP]
    "nvlink4": 0.50,  # 100 Gb/s PAM4 [H100-WP]
}


@dataclass(frozen=True)
class LinkPort:
    """A group of identical off-chip links: ``links`` links of ``lanes_per_link`` lanes."""

    kind: str
    links: int
    lanes_per_link: int

    @property
    def lanes(self) -> int:
        """Lanes (transmit + receive pairs) in the group."""
        return self.links * self.lanes_per_link


@dataclass(frozen=True)
class ProductFacts:
    """The physical die behind a product, and how much of it the product enables.

    Harvesting rule: a product enables part of a larger die (defective units are fused
    off). Area counts the physical die, so each harvested count of a device spec is
    scaled by ``physical / enabled`` of its product (and rounded up for counts).
    """

    die: str
    process: str
    memory: str
    enabled_units: int
    physical_units: int
    enabled_l2_bytes: float
    physical_l2_bytes: float
    enabled_dram_units: int
    physical_dram_units: int
    register_file_bytes_per_unit: float
    links: tuple[LinkPort, ...]
    reported_die_mm2: float | None = None
    style: str = "nvidia"


@dataclass(frozen=True)
class DieShot:
    """A die-shot area breakdown of a real die, and what one of its compute units holds.

    The areas (mm^2) are the categories of [LC-F6]; ``product`` is the :data:`PRODUCTS`
    entry of the die. The unit's contents are in the mapper's terms (the presets' [LC]
    figures): MACs per cycle of its matrix units, vector lanes, local SRAM, and the L2
    bandwidth the on-chip interconnect carries.
    """

    product: str
    cores: float
    noc: float
    global_buffer: float
    dram_phy: float
    dram_controllers: float
    link_phy: float
    link_controllers: float
    other: float
    macs_per_cycle_per_unit: float
    vector_lanes_per_unit: int
    sram_bytes_per_unit: float
    l2_bandwidth_bytes_per_cycle: float

    @property
    def total_mm2(self) -> float:
        """The die: the sum of its categories."""
        return (self.cores + self.noc + self.global_buffer + self.dram_phy + self.dram_controllers
                + self.link_phy + self.link_controllers + self.other)


#: The reference die of each design style [LC-F6]. The two houses differ in ways a
#: process table cannot express (AMD's HBM PHYs and controllers are about twice
#: NVIDIA's per stack, its L2 a quarter less dense, its link controllers annotated
#: apart), so each device is costed in the style of its designer (:func:`die_shot`).
DIE_SHOTS: dict[str, DieShot] = {
    # GA100: 128 SMs of 4 x 16 x 16 MACs, 128 lanes, 192 KiB L1 / shared; 5120 B/cycle [LC].
    "nvidia": DieShot("a100", 476.25, 76.44, 119.31, 58.0, 31.77, 20.95, 0.0, 40.0, 1024, 128, 192 * KiB, 5120),
    # Aldebaran: 112 CUs of 4 matrix cores (16 x 16 at half rate), 64 lanes, 64 KiB LDS;
    # 4096 B/cycle [LC].
    "amd": DieShot("mi210", 446.22, 33.0, 25.2, 83.26, 40.83, 45.52, 42.0, 4.0, 512, 64, 64 * KiB, 4096),
}


def die_shot(style: str) -> DieShot:
    """The reference :class:`DieShot` of a design style (``nvidia`` or ``amd``)."""
    return _lookup(DIE_SHOTS, style, "design style")


PRODUCTS: dict[str, ProductFacts] = {
    "a100": ProductFacts(  # [A100-WP]; full-die L2 48 MB = 40 MB x 6/5 memory partitions
        "GA100", "N7", "hbm2e", 108, 128, 40 * MiB, 48 * MiB, 5, 6, 256 * KiB,
        (LinkPort("nvlink3", 12, 4), LinkPort("pcie4", 1, 16)), 826.0,
    ),
    "h100": ProductFacts(  # [H100-WP]
        "GH100", "4N", "hbm3", 132, 144, 50 * MiB, 60 * MiB, 5, 6, 256 * KiB,
        (LinkPort("nvlink4", 18, 2), LinkPort("pcie5", 1, 16)), 814.0,
    ),
    "h200": ProductFacts(  # [H100-WP], [H200-DS]: HBM3e at H200's rate is HBM3's per stack
        "GH100", "4N", "hbm3", 132, 144, 50 * MiB, 60 * MiB, 6, 6, 256 * KiB,
        (LinkPort("nvlink4", 18, 2), LinkPort("pcie5", 1, 16)), 814.0,
    ),
    "l40s": ProductFacts(  # [ADA-WP]; twelve x32 GDDR6 channels; 64K 32-bit registers per SM
        "AD102", "4N", "gddr6", 142, 144, 96 * MiB, 96 * MiB, 12, 12, 256 * KiB,
        (LinkPort("pcie4", 1, 16),), 608.5,
    ),
    "rtx4090": ProductFacts(  # [ADA-WP]; GDDR6X's PHY taken as GDDR6's (no figure of its own)
        "AD102", "4N", "gddr6", 128, 144, 72 * MiB, 96 * MiB, 12, 12, 256 * KiB,
        (LinkPort("pcie4", 1, 16),), 608.5,
    ),
    "mi210": ProductFacts(  # [CDNA2-WP]; AMD publishes no area (its die shot sums to 720 mm^2 [LC-F6])
        "Aldebaran GCD", "N6", "hbm2e", 104, 112, 8 * MiB, 8 * MiB, 4, 4, 512 * KiB,
        (LinkPort("xgmi", 3, 16), LinkPort("pcie4", 1, 16)), None, "amd",
    ),
}

#: Fallback for a device with no product entry.
DEFAULT_PROCESS = "N7"
DEFAULT_MEMORY = "hbm2e"
#: One PCIe Gen 4 x16 host link, the least an accelerator card has.
DEFAULT_LINKS = (LinkPort("pcie4", 1, 16),)
#: Register file per vector lane: 256 KB per 128-lane SM [A100-WP] = 2 KiB per lane.
DEFAULT_REGISTER_BYTES_PER_LANE = 2 * KiB


def _lookup(table: dict, name: str, what: str):
    if name in table:
        return table[name]
    folded = {key.lower(): key for key in table}
    if name.lower() in folded:
        return table[folded[name.lower()]]
    close = difflib.get_close_matches(name, list(table), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise DesError(f"unknown {what} {name!r}{hint}; known: {', '.join(table)}")


def process_node(name: str) -> ProcessNode:
    """The :class:`ProcessNode` called ``name`` (case-insensitive); unknown -> DesError."""
    return _lookup(PROCESS_NODES, name, "process node")


def memory_technology(name: str) -> MemoryTechnology:
    """The :class:`MemoryTechnology` called ``name`` (case-insensitive); unknown -> DesError."""
    return _lookup(MEMORY_TECHNOLOGIES, name, "memory technology")


def serdes_lane_area_mm2_n7(kind: str) -> float:
    """PHY area of one lane of SerDes ``kind`` at N7; unknown -> DesError."""
    return _lookup(SERDES_LANE_AREA_MM2_N7, kind, "link PHY kind")
