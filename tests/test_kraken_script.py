"""scripts/kraken_ttft.py on a small grid: CSV columns and rows, charts, the printed
geometric mean, and a point that does not fit reported as such (empty TTFT cell)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from des.study import PointSpec

ARCHS = ("standard", "parallel", "kraken")


@pytest.fixture(scope="module")
def kraken_ttft(load_script):
    return load_script("kraken_ttft")


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def test_small_grid(kraken_ttft, tmp_path, capsys):
    code = kraken_ttft.main(["--models", "gpt3-1.3b", "--seqs", "128", "--tps", "4", "8", "--layers", "2", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    columns, rows = read_csv(tmp_path / "kraken_ttft.csv")
    assert columns[:5] == ["model", "seq", "tp", "arch", "ttft_s"]
    assert sorted((r["model"], r["seq"], r["tp"], r["arch"]) for r in rows) == sorted(
        ("gpt3-1.3b", "128", tp, arch) for tp in ("4", "8") for arch in ARCHS
    )
    ttft = {(r["tp"], r["arch"]): float(r["ttft_s"]) for r in rows}
    assert all(value > 0 for value in ttft.values())
    assert all(r["fits"] == "True" for r in rows)
    assert ttft[("8", "kraken")] < ttft[("8", "standard")], "Kraken beats standard at 8-way"
    # Both metrics, each named; the extremes; the 8-way rule, checked against the CSV.
    assert "geomean speed-up T_standard / T_kraken - 1" in out and "over 2 points" in out
    assert "geomean latency reduction 1 - T_kraken / T_standard" in out
    assert "speed-up per point: least" in out
    fastest = min(ARCHS, key=lambda arch: ttft[("8", arch)]) == "kraken"
    assert f"at every 8-way point: {'yes' if fastest else 'no'} ({int(fastest)} of 1)" in out
    speedup = ttft[("4", "standard")] / ttft[("4", "kraken")] * ttft[("8", "standard")] / ttft[("8", "kraken")]
    assert f"{(speedup ** 0.5 - 1) * 100:.1f} % over 2 points" in out
    for name in ("kraken_speedup.png", "kraken_breakdown.png", *(f"gantt-{arch}.png" for arch in ARCHS)):
        path = tmp_path / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"wrote {path}" in out


def test_point_that_does_not_fit_is_not_timed(kraken_ttft):
    # GPT-3 175B at TP=4 needs more than an A100's 80 GiB: refused before simulating.
    row = kraken_ttft.run_one(PointSpec(model="gpt3-175b", arch="standard", tp=4, seq=128))
    assert row["ttft_s"] is None and row["fits"] is False
    assert "needs" in row["error"]


def test_point_that_does_not_fit_has_an_empty_cell(kraken_ttft, tmp_path, capsys):
    code = kraken_ttft.main(
        ["--models", "gpt3-175b", "--seqs", "128", "--tps", "4", "--archs", "standard", "kraken", "--no-plots",
         "--full-depth", "--out", str(tmp_path)]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    _, rows = read_csv(tmp_path / "kraken_ttft.csv")
    assert [(r["arch"], r["ttft_s"], r["fits"]) for r in rows] == [("standard", "", "False"), ("kraken", "", "False")]
    assert "does not fit" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kraken_ttft.csv"]
