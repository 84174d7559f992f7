"""Per-device memory estimates and the capacity check (workloads.memory)."""

from __future__ import annotations

import pytest

from des.errors import DesError
from topologies import load_device
from workloads import ModelSpec, build_workload, check_memory, load_model

A100_BYTES = load_device("a100").dram_capacity_bytes


def devices(tp):
    return tuple(f"gpu{rank}" for rank in range(tp))


@pytest.fixture(scope="module")
def gpt3_175b():
    return load_model("gpt3-175b")


def test_175b_fp16_does_not_fit_four_a100s(gpt3_175b):
    workload = build_workload(gpt3_175b, "standard", "prefill", 4, devices(4), seq=2048)
    assert workload.memory.weights_bytes > A100_BYTES  # about 87.5 GB of weights alone
    assert workload.memory.weights_bytes == pytest.approx(175e9 * 2 / 4, rel=0.01)
    with pytest.raises(DesError) as info:
        check_memory(workload, A100_BYTES, "gpu0 (a100)")
    message = str(info.value)
    assert message.startswith("gpt3-175b standard TP=4 needs 83.8 GiB per device (weights 81.4 GiB, KV cache 2.25 GiB")
    assert "activations" in message
    assert message.endswith("but gpu0 (a100) has 80.0 GiB")


@pytest.mark.parametrize("arch", ["standard", "parallel", "kraken"])
def test_175b_fits_eight_a100s(gpt3_175b, arch):
    workload = build_workload(gpt3_175b, arch, "prefill", 8, devices(8), seq=2048)
    check_memory(workload, A100_BYTES, "gpu0 (a100)")
    assert 40e9 < workload.memory.total_bytes < 50e9


def test_weights_follow_megatron_split():
    h, F, L, V, P, t = 256, 1024, 3, 1000, 512, 4
    model = ModelSpec("m", L, h, 8, F, V, P)
    workload = build_workload(model, "standard", tp=t, seq=16)
    per_layer = (4 * h * h + 2 * h * F) / t + (3 * h + F) / t + 2 * h + 4 * h
    embeddings = model.padded_vocab(t) / t * h + P * h + 2 * h
    assert workload.memory.weights_bytes == 2 * (L * per_layer + embeddings)
    partial = build_workload(model, "standard", tp=t, seq=16, layers=2)
    assert partial.memory.weights_bytes == 2 * 2 * per_layer
    untied = ModelSpec("m", L, h, 8, F, V, P, tied_embeddings=False)
    extra = build_workload(untied, "standard", tp=t, seq=16).memory.weights_bytes - workload.memory.weights_bytes
    assert extra == 2 * model.padded_vocab(t) / t * h


def test_kv_cache_counts_prompt_or_cache_plus_new_token():
    model = load_model("gpt3-6.7b")
    prefill = build_workload(model, "standard", "prefill", 4, devices(4), batch=2, seq=512, layers=3)
    assert prefill.memory.kv_cache_bytes == 2 * 3 * 2 * 512 * (4096 // 4) * 2
    decode = build_workload(model, "standard", "decode", 4, devices(4), batch=2, kv_len=1000, layers=3)
    assert decode.memory.kv_cache_bytes == 2 * 3 * 2 * 1001 * (4096 // 4) * 2
    kraken = build_workload(model, "kraken", "decode", 4, devices(4), batch=2, kv_len=1000, layers=3)
    assert kraken.memory.kv_cache_bytes == 2 * 3 * 2 * 1001 * kraken.model.hidden * 2


def test_unfused_prefill_activations_dominated_by_scores():
    model = load_model("gpt3-13b")
    fused = build_workload(model, "standard", "prefill", 4, devices(4), seq=2048, layers=1)
    unfused = build_workload(model, "standard", "prefill", 4, devices(4), seq=2048, layers=1, attention="unfused")
    scores = (40 // 4) * 2048 * 2048 * 2
    assert unfused.memory.activation_bytes > fused.memory.activation_bytes + scores
    assert fused.memory.activation_bytes > 2048 * 5120 * 2  # at least the residual stream


def test_as_dict_and_total():
    memory = build_workload("gpt3-1.3b", "kraken", tp=4, layers=1).memory
    parts = memory.as_dict()
    assert set(parts) == {"weights", "kv_cache", "activations", "total"}
    assert parts["total"] == memory.total_bytes == parts["weights"] + parts["kv_cache"] + parts["activations"]


def test_kraken_weights_hold_whole_sublayers_and_projection():
    model = load_model("kraken-gpt2-125m")
    workload = build_workload(model, "kraken", tp=4, seq=16)
    e, F = 504, 1008
    sublayer = 4 * e * e + 2 * e * F + F + 9 * e
    embeddings = model.padded_vocab(4) / 4 * e + 1024 * e + 2 * e
    assert workload.memory.weights_bytes == 2 * (12 * sublayer + embeddings + 4 * e * e + e)
