"""The ``des op`` command: one operator mapped onto one device.

``des op KIND DIMS... [--device a100] [--dtype fp16] [--runtime eager|graph] [--json]``
maps one operator onto a device and prints its latency (standalone plus the runtime's
launch overhead), the chosen mapping, tiles, waves and search time; ``--json`` prints
one JSON object instead. The operands must fit the device's DRAM (checked before the
search). Bad input raises :class:`~des.errors.DesError`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from des.errors import DesError, DoesNotFitError

#: Sub-commands of ``des op``: name -> (positional dimensions, help).
OP_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "matmul": (("M", "K", "N"), "C[M,N] = A[M,K] @ B[K,N] (GEMV when M or N is 1)"),
    "bmm": (("B", "M", "K", "N"), "B independent M x K x N matmuls"),
    "softmax": (("ROWS", "COLS"), "softmax over COLS for ROWS rows"),
    "layernorm": (("ROWS", "COLS"), "layer normalisation over COLS for ROWS rows"),
    "gelu": (("ELEMENTS",), "GELU of ELEMENTS values"),
    "add": (("ELEMENTS",), "element-wise add of ELEMENTS values"),
    "attention": (
        ("BATCH", "HEADS", "Q_LEN", "KV_LEN", "HEAD_DIM"),
        "fused flash attention (--causal for a causal mask, --kv-heads N for grouped-query)",
    ),
    "rmsnorm": (("ROWS", "COLS"), "RMS normalisation over COLS for ROWS rows"),
    "silu": (("ELEMENTS",), "SiLU of ELEMENTS values"),
    "swiglu": (("ELEMENTS",), "SwiGLU gating silu(gate) * up, ELEMENTS outputs"),
    "rotary": (("TOKENS", "HEADS", "HEAD_DIM"), "rotary position embedding of TOKENS x HEADS vectors"),
    "topk-softmax": (("TOKENS", "EXPERTS", "K"), "MoE router: softmax over EXPERTS, the K best kept"),
    "token-permute": (("TOKENS", "HIDDEN", "K"), "MoE dispatch of TOKENS to K experts each (--combine: back)"),
    "grouped-matmul": (("K", "N"), "one kernel of many experts' GEMMs: --tokens T1,T2,... per expert"),
}


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="a100", help="device preset or YAML path (default a100)")
    parser.add_argument("--dtype", default="fp16", help="element type: fp16, bf16, fp32, fp8, int8")
    parser.add_argument("--runtime", default="eager", help="runtime profile: eager or graph")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-cache", action="store_true", help="search even if cached")


def add_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``des op`` and its sub-commands on the main parser's ``commands``."""
    op_parser = commands.add_parser("op", help="map one operator onto a device")
    kinds = op_parser.add_subparsers(dest="op_kind", metavar="KIND")
    kinds.required = True
    for kind, (dims, help_text) in OP_KINDS.items():
        parser = kinds.add_parser(kind, help=help_text, description=help_text)
        for dim in dims:
            parser.add_argument(dim.lower(), metavar=dim, type=int)
        if kind == "attention":
            parser.add_argument("--causal", action="store_true", help="causal mask")
            parser.add_argument("--kv-heads", type=int, default=None, metavar="N", help="key/value heads (default: HEADS)")
        if kind == "token-permute":
            parser.add_argument("--combine", action="store_true", help="combine (unpermute and weight) instead of dispatch")
        if kind == "grouped-matmul":
            parser.add_argument("--tokens", required=True, metavar="T1,T2,...", help="tokens of each expert")
        _common_options(parser)
        parser.set_defaults(func=run_op)
    return op_parser


def build_operator(args: argparse.Namespace) -> Any:
    """The operator named by parsed ``des op`` arguments (shape checked)."""
    from des import operators as ops

    kind, dtype = args.op_kind, args.dtype
    if kind == "matmul":
        return ops.Matmul(args.m, args.k, args.n, dtype)
    if kind == "bmm":
        return ops.BatchedMatmul(args.b, args.m, args.k, args.n, dtype)
    if kind == "softmax":
        return ops.Softmax(args.rows, args.cols, dtype)
    if kind == "layernorm":
        return ops.LayerNorm(args.rows, args.cols, dtype)
    if kind == "gelu":
        return ops.Gelu(args.elements, dtype)
    if kind == "add":
        return ops.ElementwiseAdd(args.elements, dtype)
    if kind == "attention":
        return ops.Attention(
            args.batch, args.heads, args.q_len, args.kv_len, args.head_dim, args.causal, dtype, kv_heads=args.kv_heads
        )
    if kind == "rmsnorm":
        return ops.RMSNorm(args.rows, args.cols, dtype)
    if kind == "silu":
        return ops.Silu(args.elements, dtype)
    if kind == "swiglu":
        return ops.SwiGLU(args.elements, dtype)
    if kind == "rotary":
        return ops.Rotary(args.tokens, args.heads, args.head_dim, dtype)
    if kind == "topk-softmax":
        return ops.TopKSoftmax(args.tokens, args.experts, args.k, dtype)
    if kind == "token-permute":
        return ops.TokenPermute(args.tokens, args.hidden, args.k, args.combine, dtype)
    if kind == "grouped-matmul":
        try:
            tokens = tuple(int(part) for part in args.tokens.split(","))
        except ValueError:
            raise DesError(f"--tokens: expected whole numbers joined by commas, got {args.tokens!r}") from None
        return ops.GroupedMatmul(tokens, args.k, args.n, dtype)
    raise DesError(f"unknown operator kind {kind!r}; known: {', '.join(OP_KINDS)}")


def check_operands(operator: Any, device: Any) -> None:
    """Refuse an operator whose inputs and outputs do not fit the device's DRAM.

    Raises
    ------
    DoesNotFitError
        Naming the operator, the bytes it needs and the device's capacity.
    """
    from des.units import format_bytes

    need = operator.min_dram_bytes
    if need > device.dram_capacity_bytes:
        raise DoesNotFitError(
            f"{operator.describe()} needs {format_bytes(need)} for its operands, more than the "
            f"{format_bytes(device.dram_capacity_bytes)} of {device.name}"
        )


def op_result(args: argparse.Namespace) -> dict[str, Any]:
    """Map the operator of ``args`` and return the result as a JSON-ready dict."""
    from des.mapper import schedule_for
    from des.runtime import runtime_profile
    from topologies import load_device

    operator = build_operator(args)
    profile = runtime_profile(args.runtime)
    device = load_device(args.device)
    check_operands(operator, device)
    schedule, info = schedule_for(device, operator, use_cache=not args.no_cache)
    launch = profile.launch_for_device(schedule.op_class, device)
    bandwidth = device.dram_bandwidth_bytes_per_s
    matrix = schedule.op_class in ("matmul", "attention")
    peak = device.matrix_flops_per_s if matrix else device.vector_flops_per_s
    return {
        "operator": schedule.operator,
        "device": device.name,
        "op_class": schedule.op_class,
        "runtime": profile.name,
        "latency_s": schedule.standalone_s + launch,
        "standalone_s": schedule.standalone_s,
        "launch_overhead_s": launch,
        "flops": operator.flops,
        "min_dram_bytes": operator.min_dram_bytes,
        "roofline_s": max(operator.flops / peak, operator.min_dram_bytes / bandwidth),
        "tiles": schedule.tiles,
        "waves": schedule.waves,
        "groups": [
            {"count": g.count, "units": g.units, "compute_s": g.compute_s, "dram_bytes": g.dram_bytes}
            for g in schedule.groups
        ],
        "mapping": schedule.mapping,
        "search_s": info.search_s,
        "cached": info.cached,
        "calibration": device.fitted.source if device.fitted is not None else "datasheet only",
    }


def format_op_result(result: dict[str, Any]) -> str:
    """A short human summary of :func:`op_result`."""
    from des.units import format_bytes, format_seconds

    mapping = {k: v for k, v in result["mapping"].items() if not k.startswith("dram_")}
    lines = [
        f"{result['operator']} on {result['device']} ({result['runtime']} runtime)",
        f"  latency     {format_seconds(result['latency_s'])}"
        f" = {format_seconds(result['standalone_s'])} standalone"
        f" + {format_seconds(result['launch_overhead_s'])} launch",
        f"  roofline    {format_seconds(result['roofline_s'])}"
        f" ({result['flops']:.4g} FLOP, {format_bytes(result['min_dram_bytes'])} at least)",
        f"  tiles       {result['tiles']} in {result['waves']} waves ({len(result['groups'])} groups)",
        f"  mapping     {json.dumps(mapping, sort_keys=True)}",
        f"  search      {format_seconds(result['search_s'])}"
        + (" (cached)" if result["cached"] else ""),
        f"  device      {result['calibration']}",
    ]
    return "\n".join(lines)


def run_op(args: argparse.Namespace) -> int:
    """Run ``des op``: print the summary or, with ``--json``, one JSON object; return 0."""
    result = op_result(args)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(format_op_result(result))
    return 0
