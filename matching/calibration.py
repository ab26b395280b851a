"""Choose the review distance threshold from labelled data for a target false-match rate.

A threshold is only meaningful against a stated false-match rate (FMR: the fraction of pairs
of different people whose distance is within the threshold), measured on embeddings like the
ones being searched. `pair_distances` splits all pairs of labelled embeddings into genuine
(same person) and impostor (different people) distances; `threshold_for_fmr` picks the largest
threshold whose FMR on the impostor pairs does not exceed the target and reports the
false-non-match rate (FNMR) it costs; `error_rates` measures both at any threshold. Estimating
an FMR of f needs at least 1/f impostor pairs (many more for a tight estimate), so a
calibration on fewer is flagged as not reliable. `distance_band` turns a distance into the
coarse band reviewers are shown instead of the raw number. `det_curve` and `equal_error_rate`
describe the whole trade-off, for evaluation reports. `thresholds_by_gap` sets one threshold per
band of years between the two photos (`matching.ages.AGE_GAPS`), only where that band's
impostor pairs can show the target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from matching.ages import AGE_GAPS

# dlib's published threshold, in force only until `reunite calibrate` stores a calibration.
# 0.6 is the face_recognition folklore default; the model's authors say it mixes up
# children, which is exactly our population, so do not trust it for this service.
DEFAULT_REVIEW_THRESHOLD = 0.6

# What reviewers see instead of a raw distance: (band, upper edge), strongest first; a distance
# at or below an edge is in that band, and anything beyond the last edge is WEAKEST_BAND.
# Placeholders below the review threshold until a calibration sets them from measured data.
DISTANCE_BANDS: tuple[tuple[str, float], ...] = (("strong", 0.40), ("possible", 0.50))
WEAKEST_BAND = "weak"


@dataclass(frozen=True)
class Calibration:
    """A threshold and the error rates it achieved on the calibration pairs."""

    threshold: float
    target_fmr: float
    achieved_fmr: float
    fnmr: float
    genuine_pairs: int
    impostor_pairs: int
    reliable: bool  # False when impostor_pairs < 1 / target_fmr: the data cannot show that FMR


def pair_distances(vectors: np.ndarray, labels: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances of all pairs i < j, split into (genuine, impostor) float64 arrays."""
    vectors = np.asarray(vectors, dtype=np.float64)
    label_array = np.asarray(labels)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (n, dim), got shape {vectors.shape}")
    if label_array.shape != (len(vectors),):
        raise ValueError(f"need one label per vector: {len(vectors)} vectors, labels of shape {label_array.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinite values")
    genuine, impostor = [np.empty(0)], [np.empty(0)]
    for i in range(len(vectors) - 1):  # row by row: exact, and no n-by-n temporaries
        distances = np.linalg.norm(vectors[i + 1 :] - vectors[i], axis=1)
        same = label_array[i + 1 :] == label_array[i]
        genuine.append(distances[same])
        impostor.append(distances[~same])
    return np.concatenate(genuine), np.concatenate(impostor)


def threshold_for_fmr(genuine: Any, impostor: Any, target_fmr: float) -> Calibration:
    """Largest threshold t with fraction(impostor <= t) <= target_fmr, and its error rates.

    t lies just below the impostor distance that would break the target (the next float
    down), so an impostor exactly at that distance is not matched.
    """
    genuine = _as_distances(genuine, "genuine")
    impostor = _as_distances(impostor, "impostor")
    if not 0.0 < target_fmr < 1.0:
        raise ValueError(f"target_fmr must be in (0, 1), got {target_fmr!r}")
    threshold = _impostor_threshold(np.sort(impostor), target_fmr)
    fmr, fnmr = error_rates(genuine, impostor, threshold)
    return Calibration(
        threshold=threshold,
        target_fmr=target_fmr,
        achieved_fmr=fmr,
        fnmr=fnmr,
        genuine_pairs=len(genuine),
        impostor_pairs=len(impostor),
        # Tolerance so that e.g. 1000 pairs count as enough for 0.001 despite float rounding.
        reliable=len(impostor) * target_fmr >= 1.0 - 1e-9,
    )


def _impostor_threshold(ordered: np.ndarray, target_fmr: float) -> float:
    """Largest t with at most floor(target_fmr * n) of the sorted impostor distances <= t."""
    # At most `allowed` impostor distances may be <= t; the (allowed+1)-th smallest must not.
    allowed = min(math.floor(target_fmr * len(ordered)), len(ordered) - 1)
    return float(np.nextafter(ordered[allowed], -np.inf))


def error_rates(genuine: Any, impostor: Any, threshold: float) -> tuple[float, float]:
    """(FMR, FNMR) at `threshold`: a pair matches when its distance is <= threshold."""
    genuine = _as_distances(genuine, "genuine")
    impostor = _as_distances(impostor, "impostor")
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    fmr = float(np.count_nonzero(impostor <= threshold)) / len(impostor)
    fnmr = float(np.count_nonzero(genuine > threshold)) / len(genuine)
    return fmr, fnmr


def _as_distances(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what} distances must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(
            f"no {what} pairs: calibration needs both genuine pairs (two photos "
            "of one person) and impostor pairs (photos of different people)"
        )
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"{what} distances must be finite and non-negative")
    return array


def distance_band(distance: float | None, bands: Sequence[tuple[str, float]] = DISTANCE_BANDS) -> str | None:
    """The band ("strong", "possible", "weak") a Euclidean distance falls in; None for None.

    `bands` are (name, upper edge) pairs, strongest first: a calibration's, or the placeholders.
    """
    if distance is None:
        return None
    if math.isnan(distance) or distance < 0:
        raise ValueError(f"a distance must be a non-negative number, got {distance!r}")
    for band, upper_edge in bands:
        if distance <= upper_edge:
            return band
    return WEAKEST_BAND


# Bands are cut where the false-match rate is this many times lower than the review
# threshold's: "strong" means 100x fewer impostor pairs that close, "possible" 10x.
BAND_FMR_DIVISORS: tuple[tuple[str, int], ...] = (("strong", 100), ("possible", 10))


@dataclass(frozen=True)
class BandEdge:
    band: str
    upper: float  # largest distance in the band
    fmr: float  # the false-match rate the edge was cut at
    reliable: bool  # False when the impostor pairs were too few to show that rate


def calibrated_bands(impostor: Any, target_fmr: float, threshold: float) -> list[BandEdge]:
    """Band edges below `threshold`, each at a false-match rate a fixed factor below the target.

    Distances beyond the last edge are WEAKEST_BAND. An edge never exceeds the threshold,
    and a stronger band's edge never exceeds a weaker one's.
    """
    impostor = _as_distances(impostor, "impostor")
    edges, ceiling = [], threshold
    for band, divisor in reversed(BAND_FMR_DIVISORS):  # weakest first, so each caps the next
        fmr = target_fmr / divisor
        upper = min(_impostor_threshold(np.sort(impostor), fmr), ceiling)
        edges.append(BandEdge(band=band, upper=upper, fmr=fmr, reliable=len(impostor) * fmr >= 1.0 - 1e-9))
        ceiling = upper
    return edges[::-1]


@dataclass(frozen=True)
class GapThreshold:
    """The threshold for one band of years between two photos, or why it has none."""

    band: str  # a matching.ages.AGE_GAPS label
    threshold: float | None  # None: not calibrated, the global threshold applies
    genuine_pairs: int
    impostor_pairs: int
    achieved_fmr: float | None
    fnmr: float | None  # None without genuine pairs in the band
    calibrated: bool
    trials_needed: int  # impostor pairs it takes to show the target


def thresholds_by_gap(pairs: Mapping[str, tuple[Any, Any]], target_fmr: float) -> list[GapThreshold]:
    """One threshold per age-gap band (AGE_GAPS order) from that band's (genuine, impostor) distances.

    As `threshold_for_fmr`, on the band's own impostor pairs, but only where they can show
    the target (at least 1/target_fmr of them); a band with fewer is not calibrated and keeps
    the global threshold. A band without genuine pairs still gets its threshold (set by
    impostors alone), with its FNMR unknown.
    """
    if not 0.0 < target_fmr < 1.0:
        raise ValueError(f"target_fmr must be in (0, 1), got {target_fmr!r}")
    needed = math.ceil(1.0 / target_fmr - 1e-9)
    found = []
    for band, _, _ in AGE_GAPS:
        genuine, impostor = (np.asarray(values, dtype=np.float64) for values in pairs.get(band, ([], [])))
        calibrated = len(impostor) * target_fmr >= 1.0 - 1e-9
        threshold = achieved = fnmr = None
        if calibrated:
            impostor = _as_distances(impostor, "impostor")
            threshold = _impostor_threshold(np.sort(impostor), target_fmr)
            achieved = float(np.count_nonzero(impostor <= threshold)) / len(impostor)
            if len(genuine):
                fnmr = float(np.count_nonzero(_as_distances(genuine, "genuine") > threshold)) / len(genuine)
        found.append(
            GapThreshold(
                band=band,
                threshold=threshold,
                genuine_pairs=len(genuine),
                impostor_pairs=len(impostor),
                achieved_fmr=achieved,
                fnmr=fnmr,
                calibrated=calibrated,
                trials_needed=needed,
            )
        )
    return found


def det_curve(genuine: Any, impostor: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FMR, FNMR) at every distinct distance, thresholds ascending: a DET curve."""
    genuine = np.sort(_as_distances(genuine, "genuine"))
    impostor = np.sort(_as_distances(impostor, "impostor"))
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    fmr = np.searchsorted(impostor, thresholds, side="right") / len(impostor)
    fnmr = (len(genuine) - np.searchsorted(genuine, thresholds, side="right")) / len(genuine)
    return thresholds, fmr, fnmr


def equal_error_rate(genuine: Any, impostor: Any) -> tuple[float, float]:
    """(EER, threshold): the smallest rate r that some threshold keeps both FMR and FNMR within.

    On finite data the two rates move in steps and rarely meet exactly; taking the threshold
    that minimises the larger of the two gives the conservative, well-defined value.
    """
    thresholds, fmr, fnmr = det_curve(genuine, impostor)
    worse = np.maximum(fmr, fnmr)
    best = int(np.argmin(worse))
    return float(worse[best]), float(thresholds[best])
