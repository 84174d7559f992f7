"""Operators: the shapes the mapper schedules, as pure data.

Each operator is a frozen dataclass that checks its shape when built (whole, positive
dimensions and a known dtype, else :class:`~des.errors.DesError`) and knows its
``op_class`` (the class of launch overhead and metrics), its useful ``flops``, the
least DRAM traffic any schedule needs (``min_dram_bytes``: every input read once and
every output written once) and a stable ``key()`` used by the schedule cache.

Operators
---------
:class:`Matmul`
    ``C[M, N] = A[M, K] @ B[K, N]``; the GEMV path when ``M`` or ``N`` is 1.
:class:`BatchedMatmul`
    ``B`` independent matmuls of the same shape.
:class:`Softmax`, :class:`LayerNorm`
    Row-wise over ``cols``, for ``rows`` rows.
:class:`Gelu`, :class:`ElementwiseAdd`
    Element-wise over ``elements``.
:class:`RMSNorm`, :class:`TopKSoftmax`
    Row-wise: Llama's RMS normalisation; MoE routing (softmax over experts, top ``k``).
:class:`Silu`, :class:`SwiGLU`, :class:`Rotary`, :class:`TokenPermute`
    Element-wise: activations, SwiGLU gating, rotary embedding, MoE token dispatch and
    combine.
:class:`GroupedMatmul`
    Many experts' GEMMs in one kernel.
:class:`Attention`
    Fused attention in the flash style: ``softmax(Q K^T / sqrt(d)) V`` per batch and
    head, tiled so the ``q_len x kv_len`` score matrix never goes to DRAM; ``causal``
    masks key ``j`` for query ``i`` when ``j > kv_len - q_len + i`` (queries are the
    last ``q_len`` positions, as in decoding with a KV cache).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields
from typing import ClassVar

from des.errors import DesError

#: Bytes per element of each supported dtype.
DTYPES: dict[str, int] = {"fp16": 2, "bf16": 2, "fp32": 4, "fp8": 1, "int8": 1}


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of ``dtype``; an unknown dtype is a :class:`DesError`."""
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise DesError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _check_dims(op: object, names: tuple[str, ...]) -> None:
    """Reject non-integer, zero or negative dimensions, naming the operator and field."""
    kind = type(op).__name__
    for name in names:
        value = getattr(op, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise DesError(f"{kind}: {name} must be a whole number, got {value!r}")
        if value <= 0:
            raise DesError(f"{kind}: {name} must be positive, got {value!r}")
        object.__setattr__(op, name, int(value))
    dtype_bytes(op.dtype)  # type: ignore[attr-defined]


class _OperatorBase:
    """Shared behaviour: ``key()``, ``bytes_per_element`` and a readable description."""

    op_class: ClassVar[str] = ""
    kind: ClassVar[str] = ""

    def _dims(self) -> list[tuple[str, object]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "dtype"]  # type: ignore[arg-type]

    @property
    def bytes_per_element(self) -> int:
        """Bytes of one element of this operator's dtype."""
        return DTYPES[self.dtype]  # type: ignore[attr-defined]

    def key(self) -> str:
        """A stable text key naming the operator, its shape and dtype (for caching)."""
        dims = "/".join(f"{name}={value}" for name, value in self._dims())
        return f"{self.kind}/{dims}/{self.dtype}"  # type: ignore[attr-defined]

    def describe(self) -> str:
        """Readable description, e.g. ``"matmul(M=1024, K=12288, N=12288, fp16)"``."""
        dims = ", ".join(f"{name}={value}" for name, value in self._dims())
        return f"{self.kind}({dims}, {self.dtype})"  # type: ignore[attr-defined]


class _MatmulMath(_OperatorBase):
    """FLOPs and bytes shared by :class:`Matmul` and :class:`BatchedMatmul`."""

    op_class: ClassVar[str] = "matmul"

    @property
    def batch(self) -> int:
        """Number of independent matmuls."""
        return 1

    @property
    def is_gemv(self) -> bool:
        """Whether this is a matrix-vector product (``M`` or ``N`` is 1)."""
        return self.M == 1 or self.N == 1  # type: ignore[attr-defined]

    @property
    def flops(self) -> float:
        """Multiply-adds counted as 2 FLOP."""
        return 2.0 * self.batch * self.M * self.K * self.N  # type: ignore[attr-defined]

    @property
    def min_dram_bytes(self) -> float:
        """A and B read once, C written once."""
        M, K, N = self.M, self.K, self.N  # type: ignore[attr-defined]
        return float(self.batch * (M * K + K * N + M * N) * self.bytes_per_element)


@dataclass(frozen=True)
class Matmul(_MatmulMath):
    """``C[M, N] = A[M, K] @ B[K, N]`` in one dtype (inputs and output)."""

    M: int
    K: int
    N: int
    dtype: str = "fp16"
    kind: ClassVar[str] = "matmul"

    def __post_init__(self) -> None:
        _check_dims(self, ("M", "K", "N"))


@dataclass(frozen=True)
class BatchedMatmul(_MatmulMath):
    """``B`` independent matmuls ``C_i[M, N] = A_i[M, K] @ B_i[K, N]``."""

    B: int
    M: int
    K: int
    N: int
    dtype: str = "fp16"
    kind: ClassVar[str] = "bmm"

    def __post_init__(self) -> None:
        _check_dims(self, ("B", "M", "K", "N"))

    @property
    def batch(self) -> int:
        """Number of independent matmuls."""
        return self.B


@dataclass(frozen=True)
class _RowWise(_OperatorBase):
    """An operator that normalises each of ``rows`` rows over its ``cols`` columns."""

    rows: int
    cols: int
    dtype: str = "fp16"

    def __post_init__(self) -> None:
        _check_dims(self, ("rows", "cols"))

    @property
    def elements(self) -> int:
        """Elements of the input."""
        return self.rows * self.cols


@dataclass(frozen=True)
class Softmax(_RowWise):
    """Softmax over ``cols`` for each of ``rows`` rows."""

    op_class: ClassVar[str] = "softmax"
    kind: ClassVar[str] = "softmax"

    @property
    def flops(self) -> float:
        """Max, subtract, exponential (counted as 1), sum and divide: 5 per element."""
        return 5.0 * self.elements

    @property
    def min_dram_bytes(self) -> float:
        """Input read once, output written once."""
        return 2.0 * self.elements * self.bytes_per_element


@dataclass(frozen=True)
class LayerNorm(_RowWise):
    """Layer normalisation over ``cols`` with a scale and a shift, for ``rows`` rows."""

    op_class: ClassVar[str] = "layernorm"
    kind: ClassVar[str] = "layernorm"

    @property
    def flops(self) -> float:
        """Mean, variance, normalise, scale and shift: 8 per element."""
        return 8.0 * self.elements

    @property
    def min_dram_bytes(self) -> float:
        """Input read and output written once, plus the scale and shift vectors."""
        return float((2 * self.elements + 2 * self.cols) * self.bytes_per_element)


@dataclass(frozen=True)
class _Elementwise(_OperatorBase):
    """An operator applied independently to each of ``elements`` values."""

    elements: int
    dtype: str = "fp16"

    def __post_init__(self) -> None:
        _check_dims(self, ("elements",))


@dataclass(frozen=True)
class Gelu(_Elementwise):
    """GELU of ``elements`` values."""

    op_class: ClassVar[str] = "gelu"
    kind: ClassVar[str] = "gelu"

    @property
    def flops(self) -> float:
        """The tanh form: 8 arithmetic operations and one tanh (counted as 1)."""
        return 9.0 * self.elements

    @property
    def min_dram_bytes(self) -> float:
        """Input read once, output written once."""
        return 2.0 * self.elements * self.bytes_per_element


@dataclass(frozen=True)
class ElementwiseAdd(_Elementwise):
    """``c = a + b`` over ``elements`` values."""

    op_class: ClassVar[str] = "elementwise"
    kind: ClassVar[str] = "add"

    @property
    def flops(self) -> float:
        """One addition per element."""
        return float(self.elements)

    @property
    def min_dram_bytes(self) -> float:
        """Two inputs read once, the output written once."""
        return 3.0 * self.elements * self.bytes_per_element


@dataclass(frozen=True)
class Copy(_Elementwise):
    """A device-to-device copy of ``elements`` values (``cudaMemcpyAsync`` on the device)."""

    op_class: ClassVar[str] = "elementwise"
    kind: ClassVar[str] = "copy"

    @property
    def flops(self) -> float:
        """No arithmetic."""
        return 0.0

    @property
    def min_dram_bytes(self) -> float:
        """Read once, written once."""
        return 2.0 * self.elements * self.bytes_per_element


@dataclass(frozen=True)
class RMSNorm(_RowWise):
    """RMS normalisation over ``cols`` (Llama's): ``x / sqrt(mean(x^2) + eps) * g``."""

    op_class: ClassVar[str] = "layernorm"
    kind: ClassVar[str] = "rmsnorm"

    @property
    def flops(self) -> float:
        """Square, add (the mean), scale by 1/rms and by the weight: 4 per element."""
        return 4.0 * self.elements

    @property
    def min_dram_bytes(self) -> float:
        """The input read and output written once, and the weight (no bias)."""
        return float((2 * self.elements + self.cols) * self.bytes_per_element)


@dataclass(frozen=True)
class Silu(_Elementwise):
    """SiLU, ``x * sigmoid(x)``: an activation kernel (launch class ``gelu``)."""

    op_class: ClassVar[str] = "gelu"
    kind: ClassVar[str] = "silu"

    @property
    def flops(self) -> float:
        """Negate, add one, divide, multiply, and the exponential: 4 plus an exp per element."""
        return 5.0 * self.elements

    @property
    def min_dram_bytes(self) -> float:
        return 2.0 * self.elements * self.bytes_per_element


@dataclass(frozen=True)
class SwiGLU(_Elementwise):
    """SwiGLU gating, ``silu(gate) * up``, over ``elements`` outputs (two inputs each)."""

    op_class: ClassVar[str] = "gelu"
    kind: ClassVar[str] = "swiglu"

    @property
    def flops(self) -> float:
        """SiLU's 4 plus the gating multiply, and the exponential."""
        return 6.0 * self.elements

    @property
    def min_dram_bytes(self) -> float:
        return 3.0 * self.elements * self.bytes_per_element


@dataclass(frozen=True)
class Rotary(_OperatorBase):
    """Rotary position embedding of ``tokens x heads`` vectors of ``head_dim`` (in place
    on Q or K): each pair rotated by its position's angle from cos / sin tables."""

    tokens: int
    heads: int
    head_dim: int
    dtype: str = "fp16"
    op_class: ClassVar[str] = "elementwise"
    kind: ClassVar[str] = "rotary"

    def __post_init__(self) -> None:
        _check_dims(self, ("tokens", "heads", "head_dim"))
        if self.head_dim % 2:
            raise DesError(f"Rotary: head_dim must be even, got {self.head_dim}")

    @property
    def elements(self) -> int:
        return self.tokens * self.heads * self.head_dim

    @property
    def flops(self) -> float:
        """Per pair two multiplies and an add for each of its two outputs: 3 per element."""
        return 3.0 * self.elements

    @property
    def min_dram_bytes(self) -> float:
        """The vectors read and written, and one cos and one sin per token and pair."""
        tables = 2 * self.tokens * (self.head_dim // 2)
        return float((2 * self.elements + tables) * self.bytes_per_element)


@dataclass(frozen=True)
class TopKSoftmax(_OperatorBase):
    """MoE routing: softmax over ``cols`` experts for each of ``rows`` tokens, then the
    ``k`` largest (their weights and expert indices written)."""

    rows: int
    cols: int
    k: int = 2
    dtype: str = "fp16"
    op_class: ClassVar[str] = "softmax"
    kind: ClassVar[str] = "topk_softmax"

    def __post_init__(self) -> None:
        _check_dims(self, ("rows", "cols", "k"))
        if self.k > self.cols:
            raise DesError(f"TopKSoftmax: k ({self.k}) exceeds the {self.cols} experts")

    @property
    def elements(self) -> int:
        return self.rows * self.cols

    @property
    def flops(self) -> float:
        """Softmax's 5 per element plus a running top-k compare per element and kept slot."""
        return (5.0 + self.k) * self.elements

    @property
    def min_dram_bytes(self) -> float:
        """The router logits read; a weight (2 B) and an index (4 B) per kept expert written."""
        return float(self.elements * self.bytes_per_element + self.rows * self.k * (self.bytes_per_element + 4))


@dataclass(frozen=True)
class TokenPermute(_OperatorBase):
    """MoE dispatch or combine on one device: ``tokens`` rows of ``hidden`` gathered to
    (or scattered back from) their ``k`` experts' contiguous blocks; combine also sums
    the ``k`` copies weighted."""

    tokens: int
    hidden: int
    k: int = 2
    combine: bool = False
    dtype: str = "fp16"
    op_class: ClassVar[str] = "elementwise"
    kind: ClassVar[str] = "token_permute"

    def __post_init__(self) -> None:
        if not isinstance(self.combine, bool):
            raise DesError(f"TokenPermute: combine must be true or false, got {self.combine!r}")
        _check_dims(self, ("tokens", "hidden", "k"))

    def _dims(self) -> list[tuple[str, object]]:
        return [("tokens", self.tokens), ("hidden", self.hidden), ("k", self.k), ("combine", int(self.combine))]

    @property
    def elements(self) -> int:
        return self.tokens * self.k * self.hidden

    @property
    def flops(self) -> float:
        """Dispatch copies; combine multiplies each copy by its weight and adds: 2 per element."""
        return 2.0 * self.elements if self.combine else 0.0

    @property
    def min_dram_bytes(self) -> float:
        """Dispatch reads each token once and writes its k copies; combine reads the k
        copies and writes one token."""
        one = self.tokens * self.hidden
        return float((one + self.elements) * self.bytes_per_element)


@dataclass(frozen=True)
class GroupedMatmul(_OperatorBase):
    """Many experts' GEMMs in one kernel (MoE's grouped GEMM): expert ``i`` computes
    ``[tokens_i, K] @ [K, N]`` with its own weights; ``tokens`` lists ``tokens_i``
    (an expert with none is skipped, as the kernels do)."""

    tokens: tuple[int, ...]
    K: int
    N: int
    dtype: str = "fp16"
    op_class: ClassVar[str] = "matmul"
    kind: ClassVar[str] = "grouped_matmul"

    def __post_init__(self) -> None:
        if not isinstance(self.tokens, tuple) or not self.tokens:
            raise DesError(f"GroupedMatmul: tokens must be a non-empty tuple of per-expert counts, got {self.tokens!r}")
        for count in self.tokens:
            if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
                raise DesError(f"GroupedMatmul: every expert's token count must be a whole number >= 0, got {count!r}")
        if not any(self.tokens):
            raise DesError("GroupedMatmul: no expert has a token")
        _check_dims(self, ("K", "N"))

    def _dims(self) -> list[tuple[str, object]]:
        return [("tokens", ",".join(map(str, self.tokens))), ("K", self.K), ("N", self.N)]

    @property
    def experts_used(self) -> int:
        return sum(1 for count in self.tokens if count)

    @property
    def flops(self) -> float:
        return 2.0 * sum(self.tokens) * self.K * self.N

    @property
    def min_dram_bytes(self) -> float:
        """Each used expert's weights, every token's input and output, once."""
        total = sum(self.tokens)
        return float((self.experts_used * self.K * self.N + total * (self.K + self.N)) * self.bytes_per_element)


@dataclass(frozen=True)
class Attention(_OperatorBase):
    """Fused (flash) attention for ``batch x heads`` heads of ``head_dim``; ``kv_heads``
    key/value heads (grouped-query attention: each serves ``heads / kv_heads`` query
    heads; multi-query when 1; default: as many as query heads)."""

    batch: int
    heads: int
    q_len: int
    kv_len: int
    head_dim: int
    causal: bool = False
    dtype: str = "fp16"
    kv_heads: int | None = None
    #: Sliding-window attention (Mistral): each query sees at most this many of the most
    #: recent keys, itself included; ``None``: all of them.
    window: int | None = None
    op_class: ClassVar[str] = "attention"
    kind: ClassVar[str] = "attention"

    def __post_init__(self) -> None:
        if not isinstance(self.causal, bool):
            raise DesError(f"Attention: causal must be true or false, got {self.causal!r}")
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        _check_dims(self, ("batch", "heads", "q_len", "kv_len", "head_dim", "kv_heads"))
        if self.window is not None:
            _check_dims(self, ("window",))
        if self.heads % self.kv_heads:
            raise DesError(f"Attention: kv_heads ({self.kv_heads}) must divide heads ({self.heads})")

    def _dims(self) -> list[tuple[str, object]]:
        return [
            ("batch", self.batch),
            ("heads", self.heads),
            ("q_len", self.q_len),
            ("kv_len", self.kv_len),
            ("head_dim", self.head_dim),
            ("causal", int(self.causal)),
        ] + ([("kv_heads", self.kv_heads)] if self.kv_heads != self.heads else []) + (
            [("window", self.window)] if self.window is not None else []
        )

    def visible_keys(self) -> int:
        """Keys the last query row sees: all, or the window's."""
        return self.kv_len if self.window is None else min(self.kv_len, self.window)

    def keys_seen(self) -> int:
        """Unmasked query-key pairs of one head (all of them unless ``causal`` or a window)."""
        window = self.window
        if not self.causal:
            return self.q_len * self.visible_keys()
        # Query i (0-based) sees c_i = offset + i + 1 keys (consecutive values, clipped at
        # zero), at most the window.
        offset = self.kv_len - self.q_len
        first = max(0, -offset)
        low, high = offset + first + 1, offset + self.q_len  # c of the first and last row
        if window is None or high <= window:
            return (low + high) * (high - low + 1) // 2
        if low >= window:
            return window * (high - low + 1)
        return (low + window) * (window - low + 1) // 2 + window * (high - window)

    @property
    def flops(self) -> float:
        """``Q K^T`` and ``P V`` over the unmasked pairs: 4 * head_dim FLOP per pair."""
        return 4.0 * self.batch * self.heads * self.head_dim * self.keys_seen()

    @property
    def min_dram_bytes(self) -> float:
        """Q read and O written per query head, K and V read once per KV head (grouped-
        query attention shares each KV head among ``heads / kv_heads`` query heads); no
        score matrix in DRAM."""
        queries = 2 * self.q_len * self.heads
        # A window reads only the keys some query sees: the last rows' window, back from
        # the first query's.
        read = self.kv_len if self.window is None else min(self.kv_len, self.window + self.q_len - 1)
        keys_values = 2 * read * self.kv_heads
        return float(self.batch * (queries + keys_values) * self.head_dim * self.bytes_per_element)


Operator = (
    Matmul | BatchedMatmul | Softmax | LayerNorm | Gelu | ElementwiseAdd | Attention | RMSNorm | Silu | SwiGLU
    | Rotary | TopKSoftmax | TokenPermute | GroupedMatmul
)

