"""Cases: submitting a probe photo (with daily quotas), and following its search.

Quotas come first: a person and an organisation may each submit only so many
cases per UTC day (`daily_cases_per_user`, `daily_cases_per_organisation`), since
bulk or crowd searching is not what Reunite is for. A refusal is a 429 naming the
reset time, and is itself audited (`case_refused`, with the rule only) so that
oversight can see attempts at bulk use. The quota is counted again under a lock
on the organisation's row when the case is stored, so two submissions at the same
moment cannot both take the last place.

The file is decoded with no transaction open; the case, its photo and the
`case_submitted` event (ids only) then commit together, and the caller dispatches
the case. Another organisation's case is "not found": reviewers of an
organisation that owns a candidate record see that candidate through the review
queue, not the case.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.audit.service import record_event
from service.auth.models import User
from service.cases.models import Case
from service.organisations.models import Organisation
from service.photos.service import check_upload, store_photo
from service.photos.storage import PhotoVault
from service.retention import files_erased_on_failure
from service.reviews.models import Candidate, Review
from vetting.review import visible_status
from service.settings import Settings

CASE_STATUS_WORDS = {
    "queued": "Waiting to be searched.",
    "processing": "Being searched: faces are being found and compared with the records.",
    "searched": "Searched. Any candidates must be reviewed by two people before anything is concluded.",
    "no_face": "No face was found in this photo; submit one where the face is clearly visible.",
    "rejected_input": "This file could not be used as a photo.",
    "failed": "The search failed; it will be retried. If it stays like this, submit the photo again.",
}
PURGED_WORDS = "The photo and its faces were erased when the retention period ended."


class CaseError(Exception):
    """A refusal with its HTTP status, a sentence, and any headers (Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def not_found() -> CaseError:
    return CaseError(404, "There is no such case in your organisation.")


# --- submitting --------------------------------------------------------------------------------


def submit_case(session: Session, *, vault: PhotoVault, settings: Settings, actor: User, case_reference: str,
                purpose: str, read_file: Callable[[], bytes], now: datetime) -> Case:
    """Check quotas and the photo, then store the case and its photo (committed; caller dispatches).

    Raises CaseError (404, 422, 429) or photos.service.UploadRefused (400-422);
    a refused submission leaves neither a row nor a file.
    """
    actor_id, organisation_id = actor.id, _organisation_of(actor)
    case_reference, purpose = case_reference.strip(), purpose.strip()
    if not case_reference or not purpose:
        raise CaseError(422, "Give the case reference and the purpose of this search.")
    check_quota(session, settings=settings, actor_id=actor_id, organisation_id=organisation_id, now=now)
    session.commit()  # no transaction (SQLite: no write lock) while the file is read and decoded
    image = check_upload(read_file(), settings)
    with files_erased_on_failure(vault) as sealing_vault:
        # Serialise this organisation's submissions so the quota count below is exact.
        session.get(Organisation, organisation_id, with_for_update=True)
        check_quota(session, settings=settings, actor_id=actor_id, organisation_id=organisation_id, now=now)
        case = Case(organisation_id=organisation_id, submitted_by=actor_id, case_reference=case_reference,
                    purpose=purpose, status="queued", attempts=0, created_at=now,
                    retention_until=now + timedelta(days=settings.case_retention_days))
        session.add(case)
        session.flush()
        photo = store_photo(session, vault=sealing_vault, image=image, organisation_id=organisation_id,
                            uploaded_by=actor_id, case_id=case.id)
        photo.created_at = now
        record_event(session, action="case_submitted", actor_id=actor_id, organisation_id=organisation_id,
                     target_type="case", target_id=case.id, details={"case_id": case.id, "photo_id": photo.id})
        session.commit()
    return case


def check_quota(session: Session, *, settings: Settings, actor_id: int, organisation_id: int,
                now: datetime) -> None:
    """Refuse (429, audited) when the person or the organisation has used today's submissions."""
    day_start = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
    reset = day_start + timedelta(days=1)
    by_user = _count_since(session, Case.submitted_by == actor_id, since=day_start)
    by_organisation = _count_since(session, Case.organisation_id == organisation_id, since=day_start)
    if by_user >= settings.daily_cases_per_user:
        refusal = ("user_daily_quota", f"You have submitted {by_user} searches today, the most one person may")
    elif by_organisation >= settings.daily_cases_per_organisation:
        refusal = ("organisation_daily_quota",
                   f"Your organisation has submitted {by_organisation} searches today, its daily limit")
    else:
        return
    rule, sentence = refusal
    record_event(session, action="case_refused", actor_id=actor_id, organisation_id=organisation_id,
                 details={"rule": rule})
    session.commit()
    wait = math.ceil((reset - now).total_seconds())
    raise CaseError(429, f"{sentence}. You can submit again from {reset:%H:%M} UTC on {reset:%d %B %Y} "
                         f"(in {_duration(wait)}).", headers={"Retry-After": str(wait)})


def _count_since(session: Session, condition, *, since: datetime) -> int:
    return session.scalar(select(func.count(Case.id)).where(condition, Case.created_at >= since)) or 0


def _duration(seconds: int) -> str:
    hours, minutes = divmod(math.ceil(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


# --- reading -----------------------------------------------------------------------------------


def own_case(session: Session, *, actor: User, case_id: int) -> Case:
    """The case if the actor's organisation submitted it; otherwise "not found"."""
    case = session.get(Case, case_id)
    if case is None or actor.organisation_id is None or case.organisation_id != actor.organisation_id:
        raise not_found()
    return case


def case_details(session: Session, *, actor: User, case_id: int) -> tuple[Case, list[tuple[Candidate, str]]]:
    """The case and its candidates (best first per probe face), each with the status `actor` may see.

    Reviewers of the submitting organisation can read cases too: an open candidate
    reads `under_review` until they have decided it, so the case page never tells a
    second reviewer what the first one decided.
    """
    case = own_case(session, actor=actor, case_id=case_id)
    candidates = session.scalars(
        select(Candidate).where(Candidate.case_id == case.id)
        .order_by(Candidate.probe_embedding_id, Candidate.rank, Candidate.id)
    ).all()
    reviewed = set(session.scalars(
        select(Review.candidate_id).where(Review.reviewer_id == actor.id,
                                          Review.candidate_id.in_([c.id for c in candidates]))
    ))
    return case, [(c, visible_status(c.status, has_reviewed=c.id in reviewed)) for c in candidates]


def list_cases(session: Session, *, actor: User, case_reference: str | None, limit: int,
               offset: int) -> tuple[list[Case], int]:
    """The organisation's cases, newest first, and their total."""
    where = [Case.organisation_id == _organisation_of(actor)]
    if case_reference:
        where.append(Case.case_reference == case_reference)
    total = session.scalar(select(func.count(Case.id)).where(*where)) or 0
    cases = session.scalars(
        select(Case).where(*where).order_by(Case.created_at.desc(), Case.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(cases), total


def case_words(case: Case) -> str:
    """What the case's status means, in words: the worker's own message when it left one."""
    words = case.status_message or CASE_STATUS_WORDS.get(case.status, case.status)
    return f"{words} {PURGED_WORDS}" if case.purged_at else words


def _organisation_of(actor: User) -> int:
    if actor.organisation_id is None:  # operators hold no case permission; this is a safeguard
        raise not_found()
    return actor.organisation_id
