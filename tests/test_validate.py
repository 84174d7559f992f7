"""``des validate collectives``: errors by size band, worked by hand, and the verbose table."""

from __future__ import annotations

import math

import pytest
from helpers import calibration_folder, call

from des.units import KiB, MiB
from des.validate.collectives import SIZE_BANDS, Report, Row, format_report, size_band


@pytest.mark.parametrize(
    ("nbytes", "band"),
    [(8, "< 256 KiB"), (256 * KiB - 1, "< 256 KiB"), (256 * KiB, "256 KiB - 16 MiB"),
     (16 * MiB, "256 KiB - 16 MiB"), (16 * MiB + 1, "> 16 MiB"), (1e12, "> 16 MiB")],
)
def test_size_bands_have_the_documented_edges(nbytes, band):
    assert size_band(nbytes) == band


def test_mape_by_band_and_dataset_by_hand():
    rows = (
        Row("a", "s", 2, 2, 1 * KiB, 10.0, 11.0),     # +10 %, small
        Row("a", "s", 2, 2, 2 * KiB, 10.0, 7.0),      # -30 %, small
        Row("a", "s", 2, 2, 1 * MiB, 10.0, 10.5),     # +5 %, mid
        Row("b", "s", 2, 2, 64 * MiB, 10.0, 12.0),    # +20 %, large
    )
    report = Report(rows, {})
    assert report.mape("a", "< 256 KiB") == pytest.approx(0.20)
    assert report.mape("a", "256 KiB - 16 MiB") == pytest.approx(0.05)
    assert math.isnan(report.mape("a", "> 16 MiB"))
    assert report.mape(None, "> 16 MiB") == pytest.approx(0.20)
    assert report.mape() == pytest.approx((0.1 + 0.3 + 0.05 + 0.2) / 4)
    text = format_report(report)
    for label, _low, _high in SIZE_BANDS:
        assert label in text
    assert "20.00 %" in text and "5.00 %" in text


def test_verbose_table_names_algorithm_protocol_and_channels(capsys):
    calibration_folder()
    code, out, err = call(capsys, "validate", "collectives", "--stride", "200", "--verbose")
    assert code == 0, err
    header = out.splitlines()[0]
    assert header.split()[-3:] == ["algorithm", "protocol", "channels"]
    first = out.splitlines()[1].split()
    assert first[-3] in ("ring", "hierarchical") and first[-1].isdigit()
