"""The ``des`` command.

This is the only part of des that imports ``topologies`` and ``workloads``. Imports are
made inside each command so that start-up stays fast (matplotlib only when drawing).
Bad input raises :class:`~des.errors.DesError`, which becomes one line on stderr and
exit status 2; nothing is written when a command fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from des.cli_args import add_fault_options, byte_size, output_path, positive_int
from des.errors import DesError

logger = logging.getLogger("des")

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse with our one-line error format (still exit status 2)."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(EXIT_BAD_INPUT, f"des: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser of ``des``."""
    parser = _Parser(
        prog="des",
        description="Discrete-event simulation of LLM inference on several accelerators.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeat for debug)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    topology = commands.add_parser("topology", help="inspect a system's topology")
    topology_commands = topology.add_subparsers(dest="topology_command", metavar="ACTION", parser_class=_Parser)
    topology_commands.required = True
    show = topology_commands.add_parser("show", help="list a system's devices and links, optionally draw it")
    show.add_argument("system", metavar="SYSTEM", help="preset name or path to a system YAML file")
    show.add_argument("--png", type=output_path, metavar="FILE", help="draw the graph to a PNG file")

    collective = commands.add_parser("collective", help="simulate one collective")
    collective_commands = collective.add_subparsers(dest="kind", metavar="KIND", parser_class=_Parser)
    collective_commands.required = True
    for kind, text in (
        ("allreduce", "ring all-reduce (reduce-scatter then all-gather)"),
        ("allgather", "ring all-gather"),
        ("reducescatter", "ring reduce-scatter"),
    ):
        sub = collective_commands.add_parser(kind, help=text)
        sub.add_argument("--system", default="dgx-a100", metavar="SYSTEM", help="preset name or YAML path (default: dgx-a100)")
        sub.add_argument("--ranks", type=positive_int, metavar="N", help="number of ranks (default: every device)")
        sub.add_argument("--ranks-per-node", type=positive_int, metavar="G", help="spread the ranks G per machine")
        sub.add_argument("--bytes", type=byte_size, default=64 * 1024**2, metavar="B", help="message size, e.g. 1048576 or 64MiB (default: 64MiB)")
        sub.add_argument(
            "--algorithm",
            choices=("ring", "hierarchical", "auto"),
            help="ring, hierarchical (across machines) or auto (the faster); default: the system's",
        )
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        sub.add_argument("--trace", type=output_path, metavar="FILE", help="write a Chrome/Perfetto trace (JSON)")
        sub.add_argument("--gantt", type=output_path, metavar="FILE", help="draw a Gantt chart (PNG)")
        add_fault_options(sub)

    validate = commands.add_parser("validate", help="compare the simulator with real measurements")
    validate_commands = validate.add_subparsers(dest="what", metavar="WHAT", parser_class=_Parser)
    validate_commands.required = True
    validate_commands.add_parser("collectives", help="all-reduce latency vs the calibration tables")
    # Light modules: the mapper, workloads and engine are imported only when run.
    from des import cli_op, cli_run, cli_sweep

    cli_run.add_run_command(commands)
    cli_sweep.add_sweep_command(commands)
    cli_op.add_op_commands(commands)
    cli_op.add_validate_operators(validate_commands)
    # --- des area (area and cost model, des/cli_area.py) ---
    from des import cli_area

    cli_area.add_area_command(commands)
    # --- end des area ---
    return parser


# --------------------------------------------------------------------------- commands


def _cmd_topology(args) -> int:
    from des.plot_topology import describe_topology, draw_topology
    from topologies import load_system

    system = load_system(args.system)
    print(describe_topology(system))
    if args.png:
        draw_topology(system, args.png)
        print(f"wrote {args.png}")
    return 0


def _cmd_collective(args) -> int:
    from des.engine import simulate_collective
    from des.faults import describe, parse_faults
    from des.trace import Trace
    from des.units import format_bytes, format_seconds
    from topologies import load_system

    system = load_system(args.system)
    group = system.select_ranks(args.ranks, args.ranks_per_node)
    faults = parse_faults(system, args.fail, args.degrade)
    trace = Trace(enabled=bool(args.trace or args.gantt))
    result = simulate_collective(system, args.kind, group, args.bytes, trace, algorithm=args.algorithm, faults=faults)
    if args.trace:
        from des.trace import write_chrome_trace

        write_chrome_trace(trace.spans, args.trace)
    if args.gantt:
        from des.plot import gantt

        gantt(trace.spans, args.gantt, title=f"{args.kind} {format_bytes(args.bytes)} on {len(group)} ranks of {system.name}")
    if args.json:
        print(
            json.dumps(
                {
                    "collective": args.kind,
                    "algorithm": result.algorithm,
                    "protocol": result.protocol,
                    "system": system.name,
                    "ranks": len(group),
                    "devices": list(group),
                    "bytes": args.bytes,
                    "latency_s": result.latency_s,
                    "algbw_bytes_per_s": result.algbw_bytes_per_s,
                    "busbw_bytes_per_s": result.busbw_bytes_per_s,
                    "channels": len(result.rings),
                    "pieces_per_step": result.pieces_per_step,
                    "bytes_sent_per_rank": result.bytes_sent_per_rank,
                    "faults": [fault.as_dict() for fault in faults],
                },
                sort_keys=True,
            )
        )
    else:
        how = result.algorithm if result.protocol is None else f"{result.algorithm}, {result.protocol}"
        print(f"{args.kind} of {format_bytes(args.bytes)} over {len(group)} ranks of {system.name} ({how})")
        print(f"  latency   {format_seconds(result.latency_s)}")
        print(f"  algbw     {result.algbw_bytes_per_s / 1e9:.2f} GB/s")
        print(f"  busbw     {result.busbw_bytes_per_s / 1e9:.2f} GB/s")
        print(f"  rings     {len(result.rings)} x {' -> '.join(result.rings[0])}")
        print(f"  pieces    {result.pieces_per_step} per step")
        for fault in faults:
            print(f"  fault     {describe(fault)}")
    for path in (args.trace, args.gantt):
        if path:
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _cmd_validate(args) -> int:
    if args.what == "collectives":
        from des.validate_collectives import format_report, validate_collectives
        from topologies import load_system

        report = validate_collectives(load_system)
        print(format_report(report))
        return 0
    from des import cli_op

    return cli_op.run_validate_operators(args)


def _dispatch(args) -> int:
    if args.command == "topology":
        return _cmd_topology(args)
    if args.command == "collective":
        return _cmd_collective(args)
    if args.command == "validate":
        return _cmd_validate(args)
    if args.command == "run":
        from des import cli_run

        return cli_run.run_command(args)
    if args.command == "sweep":
        from des import cli_sweep

        return cli_sweep.sweep_command(args)
    # --- des area ---
    if args.command == "area":
        from des import cli_area

        return cli_area.run_area(args)
    # --- end des area ---
    from des import cli_op

    return cli_op.run_op(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``des`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="des: %(levelname)s: %(message)s")
    try:
        return _dispatch(args)
    except DesError as exc:
        print(f"des: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
