"""System descriptions: device and system presets (YAML) and the topology builders they name.

:mod:`topologies.builders` holds pure networkx builders (ring, fully connected, switch,
2D torus and mesh, several machines); :mod:`topologies.loader` reads device and system
YAML files, presets or user files, into :mod:`des.specs` objects. A user studies a
topology change by copying a file from ``topologies/systems/`` and editing it.
"""

from topologies.builders import (
    BUILDERS,
    fully_connected,
    mesh2d,
    multi_node,
    ring,
    switch,
    torus2d,
)
from topologies.loader import (
    DEVICE_DIR,
    SYSTEM_DIR,
    device_mapping,
    device_presets,
    load_device,
    load_system,
    system_from_graph,
    system_from_mapping,
    system_path,
    system_presets,
)

__all__ = [
    "BUILDERS",
    "DEVICE_DIR",
    "SYSTEM_DIR",
    "device_mapping",
    "device_presets",
    "fully_connected",
    "load_device",
    "load_system",
    "mesh2d",
    "multi_node",
    "ring",
    "switch",
    "system_from_graph",
    "system_from_mapping",
    "system_path",
    "system_presets",
    "torus2d",
]
