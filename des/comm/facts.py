"""What a communication library sees of a group: machines, links, GPU generation.

NCCL's tuning starts from a few facts about the communicator, which des reads off
the system graph: how many machines the ranks span and how many ranks each holds, the
GPU generation (NCCL's tables differ for Volta, Ampere and Hopper), whether the ranks of
a machine talk over NVLink or PCIe and how much of it each GPU has, whether through a
switch, and the NICs each machine has for the ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

from des.collectives.nvls import nvls_switch
from des.collectives.rings import has_nic, machine_groups, machine_of
from des.specs import ROLE_SWITCH

#: GPU generations by device-name prefix (longest first wins); NCCL's compute-capability
#: classes (sm70 Volta, sm80 Ampere, sm90 Hopper). AMD Instinct parts run RCCL, whose
#: NVIDIA-derived tables des takes from the Ampere column (RCCL tunes its own; no
#: figures are published for MI210).
GENERATION_PREFIXES = (
    ("v100", "volta"),
    ("a100", "ampere"),
    ("a10", "ampere"),
    ("a40", "ampere"),
    ("rtx3", "ampere"),
    ("l40", "ada"),
    ("l4", "ada"),
    ("rtx4", "ada"),
    ("h100", "hopper"),
    ("h200", "hopper"),
    ("h20", "hopper"),
    ("gh200", "hopper"),
    ("b200", "blackwell"),
    ("b100", "blackwell"),
    ("gb200", "blackwell"),
    ("mi", "cdna"),
)

#: A device-to-fabric link at or above this per-direction bandwidth is NVLink (or AMD
#: Infinity Fabric); below it, PCIe (PCIe 5.0 x16 is 64 GB/s per direction).
NVLINK_MIN_BYTES_PER_S = 70e9


def generation_of(device_name: str) -> str:
    """The GPU generation of a device by its preset name (``ampere`` if unknown)."""
    name = device_name.lower()
    for prefix, generation in sorted(GENERATION_PREFIXES, key=lambda item: -len(item[0])):
        if name.startswith(prefix):
            return generation
    return "ampere"


@dataclass(frozen=True)
class GroupFacts:
    """The communicator as NCCL's tuning sees it.

    Attributes
    ----------
    ranks : int
        Ranks in the group.
    nodes : int
        Machines the group spans.
    ranks_per_node : int
        Most ranks on one machine.
    generation : str
        GPU generation (:func:`generation_of` of the first rank's device).
    intra : str
        ``nvlink`` or ``pcie``: what joins the ranks of a machine.
    switched : bool
        Whether the ranks of a machine meet at a switch (NVSwitch) rather than by
        direct links.
    fabric_bytes_per_s : float
        Per-direction bandwidth of one GPU's links inside its machine, all together.
    wire_latency_s : float
        Link latency of one GPU-to-GPU hop inside a machine (both edges through a switch).
    nics_per_node : int
        NIC-equipped ranks on the machine with fewest (0 on one machine).
    nic_bytes_per_s : float
        Per-direction bandwidth of one NIC (0 on one machine).
    nvls : bool
        Whether the switch reduces in the fabric and every rank of the machine sits on it.
    """

    ranks: int
    nodes: int
    ranks_per_node: int
    generation: str
    intra: str
    switched: bool
    fabric_bytes_per_s: float
    wire_latency_s: float
    nics_per_node: int
    nic_bytes_per_s: float
    nvls: bool

    @property
    def interconnect(self) -> str:
        """``nvswitch``, ``nvlink`` (direct links) or ``pcie``: the fitted tables' key."""
        if self.intra == "pcie":
            return "pcie"
        return "nvswitch" if self.switched else "nvlink"


def group_facts(graph, group, nvls_capable: bool) -> GroupFacts:
    """Read :class:`GroupFacts` of ``group`` off the system graph.

    Parameters
    ----------
    graph : networkx.Graph
        The system graph.
    group : sequence of str
        Device nodes in rank order.
    nvls_capable : bool
        Whether the system's switch reduces in the fabric (``collective.nvls``).
    """
    group = tuple(group)
    machines = machine_groups(graph, group)
    first = group[0]
    here = machine_of(graph, first)
    fabric = 0.0
    wire = 0.0
    switched = False
    for peer in graph.neighbors(first):
        if machine_of(graph, peer) != here:  # a NIC to the network
            continue
        attrs = graph.edges[first, peer]
        fabric += attrs["bandwidth_bytes_per_s"]
        if graph.nodes[peer].get("role") == ROLE_SWITCH:
            switched = True
            wire = max(wire, 2 * attrs["latency_s"])
        else:
            wire = max(wire, attrs["latency_s"])
    nic_bw = 0.0
    nics = 0
    if len(machines) > 1:
        counts = []
        for members in machines:
            with_nic = [rank for rank in members if has_nic(graph, rank)]
            counts.append(len(with_nic) or 1)
            for rank in with_nic:
                for peer in graph.neighbors(rank):
                    if machine_of(graph, peer) != machine_of(graph, rank):
                        nic_bw = max(nic_bw, graph.edges[rank, peer]["bandwidth_bytes_per_s"])
        nics = min(counts)
    ranks_per_node = max(len(members) for members in machines)
    nvls = bool(nvls_capable and switched and all(nvls_switch(graph, members) for members in machines))
    return GroupFacts(
        ranks=len(group),
        nodes=len(machines),
        ranks_per_node=ranks_per_node,
        generation=generation_of(graph.nodes[first]["device"].name),
        intra="nvlink" if fabric >= NVLINK_MIN_BYTES_PER_S else "pcie",
        switched=switched,
        fabric_bytes_per_s=fabric,
        wire_latency_s=wire,
        nics_per_node=nics,
        nic_bytes_per_s=nic_bw,
        nvls=nvls,
    )
