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

#: Weights and biases of one layer besides the four attention and two FFN matrices:
#: QKV (3w), output (w) and FFN-down (w) biases and two LayerNorms (scale and shift, 4w).
_LAYER_VECTOR_WIDTHS = 3 + 1 + 1 + 4


def layer_params(width: int | float, ffn_hidden: int | float) -> float:
    """Parameters of one pre-LN transformer layer (or one Kraken sub-layer).

    ``4 w^2`` attention weights, ``2 w F`` FFN weights, ``F + 9 w`` biases and
    LayerNorm parameters: ``12 h^2 + 13 h`` for a GPT layer with ``F = 4 h``.
    """
    return 4 * width * width + 2 * width * ffn_hidden + ffn_hidden + _LAYER_VECTOR_WIDTHS * width


def standard_params(model: ModelSpec) -> float:
    """Parameters of a standard model: layers, embeddings, final LayerNorm, LM head if untied."""
    h = model.hidden
    embeddings = (model.vocab_size + model.max_positions) * h
    head = 0 if model.tied_embeddings else model.vocab_size * h
    return model.layers * layer_params(h, model.ffn_hidden) + embeddings + 2 * h + head


def kraken_params(model: ModelSpec, degree: int, width: float, ffn_expansion: float) -> float:
    """Parameters of a Kraken model of ``degree`` sub-layers of ``width`` per layer.

    Layers, token and position embeddings of width ``e``, the final ``N e -> e``
    projection with its bias, the final LayerNorm, and the LM head if untied.
    """
    e = width
    embeddings = (model.vocab_size + model.max_positions) * e
    head = 0 if model.tied_embeddings else model.vocab_size * e
    projection = degree * e * e + e
    sublayers = model.layers * degree * layer_params(e, ffn_expansion * e)
    return sublayers + embeddings + projection + 2 * e + head


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
        x = self.ffn_expansion
        # One sub-layer: (4 + 2x) e^2 + (9 + x) e.
        quad = (4 + 2 * x) * degree
        lin = (_LAYER_VECTOR_WIDTHS + x) * degree
        if self.match == "layer_params":
            target = layer_params(model.hidden, model.ffn_hidden)
        else:
            quad = quad * model.layers + degree
            vocab = model.vocab_size * (1 if model.tied_embeddings else 2)
            lin = lin * model.layers + vocab + model.max_positions + 3
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
        if fixed is not None:
            width, ffn = fixed.width, fixed.ffn_hidden
        else:
            heads = self.heads(model, degree)
            width = self.width(model, degree)
            ffn = round(self.ffn_expansion * width)
        return replace(
            model,
            name=f"{model.name}-kraken{degree}",
            hidden=width,
            heads=heads,
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
