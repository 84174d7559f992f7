"""Per-device dimensions of one inference step, shared by the builder, memory and counts.

:func:`shapes_for` reduces a model, an architecture, a phase and a TP degree to the
numbers every kernel shape is made of: rows ``T = batch * S``, keys attended, the
residual width, and each device's share of heads, FFN and vocabulary. Standard and
parallel architectures divide heads, FFN and vocabulary by ``t``; Kraken keeps its
sub-layer whole on each device and divides only the vocabulary.
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

    @property
    def rows(self) -> int:
        """Token rows ``T = batch * S`` of every GEMM."""
        return self.batch * self.rows_per_seq

    @property
    def attn_width(self) -> int:
        """Width of this device's queries (= keys = values): its heads times head width."""
        return self.heads * self.head_dim

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
    )
