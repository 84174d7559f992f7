"""The ``des op`` and ``des validate operators`` commands."""

from __future__ import annotations

import argparse
import json

import pytest
from test_mapper_support import CALIBRATION, REPO

from des.cli import op, validate
from des.errors import DesError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DES_CACHE_DIR", str(tmp_path / "cache"))
    from des.mapper import clear_memory_cache

    clear_memory_cache()


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="des")
    commands = parser.add_subparsers(dest="command")
    op.add_command(commands)
    validate.add_command(commands)
    args = parser.parse_args(argv)
    return args.func(args)


def test_op_matmul_json(capsys):
    assert run(["op", "matmul", "1024", "4096", "4096", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("latency_s", "mapping", "tiles", "waves", "search_s", "cached"):
        assert key in result
    assert result["latency_s"] == pytest.approx(result["standalone_s"] + 21e-6)
    assert result["cached"] is False and result["search_s"] > 0
    assert run(["op", "matmul", "1024", "4096", "4096", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached"] is True and again["search_s"] == 0
    assert again["latency_s"] == result["latency_s"]


@pytest.mark.parametrize(
    "argv",
    [
        ["op", "bmm", "8", "128", "64", "128"],
        ["op", "softmax", "4096", "4096", "--runtime", "graph"],
        ["op", "layernorm", "16", "1024", "--dtype", "bf16"],
        ["op", "gelu", "1000000", "--device", "h100"],
        ["op", "add", "1000"],
        ["op", "attention", "1", "16", "2048", "2048", "128", "--causal", "--device", "mi210"],
    ],
)
def test_op_commands_print_a_summary(argv, capsys):
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "latency" in out and "tiles" in out and "mapping" in out


def test_device_yaml_path(capsys):
    path = REPO / "topologies" / "devices" / "a100.yaml"
    assert run(["op", "matmul", "64", "64", "64", "--device", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["device"] == "a100"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["op", "matmul", "0", "4", "4"], "must be positive"),
        (["op", "gelu", "10", "--dtype", "fp64"], "unknown dtype"),
        (["op", "gelu", "10", "--runtime", "turbo"], "unknown runtime profile"),
        (["op", "gelu", "10", "--device", "tpu9"], "unknown device"),
    ],
)
def test_bad_input_raises_des_error(argv, message):
    with pytest.raises(DesError, match=message):
        run(argv)


def test_non_integer_dimension_is_rejected_by_the_parser():
    with pytest.raises(SystemExit) as exit_info:
        run(["op", "matmul", "2.5", "4", "4"])
    assert exit_info.value.code == 2


@pytest.mark.skipif(not CALIBRATION.is_dir(), reason=f"calibration data not found at {CALIBRATION}")
def test_validate_operators_prints_the_table(capsys):
    assert run(["validate", "operators", "--calibration-dir", str(CALIBRATION)]) == 0
    out = capsys.readouterr().out
    assert "a100_matmul.csv: MAPE" in out and "a100_softmax.csv: MAPE" in out
    assert run(["validate", "operators", "--calibration-dir", str(CALIBRATION), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["rows"]) == 32 and set(data["mape_pct"]) == {"a100_matmul.csv", "a100_softmax.csv"}
