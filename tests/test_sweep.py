"""``des sweep``: points, their rows against ``des run``, failures, resume and bad input.

Tiny points (GPT-3 1.3B, one layer, short prompts), so each runs in milliseconds.
The Dask cluster test is in ``test_sweep_dask.py``.
"""

from __future__ import annotations

import csv
import json
import socket
import time
from pathlib import Path

import pytest
import yaml

from des.cli import main
from des.errors import DesError
from des.study import PointSpec, run_point
from des.sweep import apply_overrides, load_sweep
from des.sweep.output import WALL_COLUMN, columns

BASE = {"system": "dgx-a100", "model": "gpt3-1.3b", "arch": "standard", "layers": 1}


def write_sweep(folder: Path, axes: dict, base: dict | None = None, mode: str = "grid", name: str = "sweep.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({"base": BASE if base is None else base, "mode": mode, "axes": axes}))
    return path


def sweep(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main(["sweep", *map(str, argv), "--quiet"])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def without_wall(table: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != WALL_COLUMN} for row in table]


def run_json(capsys, *argv) -> dict:
    code = main(["run", *map(str, argv), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


# --------------------------------------------------------------------------- points


def test_grid_is_the_cartesian_product_and_each_row_matches_des_run(tmp_path, capsys):
    path = write_sweep(tmp_path, {"run.tp": [2, 4], "seq": [64, 128]})
    out = tmp_path / "out.csv"
    code, stdout, err = sweep(capsys, path, "--out", out, "--jobs", "1")
    assert code == 0, err
    assert "4 points" in stdout
    table = rows(out)
    assert [(r["point"], r["run.tp"], r["seq"]) for r in table] == [
        ("0", "2", "64"), ("1", "2", "128"), ("2", "4", "64"), ("3", "4", "128")]
    assert list(table[0]) == columns(load_sweep(path))
    for row in table:
        assert row["status"] == "ok" and row["error"] == ""
        spec = PointSpec(model="gpt3-1.3b", arch="standard", tp=int(row["run.tp"]), seq=int(row["seq"]), layers=1)
        record = run_point(spec).record
        assert float(row["latency_s"]) == record["latency_s"]
        assert float(row["exposed_allreduce_s"]) == record["breakdown_s"]["exposed_allreduce"]
        assert int(row["events"]) == record["events"]
        assert float(row["memory_total_bytes"]) == record["memory_bytes_per_device"]["total"]
    # ...and the command line itself, for one point.
    cli = run_json(capsys, "--model", "gpt3-1.3b", "--arch", "standard", "--tp", "4", "--seq", "128", "--layers", "1")
    assert float(table[3]["latency_s"]) == cli["latency_s"]


def test_system_and_model_fields_by_dotted_path(tmp_path, capsys):
    path = write_sweep(tmp_path, {
        "system.device.compute_units": [54, 108],
        "system.topology.link.bandwidth_bytes_per_s": ["150 GB/s", "300 GB/s"],
        "model.hidden": [2048],
    }, base={**BASE, "tp": 4, "seq": 128})
    out = tmp_path / "out.csv"
    code, _, err = sweep(capsys, path, "--out", out, "--jobs", "1")
    assert code == 0, err
    table = rows(out)
    assert [r["status"] for r in table] == ["ok"] * 4
    # dgx-a100 names the a100 preset: 108 units and 300 GB/s are the preset itself.
    plain = run_json(capsys, "--model", "gpt3-1.3b", "--arch", "standard", "--tp", "4", "--seq", "128", "--layers", "1")
    assert float(table[3]["latency_s"]) == plain["latency_s"]
    latencies = [float(r["latency_s"]) for r in table]
    assert latencies[0] > latencies[2], "half the compute units is slower"
    assert latencies[2] > latencies[3], "half the link bandwidth is slower"
    spec = PointSpec(model="gpt3-1.3b", arch="standard", tp=4, seq=128, layers=1,
                     system_overrides=(("device.compute_units", 54), ("topology.link.bandwidth_bytes_per_s", "150 GB/s")))
    assert latencies[0] == run_point(spec).record["latency_s"]


def test_zip_pairs_the_axes(tmp_path, capsys):
    path = write_sweep(tmp_path, {"tp": [2, 4, 8], "seq": [64, 128, 256]}, mode="zip")
    out = tmp_path / "out.csv"
    assert sweep(capsys, path, "--out", out, "--jobs", "1")[0] == 0
    assert [(r["tp"], r["seq"]) for r in rows(out)] == [("2", "64"), ("4", "128"), ("8", "256")]


def test_failed_point_is_recorded_and_the_rest_complete(tmp_path, capsys):
    # GPT-3 175B, whole model, TP 4: about 84 GiB per GPU of 80 GiB: does not fit.
    base = {"system": "hgx-a100-4", "arch": "standard", "tp": 4, "seq": 64}
    path = write_sweep(tmp_path, {"model": ["gpt3-1.3b", "gpt3-175b", "gpt3-1.3b"], "batch": [1]}, base=base)
    out = tmp_path / "out.csv"
    code, stdout, err = sweep(capsys, path, "--out", out, "--jobs", "2")
    assert code == 0, err
    table = rows(out)
    assert [r["status"] for r in table] == ["ok", "error", "ok"]
    assert table[1]["error"].startswith("DoesNotFitError:")
    assert table[1]["latency_s"] == "" and table[1]["model"] == "gpt3-175b"
    assert table[0]["latency_s"] == table[2]["latency_s"] != ""
    assert "2 ok, 1 error)" in stdout


def test_process_pool_equals_serial_and_output_is_deterministic(tmp_path, capsys):
    base = {"model": "gpt3-1.3b", "layers": 1}
    path = write_sweep(tmp_path, {"tp": [2, 4, 8], "seq": [64, 96, 128, 256], "arch": ["standard", "kraken"]}, base=base)
    serial, pool, again = tmp_path / "serial.csv", tmp_path / "pool.csv", tmp_path / "again.csv"
    assert sweep(capsys, path, "--out", serial, "--jobs", "1")[0] == 0
    assert sweep(capsys, path, "--out", pool, "--jobs", "2")[0] == 0
    assert sweep(capsys, path, "--out", again, "--jobs", "2")[0] == 0
    assert without_wall(rows(serial)) == without_wall(rows(pool)) == without_wall(rows(again))
    assert [int(r["point"]) for r in rows(pool)] == list(range(24))


def test_resume_runs_only_the_missing_points(tmp_path, capsys):
    path = write_sweep(tmp_path, {"tp": [2, 4], "seq": [64, 128, 256]})
    out = tmp_path / "out.csv"
    assert sweep(capsys, path, "--out", out, "--jobs", "1")[0] == 0
    full = rows(out)
    lines = out.read_text().splitlines(keepends=True)
    # Keep points 0 and 1, drop 2 and 3, keep 4, and leave half of point 5's line.
    out.write_text("".join([lines[0], lines[1], lines[2], lines[5], lines[6][:20]]))
    code, stdout, err = sweep(capsys, path, "--out", out, "--jobs", "2", "--resume")
    assert code == 0, err
    assert "3 points run" in stdout and "3 already done" in stdout
    assert without_wall(rows(out)) == without_wall(full)
    kept = {r["point"]: r["wall_s"] for r in full if r["point"] in ("0", "1", "4")}
    assert {r["point"]: r["wall_s"] for r in rows(out) if r["point"] in kept} == kept
    # Everything done: nothing runs.
    code, stdout, _ = sweep(capsys, path, "--out", out, "--resume")
    assert code == 0 and "0 points run" in stdout


def test_resume_of_another_sweeps_output_is_refused(tmp_path, capsys):
    first = write_sweep(tmp_path, {"tp": [2, 4]}, name="a.yaml")
    other = write_sweep(tmp_path, {"tp": [2, 8]}, name="b.yaml")
    out = tmp_path / "out.csv"
    assert sweep(capsys, first, "--out", out, "--jobs", "1")[0] == 0
    before = out.read_text()
    code, _, err = sweep(capsys, other, "--out", out, "--resume")
    assert code == 2
    assert "different sweep" in err and err.count("\n") == 1
    assert out.read_text() == before
    # A CSV that des sweep did not write.
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    code, _, err = sweep(capsys, first, "--out", foreign, "--resume")
    assert code == 2 and "not written by des sweep" in err


def test_default_output_is_named_after_the_sweep(tmp_path, capsys, monkeypatch):
    path = write_sweep(tmp_path, {"tp": [2]}, name="mine.yaml")
    monkeypatch.chdir(tmp_path)
    assert sweep(capsys, path, "--jobs", "1", "--no-parquet")[0] == 0
    assert (tmp_path / "mine.csv").is_file() and (tmp_path / "mine.csv.sweep.json").is_file()


def test_example_sweep_is_valid(capsys):
    example = Path(__file__).resolve().parents[1] / "scripts" / "sweeps" / "example.yaml"
    code, stdout, err = sweep(capsys, example, "--dry-run")
    assert code == 0, err
    assert "9 points" in stdout


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("axes", "expected"),
    [
        ({"system.device.compute_unit": [54]}, "did you mean 'compute_units'"),
        ({"system.devic.compute_units": [54]}, "no field 'devic' (did you mean 'device'?)"),
        ({"system.collective.bandwith_efficiency": [0.5]}, "did you mean 'bandwidth_efficiency'"),
        ({"model.hiden": [1024]}, "did you mean 'hidden'"),
        ({"run.tpp": [2]}, "did you mean 'run.tp'"),
        ({"sytem.device.compute_units": [2]}, "did you mean 'system'"),
        ({"run.tp": ["two"]}, "tp must be a whole number"),
        ({"tp": [True]}, "tp must be a whole number"),
        ({"arch": ["megatron"]}, "allowed: standard, parallel, kraken"),
        ({"system.device.compute_units": [54, "lots"]}, "value 'lots'"),
        ({"system.device.dram_bandwidth_bytes_per_s": ["fast"]}, "dram_bandwidth_bytes_per_s"),
        ({"model": ["gpt3-1.3b", "gpt-3-13b"]}, "did you mean 'gpt3-13b'"),
        ({"tp": []}, "non-empty list"),
        ({"tp": 2}, "non-empty list"),
    ],
)
def test_bad_axis_is_one_line_and_exit_2(tmp_path, capsys, axes, expected):
    path = write_sweep(tmp_path, axes)
    out = tmp_path / "out.csv"
    code, stdout, err = sweep(capsys, path, "--out", out)
    assert code == 2
    assert expected in err, err
    assert err.startswith("des: error: ") and err.count("\n") == 1
    assert str(path) in err
    assert not out.exists(), "nothing is written or run when a point is bad"


def test_bad_axis_names_the_axis(tmp_path, capsys):
    path = write_sweep(tmp_path, {"tp": [2], "system.device.compute_units": [54, -3]})
    code, _, err = sweep(capsys, path, "--dry-run")
    assert code == 2
    assert "axis 'system.device.compute_units' value -3" in err


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"base": BASE, "axes": {"tp": [2, 4], "seq": [64]}, "mode": "zip"}, "same length"),
        ({"base": BASE, "axes": {"tp": [2]}, "mode": "random"}, "allowed: grid, zip"),
        ({"base": BASE, "axis": {"tp": [2]}}, "did you mean 'axes'"),
        ({"base": {**BASE, "layer": 1}, "axes": {"tp": [2]}}, "did you mean 'run.layers'"),
        ({"base": BASE}, "field 'axes'"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_sweep_file(tmp_path, capsys, document, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    code, _, err = sweep(capsys, path, "--dry-run")
    assert code == 2
    assert expected in err, err


def test_missing_sweep_file(tmp_path, capsys):
    code, _, err = sweep(capsys, tmp_path / "nope.yaml")
    assert code == 2
    assert "nope.yaml: no such file" in err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_scheduler_fails_fast(tmp_path, capsys):
    pytest.importorskip("distributed", reason="the 'distributed' package is not installed")
    path = write_sweep(tmp_path, {"tp": [2]})
    out = tmp_path / "out.csv"
    start = time.monotonic()
    code, _, err = sweep(capsys, path, "--out", out, "--scheduler", f"tcp://127.0.0.1:{free_port()}", "--timeout-s", "1")
    assert code == 2
    assert time.monotonic() - start < 15
    assert "cannot reach the Dask scheduler" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("unreachable", "cannot reach the Dask scheduler"),
        ("not a url", "expected tcp://HOST:PORT"),
        ("tcp://127.0.0.1:notaport", "the port must be a number"),
        ("foo://127.0.0.1:8786", "unknown scheme 'foo://'"),
        ("tcp://", "expected tcp://HOST:PORT"),
    ],
)
def test_a_sweep_that_cannot_start_leaves_an_existing_csv_byte_identical(tmp_path, capsys, address, fragment):
    pytest.importorskip("distributed", reason="the 'distributed' package is not installed")
    path = write_sweep(tmp_path, {"tp": [2, 4]})
    out = tmp_path / "out.csv"
    assert sweep(capsys, path, "--out", out, "--jobs", "1")[0] == 0
    # One point left to do, so --resume too has to reach the scheduler.
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:-1]))
    before = (out.read_bytes(), (tmp_path / "out.csv.sweep.json").read_bytes())
    if address == "unreachable":
        address = f"tcp://127.0.0.1:{free_port()}"
    start = time.monotonic()
    for extra in ((), ("--resume",)):
        code, _, err = sweep(capsys, path, "--out", out, "--scheduler", address, "--timeout-s", "1", *extra)
        assert code == 2 and fragment in err, err
        assert err.count("\n") == 1 and "Traceback" not in err and "__del__" not in err, err
    assert time.monotonic() - start < 10, "no stall"
    assert (out.read_bytes(), (tmp_path / "out.csv.sweep.json").read_bytes()) == before


def test_everything_done_leaves_the_csv_untouched(tmp_path, capsys):
    path = write_sweep(tmp_path, {"tp": [2, 4]})
    out = tmp_path / "out.csv"
    assert sweep(capsys, path, "--out", out, "--jobs", "1")[0] == 0
    before = out.read_bytes()
    code, stdout, _ = sweep(capsys, path, "--out", out, "--resume", "--jobs", "1")
    assert code == 0 and "0 points run" in stdout
    assert out.read_bytes() == before


def test_an_output_that_cannot_be_written_is_refused_before_any_point(tmp_path, capsys):
    path = write_sweep(tmp_path, {"tp": [2, 4]})
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = sweep(capsys, path, "--out", blocker / "out.csv", "--jobs", "1")
    assert code == 2 and "not a folder" in err and err.count("\n") == 1


# --------------------------------------------------------------------------- overrides


def test_overrides_copy_and_expand():
    data = {"device": "a100", "topology": {"link": {"bandwidth_bytes_per_s": 1}}}
    changed = apply_overrides(data, [("device.compute_units", 54), ("topology.link.latency_s", "1 us")], "x.yaml",
                              expand=lambda keys, value: {"name": value, "compute_units": 108})
    assert changed == {"device": {"name": "a100", "compute_units": 54},
                       "topology": {"link": {"bandwidth_bytes_per_s": 1, "latency_s": "1 us"}}}
    assert data["device"] == "a100", "the original is not changed"
    with pytest.raises(DesError, match="did you mean 'topology'"):
        apply_overrides(data, [("topolgy.link.latency_s", 1)], "x.yaml")
    with pytest.raises(DesError, match="not a mapping"):
        apply_overrides(data, [("device.compute_units", 1)], "x.yaml")
    listed = apply_overrides({"nodes": [{"a": 1}, {"a": 2}]}, [("nodes.1.a", 3)], "x.yaml")
    assert listed == {"nodes": [{"a": 1}, {"a": 3}]}
    with pytest.raises(DesError, match="index with 0..1"):
        apply_overrides({"nodes": [{"a": 1}, {"a": 2}]}, [("nodes.2.a", 3)], "x.yaml")


def test_parquet_copy_when_pyarrow_is_installed(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed (the Parquet copy is optional)")
    path = write_sweep(tmp_path, {"tp": [2, 4]})
    out = tmp_path / "out.csv"
    code, stdout, err = sweep(capsys, path, "--out", out, "--jobs", "1")
    assert code == 0, err
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [row["latency_s"] for row in table] == [float(r["latency_s"]) for r in rows(out)]
    assert "out.parquet" in stdout


# --------------------------------------------------------------------------- serving


def test_a_serving_sweep_runs_des_serve_at_each_point(tmp_path, capsys):
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({
        "base": {"system": "dgx-h100", "model": "llama-3-8b", "tp": 2},
        "serve": {"requests": 5, "prompt_tokens": "64-128", "output_tokens": "3-6", "seed": 2},
        "axes": {"serve.rate": [10, 40]},
    }))
    out = tmp_path / "serve.csv"
    code, _stdout, err = sweep(capsys, path, "--out", out, "--jobs", "1")
    assert code == 0, err
    table = rows(out)
    assert [r["serve.rate"] for r in table] == ["10", "40"] and all(r["status"] == "ok" for r in table)
    for row in table:
        code = main(["serve", "--system", "dgx-h100", "--model", "llama-3-8b", "--tp", "2", "--rate", row["serve.rate"],
                     "--requests", "5", "--prompt-tokens", "64-128", "--output-tokens", "3-6", "--seed", "2", "--json"])
        record = json.loads(capsys.readouterr()[0])
        assert code == 0
        assert float(row["ttft_s_p99"]) == record["ttft_s"]["p99"] and float(row["tpot_s_mean"]) == record["tpot_s"]["mean"]
        assert float(row["throughput_tokens_per_s"]) == record["throughput_tokens_per_s"]
    pool = tmp_path / "pool.csv"
    assert sweep(capsys, path, "--out", pool, "--jobs", "2")[0] == 0
    assert without_wall(rows(pool)) == without_wall(table)


@pytest.mark.parametrize(("document", "expected"), [
    ({"serve": {"requests": 5}, "axes": {"tp": [2]}}, "point 0 (run.tp=2): a serving point needs serve.rate"),
    ({"serve": {"rate": -1, "requests": 5}, "axes": {"tp": [2]}}, "serve.rate must be a positive number"),
    ({"serve": {"requests": 5}, "axes": {"serve.rat": [1]}}, "did you mean 'serve.rate'"),
    ({"serve": {"rate": 1, "requests": 5, "scheduler": "lifo"}, "axes": {"tp": [2]}}, "allowed: fcfs, sjf"),
])
def test_bad_serving_sweep_is_one_line(tmp_path, capsys, document, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"base": {"system": "dgx-h100", "model": "llama-3-8b"}, **document}))
    code, _out, err = sweep(capsys, path, "--dry-run")
    assert code == 2 and expected in err and err.count("\n") == 1, err


def test_example_serving_sweep_is_valid(capsys):
    example = Path(__file__).resolve().parents[1] / "scripts" / "sweeps" / "serving.yaml"
    code, stdout, err = sweep(capsys, example, "--dry-run")
    assert code == 0, err
    assert "8 points" in stdout
