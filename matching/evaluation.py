"""Accuracy of the face matcher on a labelled data set, measured the way NIST FRTE reports it.

Input: one `Sample` per photo (identity label, embedding or why it failed to enrol, the roles
it plays, optional groups, age and date). `evaluate` returns a JSON-ready dict of figures in
which identities appear only as counts: no label, path or vector ever leaves this module.
`verification_distances` (and `verification_distances_by_gap`) give the genuine and impostor
distances of the same pairs, for calibrating a threshold on exactly what is evaluated.

- Failure to enrol (FTE): the share of each set's photos that gave no usable template.
- End to end, the headline: every trial the data set defines counts, as NIST FRTE and
  ISO/IEC 19795-1's generalised rates count them. A photo that failed to enrol has no
  template, so a comparison involving it has no distance (held as +inf) and matches nothing
  at any threshold: a false non-match or a missed search when it is mated, a correct
  non-match or rejection when it is not. The same figures over enrolled photos only are kept
  beside the headline under "enrolled_only".
- Verification (1:1): every unordered pair of photos in which one photo can be a gallery
  photo and the other a probe; genuine pairs show one identity, impostor pairs two. FNMR at
  a fixed FMR uses ONE global threshold per FMR, computed on all impostor pairs that have a
  distance and applied unchanged to every group and to both views, so that group figures
  show how the one setting treats each group. Also FMR and FNMR at the service's threshold,
  and the EER.
- Identification (1:N): every probe searches the gallery of enrolled photos; a gallery
  identity's distance is that of its closest photo, ties ranked by identity order (as the
  service ranks records by their best photo, ties by record id). A photo is never compared
  with itself. Mated searches (the probe's identity has another gallery photo) give rank-k
  hit rates. Non-mated searches: every probe searches the gallery with its own identity left
  out. FPIR(T) is the share of non-mated searches whose best candidate is within T, FNIR(T)
  the share of mated searches whose mate is farther than T (at any rank); the FPIR
  thresholds are global too.
- Groups, age bands and age gaps: a pair belongs to a group value when both photos have it,
  a search when its probe has it. Age gaps follow `matching.ages` (ages, else dates).
- Bootstrap: identities are drawn with replacement; pairs and searches count as often as
  their identities were drawn (an impostor pair as the product; the gallery a search runs
  against stays whole, so ranks need no recomputing); every figure, the global
  thresholds included, is recomputed per round; the 2.5th and 97.5th percentiles give the
  95 % interval, stored beside each rate under "ci95".
- A rate that has no trial at all cannot exist: it is null, marked "no_trials" under
  "unavailable" (shown as N/A). A rate f that fewer than 1/f trials cannot show is null too,
  marked "too_few_trials" (shown as not reliable), with its counts and "reliable": false,
  never a number the data cannot support.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from matching.ages import AGE_GAPS, DAYS_PER_YEAR
from matching.calibration import pair_distances, threshold_for_fmr

ROLES = ("gallery", "probe")
# (label, lower edge, upper edge) in whole years: a photo at 2.9 years is in "0-2".
AGE_BANDS = (("0-2", 0, 3), ("3-5", 3, 6), ("6-9", 6, 10), ("10-13", 10, 14), ("14-17", 14, 18), ("18+", 18, math.inf))
BAND_EDGES = [upper for _, _, upper in AGE_BANDS[:-1]]
GAP_EDGES = [upper for _, _, upper in AGE_GAPS[:-1]]  # the bins of matching.ages.gap_band
CMC_MAX_RANK = 50
DET_POINTS = 200
SCORE_BINS = 60
TOLERANCE = 1e-9  # so that 100 trials count as enough for a rate of 0.01 despite rounding
MISSED = np.iinfo(np.int64).max  # the rank of a mate that was never found: beyond every rank
END_TO_END, ENROLLED_ONLY = "end_to_end", "enrolled_only"
NO_TRIALS, TOO_FEW_TRIALS = "no_trials", "too_few_trials"  # why a rate is null: N/A, not reliable

METHOD = {
    "failure_to_enrol": "A gallery photo enrols when exactly one face is detected, whatever its quality "
    "(the service's rule for record photos: low-quality faces are flagged, not "
    "refused); a probe photo when at least one face is detected, measured on its "
    "largest face. Any other outcome (no face, several faces in a gallery photo, "
    "refused input) is a failure to enrol in that role.",
    "end_to_end": "The headline rates count failures to enrol, as NIST FRTE and ISO/IEC 19795-1 "
    "(generalised rates) do: a photo that failed to enrol has no template, so every "
    "comparison involving it has no distance and matches nothing at any threshold. "
    "FNMR: a same-person pair with a failed photo is a false non-match. FMR: a "
    "different-person pair with a failed photo is a correct non-match and stays in the "
    "denominator, so the end-to-end FMR is never above the enrolled-only one. Rank-k hit "
    "rates and FNIR: every probe photo is a search; a mated search whose probe failed, or "
    "whose person has no enrolled gallery photo besides the probe, is a miss at every rank "
    "and beyond every threshold. FPIR: a non-mated search whose probe failed returns no "
    "candidate, a correct rejection that stays in the denominator. The thresholds for a "
    "target FMR or FPIR are set on the trials that have a distance (as `reunite calibrate` "
    "sets the service's), so failures never move a threshold; both views use the same "
    "thresholds.",
    "enrolled_only": "Beside the headline, under enrolled_only: the same figures over enrolled photos "
    "only (every trial involving a failed photo left out). They describe the model given "
    "a template, not what the service finds.",
    "verification": "All unordered pairs of photos where one can be a gallery photo and the other a "
    "probe. One global threshold per target FMR, computed on all impostor pairs that "
    "have a distance and applied to every group.",
    "identification": "Each probe searches the gallery of enrolled photos, best photo per identity; a "
    "photo never matches itself. A search is mated when the probe's identity has "
    "another gallery photo. Non-mated searches: each probe searches the gallery with its "
    "own identity left out. FNIR counts a mated search as missed when its mate is "
    "farther than the threshold, at any rank; FPIR counts a non-mated search whose best "
    "candidate is within it.",
    "groups": "A pair is in a group when both photos are; a search when its probe is.",
    "age_gaps": "Years between the two photos, from ages at photo, else from photo dates "
    "(matching.ages); whole years (a gap of 1.9 years is in 0-1). Non-mated searches have "
    "no gap, so FPIR by gap is N/A.",
    "bootstrap": "Identities resampled with replacement, seeded; pairs and searches weighted by how often "
    "their identities were drawn (the gallery searched stays whole); every figure and the "
    "global thresholds recomputed per round; 95 % percentile intervals.",
    "estimability": "A rate with no trial at all is N/A (null, unavailable: no_trials). A rate f needs at "
    "least 1/f impostor pairs (or non-mated searches); with fewer, the figure is null, "
    "marked reliable: false (unavailable: too_few_trials).",
}


@dataclass(frozen=True)
class Sample:
    """One photo of a labelled data set: its template, or why it has none, and its attributes."""

    identity: str  # label used only to tell identities apart; never reported
    vector: np.ndarray | None = field(default=None, repr=False)
    gallery: bool = True  # the photo is in the gallery set
    probe: bool = True  # the photo is in the probe set
    gallery_failure: str | None = None  # reason code when it did not enrol as a gallery photo
    probe_failure: str | None = None  # reason code when it did not enrol as a probe
    groups: Mapping[str, str] = field(default_factory=dict)  # e.g. {"sex": "female"}; "" = unknown
    age: float | None = None  # age at photo, years
    taken_at: date | None = None

    def enrolled(self, role: str) -> bool:
        wanted = self.gallery if role == "gallery" else self.probe
        failure = self.gallery_failure if role == "gallery" else self.probe_failure
        return wanted and failure is None and self.vector is not None

    def failure(self, role: str) -> str | None:
        """Why a wanted role did not enrol (None when it did or is not wanted)."""
        wanted = self.gallery if role == "gallery" else self.probe
        if not wanted or self.enrolled(role):
            return None
        return (self.gallery_failure if role == "gallery" else self.probe_failure) or "no_template"


@dataclass(frozen=True)
class _Config:
    threshold: float
    fmr_targets: tuple[float, ...]
    fpir_targets: tuple[float, ...]
    ranks: tuple[int, ...]

    @property
    def rate_keys(self) -> frozenset[str]:
        return frozenset({"fmr", "fnmr", "eer", "fpir", "fnir", "rate"} | {f"rank_{k}" for k in self.ranks})


@dataclass(frozen=True)
class _Trials:
    """Every comparison the figures are made of, computed once; identities as indices.

    Trials are end to end: every pair and search the data set defines. A distance is +inf
    where a photo failed to enrol (no template, so no match at any threshold); the
    enrolled-only view keeps the trials that have a distance.
    """

    subject: np.ndarray  # identity index of each sample
    identities: int
    wanted: dict[str, np.ndarray]  # role -> bool per sample
    enrolled: dict[str, np.ndarray]
    failures: dict[str, list[str | None]]
    groups: dict[str, dict[str, np.ndarray]]  # group name -> value -> its samples (a bool mask)
    bands: dict[str, np.ndarray]  # age band -> its samples; empty when no sample has an age
    pair_a: np.ndarray  # sample indices of each verification pair
    pair_b: np.ndarray
    distance: np.ndarray  # +inf when either photo has no template for its role
    genuine: np.ndarray
    scored: np.ndarray  # the pair has a distance (both photos enrolled in their roles)
    pair_gap: np.ndarray  # age-gap bin index per pair, -1 unknown
    probe: np.ndarray  # sample index of each search: every photo of the probe set
    probe_enrolled: np.ndarray
    mated: np.ndarray  # the probe's identity has another gallery photo (enrolled or not)
    mate: np.ndarray  # distance of the mate identity's best enrolled photo; inf when none or no probe template
    rank: np.ndarray  # rank of the mate; MISSED when it has no distance
    non_mated: np.ndarray  # the gallery holds another identity than the probe's
    nonmate: np.ndarray  # best distance with the probe's identity left out; inf without a probe template
    mated_by_gap: np.ndarray  # (searches, age gaps): a mate's gallery photo at that gap exists
    mate_by_gap: np.ndarray  # the mate's best enrolled photo within each gap
    rank_by_gap: np.ndarray
    gallery_identities: int


def evaluate(
    samples: Sequence[Sample],
    *,
    threshold: float,
    fmr_targets: Sequence[float] = (1e-2, 1e-3, 1e-4),
    fpir_targets: Sequence[float] = (0.1, 0.01),
    ranks: Sequence[int] = (1, 5, 10, 20),
    bootstrap_rounds: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Every figure of the report, overall, per group, by age band and by age gap."""
    config = _Config(float(threshold), tuple(fmr_targets), tuple(fpir_targets), tuple(ranks))
    _check(samples, config, bootstrap_rounds)
    trials = _trials(samples)
    figures = _figures(trials, config, np.ones(trials.identities, dtype=np.int64))
    rounds = [
        _figures(trials, config, weights) for weights in _identity_draws(trials.identities, bootstrap_rounds, seed)
    ]
    if rounds:
        _add_intervals(figures, rounds, config.rate_keys)
    return {
        "threshold": config.threshold,
        "settings": {
            "fmr_targets": list(config.fmr_targets),
            "fpir_targets": list(config.fpir_targets),
            "ranks": list(config.ranks),
            "headline": END_TO_END,
            "bootstrap": {"rounds": bootstrap_rounds, "seed": seed, "unit": "identity", "confidence": 0.95},
        },
        "dataset": _dataset_counts(trials),
        **figures,
        "curves": _curves(trials),
        "method": METHOD,
    }


def verification_distances(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) distances of exactly the pairs `evaluate` compares that have a distance:
    to calibrate on."""
    _check_samples(samples)
    subject, wanted, enrolled, vectors = _templates(samples)
    _, _, distance, genuine, scored = _pairs(vectors, subject, wanted, enrolled)
    return distance[genuine & scored], distance[~genuine & scored]


def verification_distances_by_gap(samples: Sequence[Sample]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The same pairs split by years between the two photos: AGE_GAPS label -> (genuine, impostor).

    Every label is present (with empty arrays when no pair is that far apart); pairs whose gap
    is unknown are in none.
    """
    _check_samples(samples)
    subject, wanted, enrolled, vectors = _templates(samples)
    ages, days = _ages_and_days(samples)
    a, b, distance, genuine, scored = _pairs(vectors, subject, wanted, enrolled)
    gap = _bins(_gap_years(ages, days, a, b), GAP_EDGES)
    return {
        label: (distance[genuine & scored & (gap == index)], distance[~genuine & scored & (gap == index)])
        for index, (label, _, _) in enumerate(AGE_GAPS)
    }


# ----- validation --------------------------------------------------------------------------


def _check_samples(samples: Sequence[Sample]) -> None:
    if not samples:
        raise ValueError("no samples to evaluate")
    dims = {np.shape(s.vector) for s in samples if s.vector is not None}
    if len(dims) > 1 or any(len(d) != 1 for d in dims):
        raise ValueError(f"every vector must be one-dimensional of one length, got shapes {sorted(dims)}")
    if any(not np.isfinite(s.vector).all() for s in samples if s.vector is not None):
        raise ValueError("vectors contain NaN or infinite values")


def _check(samples: Sequence[Sample], config: _Config, bootstrap_rounds: int) -> None:
    _check_samples(samples)
    if not math.isfinite(config.threshold) or config.threshold < 0:
        raise ValueError(f"threshold must be a non-negative number, got {config.threshold!r}")
    for target in config.fmr_targets + config.fpir_targets:
        if not 0.0 < target < 1.0:
            raise ValueError(f"target rates must be in (0, 1), got {target!r}")
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in config.ranks):
        raise ValueError(f"ranks must be positive integers, got {config.ranks!r}")
    if isinstance(bootstrap_rounds, bool) or not isinstance(bootstrap_rounds, int) or bootstrap_rounds < 0:
        raise ValueError(f"bootstrap_rounds must be a non-negative integer, got {bootstrap_rounds!r}")


# ----- the comparisons -----------------------------------------------------------------------


def _templates(
    samples: Sequence[Sample],
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Identity index per sample (labels in sorted order), wanted and enrolled roles, vectors (zeros where none)."""
    labels = {label: index for index, label in enumerate(sorted({s.identity for s in samples}))}
    subject = np.array([labels[s.identity] for s in samples], dtype=np.int64)
    wanted = {
        "gallery": np.array([s.gallery for s in samples], dtype=bool),
        "probe": np.array([s.probe for s in samples], dtype=bool),
    }
    enrolled = {role: np.array([s.enrolled(role) for s in samples], dtype=bool) for role in ROLES}
    dim = next((len(s.vector) for s in samples if s.vector is not None), 1)
    vectors = np.array([s.vector if s.vector is not None else np.zeros(dim) for s in samples], dtype=np.float64)
    return subject, wanted, enrolled, vectors


def _ages_and_days(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Age at photo and date taken (as a day number) per sample; NaN where unknown."""
    ages = np.array([np.nan if s.age is None else float(s.age) for s in samples])
    days = np.array([np.nan if s.taken_at is None else float(s.taken_at.toordinal()) for s in samples])
    return ages, days


def _trials(samples: Sequence[Sample]) -> _Trials:
    subject, wanted, enrolled, vectors = _templates(samples)
    ages, days = _ages_and_days(samples)
    band = _bins(ages, BAND_EDGES)
    pair_a, pair_b, distance, genuine, scored = _pairs(vectors, subject, wanted, enrolled)
    searches = _searches(vectors, subject, wanted, enrolled, ages, days)
    return _Trials(
        subject=subject,
        identities=int(subject.max()) + 1,
        wanted=wanted,
        enrolled=enrolled,
        failures={role: [s.failure(role) for s in samples] for role in ROLES},
        groups=_group_members(samples),
        bands={label: band == i for i, (label, _, _) in enumerate(AGE_BANDS)} if (band >= 0).any() else {},
        pair_a=pair_a,
        pair_b=pair_b,
        distance=distance,
        genuine=genuine,
        scored=scored,
        pair_gap=_bins(_gap_years(ages, days, pair_a, pair_b), GAP_EDGES),
        **searches,
    )


def _group_members(samples: Sequence[Sample]) -> dict[str, dict[str, np.ndarray]]:
    """Group name -> value -> which samples have it; an empty value (unknown) is in none."""
    members = {}
    for name in sorted({name for s in samples for name in s.groups}):
        values = np.array([s.groups.get(name) or "" for s in samples], dtype=object)
        members[name] = {value: values == value for value in sorted(set(values) - {""})}
    return members


def _pairs(
    vectors: np.ndarray, subject: np.ndarray, wanted: dict[str, np.ndarray], enrolled: dict[str, np.ndarray]
) -> tuple[np.ndarray, ...]:
    """Verification pairs: unordered, one photo wanted as gallery and the other as probe.

    (a, b, distance, genuine, scored): a pair is scored when one photo enrolled as gallery and
    the other as probe; any other pair has no distance (+inf): it matches at no threshold.
    """
    if len(subject) < 2:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0), np.empty(0, dtype=bool), np.empty(0, dtype=bool)
    # Row by row as calibration computes them, so a scored pair has exactly the same distance.
    genuine_d, impostor_d = pair_distances(vectors, subject)
    a, b = np.triu_indices(len(subject), 1)  # the order pair_distances walks the pairs in
    same = subject[a] == subject[b]
    distance = np.empty(len(a))
    distance[same], distance[~same] = genuine_d, impostor_d
    keep = (wanted["gallery"][a] & wanted["probe"][b]) | (wanted["gallery"][b] & wanted["probe"][a])
    scored = (enrolled["gallery"][a] & enrolled["probe"][b]) | (enrolled["gallery"][b] & enrolled["probe"][a])
    distance = np.where(scored, distance, np.inf)
    return a[keep], b[keep], distance[keep], same[keep], scored[keep]


def _searches(
    vectors: np.ndarray,
    subject: np.ndarray,
    wanted: dict[str, np.ndarray],
    enrolled: dict[str, np.ndarray],
    ages: np.ndarray,
    days: np.ndarray,
) -> dict[str, Any]:
    """Each probe photo against the gallery of enrolled photos, best photo per identity, overall and
    per age gap. A probe without a template finds nobody: its mate and non-mate distances stay inf."""
    gallery = np.flatnonzero(enrolled["gallery"])
    gallery = gallery[np.argsort(subject[gallery], kind="stable")]
    wanted_gallery = np.flatnonzero(wanted["gallery"])
    probes = np.flatnonzero(wanted["probe"])
    ids, starts = np.unique(subject[gallery], return_index=True)
    ends = np.append(starts[1:], len(gallery)).astype(np.int64)
    mate = np.full((len(probes), 1 + len(AGE_GAPS)), np.inf)  # column 0: any gap
    rank = np.full(mate.shape, MISSED, dtype=np.int64)
    mated = np.zeros(mate.shape, dtype=bool)
    nonmate = np.full(len(probes), np.inf)
    non_mated = np.array([bool(np.any(ids != subject[probe])) for probe in probes], dtype=bool)
    for row, probe in enumerate(probes):
        # Mated end to end: the probe's identity has another gallery photo, whether it enrolled or not.
        own_wanted = wanted_gallery[(subject[wanted_gallery] == subject[probe]) & (wanted_gallery != probe)]
        mated[row, 0] = len(own_wanted) > 0
        wanted_gaps = _bins(_gap_years(ages, days, probe, own_wanted), GAP_EDGES)
        mated[row, 1:][wanted_gaps[wanted_gaps >= 0]] = True
        if not enrolled["probe"][probe] or not len(gallery):
            continue
        distances = np.linalg.norm(vectors[gallery] - vectors[probe], axis=1)
        distances[gallery == probe] = np.inf  # a photo is never its own mate
        best = np.minimum.reduceat(distances, starts)
        column = int(np.searchsorted(ids, subject[probe]))
        own = column < len(ids) and ids[column] == subject[probe]
        others = np.where(np.arange(len(ids)) == column, np.inf, best) if own else best
        nonmate[row] = others.min()
        if own:
            mates = slice(starts[column], ends[column])
            gaps = _bins(_gap_years(ages, days, probe, gallery[mates]), GAP_EDGES)
            mate[row] = [best[column], *_best_by_gap(distances[mates], gaps)]
            rank[row] = [_rank(others, ids, m, subject[probe]) for m in mate[row]]
    return {
        "probe": probes,
        "probe_enrolled": enrolled["probe"][probes],
        "mated": mated[:, 0],
        "mate": mate[:, 0],
        "rank": rank[:, 0],
        "non_mated": non_mated,
        "nonmate": nonmate,
        "mated_by_gap": mated[:, 1:],
        "mate_by_gap": mate[:, 1:],
        "rank_by_gap": rank[:, 1:],
        "gallery_identities": len(ids),
    }


def _best_by_gap(distances: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    best = np.full(len(AGE_GAPS), np.inf)
    known = gaps >= 0
    np.minimum.at(best, gaps[known], distances[known])
    return best


def _rank(others: np.ndarray, ids: np.ndarray, mate: float, own: int) -> int:
    """1 + identities closer than the mate, ties going to the lower identity, as the service sorts."""
    if not math.isfinite(mate):
        return MISSED
    return 1 + int(np.count_nonzero(others < mate)) + int(np.count_nonzero((others == mate) & (ids < own)))


def _gap_years(ages: np.ndarray, days: np.ndarray, a: np.ndarray | np.integer, b: np.ndarray) -> np.ndarray:
    """`matching.ages.years_between` for arrays of pairs: from the two ages, else the two dates; NaN unknown."""
    by_age = np.abs(ages[a] - ages[b])
    by_date = np.abs(days[a] - days[b]) / DAYS_PER_YEAR
    return np.where(np.isnan(by_age), by_date, by_age)


def _bins(values: np.ndarray, upper_edges: Sequence[float]) -> np.ndarray:
    """Index of the bin each value falls in (edges are exclusive upper bounds); -1 for NaN."""
    found = np.searchsorted(np.asarray(upper_edges, dtype=np.float64), values, side="right")
    return np.where(np.isnan(values), -1, found).astype(np.int64)


def _identity_draws(identities: int, rounds: int, seed: int) -> Iterator[np.ndarray]:
    """How many times each identity was drawn, per bootstrap round."""
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        yield np.bincount(rng.integers(0, identities, size=identities), minlength=identities)


# ----- the figures ---------------------------------------------------------------------------


def _figures(t: _Trials, config: _Config, weights: np.ndarray) -> dict[str, Any]:
    """Every figure for one weighting of the identities (all ones for the point estimates)."""
    thresholds = _global_thresholds(t, config, weights)

    def subset(members: np.ndarray) -> dict[str, Any]:
        return _subset(t, config, weights, thresholds, members)

    overall = subset(np.ones(len(t.subject), dtype=bool))
    enrolled = overall["enrolled_only"]
    return {
        "failure_to_enrol": overall["failure_to_enrol"],
        "verification": {"overall": overall["verification"]},
        "identification": {"overall": overall["identification"]},
        "enrolled_only": {
            "verification": {"overall": enrolled["verification"]},
            "identification": {"overall": enrolled["identification"]},
        },
        "groups": {
            name: {value: subset(members) for value, members in values.items()} for name, values in t.groups.items()
        },
        "age_bands": {band: subset(members) for band, members in t.bands.items()},
        "age_gaps": {label: _gap(t, config, weights, thresholds, index) for index, label in _gap_labels(t)},
    }


def _gap_labels(t: _Trials) -> list[tuple[int, str]]:
    """(index, label) of every age gap; none when no pair has a known gap."""
    return list(enumerate(label for label, _, _ in AGE_GAPS)) if (t.pair_gap >= 0).any() else []


def _global_thresholds(t: _Trials, config: _Config, weights: np.ndarray) -> dict[str, dict[float, float | None]]:
    """One threshold per target rate, from all impostor pairs / all non-mated searches with a distance."""
    everyone = np.ones(len(t.subject), dtype=bool)
    genuine, impostor, mate, _, nonmate = _subset_trials(t, everyone, weights, ENROLLED_ONLY)
    return {
        "fmr": _thresholds_for(genuine, impostor, config.fmr_targets),
        "fpir": _thresholds_for(mate, nonmate, config.fpir_targets),
    }


def _thresholds_for(genuine: np.ndarray, impostor: np.ndarray, targets: tuple[float, ...]) -> dict[float, float | None]:
    if not len(genuine) or not len(impostor):
        return dict.fromkeys(targets)
    found = {}
    for target in targets:
        calibration = threshold_for_fmr(genuine, impostor, target)
        found[target] = calibration.threshold if calibration.reliable else None
    return found


def _subset(t: _Trials, config: _Config, weights: np.ndarray, thresholds: dict, members: np.ndarray) -> dict[str, Any]:
    """Figures for the photos in `members`: pairs with both photos in it, searches by its probes."""

    def view(name: str) -> dict[str, Any]:
        genuine, impostor, mate, rank, nonmate = _subset_trials(t, members, weights, name)
        return {
            "verification": _verification(genuine, impostor, thresholds["fmr"], config),
            "identification": _identification(mate, rank, nonmate, thresholds["fpir"], config, t.gallery_identities),
        }

    return {
        "photos": int(members.sum()),
        "identities": int(len(np.unique(t.subject[members]))),
        "failure_to_enrol": _failure_to_enrol(t, members, weights),
        **view(END_TO_END),
        "enrolled_only": view(ENROLLED_ONLY),
    }


def _gap(t: _Trials, config: _Config, weights: np.ndarray, thresholds: dict, index: int) -> dict[str, Any]:
    def view(name: str) -> dict[str, Any]:
        genuine, impostor, mate, rank, nonmate = _gap_trials(t, index, weights, name)
        return {
            "verification": _verification(genuine, impostor, thresholds["fmr"], config),
            "identification": _identification(mate, rank, nonmate, thresholds["fpir"], config, t.gallery_identities),
        }

    return {**view(END_TO_END), "enrolled_only": view(ENROLLED_ONLY)}


def _subset_trials(t: _Trials, members: np.ndarray, weights: np.ndarray, view: str) -> tuple[np.ndarray, ...]:
    """(genuine, impostor, mate distances, mate ranks, non-mate distances) of a set of photos, in a view."""
    pairs = members[t.pair_a] & members[t.pair_b]
    genuine, impostor = _weighted_pairs(t, pairs if view == END_TO_END else pairs & t.scored, weights)
    mated, non_mated = _searched(t, t.mated, t.mate, view)
    return genuine, impostor, *_weighted_searches(t, members[t.probe], weights, mated, non_mated, t.mate, t.rank)


def _gap_trials(t: _Trials, index: int, weights: np.ndarray, view: str) -> tuple[np.ndarray, ...]:
    """The same for one age gap: pairs that far apart; mated searches against the mate's photos
    at that gap only (a non-mated search has no gap)."""
    pairs = t.pair_gap == index
    genuine, impostor = _weighted_pairs(t, pairs if view == END_TO_END else pairs & t.scored, weights)
    mate, rank = t.mate_by_gap[:, index], t.rank_by_gap[:, index]
    mated, _ = _searched(t, t.mated_by_gap[:, index], mate, view)
    everyone, nobody = np.ones(len(t.probe), dtype=bool), np.zeros(len(t.probe), dtype=bool)
    return genuine, impostor, *_weighted_searches(t, everyone, weights, mated, nobody, mate, rank)


def _searched(t: _Trials, mated: np.ndarray, mate: np.ndarray, view: str) -> tuple[np.ndarray, np.ndarray]:
    """Which searches count as mated and as non-mated in a view: end to end, all of them;
    enrolled only, those whose probe and mate have templates."""
    if view == END_TO_END:
        return mated, t.non_mated
    return mated & np.isfinite(mate), t.non_mated & t.probe_enrolled


def _weighted_pairs(t: _Trials, mask: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) distances of the masked pairs, each repeated by its identities' draws."""
    a, b = t.subject[t.pair_a[mask]], t.subject[t.pair_b[mask]]
    genuine = t.genuine[mask]
    repeats = np.where(genuine, weights[a], weights[a] * weights[b])
    distance = np.repeat(t.distance[mask], repeats)
    genuine = np.repeat(genuine, repeats)
    return distance[genuine], distance[~genuine]


def _weighted_searches(
    t: _Trials,
    mask: np.ndarray,
    weights: np.ndarray,
    mated: np.ndarray,
    non_mated: np.ndarray,
    mate: np.ndarray,
    rank: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mate distances, mate ranks) of mated searches and best distances of non-mated ones."""
    repeats = weights[t.subject[t.probe]]
    mated, non_mated = mask & mated, mask & non_mated
    return (
        np.repeat(mate[mated], repeats[mated]),
        np.repeat(rank[mated], repeats[mated]),
        np.repeat(t.nonmate[non_mated], repeats[non_mated]),
    )


def _failure_to_enrol(t: _Trials, members: np.ndarray, weights: np.ndarray) -> dict[str, Any]:
    out = {}
    for role in ROLES:
        chosen = np.flatnonzero(members & t.wanted[role])
        counts = weights[t.subject[chosen]]
        reasons: Counter[str] = Counter()
        for index, count in zip(chosen, counts):
            failure = t.failures[role][index]
            if failure is not None:
                reasons[failure] += int(count)
        photos, failed = int(counts.sum()), sum(reasons.values())
        out[role] = {
            "photos": photos,
            "failed": failed,
            "rate": failed / photos if photos else None,
            "reasons": dict(sorted(reasons.items())),
            "unavailable": {} if photos else {"rate": NO_TRIALS},
        }
    return out


def _verification(genuine: np.ndarray, impostor: np.ndarray, thresholds: dict, config: _Config) -> dict[str, Any]:
    fmr, fnmr = _rates(genuine, impostor, config.threshold)
    eer, eer_threshold = _equal_error_rate(genuine, impostor)
    return {
        "genuine_pairs": len(genuine),
        "impostor_pairs": len(impostor),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "unavailable": {"eer": NO_TRIALS} if eer is None else {},
        "at_threshold": {
            "threshold": config.threshold,
            "fmr": fmr,
            "fnmr": fnmr,
            "unavailable": _no_trials(fmr=impostor, fnmr=genuine),
        },
        "at_fmr": {
            _key(target): _at_target(genuine, impostor, thresholds[target], target, "fmr", "fnmr")
            for target in config.fmr_targets
        },
    }


def _identification(
    mate: np.ndarray, rank: np.ndarray, nonmate: np.ndarray, thresholds: dict, config: _Config, gallery_identities: int
) -> dict[str, Any]:
    fpir, fnir = _rates(mate, nonmate, config.threshold)
    ranks = {f"rank_{k}": float(np.mean(rank <= k)) if len(rank) else None for k in config.ranks}
    return {
        "mated_searches": len(mate),
        "non_mated_searches": len(nonmate),
        "gallery_identities": gallery_identities,
        **ranks,
        # With no more identities than k in the gallery, every enrolled mate is within rank k.
        "uninformative_ranks": [k for k in config.ranks if k >= gallery_identities],
        "unavailable": {key: NO_TRIALS for key, value in ranks.items() if value is None},
        "at_threshold": {
            "threshold": config.threshold,
            "fnir": fnir,
            "fpir": fpir,
            "unavailable": _no_trials(fpir=nonmate, fnir=mate),
        },
        "at_fpir": {
            _key(target): _at_target(mate, nonmate, thresholds[target], target, "fpir", "fnir")
            for target in config.fpir_targets
        },
    }


def _at_target(
    genuine: np.ndarray,
    impostor: np.ndarray,
    threshold: float | None,
    target: float,
    false_match: str,
    false_non_match: str,
) -> dict[str, Any]:
    """Rates at a global threshold; the false-match side only where the trials can show `target`.

    A side without any trial is N/A (no_trials); a side the data cannot show, because the
    global threshold could not be set or this subset has fewer than 1/target impostor
    trials, is not reliable (too_few_trials).
    """
    enough = len(impostor) * target >= 1.0 - TOLERANCE
    fm, fnm = _rates(genuine, impostor, threshold) if threshold is not None else (None, None)
    unavailable = {}
    if not len(genuine):
        unavailable[false_non_match] = NO_TRIALS
    elif threshold is None:
        unavailable[false_non_match] = TOO_FEW_TRIALS
    if not len(impostor):
        unavailable[false_match] = NO_TRIALS
    elif threshold is None or not enough:
        unavailable[false_match] = TOO_FEW_TRIALS
    return {
        f"target_{false_match}": target,
        "threshold": threshold,
        false_non_match: fnm,
        false_match: fm if enough else None,
        "reliable": threshold is not None and enough and fnm is not None,
        "trials_needed": math.ceil(1.0 / target - TOLERANCE),
        "unavailable": unavailable,
    }


def _no_trials(**trials: np.ndarray) -> dict[str, str]:
    return {key: NO_TRIALS for key, values in trials.items() if not len(values)}


def _rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float | None) -> tuple[float | None, float | None]:
    """(false-match, false-non-match) rate at `threshold`; None for a side without trials.

    A trial without a distance (+inf) is beyond every threshold: never a match.
    """
    if threshold is None:
        return None, None
    fm = np.count_nonzero(impostor <= threshold) / len(impostor) if len(impostor) else None
    fnm = np.count_nonzero(genuine > threshold) / len(genuine) if len(genuine) else None
    return fm, fnm


def _det(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FMR, FNMR) at every distinct finite distance: `matching.calibration.det_curve`,
    with trials without a distance (+inf) counted as beyond every threshold."""
    genuine, impostor = np.sort(genuine), np.sort(impostor)
    both = np.concatenate([genuine, impostor])
    thresholds = np.unique(both[np.isfinite(both)])
    fmr = np.searchsorted(impostor, thresholds, side="right") / len(impostor)
    fnmr = (len(genuine) - np.searchsorted(genuine, thresholds, side="right")) / len(genuine)
    return thresholds, fmr, fnmr


def _equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float | None, float | None]:
    """`matching.calibration.equal_error_rate` (the smallest rate some threshold keeps both FMR and
    FNMR within), over trials that may lack a distance; (None, None) without both kinds of trial."""
    if not len(genuine) or not len(impostor):
        return None, None
    thresholds, fmr, fnmr = _det(genuine, impostor)
    if not len(thresholds):  # no trial has a distance: every pair is a non-match
        return 1.0, None
    worse = np.maximum(fmr, fnmr)
    best = int(np.argmin(worse))
    return float(worse[best]), float(thresholds[best])


def _key(target: float) -> str:
    return f"{target:g}"


# ----- confidence intervals ------------------------------------------------------------------


def _add_intervals(point: dict[str, Any], rounds: list[dict[str, Any]], keys: frozenset[str]) -> None:
    """Beside each rate of `point`, its 95 % interval over the same rate of every round."""
    intervals = {}
    for key, value in point.items():
        below = [r.get(key) if isinstance(r, dict) else None for r in rounds]
        if isinstance(value, dict):
            _add_intervals(value, [b if isinstance(b, dict) else {} for b in below], keys)
        elif key in keys and isinstance(value, float):
            drawn = [v for v in below if isinstance(v, (int, float))]
            intervals[key] = [float(v) for v in np.percentile(drawn, [2.5, 97.5])] if drawn else None
    if intervals:
        point["ci95"] = intervals


# ----- curves and counts ---------------------------------------------------------------------


def _curves(t: _Trials) -> dict[str, Any]:
    """DET and CMC curves per subset, end to end like the headline, and the distances of the pairs
    that have one: rates and counts only."""
    ones = np.ones(t.identities, dtype=np.int64)
    everyone = np.ones(len(t.subject), dtype=bool)

    def curves(genuine, impostor, mate, rank, nonmate) -> dict[str, Any]:
        return {"det": _det_points(genuine, impostor), "cmc": _cmc(rank, t.gallery_identities)}

    def subset(members: np.ndarray) -> dict[str, Any]:
        return curves(*_subset_trials(t, members, ones, END_TO_END))

    genuine, impostor, *_ = _subset_trials(t, everyone, ones, ENROLLED_ONLY)
    return {
        "overall": subset(everyone),
        "groups": {
            name: {value: subset(members) for value, members in values.items()} for name, values in t.groups.items()
        },
        "age_bands": {band: subset(members) for band, members in t.bands.items()},
        "age_gaps": {label: curves(*_gap_trials(t, index, ones, END_TO_END)) for index, label in _gap_labels(t)},
        "scores": _histograms(genuine, impostor),
    }


def _det_points(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, list[float]] | None:
    """At most DET_POINTS points of the DET curve, dense at both ends where the log axes need them."""
    if not len(genuine) or not len(impostor):
        return None
    thresholds, fmr, fnmr = _det(genuine, impostor)
    if not len(thresholds):
        return None
    if len(thresholds) > DET_POINTS:
        ends = np.geomspace(1, len(thresholds), DET_POINTS // 2).astype(np.int64)
        keep = np.unique(np.concatenate([ends - 1, len(thresholds) - ends]))
        thresholds, fmr, fnmr = thresholds[keep], fmr[keep], fnmr[keep]
    return {"threshold": _rounded(thresholds), "fmr": _rounded(fmr), "fnmr": _rounded(fnmr)}


def _cmc(rank: np.ndarray, gallery_identities: int) -> list[float] | None:
    """Hit rate at rank 1, 2, ... up to the gallery size (at most CMC_MAX_RANK)."""
    if not len(rank):
        return None
    return [float(np.mean(rank <= k)) for k in range(1, min(gallery_identities, CMC_MAX_RANK) + 1)]


def _histograms(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, Any] | None:
    if not len(genuine) and not len(impostor):
        return None
    top = max(1.2, float(np.concatenate([genuine, impostor]).max()) * 1.02)
    edges = np.linspace(0.0, top, SCORE_BINS + 1)
    return {
        "edges": _rounded(edges),
        "genuine": np.histogram(genuine, edges)[0].tolist(),
        "impostor": np.histogram(impostor, edges)[0].tolist(),
    }


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


def _dataset_counts(t: _Trials) -> dict[str, Any]:
    mated, non_mated = _searched(t, t.mated, t.mate, ENROLLED_ONLY)
    return {
        "photos": len(t.subject),
        "identities": t.identities,
        "gallery_photos": int(t.wanted["gallery"].sum()),
        "probe_photos": int(t.wanted["probe"].sum()),
        "enrolled_gallery_photos": int(t.enrolled["gallery"].sum()),
        "enrolled_probe_photos": int(t.enrolled["probe"].sum()),
        "gallery_identities": t.gallery_identities,
        # End to end, as the headline counts them; the trials with a distance under enrolled_only.
        "genuine_pairs": int(t.genuine.sum()),
        "impostor_pairs": int((~t.genuine).sum()),
        "mated_searches": int(t.mated.sum()),
        "non_mated_searches": int(t.non_mated.sum()),
        "enrolled_only": {
            "genuine_pairs": int((t.genuine & t.scored).sum()),
            "impostor_pairs": int((~t.genuine & t.scored).sum()),
            "mated_searches": int(mated.sum()),
            "non_mated_searches": int(non_mated.sum()),
        },
        "photos_with_age": int(sum(members.sum() for members in t.bands.values())),
        "group_names": sorted(t.groups),
    }
