"""``des run``: the command-line contract of issue 4, its outputs and every bad input.

Small and fast: GPT-3 1.3B, one to three layers, short prompts.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import call

from des.metrics import BREAKDOWN_CATEGORIES, overlapping_spans
from des.study import PointSpec, run_point
from des.trace import CATEGORIES, Span

ROOT = Path(__file__).resolve().parents[1]
SMALL = ("--model", "gpt3-1.3b", "--tp", "4", "--seq", "128", "--layers", "1")
#: The same for decode, which takes no --seq (it attends over --kv-len).
SMALL_DECODE = ("--model", "gpt3-1.3b", "--tp", "4", "--layers", "1")
KERNEL_CATS = {"norm", "gemm", "attention", "elementwise", "collective"}


def run_json(capsys, *argv) -> dict:
    code, out, err = call(capsys, "run", *argv, "--json")
    assert code == 0, err
    assert out.strip().count("\n") == 0, "--json prints one object on one line"
    return json.loads(out)


def chrome_spans(path) -> list[Span]:
    """Spans back from a Chrome trace file (device from pid, resource from tid names)."""
    events = json.loads(path.read_text())["traceEvents"]
    process = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    thread = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    return [
        Span(process[e["pid"]], thread[(e["pid"], e["tid"])], e["name"], e["cat"], e["ts"] * 1e-6, (e["ts"] + e["dur"]) * 1e-6)
        for e in events
        if e["ph"] == "X"
    ]


def x_categories(path) -> set[str]:
    return {e["cat"] for e in json.loads(path.read_text())["traceEvents"] if e["ph"] == "X"}


# --------------------------------------------------------------------------- one point


def test_json_has_the_contract_fields(capsys):
    record = run_json(capsys, "--arch", "standard", *SMALL)
    for key in ("latency_s", "breakdown_s", "per_op", "memory_bytes_per_device", "events", "wall_s"):
        assert key in record, key
    assert record["latency_s"] > 0
    assert record["events"] > 0
    assert record["wall_s"] > 0
    assert record["metric"] == "ttft_s"
    assert set(record["breakdown_s"]) == set(BREAKDOWN_CATEGORIES)
    assert math.isclose(sum(record["breakdown_s"].values()), record["latency_s"], rel_tol=1e-9)
    for op in ("qkv", "attention", "wo", "w1", "w2", "layernorm", "gelu", "allreduce"):
        assert record["per_op"].get(op, 0) > 0, op
    memory = record["memory_bytes_per_device"]
    assert memory["total"] > 0 and memory["weights"] > 0
    assert memory["total"] <= record["memory_capacity_bytes"]


def test_json_latency_equals_run_point(capsys):
    record = run_json(capsys, "--arch", "kraken", *SMALL)
    point = run_point(PointSpec(model="gpt3-1.3b", arch="kraken", tp=4, seq=128, layers=1))
    assert record["latency_s"] == point.record["latency_s"]
    assert record["per_op"] == pytest.approx(point.record["per_op"], rel=1e-12)


def test_unfused_attention_has_its_three_kernels(capsys):
    record = run_json(capsys, "--arch", "standard", *SMALL, "--attention", "unfused")
    for op in ("qk", "softmax", "av"):
        assert record["per_op"].get(op, 0) > 0, op
    assert "attention" not in record["per_op"]
    assert math.isclose(sum(record["breakdown_s"].values()), record["latency_s"], rel_tol=1e-9)


def test_decode_reports_time_per_output_token(capsys):
    record = run_json(capsys, "--arch", "standard", *SMALL_DECODE, "--phase", "decode", "--kv-len", "512")
    assert record["metric"] == "tpot_s"
    assert record["phase"] == "decode" and record["kv_len"] == 512
    assert record["seq"] is None  # decode ignores the prompt length, and says so
    assert record["latency_s"] > 0
    assert math.isclose(sum(record["breakdown_s"].values()), record["latency_s"], rel_tol=1e-9)


def test_trace_and_gantt_written(capsys, tmp_path):
    trace, png = tmp_path / "t.json", tmp_path / "g.png"
    code, out, err = call(capsys, "run", "--arch", "standard", *SMALL, "--trace", str(trace), "--gantt", str(png))
    assert code == 0, err
    assert str(trace) in out and str(png) in out
    cats = x_categories(trace)
    assert KERNEL_CATS <= cats, cats
    assert "lm_head" not in cats, "--layers runs no LM head"
    assert cats <= set(CATEGORIES)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_whole_model_trace_has_lm_head(capsys, tmp_path):
    trace = tmp_path / "t.json"
    code, _, err = call(capsys, "run", "--arch", "standard", "--model", "gpt3-1.3b", "--tp", "4", "--seq", "32", "--trace", str(trace))
    assert code == 0, err
    cats = x_categories(trace)
    assert KERNEL_CATS | {"lm_head"} <= cats, cats
    assert cats <= set(CATEGORIES)


def test_out_writes_trace_and_gantt_per_arch(capsys, tmp_path):
    out_dir = tmp_path / "o"
    code, _, err = call(capsys, "run", "--arch", "parallel", *SMALL, "--out", str(out_dir), "--json")
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["gantt-parallel.png", "trace-parallel.json"]
    assert f"wrote {out_dir / 'trace-parallel.json'}" in err, "with --json the 'wrote' lines go to stderr"


def test_trace_is_byte_identical_across_runs(capsys, tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    argv = ("run", "--arch", "kraken", "--model", "gpt3-1.3b", "--tp", "8", "--seq", "128", "--layers", "2")
    assert call(capsys, *argv, "--trace", str(first))[0] == 0
    assert call(capsys, *argv, "--trace", str(second))[0] == 0
    assert first.read_bytes() == second.read_bytes()
    # And in a fresh interpreter with another hash seed (no set or dict order leaks in).
    third = tmp_path / "c.json"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, "-m", "des.cli", *argv, "--trace", str(third)], check=True, env=env, capture_output=True, cwd=ROOT)
    assert third.read_bytes() == first.read_bytes()


# --------------------------------------------------------------------------- comparison


def test_comparison_table(capsys, tmp_path):
    out_dir = tmp_path / "cmp"
    code, out, err = call(capsys, "run", *SMALL, "--out", str(out_dir))
    assert code == 0, err
    rows = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert "standard" in rows and "kraken" in rows
    assert "kraken vs standard" in out and "reduction" in out
    for name in ("trace-standard.json", "gantt-standard.png", "trace-kraken.json", "gantt-kraken.png"):
        assert (out_dir / name).is_file(), name
        assert name in out


def test_comparison_defaults_to_des_out(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = call(capsys, "run", *SMALL)
    assert code == 0, err
    assert (tmp_path / "des-out" / "trace-kraken.json").is_file()
    assert "des-out" in out


def test_comparison_json_has_baseline_and_speedup(capsys, tmp_path):
    record = run_json(capsys, *SMALL, "--out", str(tmp_path))
    assert record["arch"] == "kraken"
    assert record["baseline"]["arch"] == "standard"
    assert record["speedup"] == pytest.approx(record["baseline"]["latency_s"] / record["latency_s"], rel=1e-12)


# --------------------------------------------------------------------------- Kraken overlap


def test_kraken_allreduces_overlap_attention_standard_ones_do_not(capsys, tmp_path):
    argv = ("run", "--model", "gpt3-1.3b", "--tp", "8", "--layers", "3", "--seq", "512")
    for arch in ("kraken", "standard"):
        trace = tmp_path / f"{arch}.json"
        code, _, err = call(capsys, *argv, "--arch", arch, "--trace", str(trace))
        assert code == 0, err
        spans = chrome_spans(trace)
        allreduces = [s for s in spans if s.category == "collective"]
        assert len(allreduces) >= 8 * 2, arch
        # Kraken's all-reduce runs beside the next layer's attention block (LN1, the QKV
        # GEMM, attention, the output projection); a small one may end within its GEMMs.
        overlapped = {(device, a) for device, a, _ in overlapping_spans(spans, "collective", ("attention", "gemm", "norm"))}
        if arch == "kraken":
            missing = [(s.device, s.name) for s in allreduces if (s.device, s) not in overlapped]
            assert not missing, f"all-reduces without the attention block beside them: {missing[:5]}"
        else:
            beside = {(device, a) for device, a, _ in overlapping_spans(spans, "collective", ("attention",))}
            assert not beside, "a standard layer's all-reduce blocks: no attention runs beside it"


# --------------------------------------------------------------------------- bad input


def expect_error(capsys, tmp_path, argv, *fragments):
    trace, out_dir = tmp_path / "never.json", tmp_path / "never-out"
    code, out, err = call(capsys, "run", *argv, "--trace", str(trace), "--out", str(out_dir))
    assert code == 2, (code, err)
    assert err.startswith("des: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    assert not trace.exists() and not out_dir.exists(), "nothing may be written on bad input"
    assert out == ""
    return err


def test_unknown_model(capsys, tmp_path):
    expect_error(capsys, tmp_path, ["--model", "gpt3-9b", "--layers", "1"], "gpt3-9b", "gpt3-1.3b")


def test_unknown_arch(capsys, tmp_path):
    expect_error(capsys, tmp_path, ["--arch", "moe", *SMALL], "--arch", "moe")


def test_unknown_system(capsys, tmp_path):
    expect_error(capsys, tmp_path, ["--system", "dgx-z900", "--arch", "standard", *SMALL], "dgx-z900", "dgx-a100")


def test_tp_that_does_not_divide_the_heads(capsys, tmp_path):
    # dgx-a100 has 8 devices, so TP=3 fails on the 16 heads, not on the device count.
    expect_error(capsys, tmp_path, ["--arch", "standard", "--model", "gpt3-1.3b", "--tp", "3", "--layers", "1", "--seq", "128"], "3", "16 heads")


def test_more_tp_than_devices(capsys, tmp_path):
    expect_error(capsys, tmp_path, ["--arch", "standard", "--model", "gpt3-1.3b", "--tp", "16", "--layers", "1", "--seq", "128"], "16", "dgx-a100", "8")


def test_fixed_kraken_degree_differs_from_tp(capsys, tmp_path):
    expect_error(capsys, tmp_path, ["--arch", "kraken", "--model", "kraken-gpt2-125m", "--tp", "8", "--layers", "1", "--seq", "128"], "kraken-gpt2-125m", "4", "8")


def test_fixed_kraken_degree_at_its_tp_runs(capsys):
    record = run_json(capsys, "--arch", "kraken", "--model", "kraken-gpt2-125m", "--tp", "4", "--layers", "1", "--seq", "128")
    assert record["latency_s"] > 0


@pytest.mark.parametrize(
    ("option", "value"),
    [("--seq", "0"), ("--seq", "-5"), ("--batch", "0"), ("--batch", "-1"), ("--tp", "0"), ("--layers", "0"), ("--kv-len", "0")],
)
def test_non_positive_numbers(capsys, tmp_path, option, value):
    expect_error(capsys, tmp_path, ["--arch", "standard", "--model", "gpt3-1.3b", "--tp", "4", option, value], option)


def test_decode_without_kv_len(capsys, tmp_path):
    expect_error(capsys, tmp_path, ["--phase", "decode", "--arch", "standard", *SMALL], "--kv-len")


def test_kv_len_in_prefill(capsys, tmp_path):
    expect_error(capsys, tmp_path, ["--kv-len", "512", "--arch", "standard", *SMALL], "--kv-len", "decode")


@pytest.mark.parametrize("arch", [["--arch", "standard"], []])
def test_model_that_does_not_fit(capsys, tmp_path, arch):
    # GPT-3 175B at TP=4 needs about 82 GiB of weights per device; an A100 has 80 GiB.
    err = expect_error(capsys, tmp_path, [*arch, "--model", "gpt3-175b", "--tp", "4", "--seq", "128"], "gpt3-175b", "needs", "80.0 GiB")
    assert "weights" in err


def test_misspelt_model_field(capsys, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nlayers: 2\nhiden: 2048\nheads: 16\nffn_hidden: 8192\nvocab_size: 50257\nmax_positions: 2048\n"
    )
    expect_error(capsys, tmp_path, ["--model", str(path), "--arch", "standard", "--tp", "4", "--layers", "1"], "mine.yaml", "hiden", "hidden")


def test_out_that_is_a_file(capsys, tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    code, out, err = call(capsys, "run", "--arch", "standard", *SMALL, "--out", str(path))
    assert code == 2
    assert err.startswith("des: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert path.read_text() == "x"


def test_trace_into_missing_folder(capsys, tmp_path):
    trace = tmp_path / "no" / "t.json"
    code, _, err = call(capsys, "run", "--arch", "standard", *SMALL, "--trace", str(trace))
    assert code == 2
    assert err.startswith("des: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not trace.parent.exists()
