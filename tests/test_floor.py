"""The noise floor of a measurement table: the best non-decreasing fit, by hand and by property."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from des.units import KiB
from des.validate.collectives import Report, Row
from des.validate.floor import floor_errors, monotone_fit


def _mape(fit, measured):
    return sum(abs(f - y) / y for f, y in zip(fit, measured, strict=True)) / len(measured)


def test_a_rising_table_is_its_own_fit():
    measured = [1.0, 2.0, 2.0, 5.0]
    assert monotone_fit(measured) == measured


def test_a_bimodal_table_pools_at_the_weighted_median():
    # 20, 60, 20: the 1/y weights are 0.05, 1/60, 0.05; pooled, the weighted median is 20,
    # so the 60 row costs 2/3 and the floor is (0 + 2/3 + 0) / 3.
    fit = monotone_fit([20.0, 60.0, 20.0])
    assert fit == [20.0, 20.0, 20.0]
    assert _mape(fit, [20.0, 60.0, 20.0]) == pytest.approx(2 / 9)


def test_a_drop_is_pooled_at_the_lower_value_when_it_weighs_more():
    # 10 then 5: weights 0.1 and 0.2, so the pool sits at 5 (error 0.5 on the first row).
    assert monotone_fit([10.0, 5.0]) == [5.0, 5.0]


def test_floor_errors_follow_the_given_row_order():
    errors = floor_errors([2 * KiB, 1 * KiB], [5.0, 10.0])
    assert errors == pytest.approx([0.0, 0.5])


def test_non_positive_measurements_are_refused():
    with pytest.raises(ValueError, match="positive"):
        monotone_fit([1.0, 0.0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([1.0, 2.0, 3.0, 5.0, 8.0]), min_size=1, max_size=6))
def test_the_fit_is_non_decreasing_and_no_monotone_sequence_does_better(measured):
    fit = monotone_fit(measured)
    assert all(a <= b for a, b in zip(fit, fit[1:], strict=False))
    best = _mape(fit, measured)
    # An optimal L1 isotonic fit takes values among the measurements: try every
    # non-decreasing sequence over them.
    levels = sorted(set(measured))
    for candidate in itertools.combinations_with_replacement(levels, len(measured)):
        assert best <= _mape(candidate, measured) + 1e-12


def test_the_report_floor_is_per_dataset_and_per_band():
    rows = (
        Row("a", "s", 2, 2, 1 * KiB, 20.0, 30.0),
        Row("a", "s", 2, 2, 2 * KiB, 60.0, 30.0),
        Row("a", "s", 2, 2, 4 * KiB, 20.0, 30.0),
        Row("b", "s", 2, 2, 1 * KiB, 60.0, 60.0),   # another table: fitted apart
    )
    report = Report(rows, {})
    assert report.floor("a") == pytest.approx(2 / 9)
    assert report.floor("b") == 0.0
    assert report.floor() == pytest.approx((2 / 3) / 4)
    assert report.floor("a", "< 256 KiB") == pytest.approx(2 / 9)
    assert report.floor() <= report.mape()
