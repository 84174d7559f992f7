"""The live network: devices and directed links built from a system graph, with routing.

The system graph (networkx) holds data only; this object holds the SimPy-side state:
one :class:`~des.hardware.device.Device` per device node and two
:class:`~des.hardware.link.Link` objects per edge, one per direction. Routes are the
fewest-hop paths (ties broken by total latency, then by the graph's node order, so they
are deterministic) and are computed once per pair.
"""

from __future__ import annotations

import networkx as nx
import simpy

from des.errors import DesError
from des.hardware.device import Device
from des.hardware.link import Link
from des.specs import ROLE_DEVICE, SystemSpec


class Network:
    """Devices, links and routes of one simulated system.

    Parameters
    ----------
    env : simpy.Environment
        The environment.
    system : SystemSpec
        The system to build.
    """

    def __init__(self, env: simpy.Environment, system: SystemSpec) -> None:
        self.env = env
        self.system = system
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
        try:
            # Hop count dominates (latencies are far below one second); ties go to the
            # lower total latency, then to networkx's deterministic search order.
            return nx.dijkstra_path(graph, src, dst, weight=_hop_then_latency)
        except nx.NetworkXNoPath:
            raise DesError(
                f"system '{self.system.name}': no path from {src} to {dst} (the topology is disconnected)"
            ) from None

    def invalidate_routes(self) -> None:
        """Forget cached routes (after the graph changed)."""
        self._routes.clear()


def _hop_then_latency(_u: str, _v: str, attrs: dict) -> float:
    """Edge weight ordering paths by hops first and latency second."""
    return 1.0 + attrs["latency_s"]
