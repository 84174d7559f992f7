"""Model presets and YAML reading (workloads.model) and the Kraken width rule."""

from __future__ import annotations

import math

import pytest

from des.errors import DesError
from workloads import KrakenRule, ModelSpec, kraken_params, load_model, model_names, standard_params

GPT3 = {
    "gpt3-1.3b": (24, 2048, 16),
    "gpt3-6.7b": (32, 4096, 32),
    "gpt3-13b": (40, 5120, 40),
    "gpt3-65b": (80, 8192, 64),
    "gpt3-175b": (96, 12288, 96),
}


def gpt2(layers: int, hidden: int, heads: int, positions: int = 1024) -> ModelSpec:
    return ModelSpec("m", layers, hidden, heads, 4 * hidden, 50257, positions)


@pytest.mark.parametrize("name", sorted(GPT3))
def test_gpt3_presets_have_kraken_md_shapes(name):
    model = load_model(name)
    assert (model.layers, model.hidden, model.heads) == GPT3[name]
    assert model.ffn_hidden == 4 * model.hidden
    assert (model.vocab_size, model.max_positions, model.tied_embeddings) == (50257, 2048, True)
    assert model.kraken is None and not model.is_kraken


#: The presets of today's models (their sources in each YAML file).
MODERN = {"llama-3-8b", "llama-3-70b", "llama-3-405b", "mixtral-8x7b", "qwen2-72b", "deepseek-style-16b"}


def test_model_names_lists_every_preset():
    assert set(GPT3) | {"kraken-gpt2-125m"} | MODERN == set(model_names())


def test_gpt3_175b_has_175b_parameters():
    assert standard_params(load_model("gpt3-175b")) == pytest.approx(175e9, rel=0.01)
    # GPT-2 small: the well-known 124,439,808.
    assert standard_params(gpt2(12, 768, 12)) == 124_439_808


@pytest.mark.parametrize(("tp", "padded"), [(1, 50304), (4, 50688), (8, 51200)])
def test_vocabulary_is_padded_megatron_style(tp, padded):
    assert load_model("gpt3-6.7b").padded_vocab(tp) == padded


def test_unknown_preset_suggests_the_nearest_and_lists_all():
    with pytest.raises(DesError, match=r"unknown model preset 'gpt3-6.7' \(did you mean 'gpt3-6.7b'\?\).*gpt3-175b"):
        load_model("gpt3-6.7")


def test_yaml_path_and_unknown_field_named_with_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("layers: 2\nhidden: 64\nheads: 4\nvocab_size: 1000\nmax_positions: 128\n")
    model = load_model(str(path))
    assert (model.name, model.ffn_hidden, model.source) == ("tiny", 256, str(path))
    path.write_text("layers: 2\nhidden: 64\nheads: 4\nvocab_size: 1000\nmax_positions: 128\nhiden: 3\n")
    with pytest.raises(DesError, match=r"tiny.yaml: unknown field 'hiden' \(did you mean 'hidden'\?\)"):
        load_model(str(path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hidden: 64\nheads: 4\nvocab_size: 10\nmax_positions: 8\n", "missing field 'layers'"),
        ("layers: 0\nhidden: 64\nheads: 4\nvocab_size: 10\nmax_positions: 8\n", "'layers' must be at least 1"),
        ("layers: 1\nhidden: 66\nheads: 4\nvocab_size: 10\nmax_positions: 8\n", "not a multiple of heads"),
        ("layers: 1\nhidden: 64\nheads: 4\nvocab_size: 10\nmax_positions: 8\nactivation: relu\n", "allowed: gelu"),
        ("layers: 1\nhidden: 64\nheads: 4\nvocab_size: 10\nmax_positions: 8\ntied_embeddings: 1\n", "true or false"),
        ("layers: 1\nhidden: 64\nheads: 4\nvocab_size: 10\nmax_positions: 8\nkraken: {degree: 3, width: 30}\n", "does not divide the 4 heads"),
        ("layers: 1\nhidden: 64\nheads: 4\nvocab_size: 10\nmax_positions: 8\nkraken: {degree: 2, width: 31}\n", "not a multiple of the 2 heads"),
        ("layers: 1\nhidden: 64\nheads: 4\nvocab_size: 10\nmax_positions: 8\nkraken: {degree: 2, widht: 32}\n", "did you mean 'width'"),
    ],
)
def test_bad_model_yaml(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DesError, match=message) as info:
        load_model(str(path))
    assert "bad.yaml" in str(info.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DesError, match="no such file"):
        load_model(str(tmp_path / "absent.yaml"))


# ------------------------------------------------------------------ Kraken rule

RELEASED = [  # (layers, hidden, heads, positions, released e at N = 4)
    (12, 768, 12, 1024, 504),  # 125M (GPT-2 small)
    (24, 1024, 16, 1024, 644),  # 350M (GPT-2 medium)
    (24, 1536, 16, 2048, 960),  # 760M (GPT-3 760M)
]


@pytest.mark.parametrize(("layers", "hidden", "heads", "positions", "released"), RELEASED)
def test_rule_reproduces_released_kraken_configs(layers, hidden, heads, positions, released):
    model = gpt2(layers, hidden, heads, positions)
    rule = KrakenRule()
    assert rule.exact_width(model, 4) == pytest.approx(released, rel=0.01)
    assert rule.width(model, 4) == released
    derived = rule.derive(model, 4)
    assert (derived.hidden, derived.heads, derived.ffn_hidden, derived.degree) == (released, heads // 4, 2 * released, 4)
    assert derived.head_dim * derived.heads == released
    # The exact width solves the parameter equation it states.
    exact = rule.exact_width(model, 4)
    assert kraken_params(model, 4, exact, 2.0) == pytest.approx(standard_params(model), rel=1e-12)


def test_layer_params_rule_matches_one_layer():
    model = load_model("gpt3-6.7b")
    exact = KrakenRule(match="layer_params").exact_width(model, 8)
    assert exact == pytest.approx(4096 * math.sqrt(12 / 64), rel=0.01)
    rule = KrakenRule(match="layer_params")
    assert rule.width(model, 8) % rule.heads(model, 8) == 0
    assert KrakenRule(match="layer_params", max_head_dim=None).width(model, 8) % 4 == 0


@pytest.mark.parametrize(("name", "degree"), [("gpt3-13b", 8), ("gpt3-175b", 8), ("gpt3-1.3b", 16), ("gpt3-65b", 4)])
def test_heads_stay_within_fused_attention_width(name, degree):
    model = load_model(name)
    capped = KrakenRule().derive(model, degree)
    uncapped = KrakenRule(max_head_dim=None).derive(model, degree)
    # n/N heads would be wider than the fused kernels allow; the rule takes the fewest
    # heads that are at most 256 wide, keeping the width the parameter match gives.
    assert uncapped.heads == model.heads // degree and uncapped.head_dim > 256
    assert capped.head_dim <= 256 < capped.hidden / (capped.heads - 1)
    assert capped.hidden == pytest.approx(uncapped.hidden, rel=0.01)
    assert capped.hidden % capped.heads == 0


def test_max_head_dim_must_be_positive():
    with pytest.raises(DesError, match="max_head_dim"):
        KrakenRule(max_head_dim=0)


def test_wider_expansion_gives_narrower_sublayers():
    model = load_model("gpt3-13b")
    assert KrakenRule(ffn_expansion=4).width(model, 4) < KrakenRule().width(model, 4)


@pytest.mark.parametrize(("kwargs", "message"), [({"match": "flops"}, "match must be one of"), ({"ffn_expansion": 0}, "positive")])
def test_bad_rule(kwargs, message):
    with pytest.raises(DesError, match=message):
        KrakenRule(**kwargs)


def test_fixed_kraken_degree_is_used_and_enforced():
    model = load_model("kraken-gpt2-125m")
    derived = KrakenRule(match="layer_params").derive(model, 4)
    assert (derived.hidden, derived.heads, derived.ffn_hidden) == (504, 3, 1008)
    with pytest.raises(DesError, match="fixes its Kraken degree at 4.*but TP is 2"):
        KrakenRule().derive(model, 2)
    with pytest.raises(DesError, match="does not divide the 16 heads"):
        KrakenRule().derive(load_model("gpt3-1.3b"), 3)
