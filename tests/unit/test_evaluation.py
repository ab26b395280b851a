"""Unit tests for matching.evaluation on hand-built data whose figures are worked out by hand.

Most tests use one-dimensional "embeddings" at integer positions, so every distance is a
difference of two integers and every rate below can be checked on paper:

    identity a: 0, 2      identity b: 10, 15      identity c: 30, 31      identity d: 6

Genuine distances 2, 5, 1. Impostor distances (18): 4 4 6 8 9 10 13 15 15 16 20 21 24 25 28 29
30 31. Searches (best photo per identity): a@0 mate 2 rank 1, a@2 mate 2 rank 1, b@10 mate 5
rank 2 (d is 4 away), b@15 mate 5 rank 1, c@30 and c@31 mate 1 rank 1; d has no other photo,
so it is never a mated search. Best non-mate distances: 6 4 4 9 15 16 4.
"""

from __future__ import annotations

import json
import math
from datetime import date

import numpy as np
import pytest

from matching.calibration import det_curve, equal_error_rate, error_rates, pair_distances
from matching.evaluation import Sample, evaluate, verification_distances, verification_distances_by_gap
from matching.search import rank_candidates

LINE = {"a": (0, 2), "b": (10, 15), "c": (30, 31), "d": (6,)}
GROUP = {"a": "x", "b": "x", "c": "y", "d": "y"}
AGES = {("a", 0): 4, ("a", 2): 5, ("b", 10): 4, ("b", 15): 12, ("d", 6): 8}
DATES = {("c", 30): date(2010, 1, 1), ("c", 31): date(2022, 1, 1)}


def line_samples(**overrides) -> list[Sample]:
    return [
        Sample(
            identity=name,
            vector=np.array([float(x)]),
            groups={"tone": GROUP[name]},
            age=AGES.get((name, x)),
            taken_at=DATES.get((name, x)),
            **overrides,
        )
        for name, positions in LINE.items()
        for x in positions
    ]


def run(samples, **kwargs):
    options = {
        "threshold": 4.5,
        "fmr_targets": (0.1, 0.01),
        "fpir_targets": (0.5, 0.2),
        "ranks": (1, 5),
        "bootstrap_rounds": 0,
    }
    return evaluate(samples, **{**options, **kwargs})


@pytest.fixture(scope="module")
def report():
    return run(line_samples())


# ----- calibration helpers ---------------------------------------------------------------------


def test_det_curve_by_hand() -> None:
    thresholds, fmr, fnmr = det_curve([1, 3], [2, 4])
    assert thresholds.tolist() == [1, 2, 3, 4]
    assert fmr.tolist() == [0, 0.5, 0.5, 1]
    assert fnmr.tolist() == [0.5, 0.5, 0, 0]


def test_equal_error_rate_by_hand() -> None:
    assert equal_error_rate([2, 5, 1], [4, 4, 6, 8, 9]) == (pytest.approx(1 / 3), 2.0)  # 5 missed, none matched
    assert equal_error_rate([0.1, 0.2], [0.5, 0.7]) == (0.0, 0.2)  # separable: no error at 0.2
    with pytest.raises(ValueError, match="no impostor pairs"):
        equal_error_rate([0.1], [])


# ----- verification ----------------------------------------------------------------------------


def test_pair_counts_and_rates_at_the_service_threshold(report) -> None:
    overall = report["verification"]["overall"]
    assert (overall["genuine_pairs"], overall["impostor_pairs"]) == (3, 18)
    assert overall["at_threshold"] == {
        "threshold": 4.5,
        "fmr": pytest.approx(2 / 18),
        "fnmr": pytest.approx(1 / 3),
        "unavailable": {},
    }


def test_equal_error_rate(report) -> None:
    overall = report["verification"]["overall"]
    assert overall["eer"] == pytest.approx(1 / 9)  # at 5: impostors 4 and 4 match, no genuine missed
    assert overall["eer_threshold"] == 5.0


def test_fnmr_at_fmr_uses_the_largest_threshold_within_the_target(report) -> None:
    at = report["verification"]["overall"]["at_fmr"]["0.1"]
    # 18 pairs allow one false match at FMR 0.1, but the two closest impostors tie at 4: neither may match.
    assert at["threshold"] == np.nextafter(4.0, -np.inf)
    assert (at["fmr"], at["fnmr"], at["reliable"]) == (0.0, pytest.approx(1 / 3), True)


def test_a_rate_the_pairs_cannot_show_is_null_and_unreliable(report) -> None:
    at = report["verification"]["overall"]["at_fmr"]["0.01"]
    assert at == {
        "target_fmr": 0.01,
        "threshold": None,
        "fnmr": None,
        "fmr": None,
        "reliable": False,
        "trials_needed": 100,
        "unavailable": {"fnmr": "too_few_trials", "fmr": "too_few_trials"},
    }


def test_pairs_are_exactly_those_of_calibration_pair_distances() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, size=25)
    vectors = rng.normal(size=(25, 4))
    samples = [Sample(identity=f"id{label}", vector=v) for label, v in zip(labels, vectors)]
    overall = run(samples, threshold=2.5)["verification"]["overall"]
    genuine, impostor = pair_distances(vectors, labels)
    assert (overall["genuine_pairs"], overall["impostor_pairs"]) == (len(genuine), len(impostor))
    fmr, fnmr = error_rates(genuine, impostor, 2.5)
    assert (overall["at_threshold"]["fmr"], overall["at_threshold"]["fnmr"]) == (fmr, fnmr)
    assert overall["eer"] == equal_error_rate(genuine, impostor)[0]
    mine = verification_distances(samples)
    assert np.array_equal(np.sort(mine[0]), np.sort(genuine)) and np.array_equal(np.sort(mine[1]), np.sort(impostor))


def test_gallery_and_probe_sets_compare_only_across_sets() -> None:
    roles = {("a", 0): "gallery", ("b", 10): "gallery", ("a", 2): "probe", ("b", 15): "probe", ("d", 6): "probe"}
    samples = [
        Sample(identity=n, vector=np.array([float(x)]), gallery=roles[n, x] == "gallery", probe=roles[n, x] == "probe")
        for n, x in roles
    ]
    report = run(samples)
    overall = report["verification"]["overall"]
    # a0-a2, b10-b15 genuine; a0-b15, a0-d6, b10-a2, b10-d6 impostor; never gallery-gallery or probe-probe.
    assert (overall["genuine_pairs"], overall["impostor_pairs"]) == (2, 4)
    assert overall["at_threshold"]["fmr"] == pytest.approx(1 / 4)  # b10-d6 is 4 apart
    assert overall["at_threshold"]["fnmr"] == pytest.approx(1 / 2)  # b is 5 apart
    identification = report["identification"]["overall"]
    assert (identification["mated_searches"], identification["non_mated_searches"]) == (2, 3)
    assert identification["gallery_identities"] == 2
    assert identification["rank_1"] == 1.0
    assert report["dataset"]["gallery_photos"] == 2 and report["dataset"]["probe_photos"] == 3
    genuine, impostor = verification_distances(samples)
    assert sorted(genuine) == [2, 5] and sorted(impostor) == [4, 6, 8, 15]


# ----- identification --------------------------------------------------------------------------


def test_rank_hit_rates(report) -> None:
    overall = report["identification"]["overall"]
    assert (overall["mated_searches"], overall["non_mated_searches"], overall["gallery_identities"]) == (6, 7, 4)
    assert overall["rank_1"] == pytest.approx(5 / 6)  # b@10 has d closer than its mate
    assert overall["rank_5"] == 1.0
    assert overall["uninformative_ranks"] == [5]  # 4 identities: every mate is within rank 5


def test_fnir_at_fpir_and_at_the_service_threshold(report) -> None:
    overall = report["identification"]["overall"]
    # Non-mated best distances 4 4 4 6 9 15 16; mate distances 2 2 5 5 1 1.
    half = overall["at_fpir"]["0.5"]
    assert half["threshold"] == np.nextafter(6.0, -np.inf)
    assert (half["fpir"], half["fnir"], half["reliable"]) == (pytest.approx(3 / 7), 0.0, True)
    fifth = overall["at_fpir"]["0.2"]
    assert fifth["threshold"] == np.nextafter(4.0, -np.inf)
    assert (fifth["fpir"], fifth["fnir"]) == (0.0, pytest.approx(2 / 6))
    assert overall["at_threshold"]["fpir"] == pytest.approx(3 / 7)
    assert overall["at_threshold"]["fnir"] == pytest.approx(2 / 6)


def test_ties_are_ranked_as_the_service_ranks_them() -> None:
    """Random integer positions give many ties; ranks must agree with matching.search."""
    rng = np.random.default_rng(5)
    labels = [f"p{i:02d}" for i in rng.integers(0, 12, size=40)]
    vectors = rng.integers(0, 8, size=(40, 2)).astype(float)
    samples = [Sample(identity=label, vector=v) for label, v in zip(labels, vectors)]
    cmc = run(samples, bootstrap_rounds=0)["curves"]["overall"]["cmc"]
    record_id = {label: number for number, label in enumerate(sorted(set(labels)))}
    ranks = []
    for probe, (label, vector) in enumerate(zip(labels, vectors)):
        others = [k for k in range(len(labels)) if k != probe]
        if not any(labels[k] == label for k in others):
            continue
        distances = np.linalg.norm(vectors[others] - vector, axis=1)
        candidates = rank_candidates(
            distances,
            np.array(others),
            record_of={k: record_id[labels[k]] for k in others},
            threshold=math.inf,
            top_k=len(record_id),
        )
        ranks.append(next(c.rank for c in candidates if c.record_id == record_id[label]))
    expected = [float(np.mean(np.array(ranks) <= k)) for k in range(1, len(cmc) + 1)]
    assert cmc == expected
    assert cmc[0] < 1.0  # the data does have misses and ties to get right


# ----- failure to enrol ------------------------------------------------------------------------


def test_failures_to_enrol_per_set_count_as_misses_end_to_end() -> None:
    samples = line_samples() + [
        Sample(identity="a", gallery_failure="no_face", probe_failure="no_face"),
        Sample(identity="b", vector=np.array([11.0]), gallery_failure="several_faces"),  # a probe only
        Sample(identity="c", gallery=False, probe_failure="low_quality"),
    ]
    report = run(samples)
    fte = report["failure_to_enrol"]
    assert fte["gallery"] == {
        "photos": 9,
        "failed": 2,
        "rate": pytest.approx(2 / 9),
        "reasons": {"no_face": 1, "several_faces": 1},
        "unavailable": {},
    }
    assert fte["probe"] == {
        "photos": 10,
        "failed": 2,
        "rate": pytest.approx(2 / 10),
        "reasons": {"low_quality": 1, "no_face": 1},
        "unavailable": {},
    }
    enrolled = report["enrolled_only"]["verification"]["overall"]
    # The extra b photo at 11 pairs with every enrolled photo (it can be a probe for any gallery photo).
    assert (enrolled["genuine_pairs"], enrolled["impostor_pairs"]) == (3 + 2, 18 + 5)
    assert enrolled["at_threshold"]["fnmr"] == pytest.approx(1 / 5)  # b10-b15; b11 is 1 and 4 from them
    # End to end every pair of the ten photos counts (the c probe pairs with all nine gallery photos):
    # a0-X, a2-X, c30-X, c31-X are same-person pairs without a distance, so four more misses.
    overall = report["verification"]["overall"]
    assert (overall["genuine_pairs"], overall["impostor_pairs"]) == (9, 36)
    assert overall["at_threshold"]["fnmr"] == pytest.approx(5 / 9)
    assert overall["at_threshold"]["fmr"] == pytest.approx(enrolled["at_threshold"]["fmr"] * 23 / 36)
    assert report["enrolled_only"]["identification"]["overall"]["mated_searches"] == 7
    identification = report["identification"]["overall"]
    assert identification["mated_searches"] == 9  # the a and c probes without a template are searches too
    assert identification["rank_1"] == pytest.approx(6 / 9)
    assert report["enrolled_only"]["identification"]["overall"]["rank_1"] == pytest.approx(6 / 7)


def failure_samples() -> list[Sample]:
    """a: 0, 1; b: 10 and a photo with no face; c: 3, alone. Ages put b's two photos 8 years apart."""
    return [
        Sample("a", np.array([0.0]), age=4),
        Sample("a", np.array([1.0]), age=5),
        Sample("b", np.array([10.0]), age=4),
        Sample("b", gallery_failure="no_face", probe_failure="no_face", age=12),
        Sample("c", np.array([3.0]), age=6),
    ]


def test_end_to_end_by_hand() -> None:
    report = run(failure_samples(), fmr_targets=(0.2,), fpir_targets=(0.5,))
    e2e, enrolled = report["verification"]["overall"], report["enrolled_only"]["verification"]["overall"]
    # Genuine: a0-a1 at 1, b10-b? without a distance. Impostor with a distance: 10 3 9 2 7; three more without.
    assert (e2e["genuine_pairs"], e2e["impostor_pairs"], enrolled["genuine_pairs"], enrolled["impostor_pairs"]) == (
        2,
        8,
        1,
        5,
    )
    assert (e2e["at_threshold"]["fnmr"], enrolled["at_threshold"]["fnmr"]) == (0.5, 0.0)
    # A pair without a distance never matches, and stays in the FMR denominator.
    assert (e2e["at_threshold"]["fmr"], enrolled["at_threshold"]["fmr"]) == (2 / 8, 2 / 5)
    # One threshold per target, set on the pairs with a distance, shared by both views.
    at, at_enrolled = e2e["at_fmr"]["0.2"], enrolled["at_fmr"]["0.2"]
    assert at["threshold"] == at_enrolled["threshold"] == np.nextafter(3.0, -np.inf)
    assert (at["fmr"], at["fnmr"], at["reliable"]) == (1 / 8, 0.5, True)
    assert (at_enrolled["fmr"], at_enrolled["fnmr"]) == (1 / 5, 0.0)
    assert (e2e["eer"], enrolled["eer"]) == (0.5, 0.0)
    search, search_enrolled = report["identification"]["overall"], report["enrolled_only"]["identification"]["overall"]
    # Mated: a0, a1 found first; b10 (its mate never enrolled) and the faceless b probe missed at every rank.
    assert (search["mated_searches"], search["rank_1"], search["rank_5"]) == (4, 0.5, 0.5)
    assert (search_enrolled["mated_searches"], search_enrolled["rank_1"]) == (2, 1.0)
    assert (search["at_threshold"]["fnir"], search_enrolled["at_threshold"]["fnir"]) == (0.5, 0.0)
    # Non-mated: a0 (c at 3), a1 (c at 2), c3 (a1 at 2) are false positives; b10 (7) is not, nor is
    # the faceless probe, which returns nobody and stays in the FPIR denominator.
    assert (search["non_mated_searches"], search["at_threshold"]["fpir"]) == (5, 3 / 5)
    assert (search_enrolled["non_mated_searches"], search_enrolled["at_threshold"]["fpir"]) == (4, 3 / 4)
    assert report["dataset"]["enrolled_only"] == {
        "genuine_pairs": 1,
        "impostor_pairs": 5,
        "mated_searches": 2,
        "non_mated_searches": 4,
    }
    assert report["curves"]["overall"]["cmc"][0] == 0.5  # curves follow the headline


def test_end_to_end_by_years_between_photos() -> None:
    gaps = run(failure_samples())["age_gaps"]
    near, far = gaps["0-1"], gaps["5-9"]
    assert near["identification"]["rank_1"] == 1.0 and near["identification"]["mated_searches"] == 2
    # b's photos are 8 years apart: end to end two missed searches and a missed pair; enrolled only, none.
    assert (far["identification"]["mated_searches"], far["identification"]["rank_1"]) == (2, 0.0)
    assert (far["verification"]["genuine_pairs"], far["verification"]["at_threshold"]["fnmr"]) == (1, 1.0)
    assert far["enrolled_only"]["identification"]["rank_1"] is None
    assert far["enrolled_only"]["identification"]["unavailable"]["rank_1"] == "no_trials"
    # A non-mated search has no gap: FPIR by gap cannot exist.
    assert far["identification"]["at_threshold"]["fpir"] is None
    assert far["identification"]["at_threshold"]["unavailable"] == {"fpir": "no_trials"}


def test_cells_that_cannot_exist_are_told_apart_from_unreliable_ones() -> None:
    # Group "g" holds gallery photos only: its probes make no search, mated or not.
    samples = [
        Sample(
            s.identity,
            s.vector,
            gallery=s.identity in "ab",
            probe=s.identity not in "ab",
            groups={"set": "g" if s.identity in "ab" else "p"},
        )
        for s in line_samples()
    ]
    report = run(samples)
    gallery_only = report["groups"]["set"]["g"]["identification"]
    assert gallery_only["non_mated_searches"] == 0 and gallery_only["rank_1"] is None
    assert gallery_only["unavailable"] == {"rank_1": "no_trials", "rank_5": "no_trials"}
    assert gallery_only["at_threshold"]["unavailable"] == {"fpir": "no_trials", "fnir": "no_trials"}
    assert gallery_only["at_fpir"]["0.5"]["unavailable"] == {"fnir": "no_trials", "fpir": "no_trials"}
    # Overall, 18 impostor pairs exist but cannot show an FMR of 0.01: not reliable, not N/A.
    one_percent = run(line_samples())["verification"]["overall"]["at_fmr"]["0.01"]
    assert one_percent["unavailable"] == {"fnmr": "too_few_trials", "fmr": "too_few_trials"}
    # A group with too few different-person pairs for FMR 0.1 of its own, but a measured FNMR.
    x = run(line_samples())["groups"]["tone"]["x"]["verification"]["at_fmr"]["0.1"]
    assert x["unavailable"] == {"fmr": "too_few_trials"} and x["fnmr"] == 0.5


def test_verification_distances_by_gap_follow_the_shared_age_rule() -> None:
    from matching.ages import AGE_GAPS, gap_band, years_between

    rng = np.random.default_rng(11)
    samples = [
        Sample(
            identity=f"p{rng.integers(0, 6)}",
            vector=rng.normal(size=3),
            age=float(rng.uniform(0, 20)) if rng.random() < 0.6 else None,
            taken_at=date(2000 + int(rng.integers(0, 20)), int(rng.integers(1, 13)), 1) if rng.random() < 0.6 else None,
        )
        for _ in range(40)
    ]
    by_gap = verification_distances_by_gap(samples)
    assert list(by_gap) == [label for label, _, _ in AGE_GAPS]
    expected = {label: [[], []] for label, _, _ in AGE_GAPS}
    for i, one in enumerate(samples):
        for other in samples[i + 1 :]:
            band = gap_band(years_between(age_a=one.age, taken_a=one.taken_at, age_b=other.age, taken_b=other.taken_at))
            if band is not None:
                expected[band][one.identity != other.identity].append(float(np.linalg.norm(one.vector - other.vector)))
    for label, (genuine, impostor) in by_gap.items():
        # The same pairs in each band; distances agree to rounding (numpy's norm may sum in another order).
        for got, want in ((genuine, expected[label][0]), (impostor, expected[label][1])):
            assert len(got) == len(want)
            np.testing.assert_allclose(sorted(got), sorted(want), rtol=1e-12)
    assert sum(len(g) + len(i) for g, i in by_gap.values()) > 100  # most pairs have a known gap


# ----- groups and ages -------------------------------------------------------------------------


def test_groups_use_the_global_thresholds(report) -> None:
    x = report["groups"]["tone"]["x"]
    assert (x["photos"], x["identities"]) == (4, 2)
    assert (x["verification"]["genuine_pairs"], x["verification"]["impostor_pairs"]) == (2, 4)
    at = x["verification"]["at_fmr"]["0.1"]
    assert at["threshold"] == report["verification"]["overall"]["at_fmr"]["0.1"]["threshold"]
    # FNMR at the global threshold is measured; FMR 0.1 cannot be shown by 4 impostor pairs.
    assert (at["fnmr"], at["fmr"], at["reliable"]) == (0.5, None, False)
    assert x["verification"]["at_threshold"]["fmr"] == 0.0
    assert x["identification"]["rank_1"] == pytest.approx(3 / 4)
    assert x["identification"]["at_fpir"]["0.2"]["fnir"] == pytest.approx(2 / 4)
    y = report["groups"]["tone"]["y"]
    assert (y["verification"]["genuine_pairs"], y["verification"]["impostor_pairs"]) == (1, 2)
    assert (y["identification"]["mated_searches"], y["identification"]["non_mated_searches"]) == (2, 3)
    assert y["identification"]["rank_1"] == 1.0


def test_unknown_group_values_are_left_out() -> None:
    samples = line_samples()
    samples[0] = Sample(identity="a", vector=np.array([0.0]), groups={"tone": ""})
    assert run(samples)["groups"]["tone"]["x"]["photos"] == 3


def test_age_bands(report) -> None:
    bands = report["age_bands"]
    assert list(bands) == ["0-2", "3-5", "6-9", "10-13", "14-17", "18+"]
    assert [bands[b]["photos"] for b in bands] == [0, 3, 1, 1, 0, 0]
    young = bands["3-5"]  # a@0, a@2, b@10
    assert (young["verification"]["genuine_pairs"], young["verification"]["impostor_pairs"]) == (1, 2)
    assert young["identification"]["rank_1"] == pytest.approx(2 / 3)
    assert bands["0-2"]["identification"]["rank_1"] is None
    assert bands["0-2"]["verification"]["eer"] is None


def test_age_gaps_from_ages_else_dates(report) -> None:
    gaps = report["age_gaps"]
    assert list(gaps) == ["0-1", "2-4", "5-9", "10+"]
    assert gaps["0-1"]["verification"]["genuine_pairs"] == 1  # a: ages 4 and 5
    assert gaps["5-9"]["verification"]["genuine_pairs"] == 1  # b: ages 4 and 12
    assert gaps["10+"]["verification"]["genuine_pairs"] == 1  # c: photos 12 years apart
    assert gaps["5-9"]["identification"]["mated_searches"] == 2
    assert gaps["5-9"]["identification"]["rank_1"] == 0.5  # b@10: d is closer than b@15
    assert gaps["0-1"]["identification"]["rank_1"] == 1.0
    assert gaps["2-4"]["identification"]["rank_1"] is None
    assert gaps["2-4"]["identification"]["mated_searches"] == 0


def test_no_ages_means_no_age_figures() -> None:
    samples = [Sample(identity=s.identity, vector=s.vector) for s in line_samples()]
    report = run(samples)
    assert report["age_bands"] == {} and report["age_gaps"] == {}


# ----- bootstrap -------------------------------------------------------------------------------


def noisy_samples(identities: int, seed: int = 0) -> list[Sample]:
    """Three photos per identity; same-person distances straddle the 0.6 threshold."""
    rng = np.random.default_rng(seed)
    samples = []
    for person in range(identities):
        centre = rng.normal(size=8) * 2
        samples += [
            Sample(
                identity=f"person-{person}",
                vector=centre + rng.normal(scale=0.3, size=8),
                groups={"half": str(person % 2)},
            )
            for _ in range(3)
        ]
    return samples


def test_intervals_contain_the_estimate_and_are_seeded() -> None:
    samples = noisy_samples(30)
    report = run(samples, threshold=1.2, bootstrap_rounds=100, seed=7)
    at = report["verification"]["overall"]["at_threshold"]
    low, high = at["ci95"]["fnmr"]
    assert low <= at["fnmr"] <= high and low < high
    rank = report["identification"]["overall"]
    assert rank["ci95"]["rank_1"][0] <= rank["rank_1"] <= rank["ci95"]["rank_1"][1]
    assert "ci95" in report["groups"]["half"]["0"]["verification"]["at_threshold"]
    again = run(samples, threshold=1.2, bootstrap_rounds=100, seed=7)
    other = run(samples, threshold=1.2, bootstrap_rounds=100, seed=8)
    assert again["verification"]["overall"]["at_threshold"]["ci95"] == at["ci95"]
    assert other["verification"]["overall"]["at_threshold"]["ci95"] != at["ci95"]


def test_intervals_narrow_with_more_identities() -> None:
    def width(identities: int) -> float:
        at = run(noisy_samples(identities), threshold=1.2, bootstrap_rounds=60)["verification"]["overall"]
        low, high = at["at_threshold"]["ci95"]["fnmr"]
        return high - low

    assert width(120) < width(15) / 1.5  # 1/sqrt(8) in theory; 0.14 against 0.30 here


def test_no_rounds_no_intervals(report) -> None:
    assert "ci95" not in report["verification"]["overall"]["at_threshold"]
    assert report["settings"]["bootstrap"]["rounds"] == 0


# ----- the report as a whole -------------------------------------------------------------------


def test_report_is_json_and_names_no_identity() -> None:
    samples = [
        Sample(
            identity=f"Child Name {s.identity.upper()}",
            vector=s.vector,
            groups=s.groups,
            age=s.age,
            taken_at=s.taken_at,
        )
        for s in line_samples()
    ]
    text = json.dumps(run(samples, bootstrap_rounds=5), allow_nan=False)
    assert "Child Name" not in text
    assert report_keys_present(json.loads(text))


def report_keys_present(report: dict) -> bool:
    return {
        "threshold",
        "settings",
        "dataset",
        "failure_to_enrol",
        "verification",
        "identification",
        "enrolled_only",
        "groups",
        "age_bands",
        "age_gaps",
        "curves",
        "method",
    } <= set(report)


def test_dataset_counts(report) -> None:
    dataset = report["dataset"]
    assert (dataset["photos"], dataset["identities"]) == (7, 4)
    assert (dataset["genuine_pairs"], dataset["impostor_pairs"]) == (3, 18)
    assert (dataset["mated_searches"], dataset["non_mated_searches"]) == (6, 7)


@pytest.mark.parametrize(
    "samples, options, message",
    [
        ([], {}, "no samples"),
        ([Sample("a", np.zeros(2)), Sample("b", np.zeros(3))], {}, "one length"),
        ([Sample("a", np.array([np.nan]))], {}, "NaN"),
        ([Sample("a", np.zeros(1))], {"threshold": -1.0}, "threshold"),
        ([Sample("a", np.zeros(1))], {"fmr_targets": (0.0,)}, "target"),
        ([Sample("a", np.zeros(1))], {"ranks": (0,)}, "ranks"),
        ([Sample("a", np.zeros(1))], {"bootstrap_rounds": -1}, "bootstrap_rounds"),
    ],
)
def test_bad_input_is_refused(samples, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        run(samples, **options)


def test_one_identity_gives_nulls_not_errors() -> None:
    report = run([Sample("a", np.array([0.0])), Sample("a", np.array([1.0]))], bootstrap_rounds=10)
    overall = report["verification"]["overall"]
    assert overall["impostor_pairs"] == 0 and overall["eer"] is None
    assert overall["at_threshold"]["fmr"] is None and overall["at_threshold"]["fnmr"] == 0.0
    assert report["identification"]["overall"]["non_mated_searches"] == 0


def test_without_failures_both_views_agree(report) -> None:
    for kind in ("verification", "identification"):
        assert report["enrolled_only"][kind]["overall"] == report[kind]["overall"]
    x = report["groups"]["tone"]["x"]
    assert x["enrolled_only"]["identification"] == x["identification"]
