"""Topology builders: pure functions that return a networkx graph of devices and switches.

Every builder returns an undirected :class:`networkx.Graph` in the form
:func:`des.specs.validate_graph` expects, less the device specs (the loader attaches
those):

* device nodes ``gpu0``, ``gpu1``, ... are added in rank order, so the graph's node
  insertion order *is* the rank order; each has ``role="device"`` and ``node``, the
  index of the machine it sits in (0 for single-machine builders);
* switch nodes have ``role="switch"``, a readable name (``nvswitch``, ``n0.nvswitch``,
  ``leaf0``) and ``node``: the machine for a switch inside a machine, -1 for a network
  switch between machines;
* every edge carries ``bandwidth_bytes_per_s`` (each direction), ``latency_s`` and
  ``links``, the number of physical links the edge aggregates.

``graph.graph["builder"]`` names the builder and, for grids, ``graph.graph["shape"]``
holds ``(rows, cols)``; drawing code uses them for a layout, nothing else depends on them.

Builders validate their input and raise :class:`des.errors.DesError` on bad input.
:data:`BUILDERS` maps the names YAML files use to the functions.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import networkx as nx

from des.errors import DesError
from des.specs import ROLE_DEVICE, ROLE_SWITCH, FieldReader, LinkSpec

#: ``node`` attribute of a switch that sits in the network between machines.
NETWORK_NODE = -1

#: Name of the switch that stands for the spine layer of a leaf-spine network.
SPINE = "spine0"

#: Prefix of device node names; device ``i`` (rank ``i``) is ``f"{DEVICE_PREFIX}{i}"``.
DEVICE_PREFIX = "gpu"


# --------------------------------------------------------------------------- helpers


def device_name(rank: int) -> str:
    """The node name of the device of rank ``rank``, e.g. ``"gpu3"``."""
    return f"{DEVICE_PREFIX}{rank}"


def _count(value: object, name: str, minimum: int = 1) -> int:
    """Check that ``value`` is a whole number no smaller than ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise DesError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise DesError(f"{name} must be at least {minimum}, got {value!r}")
    return int(value)


def _link(value: object, name: str) -> LinkSpec:
    """Check that ``value`` is a :class:`LinkSpec`."""
    if not isinstance(value, LinkSpec):
        raise DesError(f"{name} must be a LinkSpec, got {type(value).__name__} {value!r}")
    return value


def _edge_attrs(link: LinkSpec, links: int = 1) -> dict[str, Any]:
    """Edge attributes for ``links`` parallel copies of ``link`` aggregated in one edge."""
    return {
        "bandwidth_bytes_per_s": float(link.bandwidth_bytes_per_s * links),
        "latency_s": float(link.latency_s),
        "links": int(links),
    }


def _add_devices(graph: nx.Graph, count: int, machine: int = 0) -> list[str]:
    """Add ``count`` device nodes in rank order; return their names."""
    names = [device_name(rank) for rank in range(count)]
    for name in names:
        graph.add_node(name, role=ROLE_DEVICE, node=machine)
    return names


def _new_graph(builder: str, **info: Any) -> nx.Graph:
    graph = nx.Graph()
    graph.graph["builder"] = builder
    graph.graph.update(info)
    return graph


# --------------------------------------------------------------------------- single machine


def ring(n: int, link: LinkSpec) -> nx.Graph:
    """Devices in a ring, each joined to the next and the last to the first.

    Parameters
    ----------
    n : int
        Number of devices, at least 2. With 2 devices the ring is one edge.
    link : LinkSpec
        Each neighbour link.

    Returns
    -------
    networkx.Graph
        ``n`` devices and ``n`` edges (1 edge when ``n == 2``).

    Raises
    ------
    DesError
        If ``n`` is not a whole number of at least 2 or ``link`` is not a LinkSpec.
    """
    n = _count(n, "ring: n (devices)", minimum=2)
    link = _link(link, "ring: link")
    graph = _new_graph("ring")
    names = _add_devices(graph, n)
    for i, name in enumerate(names):
        other = names[(i + 1) % n]
        if not graph.has_edge(name, other):
            graph.add_edge(name, other, **_edge_attrs(link))
    return graph


def fully_connected(n: int, link: LinkSpec, links_per_pair: int = 1) -> nx.Graph:
    """Every pair of devices joined directly, as on an HGX A100 4-GPU board.

    Parameters
    ----------
    n : int
        Number of devices, at least 1.
    link : LinkSpec
        One physical link.
    links_per_pair : int, optional
        Physical links between each pair; the pair's edge has ``links_per_pair``
        times the link's bandwidth and ``links=links_per_pair``.

    Returns
    -------
    networkx.Graph
        ``n`` devices and ``n * (n - 1) / 2`` edges.

    Raises
    ------
    DesError
        If a count is not a positive whole number or ``link`` is not a LinkSpec.
    """
    n = _count(n, "fully_connected: n (devices)")
    link = _link(link, "fully_connected: link")
    links_per_pair = _count(links_per_pair, "fully_connected: links_per_pair")
    graph = _new_graph("fully_connected")
    names = _add_devices(graph, n)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            graph.add_edge(a, b, **_edge_attrs(link, links_per_pair))
    return graph


def switch(n: int, link: LinkSpec, name: str = "nvswitch") -> nx.Graph:
    """A star: every device has one port into a single non-blocking switch.

    Several physical switches that together give every device the same bandwidth to
    every other (the 6 NVSwitches of a DGX A100) are modelled as this one switch.

    Parameters
    ----------
    n : int
        Number of devices, at least 1.
    link : LinkSpec
        Each device's port to the switch (its whole bandwidth, each direction).
    name : str, optional
        Name of the switch node.

    Returns
    -------
    networkx.Graph
        ``n`` devices, one switch and ``n`` edges.

    Raises
    ------
    DesError
        If ``n`` is not a positive whole number, ``link`` is not a LinkSpec or
        ``name`` is empty or the name of a device.
    """
    n = _count(n, "switch: n (devices)")
    link = _link(link, "switch: link")
    if not isinstance(name, str) or not name:
        raise DesError(f"switch: name must be a non-empty string, got {name!r}")
    graph = _new_graph("switch")
    names = _add_devices(graph, n)
    if name in graph:
        raise DesError(f"switch: name {name!r} is already a device's name")
    graph.add_node(name, role=ROLE_SWITCH, node=0)
    for device in names:
        graph.add_edge(device, name, **_edge_attrs(link))
    return graph


def _grid(builder: str, rows: int, cols: int, link: LinkSpec, wrap: bool) -> nx.Graph:
    rows = _count(rows, f"{builder}: rows")
    cols = _count(cols, f"{builder}: cols")
    link = _link(link, f"{builder}: link")
    graph = _new_graph(builder, shape=(rows, cols))
    names = _add_devices(graph, rows * cols)

    def at(r: int, c: int) -> str:
        return names[r * cols + c]

    for r in range(rows):
        for c in range(cols):
            # Right and down neighbours; with wrap-around the last joins the first,
            # which for a dimension of size 2 is the edge that already exists.
            for dr, dc in ((0, 1), (1, 0)):
                rr, cc = r + dr, c + dc
                if wrap:
                    rr, cc = rr % rows, cc % cols
                elif rr >= rows or cc >= cols:
                    continue
                a, b = at(r, c), at(rr, cc)
                if a != b and not graph.has_edge(a, b):
                    graph.add_edge(a, b, **_edge_attrs(link))
    return graph


def torus2d(rows: int, cols: int, link: LinkSpec) -> nx.Graph:
    """A 2D torus: a grid whose rows and columns wrap around.

    Parameters
    ----------
    rows, cols : int
        Grid size, each at least 1; devices are numbered row-major. A dimension of
        size 2 has one edge between its two devices (no duplicate wrap edge), a
        dimension of size 1 none.
    link : LinkSpec
        Each neighbour link.

    Returns
    -------
    networkx.Graph
        ``rows * cols`` devices; ``2 * rows * cols`` edges when both sizes are at least 3.

    Raises
    ------
    DesError
        If a size is not a positive whole number or ``link`` is not a LinkSpec.
    """
    return _grid("torus2d", rows, cols, link, wrap=True)


def mesh2d(rows: int, cols: int, link: LinkSpec) -> nx.Graph:
    """A 2D mesh: a grid whose devices join their row and column neighbours.

    Parameters
    ----------
    rows, cols : int
        Grid size, each at least 1; devices are numbered row-major.
    link : LinkSpec
        Each neighbour link.

    Returns
    -------
    networkx.Graph
        ``rows * cols`` devices and ``rows * (cols - 1) + cols * (rows - 1)`` edges.

    Raises
    ------
    DesError
        If a size is not a positive whole number or ``link`` is not a LinkSpec.
    """
    return _grid("mesh2d", rows, cols, link, wrap=False)


# --------------------------------------------------------------------------- several machines


def _machine_graph(intra: object, devices_per_node: int) -> nx.Graph:
    """Build one machine's fabric from ``{"builder": name, **kwargs}``."""
    if not isinstance(intra, Mapping):
        raise DesError(
            f"multi_node: intra must be a mapping with a 'builder' key, got {type(intra).__name__}"
        )
    kwargs = dict(intra)
    name = kwargs.pop("builder", None)
    single = {key: fn for key, fn in BUILDERS.items() if key != "multi_node"}
    if name not in single:
        raise DesError(
            f"multi_node: intra builder is {name!r}; allowed: {', '.join(sorted(single))}"
        )
    builder = single[name]
    if "n" in inspect.signature(builder).parameters:
        given = kwargs.setdefault("n", devices_per_node)
        if given != devices_per_node:
            raise DesError(
                f"multi_node: intra n (devices) is {given!r} but devices_per_node is {devices_per_node}"
            )
    try:
        graph = builder(**kwargs)
    except TypeError as exc:
        raise DesError(f"multi_node: intra builder {name!r}: {exc}") from None
    count = sum(1 for _, role in graph.nodes(data="role") if role == ROLE_DEVICE)
    if count != devices_per_node:
        raise DesError(
            f"multi_node: intra builder {name!r} makes {count} devices but devices_per_node is "
            f"{devices_per_node}"
        )
    return graph


def _spine_options(spine: object, nodes: int, nic_link: LinkSpec) -> tuple[int, float, float] | None:
    """Read ``spine`` into (machines per leaf, oversubscription, uplink latency) or None."""
    if spine is None:
        return None
    reader = FieldReader(spine, "multi_node: spine")
    reader.used.update(("nodes_per_leaf", "oversubscription", "latency_s"))
    reader.finish()  # unknown fields first: a misspelt name explains a missing one
    per_leaf = reader.integer("nodes_per_leaf")
    ratio = reader.quantity("oversubscription", "number", 1.0)
    latency = reader.quantity("latency_s", "time", nic_link.latency_s, allow_zero=True)
    if per_leaf > nodes:
        raise DesError(f"multi_node: spine: nodes_per_leaf ({per_leaf}) exceeds nodes ({nodes})")
    return per_leaf, ratio, latency


def multi_node(
    nodes: int,
    devices_per_node: int,
    intra: Mapping[str, Any],
    nic_link: LinkSpec,
    nics_per_node: int | None = None,
    spine: object = None,
) -> nx.Graph:
    """Several machines, each with its own fabric, joined by NICs into leaf switches.

    Parameters
    ----------
    nodes : int
        Number of machines, at least 1.
    devices_per_node : int
        Devices in each machine, at least 1. Device ``i`` of machine ``m`` is
        ``gpu{m * devices_per_node + i}``, so ranks run machine by machine.
    intra : mapping
        One machine's fabric as ``{"builder": name, **kwargs}``, naming any builder of
        :data:`BUILDERS` but this one, e.g. ``{"builder": "switch", "link": nvlink}``.
        The device count ``n`` is filled in from ``devices_per_node``; a grid builder
        needs ``rows * cols == devices_per_node``. Its switches are renamed per machine,
        ``n0.nvswitch``, ``n1.nvswitch``, ...
    nic_link : LinkSpec
        Each NIC's link to its leaf switch (e.g. one InfiniBand HDR port).
    nics_per_node : int, optional
        If given, only the first ``nics_per_node`` devices of each machine have a NIC;
        the others reach the network through their machine's fabric. By default every
        device has one.
    spine : mapping, optional
        ``None`` (the default): one non-blocking leaf switch ``leaf0`` joins every
        NIC. A mapping ``{nodes_per_leaf, oversubscription=1, latency_s=nic latency}``
        builds a two-level fat tree: machines ``nodes_per_leaf`` at a time under leaf
        switches ``leaf0``, ``leaf1``, ..., every leaf joined to one switch ``spine0``
        that stands for the whole (non-blocking) spine layer, as the NVSwitches of a
        machine are one switch. A leaf's uplink carries the bandwidth of all its NICs
        divided by ``oversubscription`` (2 means 2:1; below 1 the uplink is wider).

    Returns
    -------
    networkx.Graph
        ``nodes * devices_per_node`` devices, each machine's switches, the leaves (and
        spine), ``nodes`` times the fabric's edges plus ``nodes * nics_per_node`` NIC
        edges (plus one uplink per leaf). Network switches have ``node = -1``.

    Raises
    ------
    DesError
        If a count is not a positive whole number, ``nics_per_node`` exceeds
        ``devices_per_node``, ``intra`` is not a valid fabric, a link is not a
        LinkSpec, or ``spine`` has an unknown field, a non-positive
        ``oversubscription`` or more machines per leaf than there are machines.
    """
    nodes = _count(nodes, "multi_node: nodes")
    devices_per_node = _count(devices_per_node, "multi_node: devices_per_node")
    nic_link = _link(nic_link, "multi_node: nic_link")
    if nics_per_node is None:
        nics_per_node = devices_per_node
    nics_per_node = _count(nics_per_node, "multi_node: nics_per_node")
    if nics_per_node > devices_per_node:
        raise DesError(
            f"multi_node: nics_per_node ({nics_per_node}) exceeds devices_per_node ({devices_per_node})"
        )
    fat_tree = _spine_options(spine, nodes, nic_link)
    machine = _machine_graph(intra, devices_per_node)
    local_rank = {
        name: i
        for i, name in enumerate(n for n, role in machine.nodes(data="role") if role == ROLE_DEVICE)
    }

    graph = _new_graph("multi_node", nodes=nodes, devices_per_node=devices_per_node)
    for m in range(nodes):

        def rename(local: str, m: int = m) -> str:
            if local in local_rank:
                return device_name(m * devices_per_node + local_rank[local])
            return f"n{m}.{local}"

        for local, attrs in machine.nodes(data=True):
            graph.add_node(rename(local), **{**attrs, "node": m})
        for a, b, attrs in machine.edges(data=True):
            graph.add_edge(rename(a), rename(b), **attrs)
    per_leaf = nodes if fat_tree is None else fat_tree[0]
    leaves = [f"leaf{i}" for i in range(math.ceil(nodes / per_leaf))]
    for leaf in leaves:
        graph.add_node(leaf, role=ROLE_SWITCH, node=NETWORK_NODE)
    for m in range(nodes):
        leaf = leaves[m // per_leaf]
        for i in range(nics_per_node):
            graph.add_edge(device_name(m * devices_per_node + i), leaf, **_edge_attrs(nic_link))
    if fat_tree is not None:
        _, ratio, latency = fat_tree
        graph.add_node(SPINE, role=ROLE_SWITCH, node=NETWORK_NODE)
        for index, leaf in enumerate(leaves):
            machines = min(per_leaf, nodes - index * per_leaf)
            downlinks = machines * nics_per_node
            graph.add_edge(
                leaf,
                SPINE,
                bandwidth_bytes_per_s=float(nic_link.bandwidth_bytes_per_s * downlinks / ratio),
                latency_s=float(latency),
                links=max(1, round(downlinks / ratio)),
            )
    return graph


#: Builder name (as written in a system YAML file) -> builder function.
BUILDERS: dict[str, Callable[..., nx.Graph]] = {
    "ring": ring,
    "fully_connected": fully_connected,
    "switch": switch,
    "torus2d": torus2d,
    "mesh2d": mesh2d,
    "multi_node": multi_node,
}
