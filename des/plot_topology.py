"""Describe and draw a system's topology: a text listing and a PNG picture.

:func:`describe_topology` lists the devices, switches and links of a
:class:`des.specs.SystemSpec` in a deterministic order, one line per item, so that two
systems can be compared with ``diff``. :func:`draw_topology` draws the graph with
matplotlib (imported only when drawing, on the Agg backend): devices as blue squares,
switches as orange diamonds, each edge labelled with its bandwidth per direction. The
layout is fixed, never random: devices on a circle around their machine's switches,
machines side by side with leaf switches above the machines they serve and a spine
above the leaves, 2D grids as grids.
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import Any

from des.names import natural_key
from des.outputs import write_bytes
from des.specs import ROLE_SWITCH, SystemSpec, node_order_key
from des.units import GIGA, format_seconds

logger = logging.getLogger(__name__)

#: ``node`` attribute of switches that sit in the network between machines.
_NETWORK = -1
#: Horizontal distance between the centres of two machines in a drawing.
_MACHINE_SPACING = 3.0
#: Height of the network switches above the machines in a drawing.
_NETWORK_HEIGHT = 2.0
#: Height of a spine above the leaves, as a multiple of the leaves' height.
_SPINE_LEVEL = 1.6
_DEVICE_COLOUR = "tab:blue"
_SWITCH_COLOUR = "tab:orange"
_DPI = 120


def _sorted_edges(graph: Any) -> list[tuple[Any, Any, dict[str, Any]]]:
    edges = []
    for u, v, attrs in graph.edges(data=True):
        a, b = sorted((u, v), key=lambda n: node_order_key(graph, n))
        edges.append((a, b, attrs))
    edges.sort(key=lambda e: (node_order_key(graph, e[0]), node_order_key(graph, e[1])))
    return edges


def _gbps(bandwidth_bytes_per_s: float) -> str:
    return f"{bandwidth_bytes_per_s / GIGA:g} GB/s"


def _machine(attrs: dict[str, Any]) -> str:
    node = attrs.get("node")
    return "network" if node == _NETWORK else f"machine {node}"


def describe_topology(system: SystemSpec) -> str:
    """A text listing of a system's devices, switches and links.

    Parameters
    ----------
    system : SystemSpec
        The system to describe.

    Returns
    -------
    str
        The system name and description, then one line per device (name, device
        spec, machine), per switch (name, machine) and per link as
        ``A-B  <GB/s per direction>  <latency>  x<links>``, in natural name order.
    """
    graph = system.graph
    lines = [f"system: {system.name}"]
    if system.description:
        lines.append(f"description: {system.description}")
    lines.append(f"source: {system.source}")
    lines.append(f"devices ({len(system.devices)}):")
    for name in system.devices:
        attrs = graph.nodes[name]
        spec = attrs.get("device")
        spec_name = spec.name if spec is not None else "?"
        lines.append(f"  {name}  {spec_name}  {_machine(attrs)}")
    switches = sorted(
        (n for n, role in graph.nodes(data="role") if role == ROLE_SWITCH), key=natural_key
    )
    lines.append(f"switches ({len(switches)}):")
    for name in switches:
        lines.append(f"  {name}  {_machine(graph.nodes[name])}")
    edges = _sorted_edges(graph)
    lines.append(f"links ({len(edges)}):")
    for a, b, attrs in edges:
        lines.append(
            f"  {a}-{b}  {_gbps(attrs['bandwidth_bytes_per_s'])}  "
            f"{format_seconds(attrs['latency_s'])}  x{attrs.get('links', 1)}"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- layout


def _circle(
    names: list[Any], centre: tuple[float, float], radius: float
) -> dict[Any, tuple[float, float]]:
    """Place ``names`` clockwise on a circle from the top; one name sits at the centre."""
    if len(names) == 1 and radius < 1.0:
        return {names[0]: centre}
    pos = {}
    for i, name in enumerate(names):
        angle = math.pi / 2 - 2 * math.pi * i / len(names)
        pos[name] = (centre[0] + radius * math.cos(angle), centre[1] + radius * math.sin(angle))
    return pos


def _layout(system: SystemSpec) -> dict[Any, tuple[float, float]]:
    """Deterministic positions: grids as grids, machines as circles side by side."""
    graph = system.graph
    shape = graph.graph.get("shape")
    if graph.graph.get("builder") in ("torus2d", "mesh2d") and shape is not None:
        _, cols = shape
        return {name: (float(i % cols), -float(i // cols)) for i, name in enumerate(system.devices)}

    machines = sorted({graph.nodes[d].get("node", 0) for d in system.devices})
    column = {m: i for i, m in enumerate(machines)}
    pos: dict[Any, tuple[float, float]] = {}
    for m in machines:
        centre = (column[m] * _MACHINE_SPACING, 0.0)
        devices = [d for d in system.devices if graph.nodes[d].get("node", 0) == m]
        switches = sorted(
            (
                n
                for n, a in graph.nodes(data=True)
                if a.get("role") == ROLE_SWITCH and a.get("node") == m
            ),
            key=natural_key,
        )
        pos.update(_circle(devices, centre, 1.0))
        pos.update(_circle(switches, centre, 0.4 if len(switches) > 1 else 0.0))
    others = sorted((n for n in graph if n not in pos), key=natural_key)
    span = (len(machines) - 1) * _MACHINE_SPACING
    height = _NETWORK_HEIGHT if len(machines) > 1 else _NETWORK_HEIGHT / 2
    # Leaves (network switches with NICs on them) above the machines they serve; the
    # switches above the leaves (a spine) one level higher, spread over the width.
    leaves = [n for n in others if any(m in pos for m in graph[n])]
    tops = [n for n in others if n not in leaves]
    for name in leaves:
        xs = sorted(pos[m][0] for m in graph[name] if m in pos)
        pos[name] = (sum(xs) / len(xs), height)
    for i, name in enumerate(tops):
        x = span / 2 if len(tops) == 1 else span * i / (len(tops) - 1)
        pos[name] = (x, height * _SPINE_LEVEL)
    return pos


def draw_topology(system: SystemSpec, path: str | Path) -> Path:
    """Draw a system's topology to a PNG file.

    Parameters
    ----------
    system : SystemSpec
        The system to draw.
    path : str or Path
        Output file; its folder must exist.

    Returns
    -------
    Path
        The file written.
    """
    # Imported here so that simulating never pays for matplotlib; the Agg canvas draws
    # without a display and without touching pyplot's global backend.
    import networkx as nx
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    graph = system.graph
    pos = _layout(system)
    machines = {graph.nodes[d].get("node", 0) for d in system.devices}
    width = max(6.0, 4.0 * len(machines))
    fig = Figure(figsize=(width, 6.0), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()

    devices = list(system.devices)
    switches = sorted(
        (n for n, r in graph.nodes(data="role") if r == ROLE_SWITCH), key=natural_key
    )
    edges = _sorted_edges(graph)
    top = max((attrs["bandwidth_bytes_per_s"] for _, _, attrs in edges), default=1.0)
    # In a grid, wrap-around edges join devices that are not neighbours on the page:
    # bend them so they do not run over the edges in between.
    is_grid = "shape" in graph.graph
    straight, bent = [], []
    for a, b, attrs in edges:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        long = is_grid and math.hypot(xa - xb, ya - yb) > 1.01
        (bent if long else straight).append((a, b, attrs))
    labels: dict[tuple[Any, Any], str] = {}
    for group, style in ((straight, "arc3"), (bent, "arc3,rad=0.25")):
        if not group:
            continue
        widths = [0.8 + 2.5 * attrs["bandwidth_bytes_per_s"] / top for _, _, attrs in group]
        edgelist = [(a, b) for a, b, _ in group]
        curve = (
            {}
            if style == "arc3"
            else {"arrows": True, "arrowstyle": "-", "connectionstyle": style, "node_size": 600}
        )
        nx.draw_networkx_edges(
            graph, pos, edgelist=edgelist, width=widths, edge_color="0.55", ax=ax, **curve
        )
        labels = {}
        for a, b, attrs in group:
            links = attrs.get("links", 1)
            suffix = f" (x{links})" if links > 1 else ""
            labels[(a, b)] = _gbps(attrs["bandwidth_bytes_per_s"]) + suffix
        nx.draw_networkx_edge_labels(
            graph, pos, edge_labels=labels, font_size=6, ax=ax, connectionstyle=style
        )
    nx.draw_networkx_nodes(
        graph,
        pos,
        nodelist=devices,
        node_shape="s",
        node_color=_DEVICE_COLOUR,
        node_size=600,
        ax=ax,
    )
    if switches:
        nx.draw_networkx_nodes(
            graph,
            pos,
            nodelist=switches,
            node_shape="D",
            node_color=_SWITCH_COLOUR,
            node_size=700,
            ax=ax,
        )
    nx.draw_networkx_labels(graph, pos, font_size=7, font_color="black", ax=ax)

    spec_names = sorted({system.device_spec(d).name for d in devices})
    ax.set_title(
        f"{system.name}: {len(devices)} x {', '.join(spec_names)}, bandwidth per direction"
    )
    legend = [
        Line2D([], [], marker="s", linestyle="", color=_DEVICE_COLOUR, label="device"),
        Line2D([], [], marker="D", linestyle="", color=_SWITCH_COLOUR, label="switch"),
    ]
    ax.legend(handles=legend, loc="lower right", fontsize=8)
    ax.set_axis_off()
    ax.margins(0.12)
    fig.tight_layout()
    out = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_bytes(out, buffer.getvalue())
    logger.info("drew topology of %s to %s", system.name, out)
    return out
