"""Topologies given as an edge list in a system YAML file, and writing systems back out.

Instead of naming a builder, a system's ``topology`` may list its nodes and edges::

    topology:
      nodes:
        - {name: gpu0, node: 0}                 # a device (the system's device), machine 0
        - {name: gpu1, device: h100, node: 0}   # a device with its own preset
        - {name: sw0, role: switch}
      edges:
        - {a: gpu0, b: sw0, bandwidth_bytes_per_s: 300 GB/s, latency_s: 0.35 us}
        - {a: gpu1, b: sw0, bandwidth_bytes_per_s: 300 GB/s, latency_s: 0.35 us, links: 12}

Node fields: ``name`` (required), ``role`` (``device``, the default, or ``switch``),
``device`` (a device preset, a path relative to the file or a mapping of device fields;
devices only, default the system's ``device``), ``node`` (machine index, default 0; -1
marks a switch in the network between machines). Edge fields: ``a``, ``b``,
``bandwidth_bytes_per_s`` (each direction), ``latency_s`` (default 0) and ``links``
(physical links aggregated, default 1). Devices take ranks in the order listed. An
unknown node in an edge, a duplicate node or edge, a self-loop, a non-positive
bandwidth or a disconnected graph is an error naming the file and the entry.

:func:`system_to_yaml` writes any system (built or listed) as such an edge list, with
every device and collective parameter spelled out, so it reads back to the same graph
and the same simulated results.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from des.errors import DesError
from des.specs import (
    ROLE_DEVICE,
    ROLE_SWITCH,
    CollectiveParams,
    DeviceSpec,
    FieldReader,
    SystemSpec,
)

#: Builder name recorded in ``graph.graph["builder"]`` for an edge-list topology.
EDGE_LIST = "edge_list"
#: Keys that mark a topology mapping as an edge list rather than a builder call.
EDGE_LIST_KEYS = ("nodes", "edges")


def is_edge_list(data: object) -> bool:
    """Whether a topology mapping is an edge list (has ``nodes`` or ``edges``, no ``builder``)."""
    return isinstance(data, dict) and "builder" not in data and any(key in data for key in EDGE_LIST_KEYS)


def _entries(reader: FieldReader, key: str) -> list[object]:
    value = reader.raw(key)
    if not isinstance(value, list) or not value:
        raise DesError(f"{reader.where}: field '{key}' must be a non-empty list, got {value!r}")
    return value


def graph_from_edge_list(
    data: object,
    where: str,
    device_for: Callable[[object, str], DeviceSpec],
    default_device: DeviceSpec | None,
) -> nx.Graph:
    """Build a system graph from an edge-list topology mapping.

    Parameters
    ----------
    data : mapping
        The ``topology`` mapping with ``nodes`` and ``edges``.
    where : str
        File and field, e.g. ``"my.yaml: topology"``, for error messages.
    device_for : callable
        ``device_for(raw, where) -> DeviceSpec`` resolves a node's ``device`` field.
    default_device : DeviceSpec or None
        The system's device, for device nodes that name none.

    Returns
    -------
    networkx.Graph
        Nodes in the order listed, edges with ``bandwidth_bytes_per_s``,
        ``latency_s`` and ``links``; ``graph.graph["builder"] == "edge_list"``.

    Raises
    ------
    DesError
        Naming the entry: a missing or unknown field, a duplicate node or edge, an edge
        to an unknown node or to itself, a non-positive bandwidth, a device node without
        a device.
    """
    reader = FieldReader(data, where)
    nodes = _entries(reader, "nodes")
    edges = _entries(reader, "edges")
    reader.finish()
    graph = nx.Graph()
    graph.graph["builder"] = EDGE_LIST
    for index, entry in enumerate(nodes):
        here = f"{where}.nodes[{index}]"
        node = FieldReader(entry, here)
        name = node.string("name")
        if name in graph:
            raise DesError(f"{here}: duplicate node name '{name}'")
        role = node.string("role", ROLE_DEVICE, choices=(ROLE_DEVICE, ROLE_SWITCH))
        machine = node.raw("node", 0)
        if isinstance(machine, bool) or not isinstance(machine, int) or machine < -1:
            raise DesError(f"{here}: field 'node' must be a machine index (-1 or more), got {machine!r}")
        attrs: dict[str, Any] = {"role": role, "node": machine}
        if role == ROLE_DEVICE:
            if node.has("device"):
                attrs["device"] = device_for(node.raw("device"), f"{here}: field 'device'")
            elif default_device is not None:
                attrs["device"] = default_device
            else:
                raise DesError(f"{here}: device '{name}' has no 'device' and the system names none")
        elif node.has("device"):
            raise DesError(f"{here}: switch '{name}' cannot have a 'device'")
        node.finish()
        graph.add_node(name, **attrs)
    seen: dict[frozenset, int] = {}
    for index, entry in enumerate(edges):
        here = f"{where}.edges[{index}]"
        edge = FieldReader(entry, here)
        ends = []
        for key in ("a", "b"):
            end = edge.raw(key)
            if end not in graph:
                known = ", ".join(map(str, graph))
                raise DesError(f"{here}: field '{key}': unknown node {end!r}; known nodes: {known}")
            ends.append(end)
        a, b = ends
        if a == b:
            raise DesError(f"{here}: a link from '{a}' to itself")
        pair = frozenset(ends)
        if pair in seen:
            raise DesError(
                f"{here}: duplicate link {a}-{b} (already edges[{seen[pair]}]); give one edge "
                "with 'links' or the summed bandwidth"
            )
        seen[pair] = index
        bandwidth = edge.quantity("bandwidth_bytes_per_s", "bandwidth")
        latency = edge.quantity("latency_s", "time", 0.0, allow_zero=True)
        links = edge.integer("links", 1)
        edge.finish()
        graph.add_edge(a, b, bandwidth_bytes_per_s=bandwidth, latency_s=latency, links=links)
    return graph


# --------------------------------------------------------------------------- writing


def _number(value: float) -> float | int | str:
    """A YAML-safe exact number (``inf`` as the string the reader accepts)."""
    if isinstance(value, bool):
        raise TypeError("not a number")
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


def _device_mapping(spec: DeviceSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(DeviceSpec):
        value = getattr(spec, f.name)
        if f.name == "fitted":
            if value is not None:
                out["fitted"] = value.as_mapping()
        else:
            out[f.name] = value if f.name == "name" else _number(value)
    return out


#: Collective parameters that are whole numbers; the others are written as floats.
_WHOLE_COLLECTIVE_FIELDS = ("compute_units", "channels")


def _collective_mapping(params: CollectiveParams) -> dict[str, Any]:
    out = {}
    for f in fields(CollectiveParams):
        value = getattr(params, f.name)
        if value is None or (f.name == "protocols" and not value):
            continue
        if f.name == "protocols":
            out[f.name] = {
                name: {
                    g.name: _number(float(getattr(protocol, g.name)))
                    for g in fields(protocol)
                    if getattr(protocol, g.name) is not None
                }
                for name, protocol in value
            }
        elif f.name == "tuning":
            if value:
                out[f.name] = {key: _number(float(number)) for key, number in value}
        elif f.name == "channel_bandwidth_bytes_per_s":
            continue  # set per call by the libraries; not a YAML field
        elif isinstance(value, (str, bool)) or f.name in _WHOLE_COLLECTIVE_FIELDS:
            out[f.name] = value
        else:
            out[f.name] = _number(float(value))
    return out


def system_to_yaml(system: SystemSpec) -> str:
    """A system YAML text, with the topology as an edge list, that loads back to ``system``.

    Parameters
    ----------
    system : SystemSpec
        Any system (from a builder, an edge list or code).

    Returns
    -------
    str
        YAML with ``name``, ``description``, the ``device`` (inline fields; per node
        where devices differ), the topology's ``nodes`` (in rank order for devices) and
        ``edges``, and every ``collective`` parameter. Numbers are written exactly, so
        the system read back simulates identically.
    """
    graph = system.graph
    specs = [graph.nodes[d]["device"] for d in system.devices]
    shared = specs[0] if all(spec == specs[0] for spec in specs) else None
    nodes = []
    for name, attrs in graph.nodes(data=True):
        entry: dict[str, Any] = {"name": name, "role": attrs["role"], "node": int(attrs.get("node", 0))}
        if attrs["role"] == ROLE_DEVICE and shared is None:
            entry["device"] = _device_mapping(attrs["device"])
        nodes.append(entry)
    edges = [
        {
            "a": a,
            "b": b,
            "bandwidth_bytes_per_s": _number(float(attrs["bandwidth_bytes_per_s"])),
            "latency_s": _number(float(attrs["latency_s"])),
            "links": int(attrs.get("links", 1)),
        }
        for a, b, attrs in graph.edges(data=True)
    ]
    data: dict[str, Any] = {"name": system.name, "description": system.description}
    if shared is not None:
        data["device"] = _device_mapping(shared)
    data["topology"] = {"nodes": nodes, "edges": edges}
    data["collective"] = _collective_mapping(system.collective)
    header = f"# {system.name}, written by des from {system.source}: the topology as an edge list.\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def write_system(system: SystemSpec, path: str | Path) -> Path:
    """Write :func:`system_to_yaml` of ``system`` to ``path``; return the path."""
    out = Path(path)
    try:
        out.write_text(system_to_yaml(system), encoding="utf-8")
    except OSError as exc:
        raise DesError(f"{out}: cannot write: {exc}") from None
    return out
