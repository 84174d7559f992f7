"""Faults and degradation: links, switches or devices that fail or slow down.

A fault is written as on the command line:

- ``--fail A-B`` removes the link between nodes ``A`` and ``B`` (both directions), named
  by its endpoints as ``des topology show`` lists them (either order);
- ``--fail NODE`` removes a device or a switch and every link it has;
- ``--degrade A-B=FACTOR`` multiplies that link's bandwidth (both directions) by
  ``FACTOR`` (any positive number: below 1 slows it, above 1 is an upgrade, for
  what-if studies); ``--degrade NODE=FACTOR`` scales every link of the node;
- either may end in ``@TIME`` (``A-B@0.002``, ``gpu3@150us``): the fault then happens
  at that simulated time instead of before the run.

Before the run (:func:`apply_faults`) a fault changes a copy of the system: the graph
loses the edge or node, or the edge's bandwidth is scaled. Routing and ring orders are
then derived from the reduced graph as from any other, so a ring over a lost link is
re-formed over the links left (a Hamiltonian ring of direct links if one remains, else
the rank order with multi-hop routes). :func:`check_groups` stops a run before it
starts when a failed device is one the run uses, or when the faults cut the devices of a
collective apart, naming the links that broke it.

At a time (the engine, :meth:`des.engine.Engine.run`) links go down, their two directed
:class:`~des.hardware.link.Link` objects are marked down and routes are recomputed:
a chunk already queued on a link when it fails still crosses it (its transfer was
committed), but at its next hop it, and every later chunk, takes a route through the
links left, so a collective completes, slower. When a fault cuts a running or pending
collective's devices apart, or fails a device that unfinished work runs on, the run
stops there with a :class:`~des.errors.DesError` naming the fault, the links that
broke and the tasks that could not finish; it never reports a latency for them.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from des.errors import DesError
from des.names import natural_key
from des.specs import SystemSpec, node_order_key
from des.units import format_count, format_seconds, parse_quantity

logger = logging.getLogger(__name__)

FAIL = "fail"
DEGRADE = "degrade"
#: How many close matches an error for an unknown name lists.
_CLOSE_MATCHES = 5


@dataclass(frozen=True)
class Fault:
    """One failure or degradation, resolved against a system's graph.

    Attributes
    ----------
    action : str
        ``fail`` or ``degrade``.
    target : str
        The node name, or the link as ``A-B`` in ``des topology show``'s order.
    endpoints : tuple of str
        ``(A, B)`` for a link, ``(NODE,)`` for a node.
    at_s : float or None
        Simulated time of the fault; ``None`` means before the run.
    factor : float
        Bandwidth factor of a degradation (1.0 for a failure).
    spelling : str
        The text the fault was given as.
    """

    action: str
    target: str
    endpoints: tuple[str, ...]
    at_s: float | None = None
    factor: float = 1.0
    spelling: str = ""

    @property
    def is_link(self) -> bool:
        """Whether the fault names a link (else a node)."""
        return len(self.endpoints) == 2

    @property
    def option(self) -> str:
        """The command-line option that gives this fault, e.g. ``--fail gpu0-gpu1``."""
        return f"--{self.action} {self.spelling}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "action": self.action,
            "target": self.target,
            "kind": "link" if self.is_link else "node",
            "at_s": self.at_s,
            "factor": self.factor,
            "spec": self.spelling,
        }


class FaultError(DesError):
    """A fault during the run left work that can no longer finish (the run stops)."""


# --------------------------------------------------------------------------- names


def link_name(graph: nx.Graph, u: str, v: str) -> str:
    """``A-B`` for the link between ``u`` and ``v``, endpoints as ``des topology show`` orders them."""
    a, b = sorted((u, v), key=lambda n: node_order_key(graph, n))
    return f"{a}-{b}"


def _resolve(text: str, system: SystemSpec, option: str) -> tuple[str, tuple[str, ...]]:
    """(target, endpoints) of a node or link name, or a clear error with close matches."""
    graph = system.graph
    if text in graph:
        return text, (text,)
    unlinked = None
    for index, char in enumerate(text):
        if char != "-":
            continue
        a, b = text[:index], text[index + 1 :]
        if a in graph and b in graph:
            if graph.has_edge(a, b):
                return link_name(graph, a, b), (a, b)
            unlinked = (a, b)
    if unlinked is not None:
        a, b = unlinked
        links = sorted((link_name(graph, a, peer) for peer in graph.neighbors(a)), key=natural_key)
        raise DesError(
            f"{option} {text}: system '{system.name}' has no link between {a} and {b}; "
            f"links of {a}: {', '.join(links) or 'none'}"
        )
    names = [str(node) for node in graph] + [link_name(graph, u, v) for u, v in graph.edges]
    close = difflib.get_close_matches(text, names, n=_CLOSE_MATCHES, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else f" (see 'des topology show {system.name}')"
    raise DesError(f"{option} {text}: system '{system.name}' has no link or node named '{text}'{hint}")


def _split_time(text: str, option: str) -> tuple[str, float | None]:
    if "@" not in text:
        return text, None
    target, _, when = text.rpartition("@")
    try:
        at_s = parse_quantity(when.strip(), "time")
    except ValueError as exc:
        raise DesError(f"{option} {text}: bad time after '@': {exc}") from None
    if at_s < 0:
        raise DesError(f"{option} {text}: the time after '@' must be zero or positive, got {when}")
    return target, at_s


def parse_fault(text: str, system: SystemSpec) -> Fault:
    """Read one ``--fail`` value: ``A-B``, ``NODE``, optionally ``@TIME``.

    Raises
    ------
    DesError
        For an unknown link or node (listing close matches) or a bad time.
    """
    target, at_s = _split_time(text.strip(), "--fail")
    name, endpoints = _resolve(target, system, "--fail")
    return Fault(FAIL, name, endpoints, at_s, 1.0, text.strip())


def parse_degrade(text: str, system: SystemSpec) -> Fault:
    """Read one ``--degrade`` value: ``A-B=FACTOR`` or ``NODE=FACTOR``, optionally ``@TIME``.

    Raises
    ------
    DesError
        For a missing or non-positive factor, an unknown link or node, or a bad time.
    """
    spelling = text.strip()
    rest, at_s = _split_time(spelling, "--degrade")
    target, equals, factor_text = rest.rpartition("=")
    if not equals or not target:
        raise DesError(f"--degrade {spelling}: expected LINK=FACTOR, e.g. gpu0-gpu1=0.5")
    try:
        factor = float(factor_text)
    except ValueError:
        raise DesError(f"--degrade {spelling}: the factor {factor_text!r} is not a number") from None
    if not (factor > 0 and math.isfinite(factor)):
        raise DesError(f"--degrade {spelling}: the factor must be a positive number (use --fail to remove a link), got {factor_text}")
    name, endpoints = _resolve(target, system, "--degrade")
    return Fault(DEGRADE, name, endpoints, at_s, factor, spelling)


def parse_faults(system: SystemSpec, fail: Iterable[str] = (), degrade: Iterable[str] = ()) -> tuple[Fault, ...]:
    """Every ``--fail`` then every ``--degrade`` value, resolved against ``system``.

    Raises
    ------
    DesError
        For a bad value (see :func:`parse_fault`, :func:`parse_degrade`), or a
        degradation of a link or node that a failure has already removed by then.
    """
    failures = tuple(parse_fault(text, system) for text in fail)
    degradations = tuple(parse_degrade(text, system) for text in degrade)
    for slow in degradations:
        for failure in failures:
            if _removes(failure, slow):
                when = "before the run" if failure.at_s is None else f"at {format_seconds(failure.at_s)}"
                raise DesError(
                    f"--degrade {slow.spelling}: {slow.target} has failed {when} (--fail {failure.spelling}), "
                    f"so there is nothing left to degrade; drop one of the two"
                )
    return failures + degradations


def _removes(failure: Fault, slow: Fault) -> bool:
    """Whether ``failure`` has removed what ``slow`` degrades by the time it applies."""
    earlier = failure.at_s is None or (slow.at_s is not None and failure.at_s <= slow.at_s)
    if not earlier:
        return False
    if failure.is_link:
        return slow.is_link and set(slow.endpoints) == set(failure.endpoints)
    return failure.endpoints[0] in slow.endpoints


def split_faults(faults: Sequence[Fault]) -> tuple[tuple[Fault, ...], tuple[Fault, ...]]:
    """(before the run, at a time) — the timed ones sorted by time, stable."""
    before = tuple(f for f in faults if f.at_s is None)
    timed = tuple(sorted((f for f in faults if f.at_s is not None), key=lambda f: f.at_s))
    return before, timed


# --------------------------------------------------------------------------- before the run


def fault_edges(graph: nx.Graph, fault: Fault) -> list[tuple[str, str]]:
    """The graph edges a fault touches (the link, or every link of the node)."""
    if fault.is_link:
        return [fault.endpoints] if graph.has_edge(*fault.endpoints) else []
    node = fault.endpoints[0]
    return [(node, peer) for peer in graph.neighbors(node)] if node in graph else []


def apply_to_graph(graph: nx.Graph, fault: Fault) -> None:
    """Apply ``fault`` to ``graph`` in place (remove the edge or node, or scale bandwidths)."""
    if fault.action == FAIL:
        if fault.is_link:
            if graph.has_edge(*fault.endpoints):
                graph.remove_edge(*fault.endpoints)
        elif fault.endpoints[0] in graph:
            graph.remove_node(fault.endpoints[0])
        return
    for u, v in fault_edges(graph, fault):
        graph.edges[u, v]["bandwidth_bytes_per_s"] *= fault.factor


def apply_faults(system: SystemSpec, faults: Sequence[Fault]) -> SystemSpec:
    """A copy of ``system`` with the faults that happen before the run applied.

    Timed faults are ignored here (the engine applies them). The copy keeps the name;
    its device list drops failed devices. Its graph may be disconnected:
    :func:`check_groups` decides whether that matters to a run.
    """
    graph = system.graph.copy()
    for fault in faults:
        if fault.at_s is None:
            apply_to_graph(graph, fault)
    devices = tuple(d for d in system.devices if d in graph)
    if not devices:
        raise DesError(f"the faults remove every device of system '{system.name}'")
    return dataclasses.replace(system, graph=graph, devices=devices)


def _cut(original: nx.Graph, reduced: nx.Graph, component: set[str]) -> tuple[list[str], list[str]]:
    """Links of ``original`` leaving ``component`` that ``reduced`` no longer has, and
    the failed nodes at their far ends."""
    links, nodes = set(), set()
    for node in component:
        for peer in original.neighbors(node):
            if peer not in component and not reduced.has_edge(node, peer):
                links.add(link_name(original, node, peer))
                if peer not in reduced:
                    nodes.add(str(peer))
    return sorted(links, key=natural_key), sorted(nodes, key=natural_key)


def _names(nodes: Sequence[str], shown: int = 4) -> str:
    more = f" and {len(nodes) - shown} more" if len(nodes) > shown else ""
    return ", ".join(nodes[:shown]) + more


def disconnection(original: nx.Graph, reduced: nx.Graph, group: Sequence[str]) -> str | None:
    """Why ``group`` is no longer connected in ``reduced`` (None when it still is).

    Names a failed member, or the smallest set of members cut off from the rest and
    the failed links around the part of the graph they are stranded in.
    """
    group = tuple(group)
    missing = [d for d in group if d not in reduced]
    if missing:
        return f"device {missing[0]} has failed"
    parts: dict[int, list[str]] = {}
    seen: dict[str, int] = {}
    for member in group:
        if member not in seen:
            for node in nx.node_connected_component(reduced, member):
                seen[node] = len(parts)
            parts[len(parts)] = []
        parts[seen[member]].append(member)
    if len(parts) == 1:
        return None
    island = min(parts.values(), key=len)
    rest = [d for d in group if d not in island]
    links, nodes = _cut(original, reduced, nx.node_connected_component(reduced, island[0]))
    verb = "is" if len(island) == 1 else "are"
    failed = f"; failed node{'s' if len(nodes) != 1 else ''}: {_names(nodes)}" if nodes else ""
    return (
        f"{_names(island)} {verb} cut off from {_names(rest)} "
        f"(broken link{'s' if len(links) != 1 else ''}: {_names(links, 8) or 'none'}{failed})"
    )


def check_groups(
    original: SystemSpec, reduced: SystemSpec, faults: Sequence[Fault], uses: dict[str, Sequence[str]]
) -> None:
    """Stop a run before it starts if the faults break it.

    Parameters
    ----------
    original, reduced : SystemSpec
        The system before and after the faults.
    faults : sequence of Fault
        The faults (for the message).
    uses : dict
        What needs the devices (``"task 'L0.ar'"``, ``"the run"``) -> the devices it
        runs on, which must stay connected to each other.

    Raises
    ------
    DesError
        Naming the failed device a task runs on, or the links whose loss cut a
        task's devices apart.
    """
    before = [f for f in faults if f.at_s is None]
    if not before:
        return
    options = ", ".join(f.option for f in before)
    for name, devices in uses.items():
        for device in devices:
            if device not in reduced.graph and device in original.graph:
                raise FaultError(f"{options}: device {device} has failed but {name} runs on it")
        if len(devices) > 1:
            reason = disconnection(original.graph, reduced.graph, devices)
            if reason is not None:
                raise FaultError(f"{options}: {reason}; {name} cannot run")


def describe(fault: Fault) -> str:
    """Human-readable one-liner, e.g. ``gpu0-gpu1 fails at 1 ms``."""
    when = "before the run" if fault.at_s is None else f"at {format_seconds(fault.at_s)}"
    if fault.action == FAIL:
        return f"{fault.target} fails {when}"
    return f"{fault.target} bandwidth x{fault.factor:g} {when}"


# --------------------------------------------------------------------------- during the run


#: ``uses() -> {task name: devices}`` of the work not finished yet.
UnfinishedUses = Callable[[], dict[str, tuple[str, ...]]]


class FaultPlan:
    """The faults of one run, and what the engine asks of them.

    Built with the system and the faults, it holds the system the run is built on
    (:attr:`system`: the faults before the run applied to a copy). The engine then
    asks it to stop a run the faults break before it starts (:meth:`check_before`) and
    to drive the simulation through the timed faults (:meth:`run_through`), each
    applied to the live network before anything else that happens at its instant.

    Parameters
    ----------
    system : SystemSpec
        The system as given.
    faults : sequence of Fault
        From :func:`parse_faults`.
    """

    def __init__(self, system: SystemSpec, faults: Sequence[Fault] = ()) -> None:
        self.original = system
        self.faults = tuple(faults)
        self.before, self.timed = split_faults(self.faults)
        self.system = apply_faults(system, self.faults) if self.faults else system

    def check_before(self, uses: dict[str, tuple[str, ...]]) -> None:
        """Stop the run before it starts if the faults before it break a task.

        ``uses`` maps each task's name to the devices it runs on; one check is made per
        distinct device set (a model repeats the same group thousands of times).
        """
        if not self.before:
            return
        distinct: dict[tuple[str, ...], str] = {}
        for name, devices in uses.items():
            distinct.setdefault(devices, name)
        check_groups(self.original, self.system, self.before, {f"task '{name}'": devices for devices, name in distinct.items()})

    def run_through(self, env: Any, network: Any, finished: Callable[[], bool], unfinished: UnfinishedUses) -> tuple[Fault, ...]:
        """Run ``env`` up to each timed fault in turn and apply it; return those applied.

        A fault whose time comes after the work is done (``finished()``) does not
        happen. The caller runs the rest of the simulation (``env.run()``).

        Raises
        ------
        FaultError
            When a failure leaves unfinished work unable to finish.
        """
        applied: list[Fault] = []
        for fault in self.timed:
            if finished():
                break
            if fault.at_s > env.now:
                env.run(until=fault.at_s)
            if finished():
                break
            self._apply(fault, env, network, unfinished)
            applied.append(fault)
        return tuple(applied)

    def _apply(self, fault: Fault, env: Any, network: Any, unfinished: UnfinishedUses) -> None:
        """Apply a timed fault to the live network; stop if unfinished work is now stranded."""
        if fault.action == FAIL:
            if fault.is_link:
                network.fail_link(*fault.endpoints)
            else:
                network.fail_node(fault.endpoints[0])
        else:
            for u, v in fault_edges(network.graph, fault):
                network.scale_link(u, v, fault.factor)
        logger.info("t=%s: %s", format_seconds(env.now), fault.option)
        if fault.action != FAIL:
            return
        uses = unfinished()
        stranded = []
        reason = None
        checked: dict[tuple[str, ...], str | None] = {}
        for name, devices in uses.items():
            if devices not in checked:
                checked[devices] = disconnection(self.original.graph, network.graph, devices)
            if checked[devices] is not None:
                stranded.append(name)
                reason = reason or checked[devices]
        if stranded:
            raise FaultError(
                f"at {format_seconds(env.now)}, {fault.option}: {reason}; "
                f"{task_list(stranded)} could not finish ({len(uses)} unfinished in all)"
            )


def task_list(names: Sequence[str], shown: int = 5) -> str:
    """``3 tasks ('a', 'b', 'c')``, at most ``shown`` names."""
    listed = ", ".join(f"'{name}'" for name in names[:shown])
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{format_count(len(names), 'task')} ({listed}{more})"
