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
    GroupedMatmul,
    LayerNorm,
    Matmul,
    RMSNorm,
    Rotary,
    Softmax,
    SwiGLU,
    TokenPermute,
    TopKSoftmax,
    dtype_bytes,
)
from des.taskgraph import CollectiveTask, KernelTask, TaskGraph
from des.units import GiB
from workloads.counts import closed_form_counts
from workloads.kraken_rule import KrakenRule
from workloads.memory import MemoryEstimate, estimate_memory
from workloads.model import ModelSpec, load_model
from workloads.moe import MoeLayout
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
    ep: int = 1
    moe: MoeLayout | None = field(default=None, repr=False)
    pp: int = 1
    microbatches: int = 1

    def describe(self) -> str:
        """One line, e.g. ``gpt3-6.7b standard prefill TP=4 batch 1 seq 128 ...``."""
        tokens = f"seq {self.seq}" if self.phase == "prefill" else f"kv-len {self.kv_len}"
        scope = "whole model" if self.whole_model else f"{self.layers} of {self.model.layers} layers"
        width = f", Kraken width {self.model.hidden}" if self.model.is_kraken else ""
        plan = f"TP={self.tp}" + (f" EP={self.ep}" if self.moe is not None else "")
        plan += f" PP={self.pp}" if self.pp > 1 else ""
        plan += f" x {self.microbatches} micro-batches" if self.microbatches > 1 else ""
        return (
            f"{self.base_model.name} {self.arch} {self.phase} {plan} batch {self.batch} "
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
    ep: int = 1,
    moe_skew: float = 0.0,
    moe_seed: int = 0,
    pp: int = 1,
    microbatches: int = 1,
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
    ep : int
        Expert parallelism of a mixture of experts: 1 (every rank holds every expert,
        TP inside each) or ``tp`` (whole experts per rank, tokens exchanged all-to-all).
    moe_skew, moe_seed : float, int
        Routing skew (a Zipf exponent; 0: balanced) and its seed (:mod:`workloads.moe`).
    pp : int
        Pipeline stages: stage ``s`` runs layers ``s L / pp`` onwards on devices
        ``s tp`` to ``(s + 1) tp - 1`` of ``devices`` and sends each rank's activations to
        the same rank of the next stage.
    microbatches : int
        Micro-batches the batch is split into (each ``batch / microbatches`` sequences);
        each stage runs them in turn, so stages overlap on different micro-batches.

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
    pp = _check_int("pp", pp)
    microbatches = _check_int("microbatches", microbatches)
    if devices is None:
        devices = tuple(f"gpu{rank}" for rank in range(tp * pp))
    devices = tuple(devices)
    need = tp * pp
    if len(devices) != need:
        what = f"TP={tp}" if pp == 1 else f"TP={tp} x PP={pp}"
        raise DesError(f"{what} needs {need} devices, but {len(devices)} were given ({', '.join(map(str, devices))})")
    if len(set(devices)) != need:
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
    ep = _check_int("ep", ep)
    layout = None
    if built.moe is not None:
        if tp % ep:
            raise DesError(f"EP={ep} does not divide TP={tp}: the experts are placed over the TP ranks")
        if arch == "parallel" and ep > 1:
            raise DesError("arch parallel sums attention and FFN in one all-reduce; with EP > 1 the experts' "
                           "tokens are gathered instead: use standard or ladder")
        layout = MoeLayout(built.moe, tp, ep, shapes.rows, moe_skew, moe_seed)
    elif ep != 1:
        raise DesError(f"EP={ep} applies to a mixture of experts; model '{base.name}' is dense")
    if pp == 1 and microbatches == 1:
        graph = _GraphBuilder(devices, shapes, layout).build(arch, attention, n_layers, whole)
        memory = estimate_memory(shapes, arch, n_layers, whole, graph, devices[0], built.tied_embeddings, layout)
        counts = closed_form_counts(shapes, arch, attention, n_layers, whole, layout)
    else:
        graph, memory, counts = _pipeline(
            built, arch, phase, attention, devices, shapes, n_layers, whole, tp, pp, microbatches,
            (batch, seq, kv_len, dtype), (moe_skew, moe_seed, ep),
        )
    workload = Workload(
        graph, built, base, arch, phase, attention, dtype, tp, devices, batch, seq, kv_len,
        n_layers, whole, shapes, memory, counts, ep, layout, pp, microbatches,
    )
    logger.debug("built %s", workload.describe())
    return workload


def _pipeline(model, arch, phase, attention, devices, shapes, layers, whole, tp, pp, microbatches, step, moe_options):
    """The graph, memory and counts of a pipeline of ``pp`` stages and ``microbatches``.

    Stage ``s`` of micro-batch ``j`` waits for stage ``s - 1``'s sends of ``j``; each
    stage's ranks run their micro-batches in order (insertion order is stream order),
    so stage ``s`` works on ``j`` while stage ``s + 1`` works on ``j - 1``: the GPipe
    forward schedule, with its bubble of ``(p - 1) / (m + p - 1)`` of the time when the
    stages take equal time.
    """
    batch, seq, kv_len, dtype = step
    skew, seed, ep = moe_options
    if arch == "kraken":
        raise DesError("arch kraken carries each layer's all-reduce into the next layer; with PP that crosses "
                       "a stage boundary, which is not built: use standard, parallel or ladder")
    if layers % pp:
        raise DesError(f"PP={pp} does not divide the {layers} layers: every stage takes the same number of layers")
    if batch % microbatches:
        raise DesError(f"--microbatches {microbatches} does not divide the batch of {batch} sequences")
    mb = shapes_for(model, arch, phase, tp, batch // microbatches, seq, kv_len, dtype)
    layout = MoeLayout(model.moe, tp, ep, mb.rows, skew, seed) if model.moe is not None else None
    graph = TaskGraph()
    per_stage = layers // pp
    stages = [devices[s * tp:(s + 1) * tp] for s in range(pp)]
    for j in range(microbatches):
        tag = f"m{j}." if microbatches > 1 else ""
        builders = [_GraphBuilder(stage, mb, layout, graph, tag) for stage in stages]
        x = None
        for s, builder in enumerate(builders):
            x = builder.run_layers(arch, attention, s * per_stage, (s + 1) * per_stage, x,
                                   embed=whole and s == 0, head=whole and s == pp - 1)
            if s < pp - 1:
                x = builder.send_to(builders[s + 1], x, f"pp{s + 1}.send")
    # Memory: a stage's layers, their KV cache for the whole batch, one micro-batch's
    # activations; the embedding and the LM head counted as if on one stage (the most
    # any stage holds).
    full = shapes_for(model, arch, phase, tp, batch, seq, kv_len, dtype)
    one = estimate_memory(full, arch, per_stage, whole, graph, devices[0], model.tied_embeddings, layout)
    activations = estimate_memory(mb, arch, per_stage, whole, graph, devices[0], model.tied_embeddings, layout)
    memory = MemoryEstimate(one.weights_bytes, one.kv_cache_bytes, activations.activation_bytes)
    # Counts: the first stage's device, over its micro-batches, with its sends.
    counts = closed_form_counts(mb, arch, attention, per_stage, whole and pp == 1, layout,
                                embedding=whole, head=whole and pp == 1)
    total = {key: microbatches * value for key, value in counts.items()}
    if pp > 1:
        total["collective_bytes"] += microbatches * mb.residual_bytes
    return graph, memory, total


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

    def __init__(self, devices: tuple[str, ...], shapes: Shapes, moe: MoeLayout | None = None,
                 graph: TaskGraph | None = None, tag: str = "") -> None:
        self.graph = graph if graph is not None else TaskGraph()
        self.moe = moe
        #: Prefix of every task name (``m{j}.`` for micro-batch j of a pipeline).
        self.tag = tag
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
            name = f"{self.tag}{prefix}.{step}.r{rank}"
            self.graph.add(
                KernelTask(name, device, operator=op, deps=deps[rank], category=category, label=label, layer=self.layer)
            )
            out.append((name,))
        return out

    def kernel_each(self, prefix: str, step: str, label: str, ops: list, *after: Any, category: str | None = None) -> Deps:
        """Rank ``r``'s kernel ``ops[r]`` (``None``: nothing to do; its deps pass on)."""
        deps = self._deps(after)
        out: Deps = []
        for rank, device in enumerate(self.devices):
            if ops[rank] is None:
                out.append(deps[rank])
                continue
            name = f"{self.tag}{prefix}.{step}.r{rank}"
            self.graph.add(
                KernelTask(name, device, operator=ops[rank], deps=deps[rank], category=category, label=label, layer=self.layer)
            )
            out.append((name,))
        return out

    def collective(self, prefix: str, step: str, kind: str, nbytes: float, after: Deps, matrix=None) -> Deps:
        """A collective over all ranks after every rank's ``after``; skipped when tp is 1."""
        if len(self.devices) == 1:
            return after
        deps = tuple(dict.fromkeys(name for names in after for name in names))
        name = f"{self.tag}{prefix}.{step}"
        self.graph.add(CollectiveTask(
            name, kind, self.devices, float(nbytes), deps=deps, label=kind, layer=self.layer, matrix=matrix,
        ))
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

    def ffn_stage(self, p: str, x: Deps) -> tuple[Deps, str]:
        """This layer's FFN (dense, or its experts) and the collective that completes it:
        ``allreduce`` of partial sums, or ``allgather`` of each rank's tokens (experts
        placed whole, tokens exchanged all-to-all)."""
        if self.moe is None or not self.moe.is_moe(self.layer - 1):
            return self.ffn(p, x), "allreduce"
        return self.moe_block(p, x)

    def moe_block(self, p: str, x: Deps) -> tuple[Deps, str]:
        """Router, top-k, dispatch, the experts' grouped GEMMs, combine, shared experts.

        With ``ep == 1`` every rank holds every expert, its FFN width split by TP, and
        routes all the tokens; with ``ep == tp`` rank ``r`` holds experts ``r E / ep``
        onwards whole, routes its own share of the tokens, sends each routed copy to
        its expert's rank and back (two all-to-alls) and runs the shared experts whole.
        """
        s, m, dt = self.s, self.moe, self.dtype
        h, n = s.width, len(self.devices)
        loads = m.loads(self.layer - 1)
        swiglu = s.activation == "swiglu"
        up = 2 if swiglu else 1
        if m.ep == 1:
            rows = [s.rows] * n
            tokens = [loads] * n
            width = m.expert_width
        else:
            rows = m.rows_per_rank
            counts = m.dispatch(self.layer - 1)
            per = m.experts_local
            tokens = [tuple(sum(c[e] for c in counts) for e in range(r * per, (r + 1) * per)) for r in range(n)]
            width = m.expert_width

        def each(make):
            return [make(r) if rows[r] else None for r in range(n)]

        router = self.kernel_each(p, "router", "router", each(lambda r: Matmul(rows[r], h, m.experts, dt)), x)
        topk = self.kernel_each(p, "topk", "router", each(lambda r: TopKSoftmax(rows[r], m.experts, m.top_k, dt)), router,
                                category="elementwise")
        routed = self.kernel_each(p, "dispatch", "dispatch", each(lambda r: TokenPermute(rows[r], h, m.top_k, False, dt)),
                                  topk, category="elementwise")
        if m.ep > 1:
            matrix = m.exchange_matrix(self.layer - 1, h * s.bytes_per_element)
            routed = self.collective(p, "a2a_dispatch", "alltoall", sum(map(sum, matrix)), routed, matrix=matrix)

        def grouped(r, k_dim, n_dim):
            return GroupedMatmul(tokens[r], k_dim, n_dim, dt) if any(tokens[r]) else None

        w13 = self.kernel_each(p, "experts_up", "experts", [grouped(r, h, up * width) for r in range(n)], routed)
        act_op = SwiGLU if swiglu else Gelu
        act = self.kernel_each(p, "experts_act", "swiglu" if swiglu else "gelu",
                               [act_op(sum(tokens[r]) * width, dt) if any(tokens[r]) else None for r in range(n)], w13,
                               category="elementwise")
        down = self.kernel_each(p, "experts_down", "experts", [grouped(r, width, h) for r in range(n)], act)
        if m.ep > 1:
            matrix = tuple(zip(*m.exchange_matrix(self.layer - 1, h * s.bytes_per_element), strict=True))
            down = self.collective(p, "a2a_combine", "alltoall", sum(map(sum, matrix)), down, matrix=matrix)
        out = self.kernel_each(p, "combine", "combine", each(lambda r: TokenPermute(rows[r], h, m.top_k, True, dt)), down,
                               category="elementwise")
        if m.shared_width:
            shared_w = m.shared_width
            sw13 = self.kernel_each(p, "shared_up", "shared", each(lambda r: Matmul(rows[r], h, up * shared_w, dt)), x)
            sact = self.kernel_each(p, "shared_act", "swiglu" if swiglu else "gelu",
                                    each(lambda r: act_op(rows[r] * shared_w, dt)), sw13, category="elementwise")
            shared = self.kernel_each(p, "shared_down", "shared", each(lambda r: Matmul(rows[r], shared_w, h, dt)), sact)
            if m.shared_gate:
                gate = self.kernel_each(p, "shared_gate", "shared", each(lambda r: Matmul(rows[r], h, 1, dt)), x)
                shared = self._merge(shared, gate)
            out = self.kernel_each(p, "add_shared", "add", each(lambda r: ElementwiseAdd(rows[r] * h, dt)), out, shared)
        return out, ("allreduce" if m.ep == 1 else "allgather")

    @staticmethod
    def _merge(*deps: Deps) -> Deps:
        return [tuple(dict.fromkeys(name for d in per_rank for name in d)) for per_rank in zip(*deps, strict=True)]

    def add(self, p: str, step: str, *after: Deps) -> Deps:
        return self.kernel(p, step, "add", ElementwiseAdd(self.s.rows * self.s.width, self.dtype), *after)

    def layernorm(self, p: str, step: str, after: Deps | None) -> Deps:
        return self.kernel(p, step, "layernorm", self.norm_op(self.s.rows, self.s.width), after)

    # ------------------------------------------------------------------ layers

    def standard_layer(self, p: str, x: Deps | None, fused: bool) -> Deps:
        _, wo = self.mha(p, x, fused)
        a = self.add(p, "add1", self.collective(p, "ar1", "allreduce", self.s.residual_bytes, wo))
        h, kind = self.ffn_stage(p, self.layernorm(p, "ln2", a))
        return self.add(p, "add2", self.collective(p, "ar2", kind, self.s.residual_bytes, h))

    def parallel_layer(self, p: str, x: Deps | None, fused: bool) -> Deps:
        ln, wo = self.mha(p, x, fused)
        h, _kind = self.ffn_stage(p, ln)
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
        h, kind = self.ffn_stage(p, self.layernorm(p, "ln2", x))
        ffn_ar = self.collective(p, "ar2", kind, self.s.residual_bytes, h)
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
        self.run_layers(arch, attention, 0, layers, None, embed=whole, head=whole)
        return self.graph

    def run_layers(self, arch: str, attention: str, first: int, last: int, x: Deps | None, *, embed: bool,
                   head: bool) -> Deps | None:
        """Layers ``first`` to ``last - 1`` (0-based), after the embedding if ``embed``,
        then the LM head if ``head``; returns the residual stream's producers."""
        fused = attention == "fused"
        if embed:
            x = self.embedding()
        pending: list = []
        for index in range(first, last):
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
            x = self.add(f"L{last}", "add_out_attn", x, pending[0])
            x = self.add(f"L{last}", "add_out_ffn", x, pending[1])
        self.layer = None
        if head:
            self.head(x, arch)
        return x

    def send_to(self, other: _GraphBuilder, x: Deps, step: str) -> Deps:
        """Each rank's activations sent to the same rank of the next stage (point to point);
        returns the next stage's dependencies on them."""
        out: Deps = []
        for rank, (src, dst) in enumerate(zip(self.devices, other.devices, strict=True)):
            name = f"{self.tag}{step}.r{rank}"
            # On a stream of its own per stage boundary: the pipeline's sends and receives
            # run on their own NCCL streams, apart from the TP group's all-reduces, and a
            # stage receives its next micro-batch while it sends the last one on.
            self.graph.add(CollectiveTask(name, "send", (src, dst), self.s.residual_bytes, deps=tuple(x[rank]),
                                          stream=step.split(".")[0], label="send", layer=None))
            out.append((name,))
        return out
