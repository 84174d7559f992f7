"""NCCL as it decides: algorithm, protocol and channels from its own cost model.

NCCL picks, per call, the (algorithm, protocol) pair its tuning model predicts fastest
(``src/graph/tuning.cc``: ``ncclTopoTuneModel`` builds a latency and a bandwidth per
pair, ``ncclTopoGetAlgoTime`` scores ``latency + bytes / bandwidth``), then cuts the
number of channels (and threads) for small messages (``src/enqueue.cc``, the loop
``while (nBytes < nc * nt * threadThreshold)``). Each channel is one thread block on
one SM. des does the same with NCCL's constants (NCCL 2.18-2.19, tables below) and the
communicator facts of :mod:`des.comm.facts`, then event-simulates the chosen algorithm
with those channels; what the real kernels achieve against NCCL's model (the fraction
of its per-channel bandwidth, the achieved link fraction, the harness's per-call
overhead) is fitted once per GPU generation and interconnect on the calibration
measurements (:data:`TUNINGS`, ``scripts/calibrate_comm.py``) and may be overridden by a
system's ``collective.tuning``.

Sources (facts, not code): NVIDIA/nccl ``src/graph/tuning.cc`` (baseLat, hwLat,
llMaxBws, perChMaxRingLL128Bws, perChMaxTreeBws, perChMaxTreeLL128Bws,
treeCorrectionFactor, the model refinements), ``src/include/device.h`` and
``src/include/comm.h`` (thread thresholds, thread counts, buffer sizes, NCCL_STEPS),
``src/graph/topo.h`` (NVLink bandwidth per link by SM generation, PCI_BW),
``src/graph/search.cc`` (the search's speed arrays, channel duplication),
``src/transport/nvls.cc`` (NVLS channels; NVLS needs more than two GPUs). NVLS-tree's
bandwidth rule and latencies (hwLat NVLink 25 us, network 14 us) are those of the
release whose NVLS row reads 25 / 18 us.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from des.comm.facts import GroupFacts
from des.errors import DesError
from des.specs import CollectiveParams
from des.units import GIGA, US, KiB

ALGORITHMS = ("ring", "tree", "nvls", "nvls_tree")
#: The algorithms that reduce in the switch (NVLS channels, chunk and latency figure).
NVLS_ALGORITHMS = ("nvls", "nvls_tree")
PROTOCOLS = ("ll", "ll128", "simple")

# ----------------------------------------------------------------- NCCL's tables (tuning.cc)

#: Base latency per algorithm and protocol, microseconds.
BASE_LAT_US = {
    "tree": {"ll": 6.8, "ll128": 14.0, "simple": 0.0},
    "ring": {"ll": 6.6, "ll128": 14.0, "simple": 8.4},
    "nvls": {"ll": 0.0, "ll128": 0.0, "simple": 0.0},
    "nvls_tree": {"ll": 0.0, "ll128": 0.0, "simple": 0.0},
}
#: Latency per hop by hardware (NVLink, PCIe, network), algorithm and protocol, microseconds.
HW_LAT_US = {
    "nvlink": {"tree": {"ll": 0.6, "ll128": 1.25, "simple": 4.0}, "ring": {"ll": 0.6, "ll128": 1.9, "simple": 3.4},
               "nvls": {"ll": 0.0, "ll128": 0.0, "simple": 25.0}, "nvls_tree": {"ll": 0.0, "ll128": 0.0, "simple": 25.0}},
    "pcie": {"tree": {"ll": 1.0, "ll128": 1.9, "simple": 6.0}, "ring": {"ll": 1.0, "ll128": 2.5, "simple": 5.7},
             "nvls": {"ll": 0.0, "ll128": 0.0, "simple": 0.0}, "nvls_tree": {"ll": 0.0, "ll128": 0.0, "simple": 0.0}},
    "net": {"tree": {"ll": 5.0, "ll128": 8.5, "simple": 14.0}, "ring": {"ll": 2.7, "ll128": 4.0, "simple": 14.0},
            "nvls": {"ll": 0.0, "ll128": 0.0, "simple": 18.0}, "nvls_tree": {"ll": 0.0, "ll128": 0.0, "simple": 14.0}},
}
#: Column of the per-generation tables: Volta, Ampere, Hopper (NCCL's compCapIndex:
#: sm >= 90 Hopper, >= 80 Ampere; Ada is sm89, Blackwell sm100 takes Hopper's).
_GENERATION_INDEX = {"volta": 0, "ampere": 1, "ada": 1, "cdna": 1, "hopper": 2, "blackwell": 2}
#: LL's most bus bandwidth (GB/s) by generation, then 1 / 2 / more machines.
LL_MAX_BW = ((39.0, 39.0, 20.4), (87.7, 22.5, 19.0), (141.0, 45.0, 35.0))
#: Most LL128 ring bandwidth per channel (GB/s).
PER_CH_MAX_RING_LL128 = ((20.0, 20.0, 20.0), (20.0, 20.0, 20.0), (36.7, 36.7, 36.7))
#: Most LL128 tree bandwidth per channel (GB/s).
PER_CH_MAX_TREE_LL128 = ((20.0, 20.0, 20.0), (20.0, 20.0, 20.0), (36.7, 36.7, 29.0))
#: Most tree bandwidth per channel (GB/s).
PER_CH_MAX_TREE = ((26.5, 18.5, 10.0), (24.0, 23.6, 17.8), (38.7, 41.4, 36.0))
#: Tree bandwidth correction by log2(bytes / 64), 64 B to 256 MiB, per protocol.
TREE_CORRECTION = {
    "ll": (1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0, 1.0, 1.0, 1.0),
    "ll128": (1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .6, .6, .6, .8, .9, .9, .9, .9, 1.0, 1.0),
    "simple": (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .6, .7, .8, .7, .7, .8, .9, .9),
}
#: Bytes of work per thread before NCCL adds threads or channels (device.h), and
#: threads per block (LL and Simple 512, LL128 640).
THREAD_THRESHOLD = {"ll": 8, "ll128": 8, "simple": 64}
MAX_THREADS = {"ll": 512, "ll128": 640, "simple": 512}
#: Data bytes of one step slot per channel: LL 8 lines x 512 threads x 8 data bytes;
#: LL128 120 elements x 640 threads x 8 B (of which 120/128 data); Simple 4 MiB / 8 steps.
STEP_BYTES = {"ll": 32 * KiB, "ll128": 120 * 640 * 8 * 120 / 128, "simple": 512 * KiB}
#: Payload fraction on the wire: LL pairs every 8 data bytes with an 8-byte flag; LL128
#: carries 120 data bytes in every 128; Simple sends data alone.
PAYLOAD = {"ll": 0.5, "ll128": 120 / 128, "simple": 1.0}
#: NCCL's NVLink bandwidth per link (GB/s) by generation (topo.h SM70/80/90/100_NVLINK_BW).
NVLINK_LINK_GBPS = {"volta": 20.0, "ampere": 20.0, "ada": 20.0, "cdna": 20.0, "hopper": 20.6, "blackwell": 40.1}
#: Physical NVLink bandwidth of one link per direction (NVLink 3 and 4; hardware.md).
NVLINK_LINK_BYTES_PER_S = 25e9
#: NCCL's PCIe bandwidth (topo.h PCI_BW, GB/s).
PCI_BW = 24.0
#: The ring search's speeds, GB/s per channel (search.cc): intra-machine, Hopper's, network.
SPEED_INTRA = (40.0, 30.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0)
SPEED_INTRA_SM90 = (60.0, 50.0, 40.0, 30.0, 24.0, 20.0, 15.0, 12.0, 11.0, 6.0, 3.0)
SPEED_INTER = (48.0, 30.0, 28.0, 24.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.4, 1.2)
#: Channels: the search finds at most MAXCHANNELS / 2 = 16, duplicates them when one
#: carries 25 GB/s or more, and init duplicates the rings once more (at most 32).
SEARCH_MAX_CHANNELS = 16
MAX_CHANNELS = 32
#: NVLS channels (nvls.cc NCCL_NVLS_NCHANNELS default) and chunk (NCCL_NVLS_CHUNKSIZE 128 KiB).
NVLS_CHANNELS = 16
NVLS_CHUNK_BYTES = 128 * KiB


@dataclass(frozen=True)
class NcclTuning:
    """What the real kernels achieve against NCCL's model, fitted per generation and interconnect.

    Attributes
    ----------
    call_overhead_s : float
        Per-call cost of the calling harness before NCCL's own base latency
        (torch.distributed's dispatch, the host-side enqueue and the kernel launch,
        host-timed as in the calibration tables).
    link_fraction : float
        Achieved fraction of a link's bandwidth inside a machine.
    net_fraction : float
        Achieved fraction of a NIC's bandwidth between machines.
    ll_fraction, ll128_fraction, simple_fraction : float
        Achieved fraction of NCCL's modelled per-channel bandwidth for each protocol.
    ll_latency, ll128_latency, simple_latency : float
        Achieved multiple of NCCL's modelled latency (base and per hop) for each
        protocol: NCCL's latency table is a model too, and the real kernels' step
        synchronisation (flag polling, fences, the Simple protocol's slices) costs
        more or less than it says.
    nvls_latency : float
        The same for NVLS and NVLS-tree, whose one 25 us figure (hwLat) stands for the
        whole in-switch reduction and multicast rather than for a ring's hops.
    net_latency : float
        The same for a hop between machines (NCCL's network hwLat): the NIC, PCIe and
        the proxy thread that drives the transport.
    """

    call_overhead_s: float = 10e-6
    link_fraction: float = 0.8
    net_fraction: float = 0.8
    ll_fraction: float = 1.0
    ll128_fraction: float = 1.0
    simple_fraction: float = 1.0
    ll_latency: float = 1.0
    ll128_latency: float = 1.0
    simple_latency: float = 1.0
    nvls_latency: float = 1.0
    net_latency: float = 1.0

    def protocol_fraction(self, protocol: str) -> float:
        """The achieved fraction of protocol ``protocol``."""
        return getattr(self, f"{protocol}_fraction")

    def protocol_latency(self, protocol: str) -> float:
        """The achieved multiple of NCCL's latency for protocol ``protocol``."""
        return getattr(self, f"{protocol}_latency")

    def with_overrides(self, overrides) -> NcclTuning:
        """A copy with ``(field, value)`` pairs applied (a system's ``collective.tuning``)."""
        known = {f.name for f in fields(self)}
        values = {}
        for key, value in overrides:
            if key not in known:
                raise DesError(f"collective.tuning: unknown field {key!r}; known: {', '.join(sorted(known))}")
            values[key] = float(value)
        return replace(self, **values)


#: Fitted on ../shared/calibration (scripts/calibrate_comm.py): the NVSwitch rows of
#: dgx_allreduce.csv (DGX A100 2 and 4 ranks in one machine, DGX H100 likewise,
#: torch.distributed timing), the direct-NVLink rows of a100x4_nvlink_allreduce.csv
#: (HGX A100 4-GPU board, LLMCompass's PyTorch timing) and the two-machine rows of
#: dgx_allreduce.csv for the network fraction. Generations or interconnects without
#: measurements take the nearest fitted entry (:func:`tuning_for`).
TUNINGS: dict[tuple[str, str], NcclTuning] = {
    # DGX A100 (NVSwitch), 2 and 4 ranks, torch.distributed: 7.0 % and 9.7 % over all rows;
    # ll_latency sits on its lower bound (0.5).
    # NCCL's latencies stretched (LL128 1.4x, Simple 2.7x) and an 11.3 us harness overhead.
    # net_fraction: the two-machine rows (HDR InfiniBand, one rank per machine), whose
    # large messages reach a quarter of the 25 GB/s port (busbw 5.9 GB/s at 64 MiB);
    # net_latency: their small messages, twice NCCL's network hop latency (5.3 % -> 5.1 %).
    ("ampere", "nvswitch"): NcclTuning(
        call_overhead_s=11.3e-6, link_fraction=0.576, net_fraction=0.25,
        ll_fraction=1.575, ll128_fraction=0.56, simple_fraction=0.88,
        ll_latency=0.5, ll128_latency=1.394, simple_latency=2.673, net_latency=2.0,
    ),
    # HGX A100 4-GPU (direct NVLink), LLMCompass's PyTorch timing: 8.6 % over its 32 rows.
    ("ampere", "nvlink"): NcclTuning(
        call_overhead_s=2.16e-6, link_fraction=0.72, ll_fraction=0.675, ll128_fraction=0.619, simple_fraction=1.0,
        ll_latency=1.0, ll128_latency=2.41, simple_latency=3.85,
    ),
    # DGX H100 (NVSwitch), 2 and 4 ranks, torch.distributed: 10.4 % and 9.9 % over all rows;
    # ll_latency sits on its lower bound (0.5); NVLS's 25 us figure comes out at 0.4x.
    # No H100 rows cross machines: the network fraction and latency are the InfiniBand
    # ones above.
    ("hopper", "nvswitch"): NcclTuning(
        call_overhead_s=2.23e-6, link_fraction=1.0, net_fraction=0.25,
        ll_fraction=0.432, ll128_fraction=1.0, simple_fraction=0.8,
        ll_latency=0.5, ll128_latency=1.0, simple_latency=1.66, nvls_latency=0.403, net_latency=2.0,
    ),
}


def tuning_for(facts: GroupFacts, overrides=()) -> NcclTuning:
    """The fitted :class:`NcclTuning` of this generation and interconnect, with overrides.

    Without an entry of its own a generation takes Ampere's (Hopper's for Blackwell),
    and a PCIe machine its generation's NVLink-direct entry, else NVSwitch's.
    """
    generation = facts.generation
    if generation == "blackwell":
        generation = "hopper"
    if (generation, "nvswitch") not in TUNINGS and (generation, "nvlink") not in TUNINGS:
        generation = "ampere"
    interconnect = facts.interconnect
    key = (generation, interconnect)
    if key not in TUNINGS:
        key = (generation, "nvlink") if (generation, "nvlink") in TUNINGS else (generation, "nvswitch")
        if key not in TUNINGS:
            key = (generation, "nvswitch") if (generation, "nvswitch") in TUNINGS else ("ampere", "nvswitch")
    return TUNINGS[key].with_overrides(overrides)


# ----------------------------------------------------------------- the communicator's graph


@dataclass(frozen=True)
class NcclGraph:
    """What NCCL's topology search finds: channels and bandwidth per channel (GB/s)."""

    channels: int
    bw_intra_gbps: float
    bw_inter_gbps: float
    runtime_channels: int


def _largest_at_most(speeds, limit: float) -> float:
    for speed in speeds:
        if speed <= limit + 1e-9:
            return speed
    return speeds[-1]


def nccl_graph(facts: GroupFacts) -> NcclGraph:
    """NCCL's ring/tree graph of this communicator (search.cc's rule, simplified to
    the one fabric per machine des describes)."""
    gbps = NVLINK_LINK_GBPS.get(facts.generation, 20.0)
    if facts.intra == "nvlink":
        links = max(1, round(facts.fabric_bytes_per_s / NVLINK_LINK_BYTES_PER_S))
        total = links * gbps
    else:
        total = min(PCI_BW, facts.fabric_bytes_per_s / GIGA)
    speeds = SPEED_INTRA_SM90 if facts.generation in ("hopper", "blackwell") else SPEED_INTRA
    if facts.nodes > 1:
        nic = facts.nic_bytes_per_s / GIGA
        speed = min(_largest_at_most(SPEED_INTER, nic), _largest_at_most(speeds, total))
        channels = max(1, min(SEARCH_MAX_CHANNELS, facts.nics_per_node * max(1, int(nic // speed))))
        bw_inter = speed
    else:
        speed = _largest_at_most(speeds, total)
        channels = max(1, min(SEARCH_MAX_CHANNELS, int(total // speed)))
        bw_inter = speed
    if speed >= 25.0:
        channels, speed = min(2 * channels, MAX_CHANNELS), speed / 2
        bw_inter = min(bw_inter, speed) if facts.nodes == 1 else bw_inter
    return NcclGraph(channels, speed, bw_inter, min(2 * channels, MAX_CHANNELS))


# ----------------------------------------------------------------- the cost model


def _enabled(facts: GroupFacts, kind: str, algorithm: str, protocol: str) -> bool:
    if algorithm == "tree":
        # Trees run all-reduce across machines (one machine: chains only; NCCL's model
        # rarely picks them there and des keeps trees for what they are for).
        return kind == "allreduce" and facts.nodes > 1
    if algorithm == "nvls":
        # NVLS: Simple only, all-reduce, one machine of more than two GPUs on the switch.
        return kind == "allreduce" and protocol == "simple" and facts.nvls and facts.nodes == 1 and facts.ranks > 2
    if algorithm == "nvls_tree":
        # NVLS-tree: the same switches, several machines of more than two GPUs each.
        return (kind == "allreduce" and protocol == "simple" and facts.nvls and facts.nodes > 1
                and facts.ranks / facts.nodes > 2)
    if protocol == "ll128":
        # LL128 is enabled by default on NVLink only (Volta, Ampere, Hopper).
        return facts.intra == "nvlink" and facts.generation in ("volta", "ampere", "hopper", "blackwell")
    return True


def bus_bandwidth_gbps(facts: GroupFacts, kind: str, algorithm: str, protocol: str, graph: NcclGraph) -> float:
    """NCCL's bus bandwidth (GB/s) of one (algorithm, protocol) pair; 0: unusable."""
    if not _enabled(facts, kind, algorithm, protocol):
        return 0.0
    nodes = facts.nodes
    gen = _GENERATION_INDEX.get(facts.generation, 1)
    column = min(nodes, 3) - 1
    if algorithm == "nvls":
        bus = graph.channels * graph.bw_intra_gbps
    elif algorithm == "nvls_tree":
        # The tree's NICs bound it; beyond two machines each carries half (tuning.cc).
        bus = graph.channels * min(graph.bw_intra_gbps, graph.bw_inter_gbps if nodes <= 2 else graph.bw_inter_gbps / 2)
    else:
        bus = graph.channels * (graph.bw_intra_gbps if nodes <= 2 else graph.bw_inter_gbps)
    if algorithm == "ring" and protocol == "ll":
        bus = min(LL_MAX_BW[gen][column], bus * 0.25)
    if algorithm == "ring" and protocol == "ll128":
        bus = min(bus * (0.7 if facts.ranks / nodes < 2 else 0.92), graph.channels * PER_CH_MAX_RING_LL128[gen][column])
    if algorithm == "tree":
        bus = min(bus * 0.92, graph.channels * PER_CH_MAX_TREE[gen][column])
        if protocol == "ll":
            bus = min(bus / 3.8, LL_MAX_BW[gen][column])
        if protocol == "ll128":
            bus = min(bus * (7 / 9 if nodes == 1 else 120 / 128), graph.channels * PER_CH_MAX_TREE_LL128[gen][column])
    return bus


def _steps(kind: str, ranks: int) -> int:
    return 2 * (ranks - 1) if kind == "allreduce" else ranks - 1


def bus_to_algorithm_ratio(facts: GroupFacts, kind: str, algorithm: str) -> float:
    """Algorithm bandwidth over bus bandwidth: ring n / steps, NVLS and NVLS-tree 5/6, tree 1/2."""
    if algorithm == "ring":
        return facts.ranks / _steps(kind, facts.ranks)
    return 5 / 6 if algorithm in NVLS_ALGORITHMS else 0.5


def model(facts: GroupFacts, kind: str, algorithm: str, protocol: str, graph: NcclGraph) -> tuple[float, float]:
    """NCCL's (latency in us, algorithm bandwidth in GB/s) of one pair; bandwidth 0: unusable."""
    bus = bus_bandwidth_gbps(facts, kind, algorithm, protocol, graph)
    if bus <= 0:
        return 0.0, 0.0
    n, nodes = facts.ranks, facts.nodes
    steps = _steps(kind, n)
    inter_steps = (2 * nodes if nodes > 1 else 0) if kind == "allreduce" else nodes - 1
    intra_lat = HW_LAT_US[facts.intra][algorithm][protocol]
    inter_lat = HW_LAT_US["net"][algorithm][protocol]
    if nodes > 1 and protocol == "ll":
        intra_lat *= 1.8
    latency = BASE_LAT_US[algorithm][protocol]
    if algorithm == "ring":
        if nodes == 1:
            latency += steps * intra_lat
        else:
            latency += (steps - inter_steps) * intra_lat + inter_steps * inter_lat
    elif algorithm == "tree":
        latency += 2 * ((n // nodes - 1) * intra_lat + math.log2(nodes) * inter_lat)
    elif algorithm == "nvls_tree":
        latency += intra_lat + 2 * int(math.log2(nodes)) * inter_lat
    else:
        latency += intra_lat + (inter_lat if nodes > 1 else 0.0)
    return latency, bus * bus_to_algorithm_ratio(facts, kind, algorithm)


def predicted_us(facts: GroupFacts, kind: str, nbytes: float, algorithm: str, protocol: str, graph: NcclGraph) -> float:
    """``ncclTopoGetAlgoTime``: NCCL's predicted time in us (``inf`` where unusable)."""
    latency, bandwidth = model(facts, kind, algorithm, protocol, graph)
    if bandwidth <= 0:
        return math.inf
    if algorithm == "tree":
        log_size = int(math.log2(max(nbytes / 64, 1)))
        if log_size < len(TREE_CORRECTION[protocol]):
            bandwidth *= TREE_CORRECTION[protocol][log_size]
    if algorithm == "ring" and protocol == "simple" and facts.nodes > 1 and kind == "allreduce":
        if nbytes / (graph.runtime_channels * facts.ranks) >= 64:
            latency *= 1.4  # the ring's plateau on sm80 and later
    return latency + nbytes / (1000 * bandwidth)


def choose(facts: GroupFacts, kind: str, nbytes: float, graph: NcclGraph) -> tuple[str, str, float]:
    """NCCL's choice: the (algorithm, protocol) with the least predicted time, and it (us).

    Ties go to the earlier algorithm of :data:`ALGORITHMS`, then protocol of :data:`PROTOCOLS`.
    """
    best = None
    for algorithm in ALGORITHMS:
        for protocol in PROTOCOLS:
            time_us = predicted_us(facts, kind, nbytes, algorithm, protocol, graph)
            if best is None or time_us < best[2]:
                best = (algorithm, protocol, time_us)
    return best


def runtime_channels(facts: GroupFacts, algorithm: str, protocol: str, nbytes: float, graph: NcclGraph) -> tuple[int, int]:
    """Channels and threads per channel NCCL launches for this call (enqueue.cc's cut)."""
    if algorithm in NVLS_ALGORITHMS:
        return NVLS_CHANNELS, MAX_THREADS["simple"]
    channels = graph.runtime_channels
    threads = MAX_THREADS[protocol]
    threshold = THREAD_THRESHOLD[protocol] * (facts.ranks if algorithm == "ring" and protocol == "ll" else 1)
    while nbytes < channels * threads * threshold:
        if channels >= 2:
            channels -= 1
        elif threads % 128 == 0:
            threads //= 2
        else:
            break
    return channels, threads


def plan_params(facts: GroupFacts, kind: str, nbytes: float, tuning: NcclTuning, launch_overhead_s: float | None,
                algorithm: str | None = None, protocol: str | None = None):
    """NCCL's plan for one call as the parameters the event-simulated algorithm runs with.

    Parameters
    ----------
    facts : GroupFacts
        The communicator.
    kind : str
        Collective kind.
    nbytes : float
        Message size.
    tuning : NcclTuning
        Fitted achieved fractions and call overhead.
    launch_overhead_s : float or None
        Per-call cost of the caller (``None``: the tuning's ``call_overhead_s``, a host-
        timed eager call; a CUDA-graph runtime passes its per-kernel launch).
    algorithm, protocol : str, optional
        Force a choice (as ``NCCL_ALGO`` / ``NCCL_PROTO`` do); else NCCL's.

    Returns
    -------
    (str, str, int, CollectiveParams, float)
        Algorithm, protocol, channels, the single-protocol parameters, and NCCL's
        predicted time in seconds.
    """
    graph = nccl_graph(facts)
    chosen_algorithm, chosen_protocol, time_us = choose(facts, kind, nbytes, graph)
    if algorithm is not None or protocol is not None:
        chosen_algorithm = algorithm or chosen_algorithm
        chosen_protocol = protocol or chosen_protocol
        time_us = predicted_us(facts, kind, nbytes, chosen_algorithm, chosen_protocol, graph)
        if not math.isfinite(time_us):
            raise DesError(f"NCCL cannot run {kind} with {chosen_algorithm}/{chosen_protocol} on this group")
    channels, _threads = runtime_channels(facts, chosen_algorithm, chosen_protocol, nbytes, graph)
    bus_gbps = bus_bandwidth_gbps(facts, kind, chosen_algorithm, chosen_protocol, graph)
    full = NVLS_CHANNELS if chosen_algorithm in NVLS_ALGORITHMS else graph.runtime_channels
    per_channel = bus_gbps * GIGA / full * tuning.protocol_fraction(chosen_protocol)
    overhead = tuning.call_overhead_s if launch_overhead_s is None else launch_overhead_s
    base = BASE_LAT_US[chosen_algorithm][chosen_protocol]
    hop = HW_LAT_US[facts.intra][chosen_algorithm][chosen_protocol]
    net_hop = HW_LAT_US["net"][chosen_algorithm][chosen_protocol]
    if chosen_algorithm in NVLS_ALGORITHMS:
        # NVLS's intra-machine model latency is the whole call's, not a hop's; NVLS-tree
        # pays the network's per tree hop.
        base, hop, net_hop = base + hop, 0.0, net_hop if facts.nodes > 1 else 0.0
    stretch = tuning.nvls_latency if chosen_algorithm in NVLS_ALGORITHMS else tuning.protocol_latency(chosen_protocol)
    # A hop between machines is the network transport's (NIC, PCIe, proxy thread): its
    # own achieved multiple of NCCL's figure.
    base, hop, net_hop = base * stretch, hop * stretch, net_hop * tuning.net_latency
    payload = PAYLOAD[chosen_protocol]
    params = CollectiveParams(
        launch_latency_s=overhead + base * US,
        step_latency_s=max(0.0, hop * US - facts.wire_latency_s),
        bandwidth_efficiency=min(1.0, payload * tuning.link_fraction),
        chunk_bytes=(NVLS_CHUNK_BYTES if chosen_algorithm in NVLS_ALGORITHMS else STEP_BYTES[chosen_protocol]),
        compute_units=channels,
        channels=channels,
        algorithm="ring",
        inter_node_step_latency_s=net_hop * US,
        inter_node_bandwidth_efficiency=min(1.0, payload * tuning.net_fraction),
        library="nccl",
        channel_bandwidth_bytes_per_s=per_channel,
    )
    return chosen_algorithm, chosen_protocol, channels, params, time_us * US
