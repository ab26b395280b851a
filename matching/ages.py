"""Ages at photo and the years between two photos: one rule for the service and the evaluation.

Faces change fastest in childhood, so how far apart two photos were taken matters to a
reviewer and to the error rates. The years between two photos come from the two ages at
photo when both are known (they are what a caseworker records), else from the two dates
taken; with neither, the gap is unknown and nothing is guessed.
"""

from __future__ import annotations

import math
from datetime import date

DAYS_PER_YEAR = 365.2425
# (label, lower edge, upper edge) in years; a gap of 1.9 years is in "0-1".
AGE_GAPS: tuple[tuple[str, float, float], ...] = (("0-1", 0, 2), ("2-4", 2, 5), ("5-9", 5, 10), ("10+", 10, math.inf))


def age_at(date_of_birth: date | None, taken_at: date | None) -> float | None:
    """Age in years on the day a photo was taken, or None when either date is unknown or inconsistent."""
    if date_of_birth is None or taken_at is None or taken_at < date_of_birth:
        return None
    return (taken_at - date_of_birth).days / DAYS_PER_YEAR


def years_between(
    *, age_a: float | None, taken_a: date | None, age_b: float | None, taken_b: date | None
) -> float | None:
    """Years between two photos: from their ages when both are known, else their dates, else None."""
    if age_a is not None and age_b is not None:
        return abs(age_a - age_b)
    if taken_a is not None and taken_b is not None:
        return abs((taken_a - taken_b).days) / DAYS_PER_YEAR
    return None


def gap_band(years: float | None) -> str | None:
    """The AGE_GAPS label a number of years falls in (None when unknown)."""
    if years is None or math.isnan(years):
        return None
    for label, lower, upper in AGE_GAPS:
        if lower <= years < upper:
            return label
    return None
