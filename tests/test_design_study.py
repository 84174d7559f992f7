"""scripts/design_study.py on a few designs: rows, costs from the area model, decode
insensitive to compute where it is bandwidth-bound, the Pareto front, and the CSV."""

from __future__ import annotations

import csv

import pytest

from des.area import area_and_cost
from topologies import load_device


@pytest.fixture(scope="module")
def study(load_script):
    return load_script("design_study")


def test_pareto_front_by_hand(study):
    points = [(1.0, 1.0), (2.0, 3.0), (2.0, 2.0), (3.0, 3.0), (0.5, 0.2)]
    # (2, 2) is beaten by (2, 3); (3, 3) costs more for the same throughput.
    assert study.pareto(points) == [0, 1, 4]


def test_small_study(study, tmp_path, capsys):
    designs = ["A100", "1/2 SMs", "DDR5 16 ch"]
    code = study.main(["--model", "gpt3-1.3b", "--layers", "1", "--seq", "256", "--designs", *designs, "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "LLMCompass finding" in out
    with (tmp_path / "design_study.csv").open(newline="", encoding="utf-8") as handle:
        rows = {row["design"]: row for row in csv.DictReader(handle)}
    assert list(rows) == designs
    a100 = rows["A100"]
    assert float(a100["system_cost_usd"]) == pytest.approx(8 * area_and_cost(load_device("a100"))["cost_usd"])
    assert float(a100["prefill_perf_per_cost_vs_a100"]) == pytest.approx(1.0)
    half = rows["1/2 SMs"]
    # Half the units: a smaller die, slower prefill.
    assert float(half["area_mm2"]) < float(a100["area_mm2"])
    assert float(half["ttft_s"]) > float(a100["ttft_s"])
    # DDR5 at 0.8 TB/s instead of 2 TB/s HBM2e: slower decode, cheaper memory.
    ddr = rows["DDR5 16 ch"]
    assert float(ddr["tpot_s"]) > float(a100["tpot_s"])
    assert float(ddr["device_cost_usd"]) < float(a100["device_cost_usd"])
    assert (tmp_path / "design_pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
