"""scripts/overlap_study.py and scripts/moe_study.py on small grids."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def overlap(load_script):
    return load_script("overlap_study")


@pytest.fixture(scope="module")
def moe(load_script):
    return load_script("moe_study")


def test_overlap_study_small_grid(overlap, tmp_path, capsys):
    code = overlap.main(["--systems", "dgx-h100", "--phases", "prefill-2048", "decode-2048", "--layers", "4",
                         "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = read_csv(tmp_path / "overlap_study.csv")
    assert sorted((r["phase"], r["arch"]) for r in rows) == sorted(
        (phase, arch) for phase in ("prefill-2048", "decode-2048") for arch in overlap.ARCHS)
    times = {(r["phase"], r["arch"]): float(r["latency_s"]) for r in rows}
    # Each overlapping arrangement beats blocking all-reduces on a long prompt.
    for arch in ("parallel", "kraken", "ladder"):
        assert times[("prefill-2048", arch)] < times[("prefill-2048", "standard")], arch
    speedups = overlap.speedups([{**r, "latency_s": float(r["latency_s"])} for r in rows])
    for arch, table in speedups.items():
        mean = overlap.geometric_mean(table.values())
        assert f"{arch}: geomean speed-up over standard {(mean - 1) * 100:+.1f} %" in out
    for name in ("overlap_speedup.png", "overlap_breakdown.png", "gantt-ladder.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_moe_study_small_grid(moe, tmp_path, capsys):
    code = moe.main(["--models", "mixtral-8x7b", "--phases", "decode-b32", "--skews", "0", "1", "--layers", "2",
                     "--no-plots", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = read_csv(tmp_path / "moe_study.csv")
    by = {r["placement"]: r for r in rows}
    assert by["1 node TP8 EP1"]["alltoall_s"] == "0.0" and float(by["1 node TP8 EP8"]["alltoall_s"]) > 0
    assert by["2 nodes TP16 EP16"]["fits"] == "False" and "not placeable" in out
    skew = read_csv(tmp_path / "moe_skew.csv")
    assert float(skew[1]["latency_s"]) >= float(skew[0]["latency_s"])


def test_a_bad_study_option_is_one_line(overlap, tmp_path, capsys):
    code = overlap.main(["--systems", "no-such-system", "--phases", "decode-2048", "--layers", "1", "--no-plots",
                         "--out", str(tmp_path)])
    _out, err = capsys.readouterr()
    assert code == 2 and err.startswith("overlap_study: error: ") and err.count("\n") == 1


def test_serving_study_small(load_script, tmp_path, capsys):
    serving = load_script("serving_study")
    code = serving.main(["--model", "llama-3-8b", "--tp", "2", "--requests", "8", "--rates", "5", "200",
                         "--prompt-tokens", "128-256", "--output-tokens", "4-8", "--ttft-slo", "0.03",
                         "--no-two-node", "--no-plots", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = read_csv(tmp_path / "serving_study.csv")
    assert sorted((r["arch"], float(r["rate_per_s"])) for r in rows) == [
        ("kraken", 5.0), ("kraken", 200.0), ("ladder", 5.0), ("ladder", 200.0), ("standard", 5.0), ("standard", 200.0)]
    p99 = {(r["arch"], float(r["rate_per_s"])): float(r["ttft_p99_s"]) for r in rows}
    assert p99[("standard", 200.0)] >= p99[("standard", 5.0)]  # queueing at the higher rate
    assert "standard: p99 TTFT <= 0.03 s" in out


def test_serving_study_two_nodes(load_script, tmp_path, capsys):
    serving = load_script("serving_study")
    code = serving.main(["--model", "llama-3-8b", "--tp", "2", "--requests", "8", "--rates", "50", "--archs", "standard",
                         "--prompt-tokens", "128-256", "--output-tokens", "4-8", "--two-node-system", "dgx-h100",
                         "--no-plots", "--out", str(tmp_path)])
    _out, err = capsys.readouterr()
    assert code == 0, err
    setups = {r["arch"]: r for r in read_csv(tmp_path / "serving_study.csv")}
    assert set(setups) == {"standard", "2 replicas", "disaggregated"}
    assert all(int(r["requests"]) == 8 for r in setups.values())
