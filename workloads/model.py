"""Model descriptions: the shape of a decoder-only transformer, read from YAML or a
Hugging Face ``config.json``.

A :class:`ModelSpec` holds what the task-graph builders need: layers, hidden width,
heads and key/value heads, FFN width and kind, normalisation, positions, biases, an
optional mixture of experts, vocabulary. Presets live in ``workloads/models/*.yaml``
and are found relative to this file, never the working directory; a user may instead
give the path to a YAML file of the same form, or to a Hugging Face ``config.json``
(:mod:`workloads.hf_config`)::

    name: gpt3-6.7b
    layers: 32
    hidden: 4096
    heads: 32
    kv_heads: 32             # optional, default heads (grouped-query attention when fewer)
    head_dim: 128            # optional, default hidden / heads
    ffn_hidden: 16384        # optional, default 4 * hidden
    activation: gelu         # gelu (two FFN matrices) or swiglu (gate, up and down)
    norm: layernorm          # layernorm (scale and shift) or rmsnorm (scale)
    position: learned        # learned (a position table) or rope (rotary, no table)
    biases: all              # all (GPT), qkv (Qwen2: the QKV projection only) or none
    sliding_window: 4096     # optional: each query sees at most this many keys
    vocab_size: 50257
    max_positions: 2048
    tied_embeddings: true    # optional, default true (GPT-3 shares input and output)
    dtype: fp16              # optional: the checkpoint's dtype (runs may override it)
    moe:                     # optional: a mixture of experts
      experts: 8             # routed experts
      top_k: 2               # experts per token
      ffn_hidden: 14336      # one expert's FFN width (default the model's ffn_hidden)
      shared_experts: 0      # experts every token goes through (DeepSeek, Qwen2-MoE)
      shared_ffn_hidden: ... # one shared expert's width (default the expert width)
      shared_gate: false     # a sigmoid gate on the shared experts' output (Qwen2-MoE)
      dense_layers: 0        # the first layers keep a dense FFN (DeepSeek's first_k_dense)
    kraken:                  # optional: a fixed Kraken counterpart of this model
      degree: 4              # sub-layers per layer = the TP degree it must run at
      width: 504             # sub-layer width e
      ffn_expansion: 2       # optional, default 2 (the released Kraken configs)

A model with a ``kraken`` block may run as ``standard`` or ``parallel`` at any TP, but
as ``kraken`` only at TP equal to its degree. Without the block, the Kraken counterpart
is derived by :class:`workloads.kraken_rule.KrakenRule`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from des.errors import DesError
from des.operators import dtype_bytes
from des.specs import FieldReader, preset_names, read_yaml, resolve_preset

logger = logging.getLogger(__name__)

#: Folder of the model presets shipped with the package.
MODEL_DIR = Path(__file__).resolve().parent / "models"

#: Megatron-LM pads the vocabulary to a multiple of ``make-vocab-size-divisible-by``
#: (default 128) times the tensor-parallel degree, so each rank's embedding shard is
#: whole and GEMM-friendly (megatron/training/tokenizer: ``_vocab_size_with_padding``).
VOCAB_DIVISIBLE_BY = 128
#: FFN width of GPT-style models as a multiple of the hidden width.
DEFAULT_FFN_MULTIPLE = 4
#: FFN expansion of the released Kraken training configurations (kraken.md).
DEFAULT_KRAKEN_FFN_EXPANSION = 2.0
#: FFN activations the builders know: GELU between two matrices (GPT), or SwiGLU
#: gating of a gate and an up projection before the down one (Llama, Mistral, Qwen).
ACTIVATIONS = ("gelu", "swiglu")
#: Normalisations: LayerNorm (scale and shift) or RMSNorm (scale only).
NORMS = ("layernorm", "rmsnorm")
#: Position encodings: a learned table added to the embeddings, or rotary (no table).
POSITIONS = ("learned", "rope")
#: Which linear layers carry biases: every one (GPT-2/3), the QKV projection only
#: (Qwen2), or none (Llama, Mistral, Mixtral).
BIASES = ("all", "qkv", "none")


@dataclass(frozen=True)
class MoeConfig:
    """A mixture of experts in place of the dense FFN.

    Attributes
    ----------
    experts : int
        Routed experts per MoE layer.
    top_k : int
        Experts each token is sent to.
    ffn_hidden : int
        FFN width of one routed expert.
    shared_experts : int
        Experts every token goes through besides its routed ones.
    shared_ffn_hidden : int
        FFN width of one shared expert.
    shared_gate : bool
        Whether the shared experts' output is scaled by a learned sigmoid gate (an
        ``h x 1`` projection; Qwen2-MoE).
    dense_layers : int
        The first layers that keep a dense FFN of the model's ``ffn_hidden``.
    """

    experts: int
    top_k: int
    ffn_hidden: int
    shared_experts: int = 0
    shared_ffn_hidden: int = 0
    shared_gate: bool = False
    dense_layers: int = 0

    def __post_init__(self) -> None:
        for name in ("experts", "top_k", "ffn_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise DesError(f"moe: {name} must be a positive whole number, got {value!r}")
        for name in ("shared_experts", "shared_ffn_hidden", "dense_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise DesError(f"moe: {name} must be a whole number, zero or more, got {value!r}")
        if self.top_k > self.experts:
            raise DesError(f"moe: top_k {self.top_k} is more than the {self.experts} experts")
        if self.shared_experts and not self.shared_ffn_hidden:
            object.__setattr__(self, "shared_ffn_hidden", self.ffn_hidden)


@dataclass(frozen=True)
class KrakenConfig:
    """A fixed Kraken counterpart of a model, as a model YAML's ``kraken`` block gives it.

    Attributes
    ----------
    degree : int
        Sub-layers per layer, fixed at training time; the TP degree it runs at.
    width : int
        Sub-layer width ``e``.
    ffn_expansion : float
        Sub-layer FFN width as a multiple of ``e``.
    """

    degree: int
    width: int
    ffn_expansion: float = DEFAULT_KRAKEN_FFN_EXPANSION

    @property
    def ffn_hidden(self) -> int:
        """Sub-layer FFN width."""
        return round(self.ffn_expansion * self.width)


@dataclass(frozen=True)
class ModelSpec:
    """The shape of a decoder-only transformer.

    For a Kraken model (``degree`` set), ``hidden``, ``heads`` and ``ffn_hidden``
    describe one sub-layer: width ``e``, ``n / N`` heads, FFN width; every layer holds
    ``degree`` such sub-layers, one per device.

    Attributes
    ----------
    name : str
        Preset or user name, e.g. ``"gpt3-6.7b"``.
    layers : int
        Transformer layers.
    hidden : int
        Residual-stream width ``h`` (``e`` for a Kraken sub-layer).
    heads : int
        Attention heads (per sub-layer for a Kraken model).
    ffn_hidden : int
        FFN inner width ``F``.
    vocab_size : int
        Tokenizer vocabulary, before padding.
    max_positions : int
        Rows of the learned position table.
    tied_embeddings : bool
        Whether the LM head reuses the token embedding (GPT-3 does).
    kraken : KrakenConfig or None
        A fixed Kraken counterpart, from the YAML file.
    degree : int or None
        Kraken degree ``N`` when this spec is a Kraken model; ``None`` otherwise.
    description : str
        Free text.
    source : str
        The file it was read from, or ``"<built>"``.
    kv_heads : int or None
        Key/value heads (grouped-query attention when fewer than ``heads``, multi-query
        when 1); ``None``: as many as ``heads``.
    head_size : int or None
        Width of one head when the model fixes it (``head_dim`` of Llama-3, Qwen3);
        ``None``: ``hidden / heads``.
    norm, activation, position, biases : str
        One of :data:`NORMS`, :data:`ACTIVATIONS`, :data:`POSITIONS`, :data:`BIASES`.
    sliding_window : int or None
        Keys a query sees at most (Mistral's sliding window); ``None``: all.
    moe : MoeConfig or None
        A mixture of experts in place of the dense FFN.
    dtype : str or None
        The checkpoint's element type; runs use it unless told otherwise.
    architecture : str
        The Hugging Face architecture the model was read as, or ``"gpt"``.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    ffn_hidden: int
    vocab_size: int = 50257
    max_positions: int = 2048
    tied_embeddings: bool = True
    kraken: KrakenConfig | None = None
    degree: int | None = None
    description: str = ""
    source: str = "<built>"
    kv_heads: int | None = None
    head_size: int | None = None
    norm: str = "layernorm"
    activation: str = "gelu"
    position: str = "learned"
    biases: str = "all"
    sliding_window: int | None = None
    moe: MoeConfig | None = None
    dtype: str | None = None
    architecture: str = "gpt"

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "ffn_hidden", "vocab_size", "max_positions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise DesError(f"model {self.name!r}: {name} must be a positive whole number, got {value!r}")
        for name in ("kv_heads", "head_size", "sliding_window"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise DesError(f"model {self.name!r}: {name} must be a positive whole number, got {value!r}")
        if self.head_size is None and self.hidden % self.heads:
            raise DesError(
                f"model {self.name!r}: hidden {self.hidden} is not a multiple of heads {self.heads}"
            )
        if self.heads % self.n_kv_heads:
            raise DesError(f"model {self.name!r}: kv_heads {self.n_kv_heads} does not divide heads {self.heads}")
        for name, allowed in (("norm", NORMS), ("activation", ACTIVATIONS), ("position", POSITIONS), ("biases", BIASES)):
            if getattr(self, name) not in allowed:
                raise DesError(f"model {self.name!r}: unknown {name} {getattr(self, name)!r}; known: {', '.join(allowed)}")
        if self.moe is not None and self.moe.dense_layers > self.layers:
            raise DesError(f"model {self.name!r}: moe.dense_layers {self.moe.dense_layers} exceeds the {self.layers} layers")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.head_size if self.head_size is not None else self.hidden // self.heads

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads (``heads`` unless grouped-query)."""
        return self.heads if self.kv_heads is None else self.kv_heads

    @property
    def q_width(self) -> int:
        """Width of all query heads together (``hidden`` unless ``head_dim`` is fixed)."""
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Width of all key (or value) heads together."""
        return self.n_kv_heads * self.head_dim

    def is_moe_layer(self, index: int) -> bool:
        """Whether layer ``index`` (0-based) has experts in place of the dense FFN."""
        return self.moe is not None and index >= self.moe.dense_layers

    @property
    def is_kraken(self) -> bool:
        """Whether this spec describes Kraken sub-layers."""
        return self.degree is not None

    def padded_vocab(self, tp: int) -> int:
        """Vocabulary padded Megatron-style to a multiple of ``128 * tp``."""
        multiple = VOCAB_DIVISIBLE_BY * tp
        return -(-self.vocab_size // multiple) * multiple


def model_names() -> list[str]:
    """Names of the model presets shipped with des, sorted.

    Returns
    -------
    list of str
        E.g. ``["gpt3-1.3b", "gpt3-13b", ...]``.
    """
    return preset_names(MODEL_DIR)


def model_path(name_or_path: str) -> Path:
    """The YAML file of a model preset name or path (an unknown preset is an error)."""
    return resolve_preset(name_or_path, MODEL_DIR, "model")


_MODEL_FIELDS = (
    "name", "description", "layers", "hidden", "heads", "ffn_hidden", "vocab_size",
    "max_positions", "activation", "tied_embeddings", "kraken", "kv_heads", "head_dim",
    "norm", "position", "biases", "sliding_window", "dtype", "moe",
)
_KRAKEN_FIELDS = ("degree", "width", "ffn_expansion")
_MOE_FIELDS = ("experts", "top_k", "ffn_hidden", "shared_experts", "shared_ffn_hidden", "shared_gate", "dense_layers")


def _reader(data: object, where: str, known: tuple[str, ...]) -> FieldReader:
    """A reader that has already rejected unknown fields, so a misspelt name is
    reported as such (with the nearest known name), not as a missing field."""
    reader = FieldReader(data, where)
    reader.used.update(known)
    reader.finish()
    reader.used.clear()
    return reader


def _read_kraken(data: object, where: str) -> KrakenConfig:
    reader = _reader(data, where, _KRAKEN_FIELDS)
    degree = reader.integer("degree")
    width = reader.integer("width")
    expansion = reader.quantity("ffn_expansion", "number", DEFAULT_KRAKEN_FFN_EXPANSION)
    reader.finish()
    return KrakenConfig(degree, width, expansion)


def _read_moe(data: object, where: str, ffn_hidden: int) -> MoeConfig:
    reader = _reader(data, where, _MOE_FIELDS)
    experts = reader.integer("experts")
    top_k = reader.integer("top_k")
    width = reader.integer("ffn_hidden", ffn_hidden)
    shared = reader.integer("shared_experts", 0, minimum=0)
    shared_width = reader.integer("shared_ffn_hidden", width if shared else 0, minimum=0)
    gate = reader.raw("shared_gate", False)
    if not isinstance(gate, bool):
        raise DesError(f"{where}: field 'shared_gate' must be true or false, got {gate!r}")
    dense = reader.integer("dense_layers", 0, minimum=0)
    reader.finish()
    try:
        return MoeConfig(experts, top_k, width, shared, shared_width, gate, dense)
    except DesError as exc:
        raise DesError(f"{where}: {exc}") from None


def _optional_int(reader: FieldReader, name: str) -> int | None:
    return reader.integer(name) if reader.has(name) and reader.raw(name) is not None else None


def model_from_mapping(data: object, where: str, default_name: str = "model") -> ModelSpec:
    """Build a :class:`ModelSpec` from a parsed YAML mapping.

    Parameters
    ----------
    data : mapping
        The model's fields (see the module docstring).
    where : str
        File name, used in error messages.
    default_name : str
        Name used when the mapping has no ``name`` field.

    Returns
    -------
    ModelSpec

    Raises
    ------
    DesError
        For a missing, unknown (with a did-you-mean) or invalid field.
    """
    reader = _reader(data, where, _MODEL_FIELDS)
    name = reader.string("name", default_name)
    description = reader.string("description", "")
    layers = reader.integer("layers")
    hidden = reader.integer("hidden")
    heads = reader.integer("heads")
    ffn_hidden = reader.integer("ffn_hidden", DEFAULT_FFN_MULTIPLE * hidden)
    vocab_size = reader.integer("vocab_size")
    max_positions = reader.integer("max_positions")
    activation = reader.string("activation", "gelu", choices=ACTIVATIONS)
    norm = reader.string("norm", "layernorm", choices=NORMS)
    position = reader.string("position", "learned", choices=POSITIONS)
    biases = reader.string("biases", "all", choices=BIASES)
    kv_heads = _optional_int(reader, "kv_heads")
    head_size = _optional_int(reader, "head_dim")
    window = _optional_int(reader, "sliding_window")
    dtype = reader.string("dtype", "") or None
    if dtype is not None:
        try:
            dtype_bytes(dtype)
        except DesError as exc:
            raise DesError(f"{where}: field 'dtype': {exc}") from None
    tied = reader.raw("tied_embeddings", True)
    if not isinstance(tied, bool):
        raise DesError(f"{where}: field 'tied_embeddings' must be true or false, got {tied!r}")
    kraken = None
    if reader.has("kraken"):
        kraken = _read_kraken(reader.raw("kraken"), f"{where}: kraken")
    moe = _read_moe(reader.raw("moe"), f"{where}: moe", ffn_hidden) if reader.has("moe") else None
    reader.finish()
    try:
        model = ModelSpec(
            name, layers, hidden, heads, ffn_hidden, vocab_size, max_positions, tied,
            kraken=kraken, description=description, source=where, kv_heads=kv_heads, head_size=head_size,
            norm=norm, activation=activation, position=position, biases=biases, sliding_window=window,
            moe=moe, dtype=dtype,
        )
    except DesError as exc:
        raise DesError(f"{where}: {exc}") from None
    if kraken is not None and heads % kraken.degree:
        raise DesError(
            f"{where}: kraken degree {kraken.degree} does not divide the {heads} heads"
        )
    if kraken is not None and kraken.width % (heads // kraken.degree):
        raise DesError(
            f"{where}: kraken width {kraken.width} is not a multiple of the "
            f"{heads // kraken.degree} heads per sub-layer"
        )
    return model


def load_model(name_or_path: str) -> ModelSpec:
    """Load a model preset or a model YAML file.

    Parameters
    ----------
    name_or_path : str
        A preset name (see :func:`model_names`), a path to a YAML file (a string ending
        in ``.yaml``/``.yml`` or containing a path separator), or a path to a Hugging
        Face ``config.json`` (ending in ``.json``; :mod:`workloads.hf_config`).

    Returns
    -------
    ModelSpec

    Raises
    ------
    DesError
        For an unknown preset (listing the known ones, with the nearest), a missing or
        unreadable file, or a bad field (naming the file and the field).
    """
    if isinstance(name_or_path, str) and name_or_path.endswith(".json"):
        from workloads.hf_config import load_hf_config

        return load_hf_config(name_or_path)
    path = model_path(name_or_path)
    model = model_from_mapping(read_yaml(path), str(path), default_name=path.stem)
    logger.debug("loaded model %s from %s", model.name, path)
    return model
