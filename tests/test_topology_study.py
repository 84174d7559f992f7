"""scripts/topology_study.py on a small configuration: the families built under the
equal-budget rule, the CSV rows of all three sweeps, the plots and Gantt charts, and a
failed switch port reported as a cut-off GPU rather than a latency."""

from __future__ import annotations

import csv

import pytest

FAMILIES = ("switch", "ring", "torus", "fully_connected", "2_nodes")


@pytest.fixture(scope="module")
def study(load_script):
    return load_script("topology_study")


@pytest.mark.parametrize("family, degree", [("ring", 2), ("torus", 3), ("fully_connected", 7)])
def test_families_share_one_link_budget_per_gpu(study, family, degree):
    system = study.family_system(family)
    graph = system.graph
    assert len(system.devices) == 8
    for device in system.devices:
        total = sum(graph.edges[device, peer]["bandwidth_bytes_per_s"] for peer in graph.neighbors(device))
        assert graph.degree(device) == degree
        assert total == pytest.approx(study.GPU_LINK_BUDGET_BYTES_PER_S)


def test_two_nodes_family_spans_two_machines(study):
    system = study.family_system("2_nodes")
    machines = {system.graph.nodes[d]["node"] for d in system.devices}
    assert (len(system.devices), machines) == (8, {0, 1})
    assert system.collective.library == "nccl"  # NCCL plans its inter-machine hops


def test_small_study(study, tmp_path, capsys):
    code = study.main([
        "--model", "gpt3-1.3b", "--seq", "128", "--layers", "1", "--scales", "0.5", "2", "--out", str(tmp_path),
    ])
    out, err = capsys.readouterr()
    assert code == 0, err
    with (tmp_path / "topology_study.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns, rows = reader.fieldnames, list(reader)
    assert columns[:7] == ["sweep", "topology", "arch", "bandwidth_scale", "latency_scale", "fault", "latency_s"]
    count = {sweep: sum(r["sweep"] == sweep for r in rows) for sweep in ("family", "bandwidth", "latency", "fault")}
    assert count == {"family": 10, "bandwidth": 4, "latency": 4, "fault": 10}
    latency = {(r["sweep"], r["topology"], r["arch"], r["bandwidth_scale"], r["latency_scale"]): r["latency_s"] for r in rows}
    std = "standard"
    assert float(latency[("bandwidth", "dgx-a100", std, "0.5", "1.0")]) > float(latency[("bandwidth", "dgx-a100", std, "2.0", "1.0")])
    # One failed link: the ring is slower, the switch's GPU is cut off (no latency).
    faults = {r["topology"]: r for r in rows if r["sweep"] == "fault" and r["arch"] == std}
    families = {r["topology"]: r for r in rows if r["sweep"] == "family" and r["arch"] == std}
    assert float(faults["ring"]["latency_s"]) > float(families["ring"]["latency_s"])
    assert faults["switch"]["latency_s"] == "" and "cut off" in faults["switch"]["error"]
    assert faults["ring"]["fault"] == "gpu0-gpu1"
    assert "switch without gpu0-nvswitch" in out and "cut off" in out
    names = ["latency_vs_bandwidth.png", "latency_vs_link_latency.png", "families.png", *(f"gantt-{f}.png" for f in FAMILIES)]
    for name in names:
        path = tmp_path / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"wrote {path}" in out


def test_bad_tp(study, tmp_path, capsys):
    assert study.main(["--tp", "16", "--out", str(tmp_path), "--no-plots"]) == 2
    assert "--tp must be between 2 and 8" in capsys.readouterr().err
