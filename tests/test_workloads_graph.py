"""Task graphs of the transformer workloads: structure, dependencies, counts, bad input."""

from __future__ import annotations

import itertools

import pytest

from des.errors import DesError
from des.operators import Attention, BatchedMatmul, GroupedMatmul, Matmul, Softmax
from des.taskgraph import CollectiveTask, KernelTask
from workloads import ARCHS, PHASES, KrakenRule, ModelSpec, build_workload, load_model

TINY = ModelSpec("tiny", layers=3, hidden=256, heads=8, ffn_hidden=1024, vocab_size=1000, max_positions=512)
LABELS = {
    "embedding", "copy", "layernorm", "qkv", "attention", "qk", "softmax", "av", "wo", "allreduce",
    "add", "w1", "gelu", "w2", "allgather", "proj", "lm_head",
}


def devices(tp):
    return tuple(f"gpu{rank}" for rank in range(tp))


def build(arch="standard", phase="prefill", tp=4, **kwargs):
    kwargs.setdefault("seq", 32)
    if phase == "decode":
        kwargs.setdefault("kv_len", 40)
    return build_workload(kwargs.pop("model", TINY), arch, phase, tp, devices(tp), **kwargs)


def collectives(workload):
    return [t for t in workload.graph if isinstance(t, CollectiveTask)]


def ancestors(graph, name):
    """Every task that must finish before ``name``: its deps and earlier tasks of its streams."""
    order = list(graph.tasks)
    before: dict[str, set[str]] = {}
    last: dict[tuple[str, str], str] = {}
    for task_name in order:
        task = graph.tasks[task_name]
        members = (task.device,) if isinstance(task, KernelTask) else task.group
        direct = set(task.deps)
        for device in members:
            previous = last.get((device, task.stream))
            if previous is not None:
                direct.add(previous)
            last[(device, task.stream)] = task_name
        closure = set(direct)
        for dep in direct:
            closure |= before[dep]
        before[task_name] = closure
    return before[name]


# ------------------------------------------------------------------ structure


@pytest.mark.parametrize(("arch", "per_layer", "extra"), [("standard", 2, 0), ("parallel", 1, 0), ("kraken", 1, -1)])
@pytest.mark.parametrize("layers", [1, 3])
def test_collectives_per_layer(arch, per_layer, extra, layers):
    workload = build(arch, layers=layers)
    found = collectives(workload)
    assert len(found) == per_layer * layers + extra
    assert {c.kind for c in found} <= {"allreduce"}
    assert all(c.group == devices(4) and c.stream == "comm" for c in found)
    assert all(c.nbytes == 32 * workload.model.hidden * 2 for c in found)


@pytest.mark.parametrize(("arch", "expected"), [("standard", 2 * 3 + 2), ("parallel", 3 + 2), ("kraken", 2 + 1 + 2)])
def test_whole_model_adds_embedding_allreduce_and_logit_allgather(arch, expected):
    workload = build(arch)
    kinds = [c.kind for c in collectives(workload)]
    assert len(kinds) == expected
    assert kinds[0] == "allreduce" and kinds[-1] == "allgather"
    assert kinds.count("allgather") == (2 if arch == "kraken" else 1)
    logits = collectives(workload)[-1]
    assert logits.nbytes == 1 * TINY.padded_vocab(4) * 2


@pytest.mark.parametrize("arch", ["standard", "parallel"])
def test_tp1_has_no_collectives(arch):
    workload = build(arch, tp=1)
    assert collectives(workload) == []
    assert workload.graph.devices() == ["gpu0"]


def test_kraken_degree_one_has_no_collectives():
    assert collectives(build("kraken", tp=1, model=ModelSpec("k", 2, 64, 4, 256, 100, 64))) == []


def test_standard_layer_kernel_sequence_and_shapes():
    workload = build("standard", layers=1, tp=4)
    rank0 = [t for t in workload.graph if getattr(t, "device", None) == "gpu0" or isinstance(t, CollectiveTask)]
    assert [t.label for t in rank0] == [
        "layernorm", "qkv", "attention", "wo", "allreduce", "add", "layernorm", "w1", "gelu", "w2", "allreduce", "add",
    ]
    ops = {t.name: t.operator for t in rank0 if isinstance(t, KernelTask)}
    assert ops["L1.qkv.r0"] == Matmul(32, 256, 3 * 256 // 4)
    assert ops["L1.wo.r0"] == Matmul(32, 64, 256)
    assert ops["L1.w1.r0"] == Matmul(32, 256, 256)
    assert ops["L1.w2.r0"] == Matmul(32, 256, 256)
    assert ops["L1.attn.r0"] == Attention(1, 2, 32, 32, 32, True)
    graph = workload.graph.tasks
    assert set(graph["L1.ar1"].deps) == {f"L1.wo.r{r}" for r in range(4)}
    assert graph["L1.add1.r2"].deps == ("L1.ar1",)


def test_unfused_attention_kernels_and_categories():
    workload = build("standard", phase="decode", layers=1, attention="unfused", batch=2)
    tasks = workload.graph.tasks
    heads = 2 * 8 // 4
    assert tasks["L1.qk.r1"].operator == BatchedMatmul(heads, 1, 32, 40)
    assert tasks["L1.softmax.r1"].operator == Softmax(heads, 40)
    assert tasks["L1.av.r1"].operator == BatchedMatmul(heads, 1, 40, 32)
    assert tasks["L1.qk.r1"].category == tasks["L1.av.r1"].category == "attention"


def test_decode_is_one_row_per_sequence_and_not_causal():
    workload = build("kraken", phase="decode", layers=1, batch=3)
    attention = workload.graph.tasks["L1.attn.r0"].operator
    assert (attention.batch, attention.q_len, attention.kv_len, attention.causal) == (3, 1, 40, False)
    assert workload.graph.tasks["L1.qkv.r0"].operator.M == 3


def test_labels_and_categories_of_whole_model():
    for arch in ARCHS:
        workload = build(arch)
        assert {t.label for t in workload.graph} <= LABELS
        tasks = workload.graph.tasks
        assert tasks["emb.embed.r0"].category == "elementwise"
        assert tasks["head.lm_head.r3"].category == "lm_head"
        assert tasks["head.lm_head.r3"].operator == Matmul(1, workload.model.hidden, TINY.padded_vocab(4) // 4)
        assert all(t.stream == ("comm" if isinstance(t, CollectiveTask) else "compute") for t in workload.graph)


def test_parallel_layer_branches_share_one_layernorm():
    tasks = build("parallel", layers=1).graph.tasks
    assert tasks["L1.qkv.r0"].deps == tasks["L1.w1.r0"].deps == ("L1.ln1.r0",)
    assert set(tasks["L1.add_partial.r0"].deps) == {"L1.wo.r0", "L1.w2.r0"}
    assert set(tasks["L1.ar"].deps) == {f"L1.add_partial.r{r}" for r in range(4)}
    assert not any(name.startswith("L1.ln2") for name in tasks)


def test_kraken_shapes_are_whole_sublayers():
    workload = build("kraken", layers=2, model=load_model("kraken-gpt2-125m"))
    tasks = workload.graph.tasks
    assert tasks["L1.qkv.r2"].operator == Matmul(32, 504, 3 * 504)
    assert tasks["L1.w1.r2"].operator == Matmul(32, 504, 1008)
    assert tasks["L1.attn.r2"].operator == Attention(1, 3, 32, 32, 168, True)
    assert tasks["L2.ar"].nbytes == 32 * 504 * 2


def test_kraken_allreduce_overlaps_attention_half_and_feeds_ffn():
    workload = build("kraken", layers=3)
    graph = workload.graph
    for layer in (2, 3):
        ar = f"L{layer}.ar"
        # After each rank's copy of x(l-1) into the all-reduce's buffer (appendix A.2).
        assert set(graph.tasks[ar].deps) == {f"L{layer}.copy_in.r{r}" for r in range(4)}
        for r in range(4):
            assert set(graph.tasks[f"L{layer}.copy_in.r{r}"].deps) == {f"L{layer - 1}.add2.r{r}"}
        for rank, step in itertools.product(range(4), ("ln1", "qkv", "attn", "wo", "add1")):
            kernel = f"L{layer}.{step}.r{rank}"
            assert ar not in ancestors(graph, kernel), kernel
            assert kernel not in ancestors(graph, ar), kernel
        for rank in range(4):
            assert ar in ancestors(graph, f"L{layer}.ln2.r{rank}")
            copy_out = f"L{layer}.copy_out.r{rank}"
            assert set(graph.tasks[copy_out].deps) == {ar, f"L{layer}.wo.r{rank}"}
            assert set(graph.tasks[f"L{layer}.add_z.r{rank}"].deps) == {f"L{layer}.add1.r{rank}", copy_out}
    assert not any(name.startswith("L1.ar") for name in graph.tasks)


def test_standard_allreduce_blocks_everything_after_it():
    graph = build("standard", layers=2).graph
    for rank in range(4):
        assert "L1.ar1" in ancestors(graph, f"L1.ln2.r{rank}")
        assert "L1.ar2" in ancestors(graph, f"L2.ln1.r{rank}")


def test_kraken_whole_model_ends_with_allgather_and_projection():
    workload = build("kraken")
    tasks = workload.graph.tasks
    e = workload.model.hidden
    assert tasks["head.gather"].kind == "allgather" and tasks["head.gather"].nbytes == 4 * 32 * e * 2
    assert tasks["head.proj.r0"].operator == Matmul(32, 4 * e, e)
    assert tasks["head.proj.r0"].deps == ("head.gather",)
    assert tasks["L1.ln1.r1"].deps == ("emb.ar",)


def test_building_twice_gives_identical_graphs():
    for arch, attention in itertools.product(ARCHS, ("fused", "unfused")):
        first = build(arch, attention=attention)
        second = build(arch, attention=attention)
        assert list(first.graph.tasks.items()) == list(second.graph.tasks.items())


def test_describe_mentions_the_essentials():
    text = build("kraken", phase="decode").describe()
    assert "tiny kraken decode TP=4" in text and "kv-len 40" in text and "Kraken width" in text


# ------------------------------------------------------------------ closed forms


def graph_counts(workload):
    totals = dict.fromkeys(("matmul_flops", "attention_flops", "vector_flops", "dram_bytes", "collective_bytes"), 0.0)
    first = workload.devices[0]
    for task in workload.graph:
        if isinstance(task, CollectiveTask):
            totals["collective_bytes"] += task.nbytes if first in task.group else 0.0
            continue
        if task.device != first:
            continue
        op = task.operator
        if isinstance(op, (Matmul, GroupedMatmul)):
            key = "matmul_flops"
        elif isinstance(op, (Attention, BatchedMatmul, Softmax)):
            key = "attention_flops"
        else:
            key = "vector_flops"
        totals[key] += op.flops
        totals["dram_bytes"] += op.min_dram_bytes
    totals["flops"] = totals["matmul_flops"] + totals["attention_flops"] + totals["vector_flops"]
    return totals


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("attention", ["fused", "unfused"])
@pytest.mark.parametrize("layers", [None, 2])
@pytest.mark.parametrize("tp", [1, 4])
def test_graph_totals_equal_closed_forms(arch, phase, attention, layers, tp):
    workload = build(arch, phase, tp, attention=attention, layers=layers, batch=2)
    counted = graph_counts(workload)
    for key, value in workload.counts.items():
        assert counted[key] == pytest.approx(value, rel=1e-12), key


def test_standard_prefill_gemm_flops_formula():
    model = load_model("gpt3-6.7b")
    workload = build_workload(model, "standard", "prefill", 8, devices(8), seq=128, layers=2)
    h, F, T, t = 4096, 4 * 4096, 128, 8
    assert workload.counts["matmul_flops"] == 2 * 2 * T * (3 * h * h + h * h + 2 * h * F) / t
    causal_pairs = T * (T + 1) / 2
    assert workload.counts["attention_flops"] == 2 * 4 * (32 // t) * 128 * causal_pairs


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "gpt3-7b"}, "unknown model preset 'gpt3-7b'.*did you mean"),
        ({"arch": "megatron"}, "unknown architecture 'megatron'; known: standard, parallel, kraken"),
        ({"phase": "generate"}, "unknown phase 'generate'"),
        ({"attention": "flash"}, "unknown attention 'flash'; known: fused, unfused"),
        ({"dtype": "fp64"}, "unknown dtype 'fp64'"),
        ({"tp": 3, "devices": devices(3)}, "TP=3 does not divide the 8 heads"),
        ({"arch": "kraken", "tp": 3, "devices": devices(3)}, "degree 3 does not divide the 8 heads"),
        ({"tp": 8, "devices": devices(4)}, "TP=8 needs 8 devices, but 4 were given"),
        ({"tp": 2, "devices": devices(4)}, "TP=2 needs 2 devices, but 4 were given"),
        ({"devices": ("gpu0", "gpu0", "gpu1", "gpu2")}, "distinct"),
        ({"tp": 0, "devices": ()}, "tp must be at least 1"),
        ({"seq": 0}, "seq must be at least 1"),
        ({"seq": -5}, "seq must be at least 1"),
        ({"batch": 0}, "batch must be at least 1"),
        ({"batch": 1.5}, "batch must be a whole number"),
        ({"layers": 0}, "layers must be at least 1"),
        ({"layers": 4}, "layers 4 is more than the 3 layers of model 'tiny'"),
        ({"phase": "decode"}, "decode needs a KV-cache length"),
        ({"phase": "decode", "kv_len": 0}, "kv-len must be at least 1"),
        ({"kv_len": 64}, "kv-len applies to decode only"),
        ({"model": "kraken-gpt2-125m", "arch": "kraken", "tp": 2, "devices": devices(2)}, "fixes its Kraken degree at 4.*but TP is 2"),
        ({"model": "kraken-gpt2-125m", "arch": "kraken", "tp": 6, "devices": devices(6)}, "fixes its Kraken degree at 4.*but TP is 6"),
        ({"model": 42}, "model must be a ModelSpec"),
    ],
)
def test_bad_input_is_one_clear_error(kwargs, message):
    args = {"model": TINY, "arch": "standard", "phase": "prefill", "tp": 4, "devices": devices(4), "seq": 16}
    args.update(kwargs)
    with pytest.raises(DesError, match=message):
        build_workload(**args)


def test_kraken_model_cannot_run_as_standard():
    kraken = KrakenRule().derive(TINY, 4)
    with pytest.raises(DesError, match="is a Kraken model; it runs only with arch kraken"):
        build_workload(kraken, "standard", tp=4)
    assert build_workload(kraken, "kraken", tp=4, layers=1).model is kraken


def test_fixed_kraken_yaml_runs_standard_at_any_divisor_tp():
    model = load_model("kraken-gpt2-125m")
    assert build_workload(model, "standard", tp=2, layers=1).model.hidden == 768
    assert build_workload(model, "kraken", tp=4, layers=1).model.hidden == 504


def test_positions_beyond_the_model_warn_but_build(caplog):
    import logging

    from workloads import build_workload as build

    with caplog.at_level(logging.WARNING, logger="workloads"):
        build("gpt3-1.3b", "standard", "decode", 1, ("gpu0",), kv_len=3072, layers=1)
    assert "kv-len 3072 is beyond the 2048 positions of model 'gpt3-1.3b'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="workloads"):
        build("gpt3-1.3b", "standard", "prefill", 1, ("gpu0",), seq=2048, layers=1)
    assert "beyond" not in caplog.text
