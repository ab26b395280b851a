"""What every candidate shows besides its rank: the years between its two photos, its distance
band, and, for an investigative one, that it is a lead and not a match.

The years between two photos follow `matching.ages` (one rule for the service and the
evaluation): from the two ages at photo when both are known, else from the two dates
taken, else unknown (None; nothing is guessed). A record photo's age is the one recorded
with it, else worked out from the record's date of birth; a case photo's age is what the
caseworker gave. The band is the calibrated one, except that a candidate farther than the
review threshold for its age gap is "beyond the review threshold" (only investigative
searches propose those), never a weak match.

Everything is read in a few queries for a whole list (a case, a review queue), not per
candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from matching.ages import age_at, years_between
from service.calibration.service import ReviewPolicy, review_policy
from service.cases.modes import BEYOND_THRESHOLD, INVESTIGATIVE, lead_label
from service.photos.models import Embedding, Photo
from service.records.models import Record
from service.reviews.models import Candidate


@dataclass(frozen=True)
class CandidateFacts:
    years_between: float | None  # rounded to 0.1 year for people
    band: str | None
    rank_of: int  # how many candidates its probe face has: "lead 7 of 25"
    lead_label: str | None  # only for investigative candidates


def age_of_photo(age_at_photo: float | None, taken_at: date | None, date_of_birth: date | None) -> float | None:
    """The age recorded with a photo, else worked out from the date of birth and the date taken."""
    return age_at_photo if age_at_photo is not None else age_at(date_of_birth, taken_at)


def candidate_band(policy: ReviewPolicy, distance: float | None, gap_years: float | None) -> str | None:
    """The distance band reviewers see, or BEYOND_THRESHOLD past the threshold for this age gap."""
    if distance is None:
        return None
    if distance > policy.threshold_for(gap_years):
        return BEYOND_THRESHOLD
    return policy.band(distance)


def candidate_facts(
    session: Session, candidates: Sequence[Candidate], *, policies: dict[str, ReviewPolicy] | None = None
) -> dict[int, CandidateFacts]:
    """Candidate id -> its facts, for a list of candidates, under each model's policy in force.

    `policies` (model id -> policy) saves reading a policy the caller has already read.
    """
    if not candidates:
        return {}
    gaps = _years_between(session, [candidate.id for candidate in candidates])
    sizes = _probe_face_sizes(session, {c.probe_embedding_id for c in candidates if c.probe_embedding_id})
    policies = dict(policies or {})
    facts = {}
    for candidate in candidates:
        if candidate.model_id not in policies:
            policies[candidate.model_id] = review_policy(session, candidate.model_id)
        gap = gaps.get(candidate.id)
        of = max(sizes.get(candidate.probe_embedding_id, 0), candidate.rank)
        facts[candidate.id] = CandidateFacts(
            years_between=None if gap is None else round(gap, 1),
            band=candidate_band(policies[candidate.model_id], candidate.distance, gap),
            rank_of=of,
            lead_label=lead_label(candidate.rank, of) if candidate.search_mode == INVESTIGATIVE else None,
        )
    return facts


def _years_between(session: Session, candidate_ids: list[int]) -> dict[int, float | None]:
    """Years between each candidate's case photo and record photo (absent once redacted)."""
    probe, gallery = aliased(Embedding), aliased(Embedding)
    probe_photo, gallery_photo = aliased(Photo), aliased(Photo)
    rows = session.execute(
        select(
            Candidate.id,
            probe_photo.age_at_photo,
            probe_photo.taken_at,
            gallery_photo.age_at_photo,
            gallery_photo.taken_at,
            Record.date_of_birth,
        )
        .join(probe, probe.id == Candidate.probe_embedding_id)
        .join(probe_photo, probe_photo.id == probe.photo_id)
        .join(gallery, gallery.id == Candidate.gallery_embedding_id)
        .join(gallery_photo, gallery_photo.id == gallery.photo_id)
        .join(Record, Record.id == Candidate.record_id)
        .where(Candidate.id.in_(candidate_ids))
    ).all()
    return {
        row[0]: years_between(age_a=row[1], taken_a=row[2], age_b=age_of_photo(row[3], row[4], row[5]), taken_b=row[4])
        for row in rows
    }


def _probe_face_sizes(session: Session, probe_ids: set[int]) -> dict[int | None, int]:
    if not probe_ids:
        return {}
    rows = session.execute(
        select(Candidate.probe_embedding_id, func.count(Candidate.id))
        .where(Candidate.probe_embedding_id.in_(probe_ids))
        .group_by(Candidate.probe_embedding_id)
    ).all()
    return {probe: count for probe, count in rows}
