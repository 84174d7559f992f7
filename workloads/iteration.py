"""The task graph of one serving iteration: prefill chunks and decodes batched together.

A continuous-batching engine (vLLM, TensorRT-LLM) runs, in one forward pass, the new
tokens of several requests: chunks of prompts being prefilled and one token for each
request being decoded. Every GEMM, norm and activation runs over all ``T`` new tokens
at once; attention runs per request over its own keys. :func:`build_iteration` makes
that graph with the builders of :mod:`workloads.transformer`:

- each prefill chunk of ``q`` tokens after ``past`` cached ones is one causal attention
  kernel of ``q`` queries over ``past + q`` keys;
- the decodes are one attention kernel of ``n`` sequences of one query each over the
  mean of their KV lengths. A paged-attention decode kernel is bound by the KV it reads
  (the sum of the lengths), so a batch of mixed lengths costs what a batch of their mean
  costs, but for the imbalance between its thread blocks;
- the LM head computes the logits of the sequences that emit a token: the decodes and
  the prefills whose chunk ends their prompt.

Dense models only (the mixture of experts' routing per iteration is not built here).
The Kraken model's head first gathers and projects its sub-layers' outputs, as in
:mod:`workloads.transformer`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from des.errors import DesError
from des.operators import Attention, Matmul
from des.taskgraph import TaskGraph
from workloads.kraken_rule import KrakenRule
from workloads.shapes import shapes_for
from workloads.transformer import Deps, _built_model, _GraphBuilder

#: Architectures whose serving iterations are built.
ITERATION_ARCHS = ("standard", "parallel", "ladder", "kraken")


class _IterationBuilder(_GraphBuilder):
    """The transformer builder with a serving iteration's attention and LM head."""

    def __init__(self, devices, shapes, prefills: Sequence[tuple[int, int]], decodes: int, decode_kv: int,
                 emitting: int) -> None:
        super().__init__(devices, shapes)
        self.prefills, self.decodes, self.decode_kv, self.emitting = list(prefills), decodes, decode_kv, emitting

    def attention(self, p: str, after: Deps, fused: bool) -> Deps:
        s = self.s
        out = after
        for index, (chunk, past) in enumerate(self.prefills):
            op = Attention(1, s.heads, chunk, past + chunk, s.head_dim, True, self.dtype, kv_heads=s.kv_heads,
                           window=s.window)
            out = self.kernel(p, f"attn_p{index}", "attention", op, out)
        if self.decodes:
            op = Attention(self.decodes, s.heads, 1, self.decode_kv, s.head_dim, False, self.dtype,
                           kv_heads=s.kv_heads, window=s.window)
            out = self.kernel(p, "attn_d", "attention", op, out)
        return out

    def head(self, x: Deps, arch: str) -> Deps:
        s = self.s
        if arch == "kraken":
            # Kraken's sub-layers end with their outputs gathered and projected.
            gathered = self.collective("head", "gather", "allgather", s.tp * s.residual_bytes, x or [])
            x = self.kernel("head", "proj", "proj", Matmul(s.rows, s.tp * s.width, s.width, self.dtype), gathered)
        ln = self.layernorm("head", "lnf", x)
        op = Matmul(self.emitting, s.width, s.vocab_per_device, self.dtype)
        logits = self.kernel("head", "lm_head", "lm_head", op, ln, category="lm_head")
        nbytes = float(self.emitting * s.vocab_padded * s.bytes_per_element)
        return self.collective("head", "logits", "allgather", nbytes, logits)


def build_iteration(model: Any, arch: str, tp: int, devices: tuple[str, ...], prefills: Sequence[tuple[int, int]],
                    decodes: int, decode_kv: int, emitting: int, layers: int | None = None,
                    dtype: str = "fp16", head: bool = True, first_layer: int = 0) -> TaskGraph:
    """The graph of one iteration (module docstring).

    Parameters
    ----------
    model : ModelSpec
        A dense model.
    arch : {"standard", "parallel", "ladder", "kraken"}
        Architecture (``kraken``: the Kraken model derived from ``model`` at degree ``tp``,
        as :func:`workloads.build_workload` derives it).
    tp : int
        Tensor parallelism over ``devices`` (the Kraken degree).
    prefills : sequence of (chunk, past)
        Prefill chunks: tokens computed now, and tokens of the prompt already cached.
    decodes, decode_kv : int
        Sequences decoding one token, and the mean of their KV lengths (new token included).
    emitting : int
        Sequences whose logits are computed (decodes and finishing prefills).
    layers : int, optional
        Build only this many layers (and the head), the rest of the model left out; 0
        with ``head``: the final norm, LM head and logits all-gather alone.
    head : bool
        Whether the graph ends with the final norm, the LM head and its all-gather.
    first_layer : int
        The 0-based layer the graph starts at (a pipeline stage's): the embedding comes
        first only from layer 0.

    Raises
    ------
    DesError
        For an empty iteration, a mixture of experts or an unknown architecture.
    """
    if model.moe is not None:
        raise DesError(f"serving iterations are built for dense models; '{model.name}' has experts")
    if arch not in ITERATION_ARCHS:
        raise DesError(f"serving iterations are built for {', '.join(ITERATION_ARCHS)}, not {arch}")
    tokens = sum(chunk for chunk, _past in prefills) + decodes
    if tokens <= 0 or emitting <= 0:
        raise DesError("a serving iteration needs at least one token")
    built = _built_model(model, arch, tp, KrakenRule())
    base = shapes_for(built, arch, "prefill", tp, 1, tokens, None, dtype)
    shapes = dataclasses.replace(base, batch=1, rows_per_seq=tokens)
    builder = _IterationBuilder(devices, shapes, prefills, decodes, max(1, decode_kv), emitting)
    n_layers = built.layers - first_layer if layers is None else layers
    if first_layer < 0 or first_layer + n_layers > built.layers:
        raise DesError(f"layers {first_layer + 1} to {first_layer + n_layers} are not all among the "
                       f"{built.layers} of {model.name}")
    if n_layers == 0:
        if not head:
            raise DesError("a serving iteration of no layers is its head")
        builder.head(None, arch)
    else:
        builder.run_layers(arch, "fused", first_layer, first_layer + n_layers, None, embed=first_layer == 0,
                           head=head)
    return builder.graph
