"""Hierarchical collectives across machines, and the one factory the engine calls.

A hierarchical all-reduce of S bytes over M machines with G ranks each runs three
phases, each made of ordinary :class:`~des.collectives.ring.RingCollective` rings on the
same live network, so the phases contend for the same links, DRAM and compute units as
anything else running:

1. reduce-scatter of S inside every machine (M rings of G ranks at once): each rank
   then holds S/G bytes summed over its machine;
2. all-reduce of S/G among peers, local rank i of every machine (G rings of M ranks at
   once, each through its own NICs);
3. all-gather of S inside every machine.

Reduce-scatter runs phases 1 and 2 (the second as a reduce-scatter), all-gather runs
an all-gather among peers then one inside each machine. Every phase waits for the
previous one to finish on all machines; the call pays ``launch_latency_s`` once.

:func:`make_collective` returns the ring or the hierarchical collective that the
system's :attr:`~des.specs.CollectiveParams.algorithm` (or an explicit override) asks
for. ``auto`` simulates both alone on an idle copy of the system and keeps the faster
(ties go to the ring), remembered per live network for each (kind, group, size).
"""

from __future__ import annotations

import dataclasses
import logging
import weakref

import simpy

from des.collectives.ring import Collective, CollectiveResult, RingCollective, check_kind
from des.collectives.rings import machine_groups
from des.errors import DesError
from des.hardware.network import Network
from des.names import COLLECTIVE
from des.spans import Trace
from des.specs import ALGORITHMS, CollectiveParams

logger = logging.getLogger(__name__)

#: Per live network: (kind, group, nbytes) -> the algorithm ``auto`` chose.
_AUTO_CHOICES: weakref.WeakKeyDictionary[Network, dict[tuple, str]] = weakref.WeakKeyDictionary()


def hierarchical_applies(graph, group) -> bool:
    """Whether ``group`` spans several machines with several ranks in each, equally many."""
    machines = machine_groups(graph, group)
    sizes = {len(members) for members in machines}
    return len(machines) > 1 and len(sizes) == 1 and sizes.pop() > 1


class HierarchicalCollective(Collective):
    """A collective run as rings inside machines and rings among peers across them.

    Parameters are those of :class:`~des.collectives.ring.Collective`: ``group`` is
    split by machine, each of which must hold the same number of ranks; ``params``
    serve the phases with no launch latency of their own; phases append ``intra rs``,
    ``inter ar``, ... to ``name`` in their spans.

    Raises
    ------
    DesError
        For an unknown kind, a non-positive size, a group on one machine, or machines
        holding different numbers of ranks.
    """

    def _plan(self) -> None:
        network, kind, params, trace, stream = self.network, self.kind, self.params, self.trace, self.stream
        machines = machine_groups(network.graph, self.group)
        sizes = sorted({len(members) for members in machines})
        if len(machines) < 2:
            raise DesError(f"a hierarchical {kind} needs ranks on several machines; {self.group} are on one")
        if len(sizes) > 1:
            raise DesError(
                f"a hierarchical {kind} needs the same number of ranks on every machine; "
                f"this group has {', '.join(map(str, sizes))} per machine"
            )
        per_machine = sizes[0]
        peers = [tuple(members[i] for members in machines) for i in range(per_machine)]
        # Phases pay no launch latency of their own (the call pays one). With
        # protocols each phase picks its own (launch latencies included in the choice).
        phase_params = params if params.protocols else dataclasses.replace(params, launch_latency_s=0.0)

        def rings(phase_kind: str, groups, size: float, label: str):
            groups = [g for g in groups if len(g) > 1]
            collectives = [
                RingCollective(network, phase_kind, g, size, phase_params, trace, f"{self.name} {label}", stream)
                for g in groups
            ]
            for collective in collectives:
                collective.launch_s = 0.0
            return label, collectives

        share = self.nbytes / per_machine
        if kind == "allreduce":
            plan = [
                rings("reducescatter", machines, self.nbytes, "intra rs"),
                rings("allreduce", peers, share, "inter ar"),
                rings("allgather", machines, self.nbytes, "intra ag"),
            ]
        elif kind == "reducescatter":
            plan = [rings("reducescatter", machines, self.nbytes, "intra rs"), rings("reducescatter", peers, share, "inter rs")]
        else:
            plan = [rings("allgather", peers, share, "inter ag"), rings("allgather", machines, self.nbytes, "intra ag")]
        self.phases = [(label, collectives) for label, collectives in plan if collectives]
        #: Piece transfers of all the phases' rings together.
        self.piece_transfers = sum(c.piece_transfers for _label, collectives in self.phases for c in collectives)
        self.machines = tuple(machines)
        #: The call's one launch: with protocols, that of the costliest protocol it runs.
        self.launch_s = params.launch_latency_s
        if params.protocols:
            self.launch_s = max(
                params.for_protocol(collective.protocol).launch_latency_s
                for _label, collectives in self.phases
                for collective in collectives
            )

    def run(self):
        """SimPy process body: run the phases in turn, return a :class:`CollectiveResult`."""
        env = self.env
        start = env.now
        launch = self.launch_s
        if launch > 0:
            yield env.timeout(launch)
            for rank in self.group:
                self.trace.add(rank, self.stream, f"{self.name} launch", COLLECTIVE, start, env.now)
        results: list[CollectiveResult] = []
        sent = 0.0
        for _label, collectives in self.phases:
            processes = [env.process(collective.run()) for collective in collectives]
            yield simpy.AllOf(env, processes)
            phase = [process.value for process in processes]
            results.extend(phase)
            sent += phase[0].bytes_sent_per_rank
        return CollectiveResult(
            kind=self.kind,
            ranks=self.group,
            nbytes=self.nbytes,
            start_s=start,
            end_s=env.now,
            rings=tuple(ring for result in results for ring in result.rings),
            pieces_per_step=max(result.pieces_per_step for result in results),
            bytes_sent_per_rank=sent,
            algorithm="hierarchical",
            protocol=(
                "+".join(collectives[0].protocol for _label, collectives in self.phases)
                if self.params.protocols
                else None
            ),
        )


def _build(algorithm: str, network, kind, group, nbytes, params, trace, name, stream):
    if algorithm == "hierarchical" and hierarchical_applies(network.graph, group):
        return HierarchicalCollective(network, kind, group, nbytes, params, trace, name, stream)
    return RingCollective(network, kind, group, nbytes, params, trace, name, stream)


def choose_algorithm(network: Network, kind: str, group, nbytes: float, params: CollectiveParams) -> str:
    """The faster of ring and hierarchical for this collective alone on an idle system.

    Parameters
    ----------
    network : Network
        The live network (its system is copied idle for the trial runs; the choice is
        remembered for this network).
    kind, group, nbytes, params
        As for :func:`make_collective`.

    Returns
    -------
    str
        ``ring`` or ``hierarchical`` (``ring`` when the group does not span several
        machines with equal ranks in each, and on a tie).
    """
    group = tuple(group)
    if not hierarchical_applies(network.graph, group):
        return "ring"
    choices = _AUTO_CHOICES.setdefault(network, {})
    key = (kind, group, float(nbytes), params)
    if key not in choices:
        times = {}
        for algorithm in ("ring", "hierarchical"):
            env = simpy.Environment()
            idle = Network(env, network.system, network.max_piece_transfers)
            collective = _build(algorithm, idle, kind, group, nbytes, params, Trace(enabled=False), None, "comm")
            process = env.process(collective.run())
            env.run()
            times[algorithm] = process.value.latency_s
        choices[key] = "hierarchical" if times["hierarchical"] < times["ring"] else "ring"
        logger.debug("auto %s of %g B over %d ranks: %s (%s)", kind, nbytes, len(group), choices[key], times)
    return choices[key]


def make_collective(
    network: Network,
    kind: str,
    group,
    nbytes: float,
    params: CollectiveParams,
    trace: Trace,
    name: str | None = None,
    stream: str = "comm",
    algorithm: str | None = None,
):
    """The collective object the parameters ask for, ready to ``run()``.

    Parameters
    ----------
    network : Network
        The live network.
    kind : str
        One of :data:`~des.collectives.ring.KINDS`.
    group : sequence of str
        Devices in rank order.
    nbytes : float
        Message size.
    params : CollectiveParams
        Protocol parameters; ``params.algorithm`` picks the algorithm.
    trace : Trace
        Where spans go.
    name : str, optional
        Label for spans.
    stream : str
        Trace row of the collective on each device.
    algorithm : str, optional
        Overrides ``params.algorithm`` (one of :data:`~des.specs.ALGORITHMS`).

    Returns
    -------
    RingCollective or HierarchicalCollective
        Its ``run()`` generator returns a :class:`CollectiveResult` whose
        ``algorithm`` says what ran. ``hierarchical`` on a group that lives on one
        machine, or has one rank per machine, runs as the ring it then equals.

    Raises
    ------
    DesError
        For an unknown algorithm or kind, a bad size, or a ring that cannot be formed.
    """
    chosen = params.algorithm if algorithm is None else algorithm
    if chosen not in ALGORITHMS:
        raise DesError(f"unknown collective algorithm {chosen!r}; allowed: {', '.join(ALGORITHMS)}")
    check_kind(kind)
    if chosen == "auto":
        chosen = choose_algorithm(network, kind, group, nbytes, params)
    return _build(chosen, network, kind, group, nbytes, params, trace, name, stream)
