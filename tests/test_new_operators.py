"""The operators of today's models: RMSNorm, SiLU / SwiGLU, rotary, GQA attention, MoE routing, grouped GEMM."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from des.errors import DesError
from des.mapper import schedule_for
from des.operators import (
    Attention,
    GroupedMatmul,
    LayerNorm,
    Matmul,
    RMSNorm,
    Rotary,
    Silu,
    Softmax,
    SwiGLU,
    TokenPermute,
    TopKSoftmax,
)
from topologies import load_device

H100 = load_device("h100")
NEW = [
    RMSNorm(4096, 8192), Silu(1 << 22), SwiGLU(1 << 22), Rotary(2048, 32, 128), TopKSoftmax(4096, 64, 2),
    TokenPermute(4096, 4096, 2), TokenPermute(4096, 4096, 2, combine=True),
    Attention(1, 64, 2048, 2048, 128, True, kv_heads=8), Attention(8, 64, 1, 4096, 128, kv_heads=1),
    GroupedMatmul((512, 0, 300, 17), 4096, 14336),
]


@pytest.mark.parametrize("op", NEW, ids=lambda op: op.kind)
def test_each_schedules_and_replays_to_its_standalone_time(op):
    schedule = schedule_for(H100, op)[0]
    assert schedule.standalone_s > 0
    assert schedule.replay_s(H100.dram_bandwidth_bytes_per_s) == pytest.approx(schedule.standalone_s, rel=1e-9)
    # No schedule moves less than the least traffic the operator needs.
    assert schedule.dram_bytes >= op.min_dram_bytes * (1 - 1e-9)


def test_gqa_reads_kv_heads_not_query_heads():
    full = Attention(8, 64, 1, 4096, 128)
    grouped = Attention(8, 64, 1, 4096, 128, kv_heads=8)
    kv_bytes = lambda heads: 8 * 2 * 4096 * heads * 128 * 2  # noqa: E731 - K and V, fp16
    assert full.min_dram_bytes - grouped.min_dram_bytes == pytest.approx(kv_bytes(64) - kv_bytes(8))
    assert full.flops == grouped.flops  # every query head still attends to every key
    # Decode is K/V-bound: reading 8 KV heads instead of 64 takes several times less.
    assert schedule_for(H100, grouped)[0].standalone_s < schedule_for(H100, full)[0].standalone_s / 2
    with pytest.raises(DesError, match="kv_heads"):
        Attention(1, 64, 16, 16, 128, kv_heads=6)


def test_rmsnorm_and_the_activations_count_what_they_do():
    assert RMSNorm(8, 1024).flops == 4 * 8 * 1024 < LayerNorm(8, 1024).flops
    assert RMSNorm(8, 1024).min_dram_bytes == (2 * 8 * 1024 + 1024) * 2
    assert SwiGLU(1000).min_dram_bytes == 3 * 1000 * 2 and Silu(1000).min_dram_bytes == 2 * 1000 * 2
    big = 1 << 24
    assert schedule_for(H100, SwiGLU(big))[0].standalone_s > schedule_for(H100, Silu(big))[0].standalone_s
    with pytest.raises(DesError, match="even"):
        Rotary(4, 2, 127)


def test_the_router_writes_only_its_top_k():
    router = TopKSoftmax(4096, 64, 2)
    assert router.min_dram_bytes == 4096 * 64 * 2 + 4096 * 2 * (2 + 4)
    assert schedule_for(H100, router)[0].dram_bytes < schedule_for(H100, Softmax(4096, 64))[0].dram_bytes
    with pytest.raises(DesError, match="exceeds"):
        TopKSoftmax(16, 8, 9)


def test_one_expert_is_a_matmul_and_idle_experts_cost_nothing():
    one = schedule_for(H100, GroupedMatmul((512,), 4096, 4096))[0]
    gemm = schedule_for(H100, Matmul(512, 4096, 4096))[0]
    assert one.standalone_s == pytest.approx(gemm.standalone_s, rel=0.02)
    with_idle = schedule_for(H100, GroupedMatmul((512, 0, 0), 4096, 4096))[0]
    assert with_idle.standalone_s == pytest.approx(one.standalone_s, rel=1e-9)
    with pytest.raises(DesError, match="no expert"):
        GroupedMatmul((0, 0), 64, 64)


@settings(max_examples=25, deadline=None)
@given(tokens=st.lists(st.integers(0, 700), min_size=2, max_size=8).filter(any))
def test_a_grouped_gemm_is_no_slower_than_its_experts_one_by_one(tokens):
    grouped = schedule_for(H100, GroupedMatmul(tuple(tokens), 2048, 4096))[0].standalone_s
    apart = sum(schedule_for(H100, Matmul(t, 2048, 4096))[0].standalone_s for t in tokens if t)
    # (Pooling averages the experts' tile times: within 1 % of one expert's own schedule.)
    assert grouped <= apart * 1.01
    # ... and no faster than the work at the matrix peak.
    assert grouped >= 2.0 * sum(tokens) * 2048 * 4096 / H100.matrix_flops_per_s


@pytest.mark.parametrize(
    "argv",
    [
        ["rmsnorm", "4096", "8192"], ["silu", "1048576"], ["swiglu", "1048576"], ["rotary", "2048", "32", "128"],
        ["topk-softmax", "4096", "64", "2"], ["token-permute", "4096", "4096", "2", "--combine"],
        ["grouped-matmul", "4096", "14336", "--tokens", "512,0,300"],
        ["attention", "8", "64", "1", "4096", "128", "--kv-heads", "8"],
    ],
)
def test_des_op_maps_each_new_kind(argv, capsys):
    import json

    from helpers import call

    code, out, err = call(capsys, "op", *argv, "--device", "h100", "--json")
    assert code == 0, err
    assert json.loads(out)["latency_s"] > 0


def test_des_op_refuses_a_bad_token_list(capsys):
    from helpers import call

    code, _out, err = call(capsys, "op", "grouped-matmul", "64", "64", "--tokens", "1,x")
    assert code == 2 and "--tokens" in err and "Traceback" not in err
