"""``des topology show SYSTEM [--png FILE]``: list a system's devices and links, draw it."""

from __future__ import annotations

import argparse
from typing import Any

from des.cli.args import output_path


def add_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``des topology`` on the main parser's ``commands``."""
    topology = commands.add_parser("topology", help="inspect a system's topology")
    actions = topology.add_subparsers(dest="topology_command", metavar="ACTION", parser_class=type(topology))
    actions.required = True
    show = actions.add_parser("show", help="list a system's devices and links, optionally draw it")
    show.add_argument("system", metavar="SYSTEM", help="preset name or path to a system YAML file")
    show.add_argument("--png", type=output_path, metavar="FILE", help="draw the graph to a PNG file")
    show.set_defaults(func=run_show)
    return topology


def run_show(args: argparse.Namespace) -> int:
    """Print the system's listing; draw it with ``--png``; return 0."""
    from des.plot_topology import describe_topology, draw_topology
    from topologies import load_system

    system = load_system(args.system)
    print(describe_topology(system))
    if args.png:
        draw_topology(system, args.png)
        print(f"wrote {args.png}")
    return 0
