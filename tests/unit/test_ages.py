"""The one rule for ages at photo and the years between two photos."""

from datetime import date

import pytest

from matching.ages import age_at, gap_band, years_between
from service.calibration.service import PLACEHOLDER_POLICY
from dataclasses import replace


def test_age_at_photo_from_dates() -> None:
    assert age_at(date(2010, 1, 1), date(2020, 1, 1)) == pytest.approx(10.0, abs=0.01)
    assert age_at(None, date(2020, 1, 1)) is None
    assert age_at(date(2020, 1, 2), date(2020, 1, 1)) is None  # a photo before birth is not an age


def test_years_between_prefers_ages_then_dates() -> None:
    assert years_between(age_a=4.0, taken_a=date(2000, 1, 1), age_b=13.5, taken_b=date(2001, 1, 1)) == 9.5
    by_dates = years_between(age_a=None, taken_a=date(2010, 6, 1), age_b=7.0, taken_b=date(2016, 6, 1))
    assert by_dates == pytest.approx(6.0, abs=0.01)
    assert years_between(age_a=3.0, taken_a=None, age_b=None, taken_b=date(2016, 6, 1)) is None


@pytest.mark.parametrize(
    ("years", "band"),
    [
        (0.0, "0-1"),
        (1.99, "0-1"),
        (2.0, "2-4"),
        (9.9, "5-9"),
        (10.0, "10+"),
        (40.0, "10+"),
        (None, None),
        (float("nan"), None),
    ],
)
def test_gap_bands(years, band) -> None:
    assert gap_band(years) == band


def test_policy_uses_a_gap_threshold_only_where_one_was_calibrated() -> None:
    policy = replace(PLACEHOLDER_POLICY, threshold=0.5, gap_thresholds=(("5-9", 0.56), ("0-1", 0.44)))
    assert policy.threshold_for(0.5) == 0.44
    assert policy.threshold_for(7.0) == 0.56
    assert policy.threshold_for(3.0) == 0.5  # no calibration for 2-4
    assert policy.threshold_for(None) == 0.5
    assert policy.widest_threshold == 0.56
