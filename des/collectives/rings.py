"""Ring orders that follow the topology, and the choice of parallel rings (channels).

A ring is a cyclic order of the group's devices; rank i sends to the next one. On a
switch every order is equally good, so the group's own order is used. On direct
topologies (ring, torus, fully connected) the order should make neighbours adjacent,
so each step is one hop: des searches the graph of direct device-to-device links for a
Hamiltonian cycle. Several rings run as channels, each carrying an equal share of the
data; with ``channels = 0`` des uses as many directed Hamiltonian cycles as make every
direct link carry the same load (all six on four fully connected devices, both
directions of a physical ring), so the collective uses every link it can.

A group spread over several machines (device nodes carry ``node``, the machine index)
is ordered machine by machine, so a ring crosses between machines exactly once per
machine it visits (two crossings for two machines), the fewest a ring can: each
machine's members follow their own ring as above, cut open to a path. With several
channels, each channel's path leaves each machine through a different device with a
NIC (as NCCL builds one ring per NIC); ``channels = 0`` runs as many channels as the
machine with the fewest NIC-equipped members has such members.
"""

from __future__ import annotations

import logging
from collections import Counter

import networkx as nx

from des.errors import DesError
from des.specs import ROLE_DEVICE

logger = logging.getLogger(__name__)

#: Search effort limit (DFS node expansions) for Hamiltonian cycles: keeps very large
#: direct topologies fast; they fall back to a structured or the group order.
_SEARCH_BUDGET = 200_000


def _direct_graph(graph: nx.Graph, group: tuple[str, ...]) -> dict[str, list[str]]:
    """Group members adjacent to each member by a direct link, in group order."""
    members = set(group)
    return {node: [peer for peer in group if peer in members and graph.has_edge(node, peer)] for node in group}


def _hamiltonian_cycles(adjacency: dict[str, list[str]], group: tuple[str, ...], limit: int, used: set | None = None):
    """Directed Hamiltonian cycles starting at group[0] (at most ``limit``, bounded effort).

    Depth-first, neighbours in group order, with an explicit stack (a path may be
    thousands of devices long, deeper than Python's recursion limit).
    """
    n = len(group)
    start = group[0]
    found: list[tuple[str, ...]] = []
    budget = _SEARCH_BUDGET - 1
    path = [start]
    on_path = {start}
    frontier = [iter(adjacency[start])]
    while frontier:
        node = path[-1]
        for peer in frontier[-1]:
            if peer in on_path or (used is not None and (node, peer) in used):
                continue
            budget -= 1
            if budget < 0:
                return found
            if len(path) + 1 == n:
                if start in adjacency[peer] and (used is None or (peer, start) not in used):
                    found.append((*path, peer))
                    if len(found) >= limit:
                        return found
                continue
            path.append(peer)
            on_path.add(peer)
            frontier.append(iter(adjacency[peer]))
            break
        else:
            frontier.pop()
            if frontier:
                on_path.discard(path.pop())
    return found


def _edges(ring: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))]


def ring_orders(graph: nx.Graph, group: tuple[str, ...], channels: int) -> list[tuple[str, ...]]:
    """Choose the rings a collective over ``group`` runs on.

    Parameters
    ----------
    graph : networkx.Graph
        The system graph.
    group : tuple of str
        Device nodes taking part, in rank order (at least two).
    channels : int
        Number of rings; 0 chooses automatically (see the module docstring).

    Returns
    -------
    list of tuple of str
        One cyclic device order per channel.
    """
    if len(group) < 2:
        raise DesError("a collective needs at least two ranks")
    for node in group:
        if node not in graph or graph.nodes[node].get("role") != ROLE_DEVICE:
            raise DesError(f"'{node}' is not a device of the system")
    if len(set(group)) != len(group):
        raise DesError(f"a rank appears twice in the group {group}")
    machines = machine_groups(graph, group)
    if len(machines) > 1:
        return _multi_machine_rings(graph, machines, channels)
    if len(group) == 2:
        # Two ranks: the ring is the pair, both directions used by every step.
        rings = [group]
    else:
        rings = _direct_rings(graph, group, channels)
    if channels == 0:
        return rings
    return [rings[i % len(rings)] for i in range(channels)]


def _direct_rings(graph: nx.Graph, group: tuple[str, ...], channels: int) -> list[tuple[str, ...]]:
    adjacency = _direct_graph(graph, group)
    n = len(group)
    if any(not peers for peers in adjacency.values()):
        return [group]  # reached through switches: any order is as good as another
    if all(group[(i + 1) % n] in adjacency[group[i]] for i in range(n)):
        first = group
    else:
        cycles = _hamiltonian_cycles(adjacency, group, 1)
        if not cycles:
            logger.info("no ring of direct links over %d devices; using rank order with routed hops", n)
            return [group]
        first = cycles[0]
    if channels == 1:
        return [first]
    # All directed Hamiltonian cycles, when there are few and they load every link
    # equally (a physical ring: both directions; four fully connected devices: six).
    cap = 2 * n
    every = _hamiltonian_cycles(adjacency, group, cap + 1)
    if 1 <= len(every) <= cap:
        load = Counter(edge for ring in every for edge in _edges(ring))
        if len(set(load.values())) == 1:
            return _first_then(first, every)
    # Otherwise: edge-disjoint directed cycles, greedily.
    rings = [first]
    used = set(_edges(first))
    while len(rings) < max(channels, 1) or channels == 0:
        more = _hamiltonian_cycles(adjacency, group, 1, used)
        if not more:
            break
        rings.append(more[0])
        used.update(_edges(more[0]))
        if len(rings) >= 4 * n:
            break
    return rings


def _first_then(first: tuple[str, ...], rings: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """``rings`` with the cycle equal to ``first`` (up to rotation) moved to the front."""
    def canonical(ring: tuple[str, ...]) -> tuple[str, ...]:
        start = ring.index(first[0])
        return ring[start:] + ring[:start]

    rest = [ring for ring in rings if canonical(ring) != first]
    return [first] + rest


# --------------------------------------------------------------------------- several machines


def machine_of(graph: nx.Graph, node: str) -> int:
    """The machine index (``node`` attribute) of a graph node; 0 when it has none."""
    return graph.nodes[node].get("node", 0)


def machine_groups(graph: nx.Graph, group) -> list[tuple[str, ...]]:
    """The group's members per machine, machines in order of first appearance."""
    members: dict[int, list[str]] = {}
    for node in group:
        members.setdefault(machine_of(graph, node), []).append(node)
    return [tuple(nodes) for nodes in members.values()]


def has_nic(graph: nx.Graph, device: str) -> bool:
    """Whether ``device`` has a link leaving its machine (a NIC to the network)."""
    here = machine_of(graph, device)
    return any(machine_of(graph, peer) != here for peer in graph.neighbors(device))


def _multi_machine_rings(
    graph: nx.Graph, machines: list[tuple[str, ...]], channels: int
) -> list[tuple[str, ...]]:
    """Rings that visit the machines in turn, each channel leaving through its own NIC."""
    cycles = [
        _direct_rings(graph, members, 1)[0] if len(members) > 2 else members for members in machines
    ]
    exits = [[d for d in cycle if has_nic(graph, d)] or [cycle[-1]] for cycle in cycles]
    count = channels if channels > 0 else min(len(nics) for nics in exits)
    rings = []
    for c in range(count):
        order: list[str] = []
        for cycle, nics in zip(cycles, exits, strict=True):
            # Channel 0 leaves through the last NIC of the cycle (the group's own order
            # on a switch); later channels through the next ones.
            leave = cycle.index(nics[(len(nics) - 1 + c) % len(nics)])
            order.extend(cycle[leave + 1 :] + cycle[: leave + 1])
        rings.append(tuple(order))
    return rings
