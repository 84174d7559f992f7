"""Hugging Face ``config.json`` files read as data (no ``transformers`` needed).

:func:`model_from_hf_config` maps a config's fields onto a :class:`ModelSpec`, by its
``architectures[0]``:

======================================  ==============================================
``LlamaForCausalLM``                    GQA, SwiGLU, RMSNorm, rotary; ``attention_bias``,
``MistralForCausalLM``                  ``mlp_bias``; Mistral's ``sliding_window``
``Qwen2ForCausalLM``                    as Llama, with a QKV bias; a sliding window only
                                        when ``use_sliding_window`` is set
``MixtralForCausalLM``                  Mistral with ``num_local_experts`` experts of
                                        ``intermediate_size``, ``num_experts_per_tok``
``Qwen2MoeForCausalLM``                 ``num_experts`` of ``moe_intermediate_size``, a
                                        gated shared expert of
                                        ``shared_expert_intermediate_size``
``Qwen3MoeForCausalLM``                 ``num_experts`` of ``moe_intermediate_size``, no
                                        shared expert, ``head_dim``
``GPT2LMHeadModel``                     GPT-2/3 style: learned positions, LayerNorm,
                                        GELU, biases, ``n_inner`` (default 4 h), tied
======================================  ==============================================

Fields used: ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
``num_key_value_heads`` (default: the heads), ``head_dim`` (default hidden / heads),
``intermediate_size``, ``vocab_size``, ``tie_word_embeddings``,
``max_position_embeddings``, the expert counts and widths, ``first_k_dense_replace``
and ``torch_dtype``; rope scaling, epsilons and token ids change no kernel and are not
read. ``DeepseekV3ForCausalLM`` is recognised and refused: its multi-head latent
attention (low-rank Q and KV projections, a compressed KV cache) is not modelled, and a
standard-attention stand-in would get its FLOPs, bytes and cache wrong. An unknown
architecture or a missing field is one error naming it and the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from des.errors import DesError
from workloads.model import ModelSpec, MoeConfig

#: ``torch_dtype`` -> des dtype.
TORCH_DTYPES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}

#: Architectures read, and the family each belongs to.
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "llama",
    "MixtralForCausalLM": "llama",
    "Qwen2MoeForCausalLM": "llama",
    "Qwen3MoeForCausalLM": "llama",
    "GPT2LMHeadModel": "gpt2",
}
#: Recognised but not modelled, with the reason.
REFUSED = {
    "DeepseekV3ForCausalLM": "its multi-head latent attention (low-rank Q and KV projections and a compressed "
    "KV cache) is not modelled yet",
    "DeepseekV2ForCausalLM": "its multi-head latent attention is not modelled yet",
}


class _Config:
    """A config's fields, each read once, a missing one an error naming it."""

    def __init__(self, data: dict, where: str, architecture: str) -> None:
        self.data, self.where, self.architecture = data, where, architecture

    def get(self, name: str, default: object = ...) -> object:
        value = self.data.get(name, default)
        if value is ...:
            raise DesError(f"{self.where}: field '{name}' is missing ({self.architecture} needs it)")
        return value

    def integer(self, name: str, default: object = ...) -> int:
        value = self.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise DesError(f"{self.where}: field '{name}' must be a positive whole number, got {value!r}")
        return value

    def optional_integer(self, name: str) -> int | None:
        value = self.data.get(name)
        return None if value is None else self.integer(name)

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise DesError(f"{self.where}: field '{name}' must be true or false, got {value!r}")
        return value


def model_from_hf_config(data: object, where: str, name: str | None = None) -> ModelSpec:
    """A :class:`ModelSpec` from a parsed Hugging Face ``config.json``.

    Parameters
    ----------
    data : dict
        The config.
    where : str
        The file, for messages.
    name : str, optional
        The model's name (default: the config's ``_name_or_path``, else its folder's).

    Raises
    ------
    DesError
        For an unknown or refused architecture, a missing field or a bad value.
    """
    if not isinstance(data, dict):
        raise DesError(f"{where}: a config.json holds one JSON object, got {type(data).__name__}")
    architectures = data.get("architectures")
    if not isinstance(architectures, list) or not architectures or not isinstance(architectures[0], str):
        raise DesError(f"{where}: field 'architectures' is missing (a list naming the model class)")
    architecture = architectures[0]
    if architecture in REFUSED:
        raise DesError(f"{where}: architecture {architecture} is refused: {REFUSED[architecture]}")
    if architecture not in ARCHITECTURES:
        raise DesError(
            f"{where}: unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}"
        )
    c = _Config(data, where, architecture)
    name = name or str(data.get("_name_or_path") or Path(where).parent.name or "model")
    torch_dtype = data.get("torch_dtype") or data.get("dtype")
    dtype = TORCH_DTYPES.get(torch_dtype) if isinstance(torch_dtype, str) else None
    try:
        if ARCHITECTURES[architecture] == "gpt2":
            return _gpt2(c, name, dtype)
        return _llama(c, name, dtype)
    except DesError as exc:
        if str(exc).startswith(where):
            raise
        raise DesError(f"{where}: {exc}") from None


def _gpt2(c: _Config, name: str, dtype: str | None) -> ModelSpec:
    hidden = c.integer("n_embd")
    inner = c.optional_integer("n_inner")
    return ModelSpec(
        name=name, layers=c.integer("n_layer"), hidden=hidden, heads=c.integer("n_head"),
        ffn_hidden=inner or 4 * hidden, vocab_size=c.integer("vocab_size"),
        max_positions=c.integer("n_positions"), tied_embeddings=c.flag("tie_word_embeddings", True),
        description=f"{name} ({c.architecture}, {c.where})", source=c.where, dtype=dtype,
        architecture=c.architecture,
    )


def _llama(c: _Config, name: str, dtype: str | None) -> ModelSpec:
    architecture = c.architecture
    hidden = c.integer("hidden_size")
    heads = c.integer("num_attention_heads")
    kv_heads = c.integer("num_key_value_heads", heads)
    head_size = c.optional_integer("head_dim")
    ffn = c.integer("intermediate_size")
    biases = "none"
    if architecture in ("Qwen2ForCausalLM", "Qwen2MoeForCausalLM"):
        biases = "qkv"  # Qwen2's q, k and v projections carry biases, nothing else does
    elif c.flag("attention_bias", False) or c.flag("mlp_bias", False):
        biases = "all"
    window = None
    if architecture in ("MistralForCausalLM", "MixtralForCausalLM"):
        window = c.optional_integer("sliding_window")
    elif architecture.startswith("Qwen") and c.flag("use_sliding_window", False):
        window = c.optional_integer("sliding_window")
    moe = None
    if architecture == "MixtralForCausalLM":
        moe = MoeConfig(c.integer("num_local_experts"), c.integer("num_experts_per_tok"), ffn)
    elif architecture in ("Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM"):
        if c.get("mlp_only_layers", []) or c.integer("decoder_sparse_step", 1) != 1:
            raise DesError(
                f"{c.where}: dense layers between MoE layers (mlp_only_layers, decoder_sparse_step != 1) are not modelled"
            )
        shared = c.integer("shared_expert_intermediate_size", 0) if architecture == "Qwen2MoeForCausalLM" else 0
        if shared < 0 or isinstance(shared, bool):
            raise DesError(f"{c.where}: field 'shared_expert_intermediate_size' must be a whole number")
        moe = MoeConfig(
            c.integer("num_experts"), c.integer("num_experts_per_tok"), c.integer("moe_intermediate_size"),
            shared_experts=1 if shared else 0, shared_ffn_hidden=shared, shared_gate=bool(shared),
        )
    return ModelSpec(
        name=name, layers=c.integer("num_hidden_layers"), hidden=hidden, heads=heads, ffn_hidden=ffn,
        vocab_size=c.integer("vocab_size"), max_positions=c.integer("max_position_embeddings"),
        tied_embeddings=c.flag("tie_word_embeddings", False), kv_heads=kv_heads, head_size=head_size,
        norm="rmsnorm", activation="swiglu", position="rope", biases=biases, sliding_window=window, moe=moe,
        dtype=dtype, architecture=architecture, description=f"{name} ({architecture}, {c.where})", source=c.where,
    )


def load_hf_config(path: str | Path, name: str | None = None) -> ModelSpec:
    """Read a Hugging Face ``config.json`` file into a :class:`ModelSpec`.

    Raises
    ------
    DesError
        For a missing or unreadable file, bad JSON, or a config :func:`model_from_hf_config` refuses.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DesError(f"{path}: no such file") from None
    except OSError as exc:
        raise DesError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DesError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return model_from_hf_config(data, str(path), name)
