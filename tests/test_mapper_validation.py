"""The mapper against real A100 measurements (../shared/calibration)."""

from __future__ import annotations

import pytest
from test_mapper_support import CALIBRATION, load_preset

from des.errors import DesError
from des.validate.calibration import calibration_dir
from des.validate.operators import format_validation, validate_operators

needs_calibration = pytest.mark.skipif(
    not (CALIBRATION / "a100_matmul.csv").is_file(),
    reason=f"calibration data not found at {CALIBRATION} (../shared/calibration beside the checkout)",
)

#: Targets of issue 3: mean absolute error per file, and the worst single row.
MAPE_TARGET_PCT = 5.0
ROW_TARGET_PCT = 15.0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import os

    old = os.environ.get("DES_CACHE_DIR")
    os.environ["DES_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    try:
        return validate_operators(load_preset("a100"), CALIBRATION, "eager")
    finally:
        if old is None:
            del os.environ["DES_CACHE_DIR"]
        else:
            os.environ["DES_CACHE_DIR"] = old


@needs_calibration
def test_every_row_is_compared(report):
    files = [row.file for row in report.rows]
    assert files.count("a100_matmul.csv") == 10
    assert files.count("a100_softmax.csv") == 22


@needs_calibration
@pytest.mark.parametrize("name", ["a100_matmul.csv", "a100_softmax.csv"])
def test_mape_within_target(report, name):
    assert report.mape_pct[name] <= MAPE_TARGET_PCT, format_validation(report)


@needs_calibration
def test_no_row_worse_than_target(report):
    worst = max(report.rows, key=lambda row: abs(row.error_pct))
    assert abs(worst.error_pct) <= ROW_TARGET_PCT, format_validation(report)


@needs_calibration
def test_table_names_rows_and_mape(report):
    text = format_validation(report)
    assert "a100_matmul.csv: MAPE" in text and "a100_softmax.csv: MAPE" in text
    assert "matmul(M=4096, K=12288, N=12288, fp16)" in text
    assert "softmax(rows=32, cols=4096, fp16)" in text


def test_calibration_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DES_CALIBRATION_DIR", str(tmp_path))
    assert calibration_dir() == tmp_path
    monkeypatch.setenv("DES_CALIBRATION_DIR", str(tmp_path / "missing"))
    with pytest.raises(DesError, match="DES_CALIBRATION_DIR"):
        calibration_dir()


def test_missing_calibration_file_is_an_error(tmp_path):
    with pytest.raises(DesError, match="a100_matmul.csv"):
        validate_operators(load_preset("a100"), tmp_path)
