"""Per-device dimensions of one inference step, shared by the builder, memory and counts.

:func:`shapes_for` reduces a model, an architecture, a phase and a TP degree to the
numbers every kernel shape is made of: rows ``T = batch * S``, keys attended, the
residual width, and each device's share of query heads, key/value heads, FFN and
vocabulary. Standard, parallel and ladder architectures divide heads, FFN and
vocabulary by ``t``; key/value heads are divided too while there are at least ``t`` of
them, and replicated (one per device, each held by ``t / kv_heads`` devices) beyond;
Kraken keeps its sub-layer whole on each device and divides only the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

from des.operators import dtype_bytes
from workloads.model import ModelSpec

#: Phases of inference.
PHASES = ("prefill", "decode")
#: Ways of computing attention.
ATTENTIONS = ("fused", "unfused")


@dataclass(frozen=True)
class Shapes:
    """Dimensions of one step on one device.

    Attributes
    ----------
    phase, dtype : str
        As asked.
    bytes_per_element : int
        Of ``dtype``.
    tp : int
        Devices.
    batch : int
        Sequences ``B``.
    rows_per_seq : int
        Query rows per sequence ``S``: the prompt in prefill, 1 in decode.
    kv_len : int
        Keys each query row attends to (``S`` in prefill, the KV length in decode).
    kv_cache_len : int
        KV-cache slots per sequence held after the step (prompt, or KV length + 1).
    causal : bool
        Whether attention is masked (prefill).
    width : int
        Residual-stream width (``h``, or ``e`` for Kraken).
    heads : int
        Attention heads on one device.
    head_dim : int
        Width of one head.
    ffn_width : int
        FFN inner width on one device.
    vocab_padded : int
        Vocabulary padded to a multiple of ``128 * tp``.
    positions : int
        Rows of the position table.
    kv_heads : int
        Key/value heads on one device.
    norm, activation, position, biases : str
        The model's kinds (:mod:`workloads.model`).
    window : int or None
        The sliding window of attention, if any.
    """

    phase: str
    dtype: str
    bytes_per_element: int
    tp: int
    batch: int
    rows_per_seq: int
    kv_len: int
    kv_cache_len: int
    causal: bool
    width: int
    heads: int
    head_dim: int
    ffn_width: int
    vocab_padded: int
    positions: int
    kv_heads: int = 0
    norm: str = "layernorm"
    activation: str = "gelu"
    position: str = "learned"
    biases: str = "all"
    window: int | None = None

    def __post_init__(self) -> None:
        if not self.kv_heads:
            object.__setattr__(self, "kv_heads", self.heads)

    @property
    def rows(self) -> int:
        """Token rows ``T = batch * S`` of every GEMM."""
        return self.batch * self.rows_per_seq

    @property
    def attn_width(self) -> int:
        """Width of this device's queries (= keys = values): its heads times head width."""
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Width of this device's keys (or values): its KV heads times head width."""
        return self.kv_heads * self.head_dim

    @property
    def qkv_width(self) -> int:
        """Outputs of this device's fused QKV projection."""
        return self.attn_width + 2 * self.kv_width

    @property
    def position_table_rows(self) -> int:
        """Rows of the learned position table (none with rotary positions)."""
        return self.positions if self.position == "learned" else 0

    @property
    def vocab_per_device(self) -> int:
        """This device's share of the padded vocabulary."""
        return self.vocab_padded // self.tp

    @property
    def residual_bytes(self) -> float:
        """Bytes of the residual stream ``T x width``: the all-reduce message."""
        return float(self.rows * self.width * self.bytes_per_element)

    @property
    def logits_bytes(self) -> float:
        """Bytes of the gathered logits (``batch x padded vocabulary``)."""
        return float(self.batch * self.vocab_padded * self.bytes_per_element)


def shapes_for(
    model: ModelSpec, arch: str, phase: str, tp: int, batch: int, seq: int, kv_len: int | None, dtype: str
) -> Shapes:
    """The :class:`Shapes` of ``model`` (already the Kraken model for ``kraken``)."""
    split = 1 if arch == "kraken" else tp
    kv = model.n_kv_heads
    kv_per_device = kv if split == 1 else (kv // split if kv >= split else 1)
    prefill = phase == "prefill"
    keys = seq if prefill else int(kv_len or 0)
    return Shapes(
        phase=phase,
        dtype=dtype,
        bytes_per_element=dtype_bytes(dtype),
        tp=tp,
        batch=batch,
        rows_per_seq=seq if prefill else 1,
        kv_len=keys,
        # Decode appends the new token's keys and values to the cache.
        kv_cache_len=seq if prefill else keys + 1,
        causal=prefill,
        width=model.hidden,
        heads=model.heads // split,
        head_dim=model.head_dim,
        ffn_width=model.ffn_hidden // split,
        vocab_padded=model.padded_vocab(tp),
        positions=model.max_positions,
        kv_heads=kv_per_device,
        norm=model.norm,
        activation=model.activation,
        position=model.position,
        biases=model.biases,
        window=model.sliding_window,
    )
