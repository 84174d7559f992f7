"""Model descriptions: the shape of a decoder-only transformer, read from YAML.

A :class:`ModelSpec` holds what the task-graph builders need: layers, hidden width,
heads, FFN width, vocabulary and position-table sizes. Presets live in
``workloads/models/*.yaml`` and are found relative to this file, never the working
directory; a user may instead give the path to a YAML file of the same form::

    name: gpt3-6.7b
    layers: 32
    hidden: 4096
    heads: 32
    ffn_hidden: 16384        # optional, default 4 * hidden
    vocab_size: 50257
    max_positions: 2048
    tied_embeddings: true    # optional, default true (GPT-3 shares input and output)
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
#: Activations the builders know.
ACTIVATIONS = ("gelu",)


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

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "ffn_hidden", "vocab_size", "max_positions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise DesError(f"model {self.name!r}: {name} must be a positive whole number, got {value!r}")
        if self.hidden % self.heads:
            raise DesError(
                f"model {self.name!r}: hidden {self.hidden} is not a multiple of heads {self.heads}"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden // self.heads

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
    "max_positions", "activation", "tied_embeddings", "kraken",
)
_KRAKEN_FIELDS = ("degree", "width", "ffn_expansion")


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
    reader.string("activation", "gelu", choices=ACTIVATIONS)
    tied = reader.raw("tied_embeddings", True)
    if not isinstance(tied, bool):
        raise DesError(f"{where}: field 'tied_embeddings' must be true or false, got {tied!r}")
    kraken = None
    if reader.has("kraken"):
        kraken = _read_kraken(reader.raw("kraken"), f"{where}: kraken")
    reader.finish()
    try:
        model = ModelSpec(
            name, layers, hidden, heads, ffn_hidden, vocab_size, max_positions, tied,
            kraken=kraken, description=description, source=where,
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
        A preset name (see :func:`model_names`), or a path to a YAML file: a string
        ending in ``.yaml``/``.yml`` or containing a path separator is a path.

    Returns
    -------
    ModelSpec

    Raises
    ------
    DesError
        For an unknown preset (listing the known ones, with the nearest), a missing or
        unreadable file, or a bad field (naming the file and the field).
    """
    path = model_path(name_or_path)
    model = model_from_mapping(read_yaml(path), str(path), default_name=path.stem)
    logger.debug("loaded model %s from %s", model.name, path)
    return model
