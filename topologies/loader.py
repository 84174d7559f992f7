"""Load device and system presets, or user YAML files, into des specs.

A *device* file holds the fields of :class:`des.specs.DeviceSpec`. A *system* file
names a device, a topology builder with its arguments, and the collective library's
parameters::

    name: dgx-a100
    description: 8x A100 joined by NVSwitch
    device: a100            # preset, path relative to this file, or inline fields
    topology:
      builder: switch       # a key of topologies.builders.BUILDERS
      devices: 8            # the builder's device count n
      link: {bandwidth_bytes_per_s: 300 GB/s, latency_s: 0.35 us}
    collective: {launch_latency_s: 10 us, ...}

Topology keys are the builder's keyword arguments (``devices`` standing for ``n``).
A key named ``link`` or ending in ``_link`` is a link mapping; ``intra`` (of
``multi_node``) is a nested topology mapping with its own ``builder``; ``spine`` (of
``multi_node``) a mapping of the leaf-spine network. A topology may instead list its
``nodes`` and ``edges`` (see :mod:`topologies.edgelist`, which also writes any system
back out in that form). Every error names the file and the field.

Presets live beside this module (``devices/*.yaml``, ``systems/*.yaml``) and are found
relative to this file, never the working directory.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx

from des.errors import DesError
from des.specs import (
    ROLE_DEVICE,
    CollectiveParams,
    DeviceSpec,
    FieldReader,
    SystemSpec,
    collective_from_mapping,
    device_from_mapping,
    is_yaml_path,
    link_from_mapping,
    preset_names,
    read_yaml,
    resolve_preset,
    validate_graph,
)
from topologies.builders import BUILDERS
from topologies.edgelist import graph_from_edge_list, is_edge_list

logger = logging.getLogger(__name__)

#: Folder of the device presets shipped with the package.
DEVICE_DIR = Path(__file__).resolve().parent / "devices"
#: Folder of the system presets shipped with the package.
SYSTEM_DIR = Path(__file__).resolve().parent / "systems"

#: Builder parameter -> the key a YAML file uses for it.
_YAML_NAMES = {"n": "devices"}
#: Parameters the builder fills in itself when they sit inside ``multi_node``'s ``intra``.
_FILLED_BY_PARENT = {"n"}


# --------------------------------------------------------------------------- presets


def device_presets() -> list[str]:
    """Names of the device presets shipped with des, sorted.

    Returns
    -------
    list of str
        E.g. ``["a100", "h100", "mi210"]``.
    """
    return preset_names(DEVICE_DIR)


def system_presets() -> list[str]:
    """Names of the system presets shipped with des, sorted.

    Returns
    -------
    list of str
        E.g. ``["2x-dgx-a100", "dgx-a100", "dgx-h100", "hgx-a100-4"]``.
    """
    return preset_names(SYSTEM_DIR)


# --------------------------------------------------------------------------- devices


def load_device(name_or_path: str) -> DeviceSpec:
    """Load a device preset or a device YAML file.

    Parameters
    ----------
    name_or_path : str
        A preset name (see :func:`device_presets`), or a path to a YAML file: a string
        ending in ``.yaml``/``.yml`` or containing a path separator is a path.

    Returns
    -------
    DeviceSpec

    Raises
    ------
    DesError
        For an unknown preset (listing the known ones), a missing or unreadable file,
        or a bad field (naming the file and the field).
    """
    path = resolve_preset(name_or_path, DEVICE_DIR, "device")
    data = read_yaml(path)
    return device_from_mapping(data, str(path), default_name=path.stem)


def device_mapping(name_or_path: str, base_dir: Path | None = None) -> dict[str, Any]:
    """The fields of a device preset or device YAML file, as a mapping to edit.

    Parameters
    ----------
    name_or_path : str
        A preset name or a path (see :func:`load_device`).
    base_dir : Path, optional
        Folder a relative path is read from (a system file's folder); default the
        working directory.

    Returns
    -------
    dict
        The file's fields, with ``name`` filled in from the file name when absent, so
        that :func:`des.specs.device_from_mapping` of it gives :func:`load_device`'s spec.

    Raises
    ------
    DesError
        For an unknown preset, a missing or unreadable file, or a file that is not a
        mapping.
    """
    if base_dir is not None and isinstance(name_or_path, str) and is_yaml_path(name_or_path):
        name_or_path = str(base_dir / name_or_path)
    path = resolve_preset(name_or_path, DEVICE_DIR, "device")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise DesError(f"{path}: expected a mapping of device fields, got {type(data).__name__}")
    return {"name": path.stem, **data}


# --------------------------------------------------------------------------- systems


def _param_kind(name: str, param: inspect.Parameter) -> str:
    """How a builder parameter is read from YAML: link, intra, string, raw or count."""
    if name == "link" or name.endswith("_link"):
        return "link"
    if name == "intra":
        return "intra"
    if name == "spine":
        return "raw"
    if isinstance(param.default, str):
        return "string"
    return "count"


def _topology_kwargs(data: object, where: str, nested: bool = False) -> tuple[str, dict[str, Any]]:
    """Read one topology mapping into ``(builder name, builder keyword arguments)``.

    Inside ``intra`` (``nested``) the result keeps its ``builder`` key, as
    :func:`topologies.builders.multi_node` expects, and the device count is optional.
    """
    reader = FieldReader(data, where)
    allowed_builders = [b for b in BUILDERS if not (nested and b == "multi_node")]
    name = reader.string("builder", choices=tuple(allowed_builders))
    builder: Callable[..., Any] = BUILDERS[name]
    params = inspect.signature(builder).parameters
    keys = {_YAML_NAMES.get(p, p): p for p in params}
    allowed = ["builder", *keys]
    unknown = sorted(set(reader.data) - set(allowed), key=str)
    if unknown:
        bad = str(unknown[0])
        close = difflib.get_close_matches(bad, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DesError(
            f"{where}: unknown field '{bad}'{hint} for builder '{name}'; allowed: {', '.join(allowed)}"
        )
    kwargs: dict[str, Any] = {}
    for key, pname in keys.items():
        param = params[pname]
        required = param.default is inspect.Parameter.empty
        if nested and pname in _FILLED_BY_PARENT:
            required = False
        if not reader.has(key):
            if required:
                raise DesError(
                    f"{where}: missing field '{key}' for builder '{name}'; "
                    f"allowed: {', '.join(allowed)}"
                )
            reader.raw(key, None)
            continue
        kind = _param_kind(pname, param)
        if kind == "link":
            kwargs[pname] = link_from_mapping(reader.raw(key), f"{where}.{key}")
        elif kind == "intra":
            intra_name, intra_kwargs = _topology_kwargs(
                reader.raw(key), f"{where}.{key}", nested=True
            )
            kwargs[pname] = {"builder": intra_name, **intra_kwargs}
        elif kind == "string":
            kwargs[pname] = reader.string(key)
        elif kind == "raw":
            kwargs[pname] = reader.raw(key)
        else:
            kwargs[pname] = reader.integer(key)
    reader.finish()
    return name, kwargs


def _system_device(raw: object, source: str, base_dir: Path, system_name: str) -> DeviceSpec:
    where = f"{source}: field 'device'"
    if isinstance(raw, str):
        target = raw
        if is_yaml_path(raw):
            target = str(base_dir / raw)
        try:
            return load_device(target)
        except DesError as exc:
            raise DesError(f"{where}: {exc}") from None
    if isinstance(raw, dict):
        return device_from_mapping(raw, f"{source}: device", default_name=f"{system_name}-device")
    raise DesError(
        f"{where} must be a preset name, a path to a device YAML file or a mapping of "
        f"device fields, got {raw!r}"
    )


def _check_connected(graph: nx.Graph, devices: tuple[str, ...], where: str) -> None:
    if nx.is_connected(graph):
        return
    reachable = nx.node_connected_component(graph, devices[0])
    cut_off = [d for d in devices if d not in reachable]
    others = [n for n in graph if n not in reachable and n not in cut_off]
    detail = (
        f"devices {', '.join(cut_off)} cannot reach {devices[0]}"
        if cut_off
        else (f"switches {', '.join(map(str, others))} are not joined to the devices")
    )
    raise DesError(f"{where}: the topology is disconnected: {detail}")


def system_from_graph(
    name: str,
    graph: nx.Graph,
    device: DeviceSpec | None,
    collective: CollectiveParams,
    description: str = "",
    source: str = "<built>",
) -> SystemSpec:
    """Make a :class:`SystemSpec` from a graph built in code.

    Parameters
    ----------
    name : str
        System name.
    graph : networkx.Graph
        A graph in the form the builders return; it is copied, not changed.
    device : DeviceSpec or None
        Spec attached to every device node; ``None`` keeps the specs the nodes
        already carry (each must have one).
    collective : CollectiveParams
        Communication-library parameters.
    description : str, optional
        Free text.
    source : str, optional
        Where the system came from, used in error messages.

    Returns
    -------
    SystemSpec

    Raises
    ------
    DesError
        If a node or edge attribute is missing or invalid, a device has no spec, or
        the graph is disconnected (naming the devices cut off).
    """
    if device is not None and not isinstance(device, DeviceSpec):
        raise DesError(f"{source}: device must be a DeviceSpec, got {type(device).__name__}")
    if not isinstance(collective, CollectiveParams):
        raise DesError(
            f"{source}: collective must be CollectiveParams, got {type(collective).__name__}"
        )
    if not isinstance(graph, nx.Graph) or graph.is_directed() or graph.is_multigraph():
        raise DesError(f"{source}: the topology must be an undirected networkx.Graph")
    graph = graph.copy()
    if device is not None:
        for node, role in graph.nodes(data="role"):
            if role == ROLE_DEVICE:
                graph.nodes[node]["device"] = device
    devices = validate_graph(graph, source)
    _check_connected(graph, devices, source)
    return SystemSpec(name, graph, collective, devices, description, source=source)


def system_path(name_or_path: str) -> Path:
    """The YAML file of a system preset name or path (an unknown preset is an error)."""
    return resolve_preset(name_or_path, SYSTEM_DIR, "system")


def load_system(name_or_path: str) -> SystemSpec:
    """Load a system preset or a system YAML file.

    Parameters
    ----------
    name_or_path : str
        A preset name (see :func:`system_presets`), or a path to a YAML file: a string
        ending in ``.yaml``/``.yml`` or containing a path separator is a path.

    Returns
    -------
    SystemSpec
        With ``source`` set to the file read.

    Raises
    ------
    DesError
        For an unknown preset (listing the known ones), a missing or unreadable file,
        a YAML syntax error, or a bad field (naming the file and the field): an unknown
        builder or topology key, a missing field, a non-positive bandwidth, a
        disconnected topology.
    """
    path = system_path(name_or_path)
    return system_from_mapping(read_yaml(path), str(path), path.parent, default_name=path.stem)


def system_from_mapping(
    data: object, where: str, base_dir: Path | None = None, default_name: str = "system"
) -> SystemSpec:
    """Build a system from a parsed system YAML mapping (see the module docstring).

    Parameters
    ----------
    data : mapping
        The system's fields: ``name``, ``description``, ``device``, ``topology``,
        ``collective``.
    where : str
        Where the mapping comes from (a file name), used in error messages and as the
        system's ``source``.
    base_dir : Path, optional
        Folder that relative device paths are read from; default the working directory.
    default_name : str, optional
        Name used when the mapping has no ``name`` field.

    Returns
    -------
    SystemSpec

    Raises
    ------
    DesError
        As :func:`load_system`, naming ``where`` and the field.
    """
    base_dir = Path(".") if base_dir is None else base_dir
    reader = FieldReader(data, where)
    name = reader.string("name", default_name)
    description = reader.string("description", "")
    if not reader.has("topology"):
        raise DesError(f"{where}: missing field 'topology'")
    topology = reader.raw("topology")
    listed = is_edge_list(topology)
    if not reader.has("device") and not listed:
        raise DesError(f"{where}: missing field 'device'")
    device = _system_device(reader.raw("device"), where, base_dir, name) if reader.has("device") else None
    if listed:
        devices: dict[str, DeviceSpec] = {}

        def device_for(raw: object, here: str) -> DeviceSpec:
            key = raw if isinstance(raw, str) else None
            if key is not None and key in devices:
                return devices[key]
            try:
                spec = _system_device(raw, where, base_dir, name)
            except DesError as exc:
                raise DesError(f"{here}: {exc}") from None
            if key is not None:
                devices[key] = spec
            return spec

        graph = graph_from_edge_list(topology, f"{where}: topology", device_for, device)
    else:
        builder_name, kwargs = _topology_kwargs(topology, f"{where}: topology")
    if not reader.has("collective"):
        raise DesError(f"{where}: missing field 'collective'")
    collective = collective_from_mapping(reader.raw("collective"), f"{where}: collective")
    reader.finish()
    if not listed:
        try:
            graph = BUILDERS[builder_name](**kwargs)
        except DesError as exc:
            raise DesError(f"{where}: topology: {exc}") from None
    # Edge-list nodes carry their own specs; built graphs take the system's device.
    system = system_from_graph(
        name, graph, None if listed else device, collective, description, source=where
    )
    logger.debug("loaded system %s from %s: %d devices", name, where, len(system.devices))
    return system
