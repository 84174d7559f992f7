"""Closed-form FLOP and DRAM-byte totals of one device, written from the formulas.

These do not look at the task graph: they restate, term by term, what each layer of
each architecture computes, so a test can check the builder against them. Per device,
with ``T`` rows, width ``w``, ``a`` query width (``heads x head_dim / t``, or ``e`` for
Kraken), ``v`` key (= value) width (``kv_heads x head_dim`` of the device), FFN ``f``
(``F/t`` or Kraken's ``F``), ``k`` heads and ``g`` KV heads of width ``d`` on the
device, ``S`` query rows and ``K`` keys per sequence, ``B`` sequences and ``b`` bytes
per element:

- weight GEMMs ``2 T (w (a + 2 v) + a w + 2 w f)`` FLOP (``3 w f`` for SwiGLU's fused
  gate-and-up and its down projection), e.g. ``2 T (3h^2 + h^2 + 2hF) / t`` for GPT
  standard prefill; each reads its input and weights once and writes its output;
- fused attention ``4 B k d x pairs`` FLOP (``pairs`` the unmasked query-key pairs:
  ``S (S + 1) / 2`` causal in prefill, ``K`` in decode, each at most a sliding window)
  and ``b B (2 S k + 2 K' g) d`` bytes, ``K'`` the keys some query sees; unfused
  attention ``2 B k S d K`` FLOP for each of ``Q K^T`` and ``A V`` and ``5 B k S K`` for
  the softmax, the ``S x K`` scores written and read back;
- rotary positions 3 FLOP per element of Q and K (``T (k + g) d``), reading them, the
  cos and sin tables (``T d``) and writing them back;
- LayerNorm 8 and RMSNorm 4 FLOP per element; GELU 9 FLOP per element and SwiGLU 6 per
  output (two inputs); add 1; the embedding is an add of the gathered token rows and
  position rows (a copy of the token rows with rotary positions); the LM head a
  ``B x w x V_pad / t`` GEMM.
"""

from __future__ import annotations

from workloads.shapes import Shapes

#: Keys of the dictionary :func:`closed_form_counts` returns.
COUNT_KEYS = ("matmul_flops", "attention_flops", "vector_flops", "flops", "dram_bytes", "collective_bytes")


def _gemm(m: int, k: int, n: int, b: int) -> tuple[float, float]:
    return 2.0 * m * k * n, float((m * k + k * n + m * n) * b)


def _pairs(s: Shapes) -> int:
    """Unmasked query-key pairs of one head and sequence."""
    S, K, W = s.rows_per_seq, s.kv_len, s.window
    if not s.causal:
        return S * (K if W is None else min(K, W))
    # Query i (1-based) of a prefill sees i keys, at most W.
    if W is None or S <= W:
        return S * (S + 1) // 2
    return W * (W + 1) // 2 + W * (S - W)


def _attention(s: Shapes, fused: bool) -> tuple[float, float]:
    """(FLOP, DRAM bytes) of one layer's attention kernels."""
    B, k, g, d, S, K, b = s.batch, s.heads, s.kv_heads, s.head_dim, s.rows_per_seq, s.kv_len, s.bytes_per_element
    if fused:
        read = K if s.window is None else min(K, s.window + S - 1)
        return 4.0 * B * k * d * _pairs(s), float(B * (2 * S * k + 2 * read * g) * d * b)
    scores = B * k * S * K
    flops = 2.0 * 2.0 * B * k * S * d * K + 5.0 * scores
    qk_bytes = B * k * (S * d + d * K) + scores
    av_bytes = B * k * (K * d + S * d) + scores
    return flops, float((qk_bytes + 2 * scores + av_bytes) * b)


def _moe_layer(s: Shapes, moe, layer: int) -> tuple[float, float, float, float]:
    """(GEMM FLOP, vector FLOP, DRAM bytes, all-to-all bytes) of rank 0's MoE block in
    ``layer``: the router GEMM over its rows, top-k (5 + k FLOP per logit), dispatch,
    the experts' grouped GEMMs over the tokens its experts get (each used expert's
    weights read once), the activation, combine (2 FLOP per routed copy), the shared
    experts and their gate, the add; at EP > 1 the dispatch and combine matrices."""
    b, h, k, up = s.bytes_per_element, s.width, moe.top_k, (2 if s.activation == "swiglu" else 1)
    rows = moe.rows_per_rank[0]
    if moe.ep == 1:
        tokens = moe.loads(layer)
        exchanged = 0.0
    else:
        counts = moe.dispatch(layer)
        tokens = [sum(c[e] for c in counts) for e in range(moe.experts_local)]
        exchanged = 2.0 * sum(counts[r][e] for r in range(len(counts)) for e in range(moe.experts)) * h * b
    total, used, W = sum(tokens), sum(1 for t in tokens if t), moe.expert_width
    gemm = 2.0 * rows * h * moe.experts + 2.0 * total * h * up * W + 2.0 * total * W * h
    nbytes = (rows * h + h * moe.experts + rows * moe.experts) * b
    nbytes += (used * h * up * W + total * (h + up * W)) * b + (used * W * h + total * (W + h)) * b
    vector = (5.0 + k) * rows * moe.experts + 2.0 * rows * k * h
    nbytes += rows * moe.experts * b + rows * k * (b + 4) + 2 * (rows * h + rows * k * h) * b
    if up == 2:
        vector += 6.0 * total * W
        nbytes += 3.0 * total * W * b
    else:
        vector += 9.0 * total * W
        nbytes += 2.0 * total * W * b
    if moe.shared_width and rows:
        S = moe.shared_width
        gemm += 2.0 * rows * h * up * S + 2.0 * rows * S * h
        nbytes += (rows * h + h * up * S + rows * up * S) * b + (rows * S + S * h + rows * h) * b
        vector += (6.0 if up == 2 else 9.0) * rows * S + rows * h
        nbytes += (3.0 if up == 2 else 2.0) * rows * S * b + 3.0 * rows * h * b
        if moe.shared_gate:
            gemm += 2.0 * rows * h
            nbytes += (rows * h + h + rows) * b
    return gemm, vector, nbytes, exchanged


def closed_form_counts(shapes: Shapes, arch: str, attention: str, layers: int, whole: bool, moe=None, *,
                       embedding: bool | None = None, head: bool | None = None) -> dict[str, float]:
    """Per-device totals of one step, from the formulas.

    Parameters
    ----------
    shapes : Shapes
        Per-device dimensions.
    arch : {"standard", "parallel", "kraken", "ladder"}
        Architecture.
    attention : {"fused", "unfused"}
        Attention kernels.
    layers : int
        Layers simulated.
    whole : bool
        Whether embeddings and the LM head are included.
    moe : workloads.moe.MoeLayout, optional
        The experts of a mixture of experts (their routing decides rank 0's tokens).
    embedding, head : bool, optional
        Whether the device runs the embedding, and the final norm and LM head (default:
        ``whole``; a pipeline's first stage has the one, its last the other).

    Returns
    -------
    dict
        ``matmul_flops`` (weight GEMMs, Kraken projection and LM head),
        ``attention_flops`` (attention kernels, softmax included), ``vector_flops``
        (norms, activations, rotary, adds, embedding), ``flops`` (all), ``dram_bytes``
        (least DRAM traffic of all kernels) and ``collective_bytes`` (message sizes of
        the collectives the device takes part in).
    """
    s = shapes
    T, w, a, v, f, b = s.rows, s.width, s.attn_width, s.kv_width, s.ffn_width, s.bytes_per_element
    tp = s.tp
    swiglu = s.activation == "swiglu"
    matmul_flops = matmul_bytes = 0.0
    for m, k, n in ((T, w, a + 2 * v), (T, a, w), (T, w, 2 * f if swiglu else f), (T, f, w)):
        flops, nbytes = _gemm(m, k, n, b)
        matmul_flops += flops
        matmul_bytes += nbytes
    att_flops, att_bytes = _attention(s, attention == "fused")
    norms = 1 if arch == "parallel" else 2
    adds = 2
    if s.norm == "rmsnorm":
        norm_flops, norm_bytes = 4.0 * T * w, float((2 * T * w + w) * b)
    else:
        norm_flops, norm_bytes = 8.0 * T * w, float((2 * T * w + 2 * w) * b)
    add_flops, add_bytes = float(T * w), 3.0 * T * w * b
    if swiglu:
        act_flops, act_bytes = 6.0 * T * f, 3.0 * T * f * b
    else:
        act_flops, act_bytes = 9.0 * T * f, 2.0 * T * f * b
    rope_flops = rope_bytes = 0.0
    if s.position == "rope":
        rotated = T * (s.heads + s.kv_heads) * s.head_dim
        rope_flops, rope_bytes = 3.0 * rotated, float((2 * rotated + T * s.head_dim) * b)
    per_layer_vector = norms * norm_flops + adds * add_flops + act_flops + rope_flops
    per_layer_bytes = matmul_bytes + att_bytes + norms * norm_bytes + adds * add_bytes + act_bytes + rope_bytes
    totals = {
        "matmul_flops": layers * matmul_flops,
        "attention_flops": layers * att_flops,
        "vector_flops": layers * per_layer_vector,
        "dram_bytes": layers * per_layer_bytes,
    }
    comm = 0.0
    if moe is not None:
        # An MoE layer trades the dense FFN's two (or three) GEMMs and activation for its block.
        dense_ffn_flops = 0.0
        dense_ffn_bytes = 0.0
        for m, k, n in ((T, w, 2 * f if swiglu else f), (T, f, w)):
            flops, nbytes = _gemm(m, k, n, b)
            dense_ffn_flops += flops
            dense_ffn_bytes += nbytes
        for layer in range(layers):
            if not moe.is_moe(layer):
                continue
            gemm, vector, nbytes, exchanged = _moe_layer(s, moe, layer)
            totals["matmul_flops"] += gemm - dense_ffn_flops
            totals["vector_flops"] += vector - act_flops
            totals["dram_bytes"] += nbytes - dense_ffn_bytes - act_bytes
            comm += exchanged
    residual = float(T * w * b)
    if arch == "kraken" and layers > 1:
        # Layers 2..L add z = mha + allreduce(x) besides a and x', and copy x into the
        # all-reduce's buffer and the result out (read and write the residual each).
        totals["vector_flops"] += (layers - 1) * add_flops
        totals["dram_bytes"] += (layers - 1) * (add_bytes + 2 * 2 * residual)
        comm += (layers - 1) * residual
    elif arch != "kraken":
        # Ladder's two all-reduces per layer are the standard ones, each added to the
        # stream one module later (the last two after the last layer): the same adds.
        comm += layers * (1 if arch == "parallel" else 2) * residual
    embedding = whole if embedding is None else embedding
    head = whole if head is None else head
    if embedding:
        # Embedding: token rows plus position rows (token rows copied, with rotary
        # positions), and its all-reduce.
        if s.position == "learned":
            totals["vector_flops"] += add_flops
            totals["dram_bytes"] += add_bytes
        else:
            totals["dram_bytes"] += 2.0 * T * w * b
        comm += residual
    if head:
        # The final norm; the LM head over the last position of each sequence; Kraken's
        # all-gather and N e -> e projection.
        totals["vector_flops"] += norm_flops
        totals["dram_bytes"] += norm_bytes
        head_flops, head_bytes = _gemm(s.batch, w, s.vocab_padded // tp, b)
        totals["matmul_flops"] += head_flops
        totals["dram_bytes"] += head_bytes
        comm += s.batch * s.vocab_padded * b
        if arch == "kraken":
            proj_flops, proj_bytes = _gemm(T, tp * w, w, b)
            totals["matmul_flops"] += proj_flops
            totals["dram_bytes"] += proj_bytes
            comm += tp * residual
    totals["flops"] = totals["matmul_flops"] + totals["attention_flops"] + totals["vector_flops"]
    totals["collective_bytes"] = comm if tp > 1 else 0.0
    return {key: totals[key] for key in COUNT_KEYS}
