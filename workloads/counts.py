"""Closed-form FLOP and DRAM-byte totals of one device, written from the formulas.

These do not look at the task graph: they restate, term by term, what each layer of
each architecture computes, so a test can check the builder against them. Per device,
with ``T`` rows, width ``w``, ``a`` query width (``h/t``, or ``e`` for Kraken), FFN
``f`` (``F/t`` or Kraken's ``F``), ``k`` heads of width ``d`` on the device, ``S`` query
rows and ``K`` keys per sequence, ``B`` sequences and ``b`` bytes per element:

- weight GEMMs ``2 T (3 w a + a w + 2 w f)`` FLOP, e.g. ``2 T (3h^2 + h^2 + 2hF) / t``
  for standard prefill; each reads its input and weights once and writes its output;
- fused attention ``4 B k d x pairs`` FLOP (``pairs = S (S + 1) / 2`` causal in
  prefill, ``K`` in decode) and ``b B k (2 S + 2 K) d`` bytes; unfused attention
  ``2 B k S d K`` FLOP for each of ``Q K^T`` and ``A V`` and ``5 B k S K`` for the
  softmax, the ``S x K`` scores written and read back;
- LayerNorm 8, GELU 9 and add 1 FLOP per element; the embedding is an add of the
  gathered token rows and position rows; the LM head a ``B x w x V_pad / t`` GEMM.
"""

from __future__ import annotations

from workloads.shapes import Shapes

#: Keys of the dictionary :func:`closed_form_counts` returns.
COUNT_KEYS = ("matmul_flops", "attention_flops", "vector_flops", "flops", "dram_bytes", "collective_bytes")


def _gemm(m: int, k: int, n: int, b: int) -> tuple[float, float]:
    return 2.0 * m * k * n, float((m * k + k * n + m * n) * b)


def _attention(s: Shapes, fused: bool) -> tuple[float, float]:
    """(FLOP, DRAM bytes) of one layer's attention kernels."""
    B, k, d, S, K, b = s.batch, s.heads, s.head_dim, s.rows_per_seq, s.kv_len, s.bytes_per_element
    if fused:
        pairs = S * (S + 1) // 2 if s.causal else S * K
        return 4.0 * B * k * d * pairs, float(B * k * (2 * S + 2 * K) * d * b)
    scores = B * k * S * K
    flops = 2.0 * 2.0 * B * k * S * d * K + 5.0 * scores
    qk_bytes = B * k * (S * d + d * K) + scores
    av_bytes = B * k * (K * d + S * d) + scores
    return flops, float((qk_bytes + 2 * scores + av_bytes) * b)


def closed_form_counts(shapes: Shapes, arch: str, attention: str, layers: int, whole: bool) -> dict[str, float]:
    """Per-device totals of one step, from the formulas.

    Parameters
    ----------
    shapes : Shapes
        Per-device dimensions.
    arch : {"standard", "parallel", "kraken"}
        Architecture.
    attention : {"fused", "unfused"}
        Attention kernels.
    layers : int
        Layers simulated.
    whole : bool
        Whether embeddings and LM head are included.

    Returns
    -------
    dict
        ``matmul_flops`` (weight GEMMs, Kraken projection and LM head),
        ``attention_flops`` (attention kernels, softmax included), ``vector_flops``
        (LayerNorm, GELU, adds, embedding), ``flops`` (all), ``dram_bytes`` (least
        DRAM traffic of all kernels) and ``collective_bytes`` (message sizes of the
        collectives the device takes part in).
    """
    s = shapes
    T, w, a, f, b = s.rows, s.width, s.attn_width, s.ffn_width, s.bytes_per_element
    tp = s.tp
    matmul_flops = matmul_bytes = 0.0
    for m, k, n in ((T, w, 3 * a), (T, a, w), (T, w, f), (T, f, w)):
        flops, nbytes = _gemm(m, k, n, b)
        matmul_flops += flops
        matmul_bytes += nbytes
    att_flops, att_bytes = _attention(s, attention == "fused")
    norms = 1 if arch == "parallel" else 2
    adds = 2
    norm_flops, norm_bytes = 8.0 * T * w, float((2 * T * w + 2 * w) * b)
    add_flops, add_bytes = float(T * w), 3.0 * T * w * b
    gelu_flops, gelu_bytes = 9.0 * T * f, 2.0 * T * f * b
    per_layer_vector = norms * norm_flops + adds * add_flops + gelu_flops
    per_layer_bytes = matmul_bytes + att_bytes + norms * norm_bytes + adds * add_bytes + gelu_bytes
    totals = {
        "matmul_flops": layers * matmul_flops,
        "attention_flops": layers * att_flops,
        "vector_flops": layers * per_layer_vector,
        "dram_bytes": layers * per_layer_bytes,
    }
    comm = 0.0
    residual = float(T * w * b)
    if arch == "kraken" and layers > 1:
        # Layers 2..L add z = mha + allreduce(x) besides a and x', and copy x into the
        # all-reduce's buffer and the result out (read and write the residual each).
        totals["vector_flops"] += (layers - 1) * add_flops
        totals["dram_bytes"] += (layers - 1) * (add_bytes + 2 * 2 * residual)
        comm += (layers - 1) * residual
    elif arch != "kraken":
        comm += layers * (2 if arch == "standard" else 1) * residual
    if whole:
        # Embedding: token rows plus position rows; the final LN; the LM head over the
        # last position of each sequence; Kraken's all-gather and N e -> e projection.
        totals["vector_flops"] += add_flops + norm_flops
        totals["dram_bytes"] += add_bytes + norm_bytes
        head_flops, head_bytes = _gemm(s.batch, w, s.vocab_padded // tp, b)
        totals["matmul_flops"] += head_flops
        totals["dram_bytes"] += head_bytes
        comm += residual + s.batch * s.vocab_padded * b
        if arch == "kraken":
            proj_flops, proj_bytes = _gemm(T, tp * w, w, b)
            totals["matmul_flops"] += proj_flops
            totals["dram_bytes"] += proj_bytes
            comm += tp * residual
    totals["flops"] = totals["matmul_flops"] + totals["attention_flops"] + totals["vector_flops"]
    totals["collective_bytes"] = comm if tp > 1 else 0.0
    return {key: totals[key] for key in COUNT_KEYS}
