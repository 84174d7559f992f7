"""The communication-library layer: plan a call as the library would, then build it.

Between a workload's collective and the event-simulated algorithms sits the library
that decides *how* the call runs. :func:`plan_call` asks the library named by the run
(or the system's ``collective.library``) for a :class:`CommPlan`: the algorithm, the
protocol, the channels (rings, trees or thread blocks in parallel) and the compute
units each channel holds, with the single-protocol parameters the algorithm runs with.
:func:`build` turns the plan into the collective object whose ``run()`` the engine
drives. Libraries:

``fixed``
    The system's ``collective`` block as given: a ring or hierarchical collective with
    those parameters (des's closed-form protocol choice where it lists protocols).
``nccl``
    :mod:`des.comm.nccl`: NCCL's algorithm, protocol and channel choice from its cost
    model; ring, tree (across machines) NVLS (NVLink SHARP) or NVLS-tree (NVLS inside machines, a tree between them).
``trtllm``, ``vllm``
    :mod:`des.comm.engines`: the engines' one-shot or two-shot all-reduce over peer
    memory in their size ranges, NCCL otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from des.collectives.ring import EXCHANGE_KINDS
from des.comm.engines import peer_params, trtllm_choice, vllm_choice
from des.comm.facts import group_facts
from des.comm.nccl import HW_LAT_US, plan_params, tuning_for
from des.errors import DesError
from des.specs import LIBRARIES, CollectiveParams
from des.units import US


@dataclass(frozen=True)
class CommPlan:
    """How one collective call runs.

    Attributes
    ----------
    library : str
        The library that planned it (:data:`~des.specs.LIBRARIES`).
    algorithm : str
        ``ring``, ``hierarchical``, ``tree``, ``nvls``, ``nvls_tree``, ``oneshot``, ``twoshot`` (or
        ``auto`` for the ``fixed`` library's own choice, made when built).
    protocol : str or None
        ``ll``, ``ll128``, ``simple``, or ``None`` where the algorithm has none.
    channels : int
        Channels in parallel (0: the ``fixed`` library's automatic rings).
    units_per_channel : int
        Compute units each channel holds (one thread block on one SM).
    params : CollectiveParams
        What the algorithm runs with.
    predicted_s : float
        The library's own prediction of the call (NaN where it makes none).
    """

    library: str
    algorithm: str
    protocol: str | None
    channels: int
    units_per_channel: int
    params: CollectiveParams
    predicted_s: float = float("nan")

    def as_dict(self) -> dict:
        """The plan's choices (for JSON and trace arguments)."""
        return {
            "library": self.library,
            "algorithm": self.algorithm,
            "protocol": self.protocol,
            "channels": self.channels,
            "units_per_channel": self.units_per_channel,
        }


def check_library(name: str) -> str:
    """Return ``name`` if it is a known library, else raise :class:`DesError`."""
    if name not in LIBRARIES:
        raise DesError(f"unknown communication library {name!r}; known: {', '.join(LIBRARIES)}")
    return name


def plan_call(network, kind: str, group, nbytes: float, params: CollectiveParams, library: str | None = None,
              launch_overhead_s: float | None = None, algorithm: str | None = None) -> CommPlan:
    """Plan one call.

    Parameters
    ----------
    network : des.hardware.network.Network
        The live network (its graph is read for the communicator's facts).
    kind : str
        Collective kind.
    group : sequence of str
        Ranks.
    nbytes : float
        Message size.
    params : CollectiveParams
        The system's collective block (``library``, ``nvls``, ``tuning`` and, for
        ``fixed``, everything).
    library : str, optional
        Overrides ``params.library``.
    launch_overhead_s : float, optional
        The caller's per-call cost (a CUDA-graph runtime's launch); ``None``: the
        library's host-timed eager figure.
    algorithm : str, optional
        Forces an algorithm (``ring``/``hierarchical``/``auto`` for ``fixed``;
        ``ring``/``tree``/``nvls``/``nvls_tree`` for ``nccl``).
    """
    name = check_library(library or params.library)
    group = tuple(group)
    if kind in EXCHANGE_KINDS:
        return _exchange_plan(network, kind, group, nbytes, params, name, launch_overhead_s, algorithm)
    if name == "fixed":
        chosen = algorithm or params.algorithm
        return CommPlan("fixed", chosen, None, params.channels, 1, dataclasses.replace(params, library="fixed"))
    facts = group_facts(network.graph, group, params.nvls)
    tuning = tuning_for(facts, params.tuning)
    if name in ("trtllm", "vllm") and algorithm is None:
        choice = trtllm_choice(facts, kind, nbytes) if name == "trtllm" else vllm_choice(facts, kind, nbytes)
        if choice != "nccl":
            barrier_s = HW_LAT_US["nvlink"]["ring"]["ll"] * US + facts.wire_latency_s
            overhead = tuning.call_overhead_s if launch_overhead_s is None else launch_overhead_s
            peer = peer_params(facts, choice, nbytes, name, overhead, tuning.link_fraction, barrier_s)
            return CommPlan(name, choice, None, peer.channels, 1, peer)
    if algorithm is not None and algorithm not in ("ring", "tree", "nvls", "nvls_tree", "hierarchical", "auto"):
        raise DesError(
            f"unknown collective algorithm {algorithm!r}; {name} runs ring, tree, nvls or nvls_tree "
            "(or des's hierarchical / auto of NCCL rings)"
        )
    # des's hierarchical collective (or its auto choice) runs phases of NCCL rings.
    forced = "ring" if algorithm in ("hierarchical", "auto") else algorithm
    chosen, protocol, channels, single, predicted_s = plan_params(
        facts, kind, nbytes, tuning, launch_overhead_s, algorithm=forced
    )
    if algorithm in ("hierarchical", "auto"):
        chosen = algorithm
    single = dataclasses.replace(single, library=name)
    return CommPlan(name, chosen, protocol, channels, 1, single, predicted_s)


#: NCCL's point-to-point chunk sizes (src/include/param defaults NCCL_P2P_NVL_CHUNKSIZE
#: 512 KiB, NCCL_P2P_NET_CHUNKSIZE 128 KiB).
P2P_NVL_CHUNK_BYTES = 512 * 1024
P2P_NET_CHUNK_BYTES = 128 * 1024


def _exchange_plan(network, kind: str, group, nbytes: float, params: CollectiveParams, name: str,
                   launch_overhead_s: float | None, algorithm: str | None) -> CommPlan:
    """An all-to-all or a send: NCCL's grouped point-to-point calls, every peer at once
    (``direct``; ``pairwise`` when forced).

    The ``fixed`` library runs the system's collective block as it is. The others run
    NCCL's point-to-point path (the engines call NCCL for these too): the per-hop
    latency, protocol and bandwidth share of NCCL's model for a ring all-gather of one
    pair's average message, the nearest call its cost model prices.
    """
    from des.collectives.alltoall import ALLTOALL_ALGORITHMS

    chosen = algorithm if algorithm in ALLTOALL_ALGORITHMS else "direct"
    if algorithm is not None and algorithm not in ALLTOALL_ALGORITHMS:
        raise DesError(f"unknown {kind} schedule {algorithm!r}; known: {', '.join(ALLTOALL_ALGORITHMS)}")
    if name == "fixed":
        return CommPlan("fixed", chosen, None, params.channels, 1, dataclasses.replace(params, library="fixed"))
    facts = group_facts(network.graph, group, params.nvls)
    tuning = tuning_for(facts, params.tuning)
    pairs = max(1, len(group) * (len(group) - 1)) if kind == "alltoall" else 1
    per_pair = nbytes / pairs
    _chosen, protocol, channels, single, predicted_s = plan_params(
        facts, "allgather", per_pair * len(group), tuning, launch_overhead_s, algorithm="ring"
    )
    # NCCL's point-to-point chunks: 512 KiB over NVLink, 128 KiB through the network or
    # PCIe (NCCL_P2P_NVL_CHUNKSIZE, NCCL_P2P_NET_CHUNKSIZE, NCCL_P2P_PCI_CHUNKSIZE defaults).
    chunk = P2P_NVL_CHUNK_BYTES if facts.nodes == 1 and facts.intra == "nvlink" else P2P_NET_CHUNK_BYTES
    single = dataclasses.replace(single, library="nccl" if name in ("trtllm", "vllm") else name, chunk_bytes=chunk)
    return CommPlan(single.library, chosen, protocol, channels, 1, single)


def build(plan: CommPlan, network, kind: str, group, nbytes: float, trace, name: str | None = None, stream: str = "comm",
          matrix=None):
    """The collective object that runs ``plan`` (its ``run()`` returns a CollectiveResult);
    ``matrix`` is an all-to-all's bytes from rank to rank (``None``: uniform; a send's is
    built from its message)."""
    from des.collectives.hierarchical import make_collective
    from des.collectives.nvls import NvlsAllReduce
    from des.collectives.nvls_tree import NvlsTreeAllReduce
    from des.collectives.peer import PeerAllReduce
    from des.collectives.ring import RingCollective
    from des.collectives.tree import TreeAllReduce

    args = (network, kind, group, nbytes, plan.params, trace, name, stream)
    if kind in EXCHANGE_KINDS:
        from des.collectives.alltoall import AllToAll

        if kind == "send":
            if len(group) != 2:
                raise DesError(f"a send goes from one rank to one other, got {len(group)} ranks")
            matrix = ((0.0, float(nbytes)), (0.0, 0.0))
        collective = AllToAll(*args, matrix=matrix, algorithm=plan.algorithm)
        collective.plan = plan
        collective.span_args = tuple(plan.as_dict().items())
        return collective
    if plan.library == "fixed" or plan.algorithm in ("hierarchical", "auto"):
        collective = make_collective(*args, algorithm=plan.algorithm)
        collective.plan = plan
        return collective
    if plan.algorithm in ("oneshot", "twoshot"):
        collective = PeerAllReduce(*args, algorithm=plan.algorithm)
    elif plan.algorithm == "tree":
        collective = TreeAllReduce(*args)
    elif plan.algorithm == "nvls":
        collective = NvlsAllReduce(*args)
    elif plan.algorithm == "nvls_tree":
        collective = NvlsTreeAllReduce(*args)
    else:
        collective = RingCollective(*args)
        collective.protocol = plan.protocol
    collective.plan = plan
    collective.span_args = tuple(plan.as_dict().items())
    return collective
