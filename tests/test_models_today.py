"""Models of today: Hugging Face configs, GQA, SwiGLU, MoE with expert parallelism, Ladder."""

from __future__ import annotations

import json

import pytest
from helpers import call
from hypothesis import given, settings
from hypothesis import strategies as st
from test_workloads_graph import graph_counts

from des.errors import DesError
from des.operators import Attention, GroupedMatmul
from des.taskgraph import CollectiveTask, KernelTask
from workloads import build_workload, load_model
from workloads.hf_config import load_hf_config, model_from_hf_config
from workloads.moe import expert_loads
from workloads.params import parameter_counts

LLAMA_8B = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "max_position_embeddings": 8192, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}


def write_config(tmp_path, data, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize(("name", "total", "active"), [
    ("llama-3-8b", 8.03e9, None), ("llama-3-70b", 70.6e9, None), ("llama-3-405b", 405e9, None),
    ("mixtral-8x7b", 46.7e9, 12.9e9), ("qwen2-72b", 72.7e9, None),
])
def test_parameter_counts_equal_the_published_totals(name, total, active):
    counts = parameter_counts(load_model(name))
    assert counts["total"] == pytest.approx(total, rel=0.005)
    assert counts["active"] == pytest.approx(active or total, rel=0.005)


def test_a_config_json_reads_as_its_preset(tmp_path):
    model = load_hf_config(write_config(tmp_path, LLAMA_8B))
    preset = load_model("llama-3-8b")
    for field in ("layers", "hidden", "heads", "n_kv_heads", "head_dim", "ffn_hidden", "vocab_size", "norm",
                  "activation", "position", "biases", "tied_embeddings", "dtype"):
        assert getattr(model, field) == getattr(preset, field), field
    # --model takes the path too.
    assert load_model(str(write_config(tmp_path, LLAMA_8B))).hidden == 4096


def test_each_architecture_maps_its_own_fields(tmp_path):
    qwen = model_from_hf_config({**LLAMA_8B, "architectures": ["Qwen2ForCausalLM"], "use_sliding_window": False,
                                 "sliding_window": 4096}, "q.json")
    assert (qwen.biases, qwen.sliding_window) == ("qkv", None)
    mistral = model_from_hf_config({**LLAMA_8B, "architectures": ["MistralForCausalLM"], "sliding_window": 4096}, "m.json")
    assert mistral.sliding_window == 4096
    mixtral = model_from_hf_config({**LLAMA_8B, "architectures": ["MixtralForCausalLM"], "num_local_experts": 8,
                                    "num_experts_per_tok": 2}, "x.json")
    assert (mixtral.moe.experts, mixtral.moe.top_k, mixtral.moe.ffn_hidden) == (8, 2, 14336)
    qmoe = model_from_hf_config({**LLAMA_8B, "architectures": ["Qwen2MoeForCausalLM"], "num_experts": 60,
                                 "num_experts_per_tok": 4, "moe_intermediate_size": 1408,
                                 "shared_expert_intermediate_size": 5632}, "qm.json")
    assert (qmoe.moe.experts, qmoe.moe.shared_experts, qmoe.moe.shared_ffn_hidden, qmoe.moe.shared_gate) == (60, 1, 5632, True)
    gpt2 = model_from_hf_config({"architectures": ["GPT2LMHeadModel"], "n_embd": 768, "n_layer": 12, "n_head": 12,
                                 "vocab_size": 50257, "n_positions": 1024}, "g.json")
    assert parameter_counts(gpt2)["total"] == 124_439_808  # GPT-2 small, tied


@pytest.mark.parametrize(("change", "message"), [
    ({"architectures": ["FalconForCausalLM"]}, "unknown architecture 'FalconForCausalLM'"),
    ({"architectures": ["DeepseekV3ForCausalLM"]}, "multi-head latent attention"),
    ({"hidden_size": None}, "field 'hidden_size' must be a positive whole number"),
    ({"num_attention_heads": 12, "head_dim": 128}, "kv_heads 8 does not divide heads 12"),
])
def test_a_bad_config_is_one_line_naming_the_field(tmp_path, capsys, change, message):
    data = {**LLAMA_8B, **change}
    path = write_config(tmp_path, data)
    code, _out, err = call(capsys, "run", "--model", str(path), "--tp", "1", "--layers", "1")
    assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_missing_field_is_named(tmp_path):
    data = dict(LLAMA_8B)
    del data["intermediate_size"]
    with pytest.raises(DesError, match="field 'intermediate_size' is missing"):
        load_hf_config(write_config(tmp_path, data))


# --------------------------------------------------------------------------- GQA


def kernels(workload, label, rank=0):
    return [t.operator for t in workload.graph if isinstance(t, KernelTask) and t.label == label
            and t.device == workload.devices[rank]]


@pytest.mark.parametrize("kv_heads", [1, 4, 8, 32])
def test_fewer_kv_heads_shrink_the_cache_and_the_kv_projection_by_the_ratio(kv_heads):
    mha = load_model("llama-3-8b").__class__(**{**load_model("llama-3-8b").__dict__, "kv_heads": 32})
    gqa = mha.__class__(**{**mha.__dict__, "kv_heads": kv_heads})
    a = build_workload(mha, "standard", "decode", 1, kv_len=1024, layers=2, batch=4)
    b = build_workload(gqa, "standard", "decode", 1, kv_len=1024, layers=2, batch=4)
    ratio = 32 / kv_heads
    assert a.memory.kv_cache_bytes == pytest.approx(ratio * b.memory.kv_cache_bytes)
    qkv_a, qkv_b = kernels(a, "qkv")[0], kernels(b, "qkv")[0]
    q = 4096  # the query projection is the same; K and V shrink by the ratio
    kv_flops = lambda op: 2 * op.M * op.K * (op.N - q)  # noqa: E731
    assert kv_flops(qkv_a) == pytest.approx(ratio * kv_flops(qkv_b))
    assert kernels(b, "attention")[0].kv_heads == kv_heads


def test_tp_beyond_the_kv_heads_replicates_them():
    model = load_model("llama-3-70b")  # 8 KV heads
    for tp, per_device in ((4, 2), (8, 1), (16, 1)):
        workload = build_workload(model, "standard", "decode", tp, kv_len=512, layers=1)
        attn = kernels(workload, "attention")[0]
        assert (attn.heads, attn.kv_heads) == (64 // tp, per_device)
        # Replicated: TP=16 holds as much cache per device as TP=8.
    cache = {tp: build_workload(model, "standard", "decode", tp, kv_len=512, layers=1).memory.kv_cache_bytes
             for tp in (8, 16)}
    assert cache[8] == cache[16]
    with pytest.raises(DesError, match="KV heads"):
        build_workload(load_model("llama-3-8b").__class__(**{**load_model("llama-3-8b").__dict__, "kv_heads": 8,
                                                                "heads": 24, "head_size": 128, "ffn_hidden": 14400}),
                       "standard", "decode", 12, kv_len=16, layers=1)


@settings(max_examples=60, deadline=None)
@given(q=st.integers(1, 40), extra=st.integers(0, 40), window=st.one_of(st.none(), st.integers(1, 50)),
       causal=st.booleans())
def test_a_sliding_window_counts_each_query_pair_once(q, extra, window, causal):
    kv = q + extra
    op = Attention(1, 1, q, kv, 8, causal=causal, window=window)
    brute = 0
    for i in range(q):
        seen = max(0, min(kv, kv - q + i + 1)) if causal else kv
        brute += min(seen, window) if window else seen
    assert op.keys_seen() == brute


# --------------------------------------------------------------------------- MoE


def test_balanced_routing_gives_every_expert_its_share_and_skew_is_seeded():
    assert expert_loads(4096, 8, 2) == (1024,) * 8
    skewed = expert_loads(4096, 8, 2, skew=1.0, seed=7)
    assert sum(skewed) == 8192 and max(skewed) <= 4096 and max(skewed) > 1024
    assert skewed == expert_loads(4096, 8, 2, skew=1.0, seed=7)
    assert skewed != expert_loads(4096, 8, 2, skew=1.0, seed=8)


@pytest.mark.parametrize("ep", [1, 8])
def test_moe_graph_totals_equal_closed_forms(ep):
    workload = build_workload("mixtral-8x7b", "standard", "prefill", 8, seq=512, layers=2, ep=ep)
    counted = graph_counts(workload)
    for key, value in workload.counts.items():
        assert counted[key] == pytest.approx(value, rel=1e-12), key


def test_expert_parallelism_places_whole_experts_and_exchanges_tokens():
    workload = build_workload("mixtral-8x7b", "standard", "prefill", 8, seq=512, layers=1, ep=8)
    ups = kernels(workload, "experts")
    assert isinstance(ups[0], GroupedMatmul) and len(ups[0].tokens) == 1  # one whole expert per rank
    assert ups[0].N == 2 * 14336 and sum(ups[0].tokens) == 512 * 2 // 8
    a2a = [t for t in workload.graph if isinstance(t, CollectiveTask) and t.kind == "alltoall"]
    assert len(a2a) == 2
    dispatch, combine = a2a
    # Balanced: every rank sends each rank (itself included) its tokens' share, 64 x 2 / 8 copies.
    assert all(cell == 16 * 4096 * 2 for row in dispatch.matrix for cell in row)
    assert combine.matrix == tuple(zip(*dispatch.matrix, strict=True))
    # Memory: one expert per rank against all eight at a TP-split width.
    ep1 = build_workload("mixtral-8x7b", "standard", "prefill", 8, seq=512, layers=1, ep=1)
    assert workload.memory.weights_bytes == pytest.approx(ep1.memory.weights_bytes)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ep": 3}, "EP=3 does not divide TP=8"),
    ({"ep": 8, "arch": "parallel"}, "use standard or ladder"),
    ({"ep": 8, "arch": "kraken"}, "dense models only"),
])
def test_bad_moe_plans_are_clear_errors(kwargs, message):
    options = {"arch": "standard", **kwargs}
    with pytest.raises(DesError, match=message):
        build_workload("mixtral-8x7b", options.pop("arch"), "prefill", 8, seq=64, layers=1, **options)


def test_experts_not_dividing_ep_is_an_error():
    model = load_model("mixtral-8x7b")
    six = model.__class__(**{**model.__dict__, "moe": model.moe.__class__(6, 2, 14336)})
    with pytest.raises(DesError, match="EP=4 does not divide the 6 experts"):
        build_workload(six, "standard", "prefill", 4, seq=64, layers=1, ep=4)


# --------------------------------------------------------------------------- Ladder


def test_ladder_adds_each_allreduce_one_module_later():
    workload = build_workload("llama-3-8b", "ladder", "prefill", 4, seq=128, layers=3)
    tasks = workload.graph.tasks
    # Layer 2's attention block reads the stream with layer 1's attention all-reduce added,
    # not its FFN's; the FFN block adds layer 1's FFN all-reduce after layer 2's attention.
    assert "L1.ar1" in tasks["L2.add_attn.r0"].deps and "L1.ar2" not in tasks["L2.add_attn.r0"].deps
    assert "L1.ar2" in tasks["L2.add_ffn.r0"].deps
    assert "L2.ar1" not in tasks["L2.ln2.r0"].deps
    # Nothing of layer 2's attention waits on layer 1's FFN all-reduce.
    for step in ("ln1", "qkv", "rope", "attn", "wo"):
        assert "L1.ar2" not in tasks[f"L2.{step}.r0"].deps


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "mixtral-8x7b", "--tp", "4", "--ep", "4", "--layers", "1"], None),
    (["--model", "mixtral-8x7b", "--tp", "6", "--ep", "6", "--layers", "1"], "does not divide"),
    (["--model", "llama-3-8b", "--tp", "8", "--ep", "8", "--layers", "1"], "applies to a mixture of experts"),
])
def test_moe_plans_through_the_cli(capsys, argv, message):
    code, out, err = call(capsys, "run", "--system", "dgx-h100", "--arch", "standard", *argv)
    if message is None:
        assert code == 0, err
    else:
        assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1


def test_heads_not_dividing_hidden_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nlayers: 2\nhidden: 1000\nheads: 3\nvocab_size: 100\nmax_positions: 64\n")
    code, _out, err = call(capsys, "run", "--model", str(path), "--tp", "1", "--arch", "standard", "--layers", "1")
    assert code == 2 and "hidden 1000 is not a multiple of heads 3" in err and err.count("\n") == 1


def test_devices_choose_the_placement(capsys):
    code, out, err = call(capsys, "run", "--system", "2x-dgx-h100", "--model", "llama-3-8b", "--arch", "standard",
                          "--tp", "2", "--pp", "2", "--layers", "2", "--devices", "gpu0,gpu1,gpu8,gpu9", "--json")
    assert code == 0, err
    assert json.loads(out)["devices"] == ["gpu0", "gpu1", "gpu8", "gpu9"]
    code, _out, err = call(capsys, "run", "--system", "2x-dgx-h100", "--model", "llama-3-8b", "--arch", "standard",
                           "--tp", "2", "--pp", "2", "--layers", "2", "--devices", "gpu0,gpu1")
    assert code == 2 and "takes 4 distinct devices" in err
