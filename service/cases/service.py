"""Cases: submitting a probe photo (with daily quotas), and following its search.

Quotas come first: a person and an organisation may each submit only so many
cases per UTC day (`daily_cases_per_user`, `daily_cases_per_organisation`), since
bulk or crowd searching is not what Reunite is for. A refusal is a 429 naming the
reset time, and is itself audited (`case_refused`, with the rule only) so that
oversight can see attempts at bulk use. The quota is counted again under a lock
on the organisation's row when the case is stored, so two submissions at the same
moment cannot both take the last place.

The search mode (alerting, or investigative with its number of leads) and the case
photo's date and age at photo are checked before anything else, so a bad one stores
nothing and uses no quota; `review_load` gives the figures a caseworker sees before
choosing a mode. The file is decoded with no transaction open; the case, its photo
and the `case_submitted` event (ids, the mode and counts only) then commit together,
and only then is the case handed to the dispatcher the caller gave (service.effects).
Another organisation's case is "not found": reviewers of an organisation that owns a
candidate record see that candidate through the review queue, not the case. Reading a
case writes `case_viewed` with the ids of the candidates it shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from datetime import date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from service.audit.actions import AuditAction
from service.audit.service import record_event
from service.auth.models import User
from service.cases.models import Case, CaseStatus
from service.cases.modes import (
    ALERTING,
    INVESTIGATIVE,
    MAX_LEADS,
    REVIEWS_PER_CANDIDATE,
    SearchChoice,
    parse_search_choice,
    searched_message,
)
from service.organisations.models import Organisation
from service.organisations.standing import in_good_standing
from service.photos.models import Embedding, Photo
from service.photos.service import check_upload, store_photo
from service.refusal import Refusal
from service.photos.storage import PhotoVault
from service.retention import files_erased_on_failure
from service.records.models import Record
from service.records.service import LATEST_TIME_ZONE
from service.db import utcnow
from service.effects import after_commit
from service.reviews.models import Candidate, Review
from service.reviews.service import parties_in_good_standing
from service.settings import Settings
from vetting.review import OPEN_STATUSES, Status, visible_status

CASE_STATUS_WORDS: dict[str, str] = {
    CaseStatus.QUEUED: "Waiting to be searched.",
    CaseStatus.PROCESSING: "Being searched: faces are being found and compared with the records.",
    CaseStatus.SEARCHED: "Searched. Any candidates must be reviewed by two people before anything is concluded.",
    CaseStatus.NO_FACE: "No face was found in this photo; submit one where the face is clearly visible.",
    CaseStatus.REJECTED_INPUT: "This file could not be used as a photo.",
    CaseStatus.FAILED: "The search failed; it will be retried. If it stays like this, submit the photo again.",
}
PURGED_WORDS = "The photo and its faces were erased when the retention period ended."
# How far back "recently" reaches for the review load a caseworker sees before choosing a mode.
REVIEW_LOAD_DAYS = 90
OLDEST_AGE_AT_PHOTO = 120


def not_found() -> Refusal:
    return Refusal(404, "There is no such case in your organisation.")


# --- submitting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CasePhotoFacts:
    """What the caseworker knows about the case photo, so the years between photos can be worked out."""

    taken_at: date | None = None
    age_at_photo: float | None = None


def parse_search(search_mode: str | None, candidate_limit: str | int | None) -> SearchChoice:
    """The search mode and number of leads as typed; Refusal 422 with a sentence otherwise."""
    return parse_search_choice(search_mode, candidate_limit)


def parse_photo_facts(
    taken_at: str | date | None, age_at_photo: str | float | None, *, now: datetime
) -> CasePhotoFacts:
    """The case photo's date taken and age at photo as typed (both optional); Refusal 422 otherwise."""
    if isinstance(taken_at, str):
        try:
            taken_at = date.fromisoformat(taken_at.strip()) if taken_at.strip() else None
        except ValueError:
            raise Refusal(422, "The date the photo was taken must be a date such as 2026-03-02.") from None
    if taken_at is not None and taken_at > (now + LATEST_TIME_ZONE).date():
        raise Refusal(422, "The date the photo was taken cannot be in the future.")
    if isinstance(age_at_photo, str):
        try:
            age_at_photo = float(age_at_photo.strip()) if age_at_photo.strip() else None
        except ValueError:
            raise Refusal(422, "The age in the photo must be a number of years, such as 9 or 9.5.") from None
    if age_at_photo is not None and not 0 <= age_at_photo <= OLDEST_AGE_AT_PHOTO:  # also refuses NaN
        raise Refusal(422, f"The age in the photo must be from 0 to {OLDEST_AGE_AT_PHOTO} years.")
    return CasePhotoFacts(taken_at=taken_at, age_at_photo=age_at_photo)


def submit_case(
    session: Session,
    *,
    vault: PhotoVault,
    settings: Settings,
    actor: User,
    case_reference: str,
    purpose: str,
    read_file: Callable[[], bytes],
    now: datetime,
    dispatch: Callable[[int], None] | None,
    search: SearchChoice = SearchChoice(),
    photo_facts: CasePhotoFacts = CasePhotoFacts(),
) -> Case:
    """Check quotas and the photo, then store the case and its photo; once committed, `dispatch(case.id)`.

    `dispatch` is the dispatcher's `case` (None: the caller runs the search itself, as
    `reunite demo` does); it runs only after the commit (service.effects).

    `search` and `photo_facts` come from `parse_search` and `parse_photo_facts`, which
    refuse bad input before anything is stored. Raises Refusal (404, 422, 429) or
    an upload Refusal (400-422); a refused submission leaves neither a row
    nor a file. Investigative cases count against the same daily quotas as alerting ones.
    """
    actor_id, organisation_id = actor.id, _organisation_of(actor)
    case_reference, purpose = case_reference.strip(), purpose.strip()
    if not case_reference or not purpose:
        raise Refusal(422, "Give the case reference and the purpose of this search.")
    check_quota(session, settings=settings, actor_id=actor_id, organisation_id=organisation_id, now=now)
    session.commit()  # no transaction (SQLite: no write lock) while the file is read and decoded
    image = check_upload(read_file(), settings)
    with files_erased_on_failure(vault) as sealing_vault:
        # Serialise this organisation's submissions so the quota count below is exact.
        session.get(Organisation, organisation_id, with_for_update=True)
        check_quota(session, settings=settings, actor_id=actor_id, organisation_id=organisation_id, now=now)
        case = Case(
            organisation_id=organisation_id,
            submitted_by=actor_id,
            case_reference=case_reference,
            purpose=purpose,
            status=CaseStatus.QUEUED,
            attempts=0,
            created_at=now,
            search_mode=search.mode,
            candidate_limit=search.candidate_limit,
            retention_until=now + timedelta(days=settings.case_retention_days),
        )
        session.add(case)
        session.flush()
        photo = store_photo(
            session,
            vault=sealing_vault,
            image=image,
            organisation_id=organisation_id,
            uploaded_by=actor_id,
            case_id=case.id,
            taken_at=photo_facts.taken_at,
            age_at_photo=photo_facts.age_at_photo,
        )
        photo.created_at = now
        record_event(
            session,
            action=AuditAction.CASE_SUBMITTED,
            actor_id=actor_id,
            organisation_id=organisation_id,
            target_type="case",
            target_id=case.id,
            details=_submitted_details(case.id, photo.id, search),
        )
        if dispatch is not None:
            after_commit(session, partial(dispatch, case.id))
        session.commit()
    return case


def _submitted_details(case_id: int, photo_id: int, search: SearchChoice) -> dict:
    """Ids, the mode and the number of leads: nothing about the photo or the people."""
    details = {"case_id": case_id, "photo_id": photo_id, "search_mode": search.mode}
    if search.investigative:
        details["candidate_limit"] = search.candidate_limit
    return details


def check_quota(session: Session, *, settings: Settings, actor_id: int, organisation_id: int, now: datetime) -> None:
    """Refuse (429, audited) when the person or the organisation has used today's submissions."""
    day_start = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
    reset = day_start + timedelta(days=1)
    by_user = _count_since(session, Case.submitted_by == actor_id, since=day_start)
    by_organisation = _count_since(session, Case.organisation_id == organisation_id, since=day_start)
    if by_user >= settings.daily_cases_per_user:
        refusal = ("user_daily_quota", f"You have submitted {by_user} searches today, the most one person may")
    elif by_organisation >= settings.daily_cases_per_organisation:
        refusal = (
            "organisation_daily_quota",
            f"Your organisation has submitted {by_organisation} searches today, its daily limit",
        )
    else:
        return
    rule, sentence = refusal
    record_event(
        session,
        action=AuditAction.CASE_REFUSED,
        actor_id=actor_id,
        organisation_id=organisation_id,
        details={"rule": rule},
    )
    session.commit()
    wait = math.ceil((reset - now).total_seconds())
    raise Refusal(
        429,
        f"{sentence}. You can submit again from {reset:%H:%M} UTC on {reset:%d %B %Y} (in {_duration(wait)}).",
        headers={"Retry-After": str(wait)},
    )


def _count_since(session: Session, condition, *, since: datetime) -> int:
    return session.scalar(select(func.count(Case.id)).where(condition, Case.created_at >= since)) or 0


def _duration(seconds: int) -> str:
    hours, minutes = divmod(math.ceil(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


# --- the review load, before choosing a mode ---------------------------------------------------


@dataclass(frozen=True)
class ModeHistory:
    recent_cases: int  # searched cases of this mode in the last REVIEW_LOAD_DAYS
    average_candidates: float | None  # per case; None with no history


@dataclass(frozen=True)
class ReviewLoad:
    days: int
    alerting: ModeHistory
    investigative: ModeHistory
    open_candidates: int  # candidates involving the organisation that are still open
    reviews_needed: int  # at least this many reviews to decide them all


def review_load(session: Session, *, actor: User, now: datetime) -> ReviewLoad:
    """What each mode has cost the actor's organisation lately, and its open review queue now.

    The queue counts the open candidates the organisation's reviewers may decide (of its
    cases or its records, the case photo not yet purged); each still needs two reviews,
    or one once a first reviewer has confirmed it.
    """
    organisation_id = _organisation_of(actor)
    since = now - timedelta(days=REVIEW_LOAD_DAYS)
    open_rows = session.execute(
        select(Candidate.status, func.count(Candidate.id))
        .join(Case, Case.id == Candidate.case_id)
        .join(Record, Record.id == Candidate.record_id)
        .where(
            Candidate.status.in_([status.value for status in OPEN_STATUSES]),
            Case.purged_at.is_(None),
            (Case.organisation_id == organisation_id) | (Record.organisation_id == organisation_id),
            *parties_in_good_standing(now),
        )
        .group_by(Candidate.status)
    ).all()
    waiting = dict(open_rows)
    pending = waiting.get(Status.PENDING_REVIEW.value, 0)
    second = waiting.get(Status.AWAITING_SECOND_REVIEW.value, 0)
    return ReviewLoad(
        days=REVIEW_LOAD_DAYS,
        alerting=_mode_history(session, organisation_id, ALERTING, since),
        investigative=_mode_history(session, organisation_id, INVESTIGATIVE, since),
        open_candidates=pending + second,
        reviews_needed=REVIEWS_PER_CANDIDATE * pending + second,
    )


def _mode_history(session: Session, organisation_id: int, mode: str, since: datetime) -> ModeHistory:
    searched = (
        Case.organisation_id == organisation_id,
        Case.search_mode == mode,
        Case.status == CaseStatus.SEARCHED,
        Case.created_at >= since,
    )
    cases = session.scalar(select(func.count(Case.id)).where(*searched)) or 0
    if not cases:
        return ModeHistory(recent_cases=0, average_candidates=None)
    candidates = (
        session.scalar(select(func.count(Candidate.id)).join(Case, Case.id == Candidate.case_id).where(*searched)) or 0
    )
    return ModeHistory(recent_cases=cases, average_candidates=round(candidates / cases, 1))


def review_load_words(load: ReviewLoad) -> dict[str, str]:
    """The review load in sentences, for the case form and the API: alerting, investigative, queue."""
    alerting = load.alerting
    if alerting.average_candidates is None:
        alerting_words = f"No history yet: your organisation has had no alerting search in the last {load.days} days."
    else:
        alerting_words = (
            f"Your organisation's alerting searches of the last {load.days} days proposed "
            f"{_average(alerting.average_candidates, 'candidate')} per case on average "
            f"({_count(alerting.recent_cases, 'case')})."
        )
    investigative_words = (
        f"Up to the number of leads you choose (1 to {MAX_LEADS}) for each face found in the "
        f"photo, whether or not any is close; each lead needs {REVIEWS_PER_CANDIDATE} reviews, "
        f"so 25 leads for one face need {25 * REVIEWS_PER_CANDIDATE} reviews."
    )
    if load.investigative.average_candidates is not None:
        investigative_words += (
            f" Your organisation's investigative searches of the last {load.days} days "
            f"proposed {_average(load.investigative.average_candidates, 'lead')} per case on "
            f"average."
        )
    queue_words = (
        f"Your organisation's review queue now: {_count(load.open_candidates, 'open candidate')}, "
        f"needing at least {_count(load.reviews_needed, 'more review')}."
    )
    return {"alerting": alerting_words, "investigative": investigative_words, "queue": queue_words}


def _count(number: int, noun: str) -> str:
    return f"{number} {noun if number == 1 else noun + 's'}"


def _average(number: float, noun: str) -> str:
    return f"{number:g} {noun if number == 1 else noun + 's'}"


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
        select(Candidate)
        .outerjoin(Record, Record.id == Candidate.record_id)
        .where(Candidate.case_id == case.id, *parties_in_good_standing(utcnow()))
        .order_by(Candidate.probe_embedding_id, Candidate.rank, Candidate.id)
    ).all()
    reviewed = set(
        session.scalars(
            select(Review.candidate_id).where(
                Review.reviewer_id == actor.id, Review.candidate_id.in_([c.id for c in candidates])
            )
        )
    )
    record_event(
        session,
        action=AuditAction.CASE_VIEWED,
        actor_id=actor.id,
        organisation_id=case.organisation_id,
        target_type="case",
        target_id=case.id,
        details={"case_id": case.id, "candidate_ids": [c.id for c in candidates]},
    )
    session.commit()
    return case, [(c, visible_status(c.status, has_reviewed=c.id in reviewed)) for c in candidates]


def list_cases(
    session: Session, *, actor: User, case_reference: str | None, limit: int, offset: int
) -> tuple[list[Case], int]:
    """The organisation's cases, newest first, and their total."""
    where = [Case.organisation_id == _organisation_of(actor)]
    if case_reference:
        where.append(Case.case_reference == case_reference)
    total = session.scalar(select(func.count(Case.id)).where(*where)) or 0
    cases = session.scalars(
        select(Case).where(*where).order_by(Case.created_at.desc(), Case.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(cases), total


def case_words(session: Session, case: Case) -> str:
    """What the case's status means, in words: the worker's own message when it left one.

    A searched case's words follow its candidates as shown now, not as its search left
    them: two-way matching may have proposed a record since, and the candidates of an
    organisation not in good standing are hidden (see `visible_candidate_count`).
    """
    if case.status == CaseStatus.SEARCHED:
        words = searched_message(visible_candidate_count(session, case.id), case.search_mode)
    else:
        words = case.status_message or CASE_STATUS_WORDS.get(case.status, case.status)
    return f"{words} {PURGED_WORDS}" if case.purged_at else words


def visible_candidate_count(session: Session, case_id: int) -> int:
    """How many of the case's candidates are shown now: those `case_details` lists."""
    return (
        session.scalar(
            select(func.count(Candidate.id))
            .select_from(Candidate)
            .outerjoin(Record, Record.id == Candidate.record_id)
            .where(Candidate.case_id == case_id, *parties_in_good_standing(utcnow()))
        )
        or 0
    )


def open_case_faces(session: Session, *, model_id: str, record_id: int, now: datetime) -> list:
    """The probe faces of open cases (of organisations in good standing) a new photo of `record_id` may be proposed to.

    Faces of `model_id` only, with their case and case photo's age and date; a face whose
    case already has this record proposed to it (through its embedding of an earlier model)
    is left out.
    """
    earlier = aliased(Embedding)
    proposed = (
        select(Candidate.id)
        .join(earlier, earlier.id == Candidate.probe_embedding_id)
        .where(
            Candidate.case_id == Photo.case_id,
            Candidate.record_id == record_id,
            earlier.face_index == Embedding.face_index,
        )
        .exists()
    )
    return list(
        session.execute(
            select(Embedding.id, Embedding.vector, Photo.case_id, Photo.age_at_photo, Photo.taken_at)
            .join(Photo, Photo.id == Embedding.photo_id)
            .join(Case, Case.id == Photo.case_id)
            .join(Organisation, Organisation.id == Case.organisation_id)
            .where(
                Case.status.in_((CaseStatus.PROCESSING, CaseStatus.SEARCHED)),
                Case.retention_until > now,
                Case.purged_at.is_(None),
                in_good_standing(now),
                Embedding.model_id == model_id,
                ~proposed,
            )
        ).all()
    )


def set_case_outcome(case: Case, status: str, message: str | None, now: datetime, *, faces: int | None = None) -> None:
    """Record what processing made of a case: its status, a sentence for the caseworker, the faces found."""
    case.status = status
    case.status_message = message
    if faces is not None:
        case.faces = faces


def _organisation_of(actor: User) -> int:
    if actor.organisation_id is None:  # operators hold no case permission; this is a safeguard
        raise not_found()
    return actor.organisation_id
