"""Parameter counts of a model, by component, from its shape alone.

Per layer: the attention projections (``h x q`` queries, two ``h x kv`` for keys and
values, ``q x h`` output; ``q = heads x head_dim``, ``kv = kv_heads x head_dim``) with
their biases where the model has them (``all``: every projection; ``qkv``: the QKV
one), two norms (LayerNorm: scale and shift; RMSNorm: scale), and the FFN: GELU's two
matrices ``2 h F`` (with ``F + h`` biases under ``all``) or SwiGLU's three ``3 h F``;
an MoE layer instead holds a router ``h x E``, ``E`` experts of ``3 h F_e`` and its
shared experts (with Qwen2-MoE's ``h x 1`` shared gate). The model adds the token
embedding ``V x h``, a learned position table ``P x h`` (none with rotary positions),
the final norm and, untied, an LM head ``V x h``. ``active`` counts what one token
uses: its ``top_k`` routed experts instead of all of them.
"""

from __future__ import annotations

from workloads.model import ModelSpec


def _norm(model: ModelSpec, width: int) -> int:
    return (2 if model.norm == "layernorm" else 1) * width


def attention_params(model: ModelSpec) -> int:
    """One layer's attention projections and their biases."""
    h, q, kv = model.hidden, model.q_width, model.kv_width
    weights = h * q + 2 * h * kv + q * h
    biases = {"all": q + 2 * kv + h, "qkv": q + 2 * kv, "none": 0}[model.biases]
    return weights + biases


def ffn_params(model: ModelSpec, width: int) -> int:
    """One dense FFN (or one expert) of inner width ``width``."""
    h = model.hidden
    if model.activation == "swiglu":
        return 3 * h * width + (2 * width + h if model.biases == "all" else 0)
    return 2 * h * width + (width + h if model.biases == "all" else 0)


def moe_params(model: ModelSpec, *, active: bool = False) -> int:
    """One MoE layer's router, experts (``top_k`` of them if ``active``) and shared experts."""
    moe = model.moe
    assert moe is not None
    routed = (moe.top_k if active else moe.experts) * ffn_params(model, moe.ffn_hidden)
    shared = moe.shared_experts * ffn_params(model, moe.shared_ffn_hidden) if moe.shared_experts else 0
    gate = model.hidden if moe.shared_gate else 0
    return model.hidden * moe.experts + routed + shared + gate


def parameter_counts(model: ModelSpec) -> dict[str, int]:
    """Parameters by component: ``embedding``, ``attention``, ``ffn`` (dense layers),
    ``experts`` (MoE layers), ``norms``, ``lm_head``, ``total`` and ``active``."""
    h = model.hidden
    moe_layers = sum(1 for index in range(model.layers) if model.is_moe_layer(index))
    dense_layers = model.layers - moe_layers
    embedding = model.vocab_size * h + (model.max_positions * h if model.position == "learned" else 0)
    attention = model.layers * attention_params(model)
    ffn = dense_layers * ffn_params(model, model.ffn_hidden)
    experts = moe_layers * moe_params(model) if moe_layers else 0
    active_experts = moe_layers * moe_params(model, active=True) if moe_layers else 0
    norms = model.layers * 2 * _norm(model, h) + _norm(model, h)
    head = 0 if model.tied_embeddings else model.vocab_size * h
    total = embedding + attention + ffn + experts + norms + head
    return {
        "embedding": embedding,
        "attention": attention,
        "ffn": ffn,
        "experts": experts,
        "norms": norms,
        "lm_head": head,
        "total": total,
        "active": total - experts + active_experts,
    }
