"""The Kraken counterpart of a standard model: a stated, parameterised width rule.

Kraken (Prabhakar et al., NeurIPS 2024) splits every layer into ``N`` independent
sub-layers of width ``e``, ``N`` being the TP degree it runs at. The configurations of
the paper's latency study are not public; the released training configurations use an
FFN expansion of 2 and choose ``e`` so the *total* parameter count matches a GPT-2 size.
:class:`KrakenRule` reproduces that by default:

- every sub-layer has ``n / N`` heads of width ``e / (n / N)``, an FFN of
  ``ffn_expansion * e``, biases and two LayerNorms;
- ``e`` solves ``params_kraken(e) = params_standard`` (``match="total_params"``:
  layers, token and position embeddings, the final ``N e x e`` projection with its bias,
  the final LayerNorm; the LM head tied as in the standard model), or matches one
  standard layer to one Kraken layer of ``N`` sub-layers (``match="layer_params"``,
  about ``h * sqrt(12 / (8 N))`` for expansion 2);
- ``e`` is rounded to the nearest multiple of the heads per sub-layer, so heads are
  whole;
- where ``n / N`` heads would each be wider than ``max_head_dim`` (256 by default: the
  widest head FlashAttention-2 and TensorRT-LLM's fused attention kernels support), the
  sub-layer instead has the fewest heads that are at most that wide
  (``ceil(e / max_head_dim)``), as a model trained for fused-attention inference would;
  ``max_head_dim=None`` keeps ``n / N`` heads at any width.

This gives 504 for the released 125M config (GPT-2 small, N=4; released 504), 644 for
350M (released 644) and 960 for GPT-3 760M (released 960), all with ``n / N`` heads
(widths 168, 161 and 240).

The rule generalises to the models of today (Llama, Mistral, Qwen) with the sub-layer
built as its model's layers are: the same norm, FFN kind (SwiGLU's three matrices),
positions and biases, an FFN of ``ffn_expansion * e``. The parameter count of a
sub-layer is still ``A e^2 + B e`` (:func:`sublayer_coefficients`, with the model's
query-to-KV ratio) and ``e`` the root of the same quadratic. Such models fix their head
width (128), so the sub-layer keeps it: ``e`` becomes the nearest whole number of heads
times ``head_dim``, and the sub-layer takes the largest divisor of its heads not above
``heads x kv_heads / n`` as its KV heads (Llama-3-70B at N = 8: 28 heads of 128, 2 KV
heads, e = 3584). A mixture of experts has no Kraken counterpart here (the paper's are
dense).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from des.errors import DesError
from workloads.model import DEFAULT_KRAKEN_FFN_EXPANSION, ModelSpec

#: Widest attention head of the fused kernels Kraken's latency study ran on:
#: FlashAttention-2 supports head dimensions up to 256 (Dao, 2023, FlashAttention-2
#: README), as do TensorRT-LLM's fused multi-head attention kernels.
FUSED_ATTENTION_MAX_HEAD_DIM = 256

#: What the Kraken width is chosen to match.
MATCHES = ("total_params", "layer_params")

def standard_params(model: ModelSpec) -> float:
    """Parameters of a standard model: layers, embeddings, final norm, LM head if untied
    (:func:`workloads.params.parameter_counts`)."""
    from workloads.params import parameter_counts

    return float(parameter_counts(model)["total"])


def sublayer_coefficients(model: ModelSpec, degree: int, ffn_expansion: float) -> tuple[float, float]:
    """``(A, B)`` with one Kraken sub-layer of width ``e`` holding ``A e^2 + B e`` parameters.

    Attention: ``e x e`` queries and output, ``2 e x g e`` keys and values with
    ``g = kv_sub / heads_sub`` the sub-layer's KV-to-query ratio; the FFN ``m x e^2``
    (``m = 2`` GELU, ``3`` SwiGLU, times the expansion); norms and biases linear in ``e``.
    """
    heads = _heads_per_sublayer(model, degree)
    kv = max(1, model.n_kv_heads // degree)
    g = kv / heads
    x = ffn_expansion
    swiglu = model.activation == "swiglu"
    quad = 2 + 2 * g + (3 if swiglu else 2) * x
    norms = 2 * (2 if model.norm == "layernorm" else 1)
    biases = {"all": (1 + 2 * g) + 1 + (2 * x if swiglu else x) + 1, "qkv": 1 + 2 * g, "none": 0.0}[model.biases]
    return quad, norms + biases


def kraken_params(model: ModelSpec, degree: int, width: float, ffn_expansion: float) -> float:
    """Parameters of a Kraken model of ``degree`` sub-layers of ``width`` per layer.

    Layers (:func:`sublayer_coefficients`), token and position embeddings of width
    ``e``, the final ``N e -> e`` projection with its bias, the final norm, and the LM
    head if untied.
    """
    e = width
    positions = model.max_positions if model.position == "learned" else 0
    embeddings = (model.vocab_size + positions) * e
    head = 0 if model.tied_embeddings else model.vocab_size * e
    projection = degree * e * e + e
    a, b = sublayer_coefficients(model, degree, ffn_expansion)
    sublayers = model.layers * degree * (a * e * e + b * e)
    final_norm = (2 if model.norm == "layernorm" else 1) * e
    return sublayers + embeddings + projection + final_norm + head


@dataclass(frozen=True)
class KrakenRule:
    """How the Kraken sub-layer width ``e`` is derived from a standard model.

    Attributes
    ----------
    match : {"total_params", "layer_params"}
        Match the whole model's parameter count (the released configs' rule, default)
        or one layer's.
    ffn_expansion : float
        Sub-layer FFN width as a multiple of ``e`` (2 in the released configs).
    max_head_dim : int or None
        Widest head a sub-layer may have before it takes more than ``n / N`` heads
        (:data:`FUSED_ATTENTION_MAX_HEAD_DIM`); ``None`` for no limit.
    """

    match: str = "total_params"
    ffn_expansion: float = DEFAULT_KRAKEN_FFN_EXPANSION
    max_head_dim: int | None = FUSED_ATTENTION_MAX_HEAD_DIM

    def __post_init__(self) -> None:
        if self.match not in MATCHES:
            raise DesError(f"Kraken rule: match must be one of {', '.join(MATCHES)}, got {self.match!r}")
        if isinstance(self.ffn_expansion, bool) or not isinstance(self.ffn_expansion, (int, float)) or not self.ffn_expansion > 0:
            raise DesError(f"Kraken rule: ffn_expansion must be positive, got {self.ffn_expansion!r}")
        if self.max_head_dim is not None and (
            isinstance(self.max_head_dim, bool) or not isinstance(self.max_head_dim, int) or self.max_head_dim < 1
        ):
            raise DesError(f"Kraken rule: max_head_dim must be a positive whole number or None, got {self.max_head_dim!r}")

    def exact_width(self, model: ModelSpec, degree: int) -> float:
        """The unrounded ``e`` solving the rule's parameter equation (a quadratic in ``e``)."""
        from workloads.params import attention_params, ffn_params

        if model.moe is not None:
            raise DesError(f"model '{model.name}' has experts: Kraken counterparts are derived for dense models only")
        # One sub-layer: A e^2 + B e ((4 + 2x) e^2 + (9 + x) e for GPT).
        a, b = sublayer_coefficients(model, degree, self.ffn_expansion)
        quad, lin = a * degree, b * degree
        if self.match == "layer_params":
            norms = 2 * (2 if model.norm == "layernorm" else 1) * model.hidden
            target = attention_params(model) + ffn_params(model, model.ffn_hidden) + norms
        else:
            quad = quad * model.layers + degree
            vocab = model.vocab_size * (1 if model.tied_embeddings else 2)
            positions = model.max_positions if model.position == "learned" else 0
            final_norm = 2 if model.norm == "layernorm" else 1
            lin = lin * model.layers + vocab + positions + final_norm + 1
            target = standard_params(model)
        return (-lin + math.sqrt(lin * lin + 4 * quad * target)) / (2 * quad)

    def heads(self, model: ModelSpec, degree: int) -> int:
        """Heads per sub-layer: ``n / N``, or more where those would exceed ``max_head_dim``."""
        heads = _heads_per_sublayer(model, degree)
        if self.max_head_dim is None:
            return heads
        return max(heads, math.ceil(self.exact_width(model, degree) / self.max_head_dim))

    def width(self, model: ModelSpec, degree: int) -> int:
        """``e`` rounded to the nearest multiple of the heads per sub-layer (ties go up)."""
        heads = self.heads(model, degree)
        return max(heads, heads * math.floor(self.exact_width(model, degree) / heads + 0.5))

    def derive(self, model: ModelSpec, degree: int) -> ModelSpec:
        """The Kraken model of ``degree`` sub-layers per layer derived from ``model``.

        A model with a fixed ``kraken`` block uses it (its degree must equal
        ``degree``); otherwise the width comes from this rule.

        Raises
        ------
        DesError
            If ``degree`` does not divide the heads, or differs from a fixed degree.
        """
        if model.is_kraken:
            if model.degree != degree:
                raise DesError(f"model '{model.name}' is a Kraken model of degree {model.degree}, not {degree}")
            return model
        fixed = model.kraken
        if fixed is not None and fixed.degree != degree:
            raise DesError(
                f"model '{model.name}' fixes its Kraken degree at {fixed.degree} "
                f"({model.source}), but TP is {degree}; run it with TP={fixed.degree}"
            )
        heads = _heads_per_sublayer(model, degree)
        kv_heads = None
        if fixed is not None:
            width, ffn = fixed.width, fixed.ffn_hidden
        elif _keeps_head_width(model):
            # Today's models fix the head width (128 for Llama, Mistral, Qwen): the
            # sub-layer keeps it, takes the whole number of heads nearest e / head_dim,
            # and as many KV heads as keep the model's query-to-KV ratio (a divisor).
            d = model.head_dim
            heads = max(1, math.floor(self.exact_width(model, degree) / d + 0.5))
            width = heads * d
            ffn = round(self.ffn_expansion * width)
            target = heads * model.n_kv_heads / model.heads
            kv_heads = max(k for k in range(1, heads + 1) if heads % k == 0 and k <= max(1.0, target))
        else:
            heads = self.heads(model, degree)
            width = self.width(model, degree)
            ffn = round(self.ffn_expansion * width)
        return replace(
            model,
            name=f"{model.name}-kraken{degree}",
            hidden=width,
            heads=heads,
            kv_heads=kv_heads if kv_heads is not None else (
                _sublayer_kv_heads(model, degree, heads) if model.kv_heads is not None else None
            ),
            head_size=model.head_dim if _keeps_head_width(model) and fixed is None else None,
            ffn_hidden=ffn,
            kraken=None,
            degree=degree,
            description=f"Kraken counterpart of {model.name}: {degree} sub-layers of width {width}",
        )


def _heads_per_sublayer(model: ModelSpec, degree: int) -> int:
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
        raise DesError(f"Kraken degree must be a positive whole number, got {degree!r}")
    if model.heads % degree:
        raise DesError(
            f"Kraken degree {degree} does not divide the {model.heads} heads of model '{model.name}'"
        )
    return model.heads // degree


def _sublayer_kv_heads(model: ModelSpec, degree: int, heads: int) -> int:
    """KV heads of a sub-layer of ``heads`` query heads: ``kv_heads / N`` (at least one),
    reduced to a divisor of ``heads`` where the head-width limit added query heads."""
    return math.gcd(heads, max(1, model.n_kv_heads // degree))


def _keeps_head_width(model: ModelSpec) -> bool:
    """Whether the Kraken sub-layer keeps the model's head width: models with rotary
    positions or grouped-query attention (Llama, Mistral, Qwen), whose kernels and
    checkpoints fix it."""
    return model.position == "rope" or model.kv_heads is not None or model.head_size is not None
