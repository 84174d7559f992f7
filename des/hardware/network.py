"""The live network: devices and directed links built from a system graph, with routing.

The system graph (networkx) holds data only; this object holds the SimPy-side state:
one :class:`~des.hardware.device.Device` per device node and two
:class:`~des.hardware.link.Link` objects per edge, one per direction. Routes are the
fewest-hop paths (ties broken by total latency, then by the graph's node order, so they
are deterministic) and are computed once per pair.

Faults during a run (:meth:`Network.fail_link`, :meth:`Network.fail_node`,
:meth:`Network.scale_link`) change a private copy of the graph and the live links, drop
the cached routes and bump :attr:`Network.topology_version`, so senders holding a route
know to ask again.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import networkx as nx
import simpy

from des.errors import DesError
from des.hardware.device import Device
from des.hardware.link import Link
from des.specs import ROLE_DEVICE, SystemSpec

#: Environment variable that sets :func:`default_max_piece_transfers`.
MAX_PIECES_ENV = "DES_MAX_PIECE_TRANSFERS"
#: Piece transfers one collective may simulate by default: about a minute of
#: simulation on one core (a ring moves some 10^6 pieces a second).
DEFAULT_MAX_PIECE_TRANSFERS = 50_000_000


def default_max_piece_transfers() -> int:
    """``$DES_MAX_PIECE_TRANSFERS`` if set (a whole number >= 1), else 50 million.

    Raises
    ------
    DesError
        For a value that is not a whole number of at least 1.
    """
    text = os.environ.get(MAX_PIECES_ENV)
    if not text:
        return DEFAULT_MAX_PIECE_TRANSFERS
    try:
        value = int(text)
    except ValueError:
        raise DesError(f"${MAX_PIECES_ENV} must be a whole number, got {text!r}") from None
    if value < 1:
        raise DesError(f"${MAX_PIECES_ENV} must be at least 1, got {value}")
    return value


class Network:
    """Devices, links and routes of one simulated system.

    Parameters
    ----------
    env : simpy.Environment
        The environment.
    system : SystemSpec
        The system to build.
    max_piece_transfers : int, optional
        The most piece transfers one collective on this network may simulate (its
        cost grows with them); default :func:`default_max_piece_transfers`.
    progress : des.progress.Progress, optional
        Told of every piece a collective sends (a progress bar on a terminal).
    """

    def __init__(
        self,
        env: simpy.Environment,
        system: SystemSpec,
        max_piece_transfers: int | None = None,
        progress: Any = None,
    ) -> None:
        self.env = env
        self.system = system
        self.max_piece_transfers = (
            default_max_piece_transfers() if max_piece_transfers is None else int(max_piece_transfers)
        )
        self.progress = progress
        graph = system.graph
        self.graph = graph
        self.devices: dict[str, Device] = {}
        for node, attrs in graph.nodes(data=True):
            if attrs.get("role") == ROLE_DEVICE:
                self.devices[node] = Device(env, node, attrs["device"])
        self.links: dict[tuple[str, str], Link] = {}
        for u, v, attrs in graph.edges(data=True):
            bandwidth = attrs["bandwidth_bytes_per_s"]
            latency = attrs["latency_s"]
            self.links[(u, v)] = Link(u, v, bandwidth, latency)
            self.links[(v, u)] = Link(v, u, bandwidth, latency)
        self._routes: dict[tuple[str, str], tuple[Link, ...]] = {}
        #: Bumped at every change of the live topology (a fault during the run).
        self.topology_version = 0
        self._graph_is_own = False

    def link(self, src: str, dst: str) -> Link:
        """The directed link from ``src`` to ``dst``."""
        try:
            return self.links[(src, dst)]
        except KeyError:
            raise DesError(f"no link {src}-{dst} in system '{self.system.name}'") from None

    def route(self, src: str, dst: str) -> tuple[Link, ...]:
        """Directed links from ``src`` to ``dst`` along a fewest-hop path."""
        key = (src, dst)
        route = self._routes.get(key)
        if route is None:
            path = self._path(src, dst)
            route = tuple(self.links[(a, b)] for a, b in zip(path, path[1:], strict=False))
            self._routes[key] = route
        return route

    def _path(self, src: str, dst: str) -> list[str]:
        graph = self.graph
        for node in (src, dst):
            if node not in graph:
                raise DesError(f"system '{self.system.name}' has no node '{node}'")
        if src == dst:
            raise DesError(f"a route needs two different nodes, got {src} twice")
        shared = None
        if not self._graph_is_own:
            # The system's own graph never changes: its paths serve every network on it.
            shared = _SHARED_PATHS.setdefault(graph, {})
            path = shared.get((src, dst))
            if path is not None:
                return path
        try:
            # Hop count dominates (latencies are far below one second); ties go to the
            # lower total latency, then to networkx's deterministic search order.
            path = nx.dijkstra_path(graph, src, dst, weight=_hop_then_latency)
        except nx.NetworkXNoPath:
            raise DesError(
                f"system '{self.system.name}': no path from {src} to {dst} (the topology is disconnected)"
            ) from None
        if shared is not None:
            shared[(src, dst)] = path
        return path

    def invalidate_routes(self) -> None:
        """Forget cached routes (after the graph changed)."""
        self._routes.clear()
        self.topology_version += 1

    def _own_graph(self) -> nx.Graph:
        # The system's graph is shared data: faults change a private copy.
        if not self._graph_is_own:
            self.graph = self.graph.copy()
            self._graph_is_own = True
        return self.graph

    def fail_link(self, u: str, v: str) -> None:
        """Take the link between ``u`` and ``v`` down, both directions; routes avoid it from now on."""
        graph = self._own_graph()
        if graph.has_edge(u, v):
            graph.remove_edge(u, v)
        for key in ((u, v), (v, u)):
            link = self.links.get(key)
            if link is not None:
                link.up = False
        self.invalidate_routes()

    def fail_node(self, node: str) -> None:
        """Take ``node`` (a device or a switch) and all its links down."""
        graph = self._own_graph()
        if node not in graph:
            return
        for peer in list(graph.neighbors(node)):
            self.fail_link(node, peer)
        graph.remove_node(node)
        self.invalidate_routes()

    def scale_link(self, u: str, v: str, factor: float) -> None:
        """Multiply the bandwidth of the link between ``u`` and ``v`` (both directions) by ``factor``.

        Chunks already queued keep the hold they were given; later ones see the new
        bandwidth.
        """
        if not factor > 0:
            raise DesError(f"link {u}-{v}: bandwidth factor must be positive, got {factor!r}")
        graph = self._own_graph()
        if graph.has_edge(u, v):
            graph.edges[u, v]["bandwidth_bytes_per_s"] *= factor
        for key in ((u, v), (v, u)):
            link = self.links.get(key)
            if link is not None:
                link.bandwidth_bytes_per_s *= factor
        self.invalidate_routes()


#: Fewest-hop paths of every system graph still in use, by (source, destination).
_SHARED_PATHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _hop_then_latency(_u: str, _v: str, attrs: dict) -> float:
    """Edge weight ordering paths by hops first and latency second."""
    return 1.0 + attrs["latency_s"]
