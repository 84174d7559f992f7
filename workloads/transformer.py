"""Transformer inference as per-device task graphs: Megatron TP, parallel and Kraken.

:func:`build_workload` turns a model, an architecture and a phase into a
:class:`des.taskgraph.TaskGraph` over ``tp`` devices. With ``T = batch * S`` rows
(``S`` = the prompt length in prefill, 1 in decode) each layer on each device is:

``standard`` (Megatron tensor parallelism)
    LN, QKV GEMM (column-parallel, ``3h/t`` outputs), attention over ``n/t`` heads,
    output GEMM (row-parallel), all-reduce, residual add, LN, FFN up (``F/t``), GELU,
    FFN down, all-reduce, residual add.
``parallel`` (GPT-J)
    One LN feeding both the attention and the FFN branch; the two partial outputs are
    added, all-reduced once, and added to the residual.
``kraken``
    Sub-layer ``j`` on device ``j``: LN, QKV, attention, output GEMM and ``a = x + mha``
    use only the local ``x``; from layer 2 on, the all-reduce of the previous layer's
    outputs runs on the comm stream beside them, and ``z = mha + allreduce`` waits for
    it before LN2 and the FFN; ``x' = a + ffn``. After the last layer: an all-gather,
    the ``N e -> e`` projection.

Attention is ``fused`` (one flash-style kernel; causal in prefill) or ``unfused``
(``Q K^T``, softmax and ``A V`` as kernels, the score matrix in DRAM). The whole model
(``layers=None``) adds a vocabulary-parallel embedding (gather + position add, then an
all-reduce) and, after a final LN, the vocabulary-parallel LM head and an all-gather of
the logits. In prefill the LM head computes only the last position's logits (batch rows),
as TensorRT-LLM does with ``gather_last_token_logits``. Compute kernels go on stream
``compute``, collectives on ``comm``; with ``tp == 1`` there are no collectives.
Task names are ``L{layer}.{step}.r{rank}`` (``emb.*``, ``head.*`` outside the layers;
collectives drop the rank); each task's ``label`` is the per-operator metric key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from des.errors import DesError
from des.operators import (
    Attention,
    BatchedMatmul,
    Copy,
    ElementwiseAdd,
    Gelu,
    LayerNorm,
    Matmul,
    RMSNorm,
    Rotary,
    Softmax,
    SwiGLU,
    dtype_bytes,
)
from des.taskgraph import CollectiveTask, KernelTask, TaskGraph
from des.units import GiB
from workloads.counts import closed_form_counts
from workloads.kraken_rule import KrakenRule
from workloads.memory import MemoryEstimate, estimate_memory
from workloads.model import ModelSpec, load_model
from workloads.shapes import ATTENTIONS, PHASES, Shapes, shapes_for

logger = logging.getLogger(__name__)

#: Architectures the builder knows.
ARCHS = ("standard", "parallel", "kraken", "ladder")

Deps = list[tuple[str, ...]]


@dataclass
class Workload:
    """A built workload: the task graph and what it was built from.

    Attributes
    ----------
    graph : TaskGraph
        The tasks over ``devices``.
    model : ModelSpec
        The model actually built (for ``kraken``, the derived Kraken model).
    base_model : ModelSpec
        The model asked for.
    arch, phase, attention, dtype : str
        As given.
    tp : int
        Tensor-parallel degree.
    devices : tuple of str
        Devices in rank order.
    batch, seq : int
        Batch size and prompt length.
    kv_len : int or None
        KV-cache length attended in decode.
    layers : int
        Transformer layers simulated.
    whole_model : bool
        Whether embeddings and the LM head are included.
    shapes : Shapes
        Per-device dimensions.
    memory : MemoryEstimate
        Per-device memory need.
    counts : dict
        Closed-form per-device FLOP and DRAM-byte totals (:mod:`workloads.counts`).
    """

    graph: TaskGraph = field(repr=False)
    model: ModelSpec
    base_model: ModelSpec
    arch: str
    phase: str
    attention: str
    dtype: str
    tp: int
    devices: tuple[str, ...]
    batch: int
    seq: int
    kv_len: int | None
    layers: int
    whole_model: bool
    shapes: Shapes = field(repr=False)
    memory: MemoryEstimate
    counts: dict[str, float] = field(repr=False)

    def describe(self) -> str:
        """One line, e.g. ``gpt3-6.7b standard prefill TP=4 batch 1 seq 128 ...``."""
        tokens = f"seq {self.seq}" if self.phase == "prefill" else f"kv-len {self.kv_len}"
        scope = "whole model" if self.whole_model else f"{self.layers} of {self.model.layers} layers"
        width = f", Kraken width {self.model.hidden}" if self.model.is_kraken else ""
        return (
            f"{self.base_model.name} {self.arch} {self.phase} TP={self.tp} batch {self.batch} "
            f"{tokens}, {self.attention} attention, {self.dtype}{width}, {scope}: "
            f"{len(self.graph)} tasks, {self.memory.total_bytes / GiB:.1f} GiB per device"
        )


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DesError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise DesError(f"{name} must be at least {minimum}, got {value}")
    return value


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise DesError(f"unknown {name} {value!r}; known: {', '.join(allowed)}")
    return value  # type: ignore[return-value]


def build_workload(
    model: ModelSpec | str,
    arch: str = "standard",
    phase: str = "prefill",
    tp: int = 1,
    devices: tuple[str, ...] | None = None,
    batch: int = 1,
    seq: int = 128,
    kv_len: int | None = None,
    attention: str = "fused",
    layers: int | None = None,
    dtype: str = "fp16",
    kraken_rule: KrakenRule | None = None,
) -> Workload:
    """Build the task graph of one inference step.

    Parameters
    ----------
    model : ModelSpec or str
        A model, a preset name or a path to a model YAML file.
    arch : {"standard", "parallel", "kraken"}
        Architecture.
    phase : {"prefill", "decode"}
        Prefill over ``seq`` tokens, or decode of one token per sequence.
    tp : int
        Tensor-parallel degree (the Kraken degree for ``kraken``).
    devices : tuple of str, optional
        Device names in rank order, exactly ``tp`` of them (``gpu0``... by default).
    batch : int
        Sequences.
    seq : int
        Prompt length (prefill).
    kv_len : int, optional
        Keys attended per sequence in decode; required for decode, an error in prefill.
    attention : {"fused", "unfused"}
        One flash-style kernel, or ``Q K^T``, softmax and ``A V``.
    layers : int, optional
        Simulate only this many layers, without embeddings and LM head (default: the
        whole model with them).
    dtype : str
        Element type of weights and activations.
    kraken_rule : KrakenRule, optional
        Rule deriving the Kraken width (default :class:`KrakenRule`).

    Returns
    -------
    Workload

    Raises
    ------
    DesError
        For an unknown model, architecture, phase, attention or dtype; a TP that does
        not divide the heads (or the FFN width); a device list whose length is not
        ``tp``; a Kraken model whose fixed degree differs from ``tp``; non-positive
        ``seq``, ``batch`` or ``layers``; ``layers`` beyond the model's; decode without
        ``kv_len`` or prefill with it.
    """
    base = load_model(model) if isinstance(model, str) else model
    if not isinstance(base, ModelSpec):
        raise DesError(f"model must be a ModelSpec, a preset name or a path, got {type(model).__name__}")
    _choice("architecture", arch, ARCHS)
    _choice("phase", phase, PHASES)
    _choice("attention", attention, ATTENTIONS)
    dtype_bytes(dtype)
    tp = _check_int("tp", tp)
    if devices is None:
        devices = tuple(f"gpu{rank}" for rank in range(tp))
    devices = tuple(devices)
    if len(devices) != tp:
        raise DesError(f"TP={tp} needs {tp} devices, but {len(devices)} were given ({', '.join(map(str, devices))})")
    if len(set(devices)) != tp:
        raise DesError(f"devices must be distinct, got {', '.join(map(str, devices))}")
    batch = _check_int("batch", batch)
    seq = _check_int("seq", seq)
    if phase == "decode":
        if kv_len is None:
            raise DesError("decode needs a KV-cache length (kv-len): the keys each new token attends to")
        kv_len = _check_int("kv-len", kv_len)
    elif kv_len is not None:
        raise DesError("kv-len applies to decode only; prefill attends over its own seq tokens")
    positions = kv_len if phase == "decode" else seq
    if positions > base.max_positions:
        # Not an error: studies (LLMCompass's 175B decode at 3072) go past the trained
        # context on purpose, and the cost of the kernels is still well defined.
        logger.warning(
            "%s %d is beyond the %d positions of model '%s'; simulated as if it had that many",
            "kv-len" if phase == "decode" else "seq", positions, base.max_positions, base.name,
        )
    if layers is not None:
        layers = _check_int("layers", layers)
        if layers > base.layers:
            raise DesError(f"layers {layers} is more than the {base.layers} layers of model '{base.name}'")
    built = _built_model(base, arch, tp, kraken_rule or KrakenRule())
    shapes = shapes_for(built, arch, phase, tp, batch, seq, kv_len, dtype)
    n_layers = layers if layers is not None else built.layers
    whole = layers is None
    graph = _GraphBuilder(devices, shapes).build(arch, attention, n_layers, whole)
    memory = estimate_memory(shapes, arch, n_layers, whole, graph, devices[0], built.tied_embeddings)
    counts = closed_form_counts(shapes, arch, attention, n_layers, whole)
    workload = Workload(
        graph, built, base, arch, phase, attention, dtype, tp, devices, batch, seq, kv_len,
        n_layers, whole, shapes, memory, counts,
    )
    logger.debug("built %s", workload.describe())
    return workload


def _built_model(base: ModelSpec, arch: str, tp: int, rule: KrakenRule) -> ModelSpec:
    if arch == "kraken":
        return rule.derive(base, tp)
    if base.is_kraken:
        raise DesError(f"model '{base.name}' is a Kraken model; it runs only with arch kraken")
    if base.heads % tp:
        raise DesError(f"TP={tp} does not divide the {base.heads} heads of model '{base.name}'")
    if base.ffn_hidden % tp:
        raise DesError(f"TP={tp} does not divide the FFN width {base.ffn_hidden} of model '{base.name}'")
    kv = base.n_kv_heads
    if kv % tp and tp % kv:
        raise DesError(
            f"TP={tp} neither divides the {kv} KV heads of model '{base.name}' nor is a multiple of them "
            "(KV heads are split over the ranks, or each replicated on TP / kv_heads of them)"
        )
    return base


class _GraphBuilder:
    """Adds the same kernel on every rank, and collectives over all ranks."""

    def __init__(self, devices: tuple[str, ...], shapes: Shapes) -> None:
        self.graph = TaskGraph()
        self.devices = devices
        self.s = shapes
        self.dtype = shapes.dtype
        #: The layer (1-based) the tasks being added belong to; None outside the layers.
        self.layer: int | None = None

    # ------------------------------------------------------------------ primitives

    def _deps(self, after: tuple[Deps | None, ...]) -> Deps:
        """Per rank, the names in ``after`` (each a per-rank list or None), deduplicated."""
        deps: Deps = []
        for rank in range(len(self.devices)):
            names: dict[str, None] = {}
            for per_rank in after:
                if per_rank is not None:
                    names.update(dict.fromkeys(per_rank[rank]))
            deps.append(tuple(names))
        return deps

    def kernel(self, prefix: str, step: str, label: str, op: Any, *after: Any, category: str | None = None) -> Deps:
        """One kernel ``op`` per rank, each after the same-rank entries of ``after``."""
        deps = self._deps(after)
        out: Deps = []
        for rank, device in enumerate(self.devices):
            name = f"{prefix}.{step}.r{rank}"
            self.graph.add(
                KernelTask(name, device, operator=op, deps=deps[rank], category=category, label=label, layer=self.layer)
            )
            out.append((name,))
        return out

    def collective(self, prefix: str, step: str, kind: str, nbytes: float, after: Deps) -> Deps:
        """A collective over all ranks after every rank's ``after``; skipped when tp is 1."""
        if len(self.devices) == 1:
            return after
        deps = tuple(dict.fromkeys(name for names in after for name in names))
        name = f"{prefix}.{step}"
        self.graph.add(CollectiveTask(name, kind, self.devices, float(nbytes), deps=deps, label=kind, layer=self.layer))
        return [(name,)] * len(self.devices)

    # ------------------------------------------------------------------ pieces

    def norm_op(self, rows: int, cols: int) -> Any:
        """The model's normalisation kernel over ``rows x cols``."""
        return (RMSNorm if self.s.norm == "rmsnorm" else LayerNorm)(rows, cols, self.dtype)

    def attention(self, p: str, after: Deps, fused: bool) -> Deps:
        s = self.s
        if fused:
            op = Attention(s.batch, s.heads, s.rows_per_seq, s.kv_len, s.head_dim, s.causal, self.dtype,
                           kv_heads=s.kv_heads, window=s.window)
            return self.kernel(p, "attn", "attention", op, after)
        if s.kv_heads != s.heads or s.window is not None:
            raise DesError("unfused attention is built for multi-head attention without a window; use fused")
        bh = s.batch * s.heads
        qk = self.kernel(p, "qk", "qk", BatchedMatmul(bh, s.rows_per_seq, s.head_dim, s.kv_len, self.dtype), after, category="attention")
        sm = self.kernel(p, "softmax", "softmax", Softmax(bh * s.rows_per_seq, s.kv_len, self.dtype), qk)
        return self.kernel(p, "av", "av", BatchedMatmul(bh, s.rows_per_seq, s.kv_len, s.head_dim, self.dtype), sm, category="attention")

    def mha(self, p: str, x: Deps | None, fused: bool) -> tuple[Deps, Deps]:
        """Norm, QKV (with rotary positions on Q and K), attention and the output GEMM;
        returns (norm output, output-projection output)."""
        s = self.s
        ln = self.kernel(p, "ln1", "layernorm", self.norm_op(s.rows, s.width), x)
        qkv = self.kernel(p, "qkv", "qkv", Matmul(s.rows, s.width, s.qkv_width, self.dtype), ln)
        if s.position == "rope":
            rope = Rotary(s.rows, s.heads + s.kv_heads, s.head_dim, self.dtype)
            qkv = self.kernel(p, "rope", "rope", rope, qkv, category="elementwise")
        att = self.attention(p, qkv, fused)
        return ln, self.kernel(p, "wo", "wo", Matmul(s.rows, s.attn_width, s.width, self.dtype), att)

    def ffn(self, p: str, x: Deps) -> Deps:
        s = self.s
        if s.activation == "swiglu":
            # Gate and up projections fused into one column-parallel GEMM, as vLLM's
            # MergedColumnParallelLinear and TensorRT-LLM's gated MLP do.
            w13 = self.kernel(p, "w13", "w1", Matmul(s.rows, s.width, 2 * s.ffn_width, self.dtype), x)
            act = self.kernel(p, "swiglu", "swiglu", SwiGLU(s.rows * s.ffn_width, self.dtype), w13, category="elementwise")
        else:
            w1 = self.kernel(p, "w1", "w1", Matmul(s.rows, s.width, s.ffn_width, self.dtype), x)
            act = self.kernel(p, "gelu", "gelu", Gelu(s.rows * s.ffn_width, self.dtype), w1)
        return self.kernel(p, "w2", "w2", Matmul(s.rows, s.ffn_width, s.width, self.dtype), act)

    def add(self, p: str, step: str, *after: Deps) -> Deps:
        return self.kernel(p, step, "add", ElementwiseAdd(self.s.rows * self.s.width, self.dtype), *after)

    def layernorm(self, p: str, step: str, after: Deps | None) -> Deps:
        return self.kernel(p, step, "layernorm", self.norm_op(self.s.rows, self.s.width), after)

    # ------------------------------------------------------------------ layers

    def standard_layer(self, p: str, x: Deps | None, fused: bool) -> Deps:
        _, wo = self.mha(p, x, fused)
        a = self.add(p, "add1", self.collective(p, "ar1", "allreduce", self.s.residual_bytes, wo))
        h = self.ffn(p, self.layernorm(p, "ln2", a))
        return self.add(p, "add2", self.collective(p, "ar2", "allreduce", self.s.residual_bytes, h))

    def parallel_layer(self, p: str, x: Deps | None, fused: bool) -> Deps:
        ln, wo = self.mha(p, x, fused)
        h = self.ffn(p, ln)
        partial = self.add(p, "add_partial", wo, h)
        return self.add(p, "add", self.collective(p, "ar", "allreduce", self.s.residual_bytes, partial))

    def kraken_layer(self, p: str, x: Deps | None, fused: bool, first: bool) -> Deps:
        # As the paper built it (appendix A.2): x(l-1) is copied into the all-reduce's
        # buffer and the all-reduce launched on its own low-priority stream just before
        # this layer's attention block; the result is copied back out and waited for
        # after the output projection. The two copies are "the two extraneous memory
        # copy operations"; they run on the compute stream.
        ar = None
        elements = self.s.rows * self.s.width
        if not first:
            copy_in = self.kernel(p, "copy_in", "copy", Copy(elements, self.dtype), x, category="elementwise")
            ar = self.collective(p, "ar", "allreduce", self.s.residual_bytes, copy_in)
        _, wo = self.mha(p, x, fused)
        a = self.add(p, "add1", wo)
        if ar is None:
            z = a
        else:
            reduced = self.kernel(p, "copy_out", "copy", Copy(elements, self.dtype), ar, wo, category="elementwise")
            z = self.add(p, "add_z", a, reduced)
        h = self.ffn(p, self.layernorm(p, "ln2", z))
        return self.add(p, "add2", h, a)

    def ladder_layer(self, p: str, x: Deps | None, fused: bool, pending: list) -> Deps:
        """Ladder Residual: a module's all-reduce runs beside the next module's compute.

        ``pending`` holds the all-reduces not yet added to the residual stream (the
        previous attention's and FFN's). The attention block reads the residual stream
        with the previous attention output added (its all-reduce ran beside the
        previous FFN), the FFN block the one with the previous FFN output added (its
        all-reduce ran beside this attention).
        """
        if pending and pending[0] is not None:
            x = self.add(p, "add_attn", x, pending[0])
        _, wo = self.mha(p, x, fused)
        attn_ar = self.collective(p, "ar1", "allreduce", self.s.residual_bytes, wo)
        if pending and pending[1] is not None:
            x = self.add(p, "add_ffn", x, pending[1])
        h = self.ffn(p, self.layernorm(p, "ln2", x))
        ffn_ar = self.collective(p, "ar2", "allreduce", self.s.residual_bytes, h)
        pending[:] = [attn_ar, ffn_ar]
        return x

    # ------------------------------------------------------------------ model

    def embedding(self) -> Deps:
        s = self.s
        # The token rows gathered, plus the position rows where positions are learned.
        op = ElementwiseAdd(s.rows * s.width, self.dtype) if s.position == "learned" else Copy(s.rows * s.width, self.dtype)
        emb = self.kernel("emb", "embed", "embedding", op, None, category="elementwise")
        return self.collective("emb", "ar", "allreduce", s.residual_bytes, emb)

    def head(self, x: Deps, arch: str) -> Deps:
        s = self.s
        if arch == "kraken":
            gathered = self.collective("head", "gather", "allgather", s.tp * s.residual_bytes, x)
            proj = Matmul(s.rows, s.tp * s.width, s.width, self.dtype)
            x = self.kernel("head", "proj", "proj", proj, gathered)
        ln = self.layernorm("head", "lnf", x)
        op = Matmul(s.batch, s.width, s.vocab_per_device, self.dtype)
        logits = self.kernel("head", "lm_head", "lm_head", op, ln, category="lm_head")
        return self.collective("head", "logits", "allgather", s.logits_bytes, logits)

    def build(self, arch: str, attention: str, layers: int, whole: bool) -> TaskGraph:
        fused = attention == "fused"
        x = self.embedding() if whole else None
        pending: list = []
        for index in range(layers):
            self.layer = index + 1
            p = f"L{self.layer}"
            if arch == "standard":
                x = self.standard_layer(p, x, fused)
            elif arch == "parallel":
                x = self.parallel_layer(p, x, fused)
            elif arch == "ladder":
                x = self.ladder_layer(p, x, fused, pending)
            else:
                x = self.kraken_layer(p, x, fused, first=index == 0)
        if arch == "ladder" and pending:
            # The last attention's and FFN's all-reduces join the stream before the end.
            x = self.add(f"L{layers}", "add_out_attn", x, pending[0])
            x = self.add(f"L{layers}", "add_out_ffn", x, pending[1])
        self.layer = None
        if whole:
            self.head(x, arch)
        return self.graph
