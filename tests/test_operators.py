"""Operators: shape checks, FLOPs, minimum DRAM bytes and cache keys."""

from __future__ import annotations

import pytest

from des.errors import DesError
from des.operators import (
    DTYPES,
    Attention,
    BatchedMatmul,
    ElementwiseAdd,
    Gelu,
    LayerNorm,
    Matmul,
    Softmax,
    dtype_bytes,
)


def test_matmul_flops_bytes_and_key():
    op = Matmul(64, 128, 32)
    assert op.flops == 2 * 64 * 128 * 32
    assert op.min_dram_bytes == (64 * 128 + 128 * 32 + 64 * 32) * 2
    assert op.key() == "matmul/M=64/K=128/N=32/fp16"
    assert op.describe() == "matmul(M=64, K=128, N=32, fp16)"
    assert op.op_class == "matmul" and not op.is_gemv
    assert Matmul(1, 4, 5).is_gemv and Matmul(4, 5, 1).is_gemv


def test_batched_matmul_counts_every_matrix():
    op = BatchedMatmul(3, 4, 5, 6, "bf16")
    assert op.flops == 3 * 2 * 4 * 5 * 6
    assert op.min_dram_bytes == 3 * (4 * 5 + 5 * 6 + 4 * 6) * 2
    assert op.key() == "bmm/B=3/M=4/K=5/N=6/bf16"
    assert op.batch == 3


def test_dtypes_set_bytes_per_element():
    assert DTYPES == {"fp16": 2, "bf16": 2, "fp32": 4, "fp8": 1, "int8": 1}
    assert Softmax(4, 8, "fp32").min_dram_bytes == 2 * 32 * 4
    assert Gelu(10, "fp8").min_dram_bytes == 20
    assert ElementwiseAdd(10, "int8").min_dram_bytes == 30
    assert LayerNorm(2, 8).min_dram_bytes == (2 * 16 + 2 * 8) * 2
    assert dtype_bytes("bf16") == 2


def test_keys_are_distinct_and_stable():
    ops = [
        Matmul(2, 3, 4),
        Matmul(2, 3, 4, "bf16"),
        BatchedMatmul(1, 2, 3, 4),
        Softmax(2, 3),
        LayerNorm(2, 3),
        Gelu(6),
        ElementwiseAdd(6),
        Attention(1, 2, 3, 4, 8),
        Attention(1, 2, 3, 4, 8, causal=True),
    ]
    keys = [op.key() for op in ops]
    assert len(set(keys)) == len(keys)
    assert Matmul(2, 3, 4).key() == Matmul(2, 3, 4).key()


@pytest.mark.parametrize("q_len, kv_len", [(1, 1), (4, 4), (1, 4096), (3, 7), (7, 3), (16, 16)])
def test_causal_attention_counts_the_unmasked_pairs(q_len, kv_len):
    op = Attention(1, 1, q_len, kv_len, 8, causal=True)
    offset = kv_len - q_len
    expected = sum(min(kv_len, max(0, offset + i + 1)) for i in range(q_len))
    assert op.keys_seen() == expected
    assert op.flops == 4 * 8 * expected
    assert Attention(1, 1, q_len, kv_len, 8).keys_seen() == q_len * kv_len


def test_attention_never_stores_the_score_matrix():
    op = Attention(2, 4, 1024, 1024, 64)
    assert op.min_dram_bytes == 2 * 4 * (2 * 1024 + 2 * 1024) * 64 * 2


@pytest.mark.parametrize(
    "build",
    [
        lambda: Matmul(0, 4, 4),
        lambda: Matmul(4, -1, 4),
        lambda: Matmul(4, 4, 2.5),
        lambda: Matmul(4, 4, 4.0),
        lambda: Matmul(True, 4, 4),
        lambda: Matmul("4", 4, 4),
        lambda: BatchedMatmul(0, 1, 1, 1),
        lambda: Softmax(4, 0),
        lambda: LayerNorm(-3, 4),
        lambda: Gelu(0),
        lambda: ElementwiseAdd(-1),
        lambda: Attention(1, 1, 0, 4, 8),
        lambda: Attention(1, 1, 4, 4, 8, causal="yes"),
        lambda: Matmul(4, 4, 4, "fp64"),
        lambda: Softmax(4, 4, dtype="float16"),
    ],
)
def test_bad_shapes_and_dtypes_are_clear_errors(build):
    with pytest.raises(DesError):
        build()


def test_error_names_the_operator_and_field():
    with pytest.raises(DesError, match=r"Matmul: K must be positive, got -1"):
        Matmul(4, -1, 4)
    with pytest.raises(DesError, match=r"unknown dtype 'fp64'; known: fp16"):
        Gelu(4, "fp64")


def test_numpy_integers_are_accepted_as_plain_ints():
    import numpy as np

    op = Matmul(np.int64(8), np.int32(4), 2)
    assert type(op.M) is int and type(op.K) is int
    assert op.key() == "matmul/M=8/K=4/N=2/fp16"
