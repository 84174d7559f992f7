"""Measure real operator latencies on a GPU with PyTorch (fp16), for ``des calibrate``.

Run on a machine with a CUDA or ROCm GPU and PyTorch::

    python scripts/measure_ops.py --out mydata --device-name rtx4090 --set minimal   # a minute
    des calibrate rtx4090 --data mydata --out rtx4090-calibrated.yaml
    python scripts/measure_ops.py --out tests/data/h100 --runs 200                  # the full set

Method (same as the LLMCompass artifact's A100 tables): each operator is run with
PyTorch eager in fp16 on freshly allocated random inputs; after warm-up runs, each of
``--runs`` calls is timed on the host with ``torch.cuda.synchronize()`` before and after,
so the figure includes the kernel launch overhead; the median is reported. The device
time of the kernels alone is also measured with CUDA events over back-to-back calls
(``kernel_s``), to separate launch overhead from execution.

Sets:

``minimal``
    What ``des calibrate`` needs to fit every parameter, about twenty shapes: GEMMs with
    N = K = 12288 from DRAM-bound (M = 64) to compute-bound (M = 16384) and one small
    enough to show its launch; softmax (bound by its exponentials) and layernorm and add
    (bound by DRAM), which together tell the vector fraction from the DRAM fractions;
    GELU; a long and a short prefill attention (the short one shows its launch).
``full``
    The calibration shapes of the A100 tables (GEMM with N = K = 12288 and M swept;
    softmax over rows x cols), the same shapes for layernorm and GELU, and a held-out
    set (square GEMMs, batched GEMMs of attention, fused flash attention, GEMV,
    elementwise add): the set ``tests/data/h100`` was measured with.

This script is not imported by des; it only produces measurement tables
(``<name>_ops.csv`` in the ``op, shape, latency_s`` format, and ``<name>_env.txt``).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

MATMUL_M = [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768]
ROWWISE = [(4096, c) for c in (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)] + [
    (r, 4096) for r in (32, 64, 128, 256, 512, 1024, 2048, 8192, 16384, 32768)
]
SQUARE = [256, 512, 1024, 2048, 4096, 8192]
BMM = [(16 * 1, 2048, 128, 2048), (96, 2048, 128, 2048), (96, 128, 128, 128), (32, 4096, 128, 4096)]
ATTN = [
    (1, 16, 2048, 2048, 128, True),
    (1, 96, 2048, 2048, 128, True),
    (1, 32, 128, 128, 128, True),
    (8, 32, 1, 4096, 128, False),
    (1, 40, 4096, 4096, 128, True),
]
GEMV = [(1, 12288, 12288), (1, 12288, 49152), (1, 4096, 4096), (8, 12288, 12288)]
ELEMENTS = [2**20, 2**24, 2**26]

#: The minimal set: (GEMMs M x K x N, row-wise ROWS x COLS, element counts, attentions).
MINIMAL = {
    "matmul": [(256, 256, 256)] + [(m, 12288, 12288) for m in (64, 512, 4096, 16384)],
    "softmax": [(4096, 64), (4096, 1024), (4096, 8192), (32768, 4096)],
    "layernorm": [(4096, 64), (4096, 4096), (32768, 4096)],
    "gelu": [(1024, 1024), (16384, 4096)],
    "add": [2**20, 2**26],
    "attention": [ATTN[1], ATTN[2]],
}


def time_op(torch, fn, runs: int, warmup: int = 5) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    wall = []
    for _ in range(runs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        wall.append(time.perf_counter() - t0)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(runs):
        fn()
    end.record()
    torch.cuda.synchronize()
    kernel = start.elapsed_time(end) / 1e3 / runs
    return statistics.median(wall), kernel


def main() -> None:
    import torch
    import torch.nn.functional as F

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--device-name", default="h100",
                        help="des device name the file is for: writes <name>_ops.csv (default h100)")
    parser.add_argument("--set", choices=("minimal", "full"), default="full",
                        help="minimal: what des calibrate needs (about twenty shapes); full: the test-data set")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    dev = "cuda"
    h = torch.float16
    props = torch.cuda.get_device_properties(0)
    rows = []

    def add(op, shape, fn):
        wall, kernel = time_op(torch, fn, args.runs)
        rows.append(
            {"op": op, "shape": shape, "latency_s": f"{wall:.7g}", "kernel_s": f"{kernel:.7g}"}
        )
        print(op, shape, f"{wall * 1e6:.1f} us", f"{kernel * 1e6:.1f} us", flush=True)

    if args.set == "minimal":
        gemms = MINIMAL["matmul"]
        bmms, rowwise, elements, attentions = [], [], MINIMAL["add"], MINIMAL["attention"]
    else:
        gemms = [(m, 12288, 12288) for m in MATMUL_M] + [(n, n, n) for n in SQUARE] + GEMV
        bmms, rowwise, elements, attentions = BMM, ROWWISE, ELEMENTS, ATTN
    for m, k, n in gemms:
        a = torch.randn(m, k, device=dev, dtype=h)
        b = torch.randn(k, n, device=dev, dtype=h)
        add("matmul", f"{m}x{k}x{n}", lambda a=a, b=b: a @ b)
    for bsz, m, k, n in bmms:
        a = torch.randn(bsz, m, k, device=dev, dtype=h)
        b = torch.randn(bsz, k, n, device=dev, dtype=h)
        add("bmm", f"{bsz}x{m}x{k}x{n}", lambda a=a, b=b: torch.bmm(a, b))

    def softmax(r, c):
        x = torch.randn(r, c, device=dev, dtype=h)
        add("softmax", f"{r}x{c}", lambda x=x: torch.softmax(x, dim=-1))

    def layernorm(r, c):
        x = torch.randn(r, c, device=dev, dtype=h)
        ln = torch.nn.LayerNorm(c, device=dev, dtype=h)
        add("layernorm", f"{r}x{c}", lambda x=x, ln=ln: ln(x))

    def gelu(r, c):
        x = torch.randn(r, c, device=dev, dtype=h)
        add("gelu", f"{r}x{c}", lambda x=x: F.gelu(x))

    if args.set == "minimal":
        for kind, run in (("softmax", softmax), ("layernorm", layernorm), ("gelu", gelu)):
            for r, c in MINIMAL[kind]:
                run(r, c)
    for r, c in rowwise:
        softmax(r, c)
        layernorm(r, c)
        gelu(r, c)
    for e in elements:
        x = torch.randn(e, device=dev, dtype=h)
        y = torch.randn(e, device=dev, dtype=h)
        add("add", f"{e}", lambda x=x, y=y: x + y)
    for bsz, heads, q, kv, d, causal in attentions:
        qq = torch.randn(bsz, heads, q, d, device=dev, dtype=h)
        kk = torch.randn(bsz, heads, kv, d, device=dev, dtype=h)
        vv = torch.randn(bsz, heads, kv, d, device=dev, dtype=h)
        add(
            "attention",
            f"{bsz}x{heads}x{q}x{kv}x{d}{'c' if causal else ''}",
            lambda q=qq, k=kk, v=vv, c=causal: F.scaled_dot_product_attention(q, k, v, is_causal=c),
        )
    with open(args.out / f"{args.device_name}_ops.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["op", "shape", "latency_s", "kernel_s"])
        w.writeheader()
        w.writerows(rows)
    with open(args.out / f"{args.device_name}_env.txt", "w") as f:
        f.write(
            f"device={props.name}\nsms={props.multi_processor_count}\nmemory_bytes={props.total_memory}\n"
            f"torch={torch.__version__}\ncuda={torch.version.cuda}\nruns={args.runs}\n"
        )


if __name__ == "__main__":
    main()
