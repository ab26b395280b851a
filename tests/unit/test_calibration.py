"""Unit tests for matching.calibration on distributions whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from matching.calibration import (
    DEFAULT_REVIEW_THRESHOLD,
    error_rates,
    pair_distances,
    threshold_for_fmr,
)

TENTHS = [0.1 * i for i in range(1, 11)]  # impostor distances 0.1, 0.2, ..., 1.0


def test_pair_distances_split_by_label() -> None:
    vectors = np.array([[0, 0], [3, 4], [0, 1], [0, 3]], dtype=np.float32)
    genuine, impostor = pair_distances(vectors, ["a", "a", "b", "b"])
    np.testing.assert_allclose(genuine, [5.0, 2.0])
    np.testing.assert_allclose(impostor, [1.0, 3.0, math.sqrt(18), math.sqrt(10)])


def test_pair_distances_counts_all_pairs() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=30)
    genuine, impostor = pair_distances(rng.standard_normal((30, 8)), labels)
    same_pairs = sum(math.comb(int(c), 2) for c in np.bincount(labels))
    assert len(genuine) == same_pairs and len(genuine) + len(impostor) == math.comb(30, 2)


def test_threshold_allows_exactly_the_target_fraction() -> None:
    calibration = threshold_for_fmr([0.05, 0.25, 0.35], TENTHS, target_fmr=0.2)
    # Two of ten impostors (0.1, 0.2) may match; the third (0.3) must not.
    assert TENTHS[1] <= calibration.threshold < TENTHS[2]
    assert calibration.threshold == np.nextafter(TENTHS[2], -np.inf)
    assert calibration.achieved_fmr == pytest.approx(0.2)
    assert calibration.fnmr == pytest.approx(1 / 3)
    assert (calibration.genuine_pairs, calibration.impostor_pairs) == (3, 10)
    assert calibration.target_fmr == 0.2


def test_ties_at_the_boundary_are_excluded_together() -> None:
    calibration = threshold_for_fmr([0.2], [0.1, 0.3, 0.3, 0.3, 0.5], target_fmr=0.4)
    # t >= 0.3 would match 4 of 5 impostors, so t stays below 0.3 and matches only one.
    assert 0.1 <= calibration.threshold < 0.3
    assert calibration.achieved_fmr == pytest.approx(0.2)


def test_target_below_one_pair_puts_threshold_below_all_impostors() -> None:
    calibration = threshold_for_fmr([0.05, 0.5], TENTHS, target_fmr=0.05)
    assert calibration.threshold < 0.1 and calibration.achieved_fmr == 0.0
    assert calibration.fnmr == 0.5
    assert not calibration.reliable  # 10 impostor pairs cannot show a 5% rate


@pytest.mark.parametrize("pairs, reliable", [(1000, True), (999, False)])
def test_reliability_needs_one_over_target_impostor_pairs(pairs: int, reliable: bool) -> None:
    impostor = np.linspace(0.5, 1.5, pairs)
    assert threshold_for_fmr([0.3], impostor, target_fmr=0.001).reliable is reliable


def test_threshold_is_the_largest_meeting_the_target() -> None:
    rng = np.random.default_rng(1)
    genuine, impostor = rng.normal(0.5, 0.08, 500), rng.normal(0.8, 0.08, 5000)
    for target in (0.001, 0.01, 0.1, 0.5):
        threshold = threshold_for_fmr(genuine, impostor, target).threshold
        assert error_rates(genuine, impostor, threshold)[0] <= target
        assert error_rates(genuine, impostor, np.nextafter(threshold, np.inf))[0] > target


def test_error_rates_by_hand() -> None:
    fmr, fnmr = error_rates([0.2, 0.4, 0.6, 0.8], [0.5, 0.7, 0.9], threshold=0.6)
    assert fmr == pytest.approx(1 / 3)  # 0.5 matches; inclusive boundary
    assert fnmr == pytest.approx(0.25)  # only 0.8 fails: 0.6 is exactly at the threshold
    assert error_rates([0.6], [0.6], 0.6) == (1.0, 0.0)


@pytest.mark.parametrize(
    "genuine, impostor, target",
    [
        ([], TENTHS, 0.1),
        ([0.1], [], 0.1),
        ([0.1], TENTHS, 0.0),
        ([0.1], TENTHS, 1.0),
        ([0.1], TENTHS, float("nan")),
        ([float("nan")], TENTHS, 0.1),
        ([0.1], [-0.2, 0.3], 0.1),
        ([[0.1]], TENTHS, 0.1),
    ],
)
def test_bad_inputs_are_refused(genuine, impostor, target) -> None:
    with pytest.raises(ValueError):
        threshold_for_fmr(genuine, impostor, target)


def test_empty_pairs_message_is_clear() -> None:
    with pytest.raises(ValueError, match="no impostor pairs"):
        threshold_for_fmr([0.1], [], 0.01)


def test_pair_distances_refuses_mismatched_labels() -> None:
    with pytest.raises(ValueError):
        pair_distances(np.zeros((3, 4)), ["a", "b"])


def test_default_threshold_is_a_plausible_distance() -> None:
    assert isinstance(DEFAULT_REVIEW_THRESHOLD, float) and 0.0 < DEFAULT_REVIEW_THRESHOLD < 2.0


def test_thresholds_by_gap_only_where_the_band_can_show_the_target() -> None:
    from matching.calibration import thresholds_by_gap

    pairs = {
        "0-1": ([0.05, 0.25, 0.35], TENTHS),  # ten impostor pairs: enough for 0.2, as threshold_for_fmr
        "2-4": ([0.3], [0.5, 0.6, 0.7, 0.8]),  # four: cannot show 0.2
        "5-9": ([], [0.4, 0.9, 0.3, 0.7, 0.8]),  # five, no genuine pair: a threshold, FNMR unknown
    }
    near, middle, far, widest = thresholds_by_gap(pairs, target_fmr=0.2)
    reference = threshold_for_fmr(*pairs["0-1"], target_fmr=0.2)
    assert (near.band, near.threshold, near.achieved_fmr, near.fnmr) == (
        "0-1",
        reference.threshold,
        reference.achieved_fmr,
        reference.fnmr,
    )
    assert (near.calibrated, near.genuine_pairs, near.impostor_pairs, near.trials_needed) == (True, 3, 10, 5)
    assert (middle.calibrated, middle.threshold, middle.fnmr, middle.impostor_pairs) == (False, None, None, 4)
    # One of five impostors may match: just below the second smallest, 0.4.
    assert (far.calibrated, far.threshold, far.achieved_fmr, far.fnmr) == (True, np.nextafter(0.4, -np.inf), 0.2, None)
    assert (widest.band, widest.calibrated, widest.impostor_pairs) == ("10+", False, 0)


def test_thresholds_by_gap_refuse_a_bad_target() -> None:
    from matching.calibration import thresholds_by_gap

    with pytest.raises(ValueError, match="target_fmr"):
        thresholds_by_gap({}, target_fmr=1.5)
