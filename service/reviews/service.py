"""Human review of candidate matches: the queue, what a reviewer sees, photos, decisions, notices.

Every function takes the session first and keyword-only arguments. The rule itself (who
may review, what a decision does) is `vetting.review`; this module loads the facts it
needs, stores its outcome and writes the audit event in the same transaction.

Visibility: a candidate exists, for a reviewer, only if their organisation submitted the
case or owns the record; anyone else gets "not found". Before a reviewer decides they see
an open candidate as `under_review` and nobody's decision; after deciding they see their
own review and the candidate's real status, never another reviewer's decision, identity or
rationale (the audit trail keeps those for auditors). A record's label is never shown, and
case references only to the organisation they belong to.

Decisions lock the candidate's row (SELECT ... FOR UPDATE on PostgreSQL; SQLite
transactions are exclusive already) before reading its reviews, so two reviewers
deciding at once are applied one after the other and cannot both count as the first.

Audited (who read which candidate, ids only): `review_queue_viewed` (the candidate ids
listed), `candidate_viewed`, `photo_viewed` (each decrypted side), `review_recorded`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from typing import Literal

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.audit.actions import AuditAction
from service.audit.service import record_event
from service.auth.models import User
from service.calibration.card import standing_notice
from service.calibration.service import active_calibration, latest_evaluation, policy_of
from service.cases.models import Case
from service.db import utcnow
from service.effects import after_commit
from service.organisations.models import Organisation
from service.organisations.standing import organisation_in_good_standing
from matching.quality import Gates
from service.photos.models import Embedding, Photo
from service.photos.quality import face_quality
from service.photos.service import Size, open_photo
from service.photos.storage import PhotoUnavailable, PhotoVault
from service.records.models import Record
from service.refusal import Conflict, NotFound
from service.reviews.candidate_facts import age_of_photo, candidate_facts
from service.reviews.models import Candidate, Notification, Review
from service.reviews.schemas import (
    CandidateOut,
    CaseSide,
    FaceBox,
    FaceOut,
    ModelOut,
    NotificationOut,
    PhotoSide,
    QueueItem,
    RecordSide,
    ReviewOut,
    ReviewQueue,
)
from vetting import review as rule
from vetting.organisations import in_good_standing
from vetting.roles import Role

NOTIFICATION_MATCH_CONFIRMED = "match_confirmed"
WEBHOOK_PENDING = "pending"  # set at confirmation; webhooks.deliver makes it sent or failed
UNREAD_NOTICES_IN_QUEUE = 50
Side = Literal["probe", "record"]

_NOT_FOUND = "There is no such candidate."
_NO_PHOTO = "This photo is not available: it has been erased or withdrawn."


@dataclass(frozen=True)
class Loaded:
    """A candidate with the case and record it links, as seen by one viewer."""

    candidate: Candidate
    case: Case
    record: Record | None  # None once redacted
    parties: rule.Parties


# --- the queue --------------------------------------------------------------------------------


def review_queue(session: Session, *, reviewer: User, limit: int = 100) -> ReviewQueue:
    """Candidates the reviewer may decide, oldest first, with counts and unread notices."""
    organisation_id = reviewer.organisation_id
    if organisation_id is None and not is_platform_reviewer(reviewer):
        return ReviewQueue(waiting=0, waiting_second_review=0, items=[], notifications=[])
    reviewed_by_anyone = select(Review.id).where(Review.candidate_id == Candidate.id).exists()
    conditions = [*_decidable_by(reviewer), *parties_in_good_standing(utcnow())]
    rows = session.execute(
        select(Candidate, Case.organisation_id, Record.organisation_id, reviewed_by_anyone)
        .join(Case, Case.id == Candidate.case_id)
        .join(Record, Record.id == Candidate.record_id)
        .where(*conditions)
        .order_by(Candidate.created_at, Candidate.id)
        .limit(limit)
    ).all()
    facts = candidate_facts(session, [candidate for candidate, *_ in rows])
    counted = (
        select(func.count(Candidate.id))
        .join(Case, Case.id == Candidate.case_id)
        .join(Record, Record.id == Candidate.record_id)
        .where(*conditions)
    )
    record_event(
        session,
        action=AuditAction.REVIEW_QUEUE_VIEWED,
        actor_id=reviewer.id,
        organisation_id=organisation_id,
        details={"candidate_ids": [candidate.id for candidate, *_ in rows]},
    )
    session.commit()
    return ReviewQueue(
        waiting=session.scalar(counted) or 0,
        waiting_second_review=session.scalar(counted.where(reviewed_by_anyone)) or 0,
        items=[
            QueueItem(
                candidate_id=candidate.id,
                case_id=candidate.case_id,
                rank=candidate.rank,
                distance_band=facts[candidate.id].band,
                years_between=facts[candidate.id].years_between,
                search_mode=candidate.search_mode,
                lead_label=facts[candidate.id].lead_label,
                created_at=candidate.created_at,
                your_organisation=_involvement(organisation_id, case_org, record_org),
                reviewed_by_others=bool(reviewed),
            )
            for candidate, case_org, record_org, reviewed in rows
        ],
        notifications=list_notifications(session, viewer=reviewer, unread_only=True, limit=UNREAD_NOTICES_IN_QUEUE),
    )


def _decidable_by(reviewer: User) -> list[ColumnElement[bool]]:
    """SQL conditions matching the candidates `reviewer` may still decide (see vetting.review)."""
    already_reviewed = (
        select(Review.id).where(Review.candidate_id == Candidate.id, Review.reviewer_id == reviewer.id).exists()
    )
    visible = (
        Case.organisation_id == Record.organisation_id
        if is_platform_reviewer(reviewer)  # see may_see
        else or_(Case.organisation_id == reviewer.organisation_id, Record.organisation_id == reviewer.organisation_id)
    )
    return [
        Candidate.status.in_([status.value for status in rule.OPEN_STATUSES]),
        visible,
        Case.submitted_by != reviewer.id,
        ~already_reviewed,
        Case.purged_at.is_(None),  # nothing left to compare once the case photo is purged
    ]


def parties_in_good_standing(now: datetime) -> list[ColumnElement[bool]]:
    """SQL conditions: the case's organisation, and the record's (unless redacted), are in good standing.

    A candidate of an organisation that is suspended, revoked or out of date is hidden from
    everyone, not deleted: it is back, with its reviews, once the organisation is reinstated.
    """
    return [
        organisation_in_good_standing(Case.organisation_id, now),
        or_(Candidate.record_id.is_(None), organisation_in_good_standing(Record.organisation_id, now)),
    ]


def _involvement(organisation_id: int | None, case_organisation_id: int, record_organisation_id: int | None) -> str:
    if organisation_id is None:
        return "independent"  # a platform reviewer
    submitted, owns = organisation_id == case_organisation_id, organisation_id == record_organisation_id
    return "both" if submitted and owns else "submitted_case" if submitted else "owns_record"


# --- one candidate ----------------------------------------------------------------------------


def candidate_details(session: Session, *, viewer: User, candidate_id: int, gates: Gates) -> CandidateOut:
    """What a reviewer needs to compare the two faces, and nobody else's decision.

    `gates` (the settings' quality gates) flag either face as low quality from its stored figures.
    """
    loaded = _load(session, viewer=viewer, candidate_id=candidate_id)
    candidate, case, record = loaded.candidate, loaded.case, loaded.record
    mine = session.scalars(
        select(Review).where(Review.candidate_id == candidate.id, Review.reviewer_id == viewer.id)
    ).first()
    redacted = candidate.status == rule.Status.REDACTED or record is None
    probe_photo = _photo_side(
        session,
        candidate=candidate,
        embedding_id=candidate.probe_embedding_id,
        side="probe",
        date_of_birth=None,
        show_image=not redacted,
        gates=gates,
    )
    calibration = active_calibration(session, candidate.model_id)
    facts = candidate_facts(session, [candidate], policies={candidate.model_id: policy_of(calibration)})[candidate.id]
    record_event(
        session,
        action=AuditAction.CANDIDATE_VIEWED,
        actor_id=viewer.id,
        organisation_id=viewer.organisation_id,
        target_type="candidate",
        target_id=candidate.id,
        details={"candidate_id": candidate.id, "case_id": case.id, "record_id": candidate.record_id},
    )
    session.commit()
    return CandidateOut(
        id=candidate.id,
        status=rule.visible_status(candidate.status, has_reviewed=mine is not None),
        rank=candidate.rank,
        distance_band=facts.band,
        years_between=facts.years_between,
        search_mode=candidate.search_mode,
        lead_label=facts.lead_label,
        model=ModelOut(id=candidate.model_id, version=candidate.model_version),
        created_at=candidate.created_at,
        probe=CaseSide(
            case_id=case.id,
            photo=probe_photo,
            submitted_by_your_organisation=case.organisation_id == viewer.organisation_id,
            case_reference=case.case_reference if case.organisation_id == viewer.organisation_id else None,
        ),
        record=None
        if redacted or record is None
        else _record_side(session, viewer=viewer, candidate=candidate, record=record, gates=gates),
        can_decide=_can_decide(session, loaded=loaded, reviewer=viewer),
        your_review=review_out(mine) if mine else None,
        notice=standing_notice(calibration, latest_evaluation(session, candidate.model_id)),
    )


def _record_side(session: Session, *, viewer: User, candidate: Candidate, record: Record, gates: Gates) -> RecordSide:
    own = record.organisation_id == viewer.organisation_id
    return RecordSide(
        record_id=record.id,
        case_reference=record.case_reference if own else None,
        owned_by_your_organisation=own,
        missing_since=record.missing_since,
        photo=_photo_side(
            session,
            candidate=candidate,
            embedding_id=candidate.gallery_embedding_id,
            side="record",
            date_of_birth=record.date_of_birth,
            show_image=True,
            gates=gates,
        ),
    )


def _photo_side(
    session: Session,
    *,
    candidate: Candidate,
    embedding_id: int | None,
    side: Side,
    date_of_birth: date | None,
    show_image: bool,
    gates: Gates,
) -> PhotoSide | None:
    embedding = session.get(Embedding, embedding_id) if embedding_id is not None else None
    photo = session.get(Photo, embedding.photo_id) if embedding is not None else None
    if embedding is None or photo is None:
        return None
    quality = face_quality(embedding.quality, gates)
    return PhotoSide(
        photo_id=photo.id,
        taken_at=photo.taken_at,
        age_at_photo=_age_at_photo(photo, date_of_birth),
        width=photo.width,
        height=photo.height,
        face=FaceOut(
            box=FaceBox(
                top=embedding.box_top, right=embedding.box_right, bottom=embedding.box_bottom, left=embedding.box_left
            ),
            quality=quality.quality,
            low_quality=quality.low_quality,
            quality_flags=quality.quality_flags,
        ),
        image_url=f"/api/v1/candidates/{candidate.id}/{side}-image" if show_image and _stored(photo) else None,
    )


def _age_at_photo(photo: Photo, date_of_birth: date | None) -> float | None:
    """The age recorded with the photo, else worked out from the date of birth and date taken (matching.ages)."""
    age = age_of_photo(photo.age_at_photo, photo.taken_at, date_of_birth)
    return None if age is None else round(age, 1)


def _can_decide(session: Session, *, loaded: Loaded, reviewer: User) -> bool:
    if loaded.case.purged_at is not None:
        return False
    try:
        rule.check_may_decide(
            loaded.candidate.status,
            parties=loaded.parties,
            reviewer=_as_reviewer(reviewer),
            past_reviews=_past_reviews(session, loaded.candidate.id),
        )
    except rule.ReviewRefused:
        return False
    return True


# --- photos ---------------------------------------------------------------------------------


def open_candidate_photo(
    session: Session, *, vault: PhotoVault, viewer: User, candidate_id: int, side: Side, size: Size = "full"
) -> tuple[bytes, str]:
    """Decrypt one side's photo and audit the view (committed before the bytes are returned)."""
    loaded = _load(session, viewer=viewer, candidate_id=candidate_id)
    candidate = loaded.candidate
    if candidate.status == rule.Status.REDACTED or loaded.record is None:
        raise NotFound(_NO_PHOTO)
    embedding_id = candidate.probe_embedding_id if side == "probe" else candidate.gallery_embedding_id
    photo = _photo_of(session, embedding_id)
    # The photo must belong to this candidate's case or record, whatever the embedding says.
    if photo is None or not _stored(photo):
        raise NotFound(_NO_PHOTO)
    belongs = photo.case_id == candidate.case_id if side == "probe" else photo.record_id == candidate.record_id
    if not belongs:
        raise NotFound(_NO_PHOTO)
    try:
        data, media_type = open_photo(vault, photo, size)
    except PhotoUnavailable as unavailable:
        raise NotFound(_NO_PHOTO) from unavailable
    record_event(
        session,
        action=AuditAction.PHOTO_VIEWED,
        actor_id=viewer.id,
        organisation_id=viewer.organisation_id,
        target_type="candidate",
        target_id=candidate.id,
        details={"candidate_id": candidate.id, "photo_id": photo.id, "side": side, "size": size},
    )
    session.commit()
    return data, media_type


def _photo_of(session: Session, embedding_id: int | None) -> Photo | None:
    if embedding_id is None:
        return None
    embedding = session.get(Embedding, embedding_id)
    return session.get(Photo, embedding.photo_id) if embedding is not None else None


def _stored(photo: Photo) -> bool:
    return photo.erased_at is None and bool(photo.storage_key) and bool(photo.wrapped_key)


# --- decisions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedReview:
    review: Review
    candidate_status: str
    notification: Notification | None  # set when this review confirmed the match


def record_review(
    session: Session,
    *,
    reviewer: User,
    candidate_id: int,
    decision: str,
    rationale: str,
    deliver_webhook: Callable[[int], None] | None,
    new_account_days: int = rule.DEFAULT_NEW_ACCOUNT_DAYS,
    now: datetime | None = None,
) -> RecordedReview:
    """Apply the two-person rule to the reviewer's decision and store it, under a row lock.

    When this decision confirms the match and the record's organisation has a webhook,
    `deliver_webhook(notification.id)` runs once the decision is committed (service.effects;
    None: the webhook waits for the retry sweep). `new_account_days` is the settings'
    `review_new_account_days`; `now` the decision's time.
    """
    now = now or utcnow()
    loaded = _load(session, viewer=reviewer, candidate_id=candidate_id, lock=True)
    candidate = loaded.candidate
    past = _past_reviews(session, candidate.id)  # read after the lock: includes a concurrent decision
    # rule.ReviewRefused carries its status (404 for not_yours, 403, 409) and is answered as it is.
    outcome = rule.decide(
        candidate.status,
        decision,
        parties=loaded.parties,
        reviewer=_as_reviewer(reviewer),
        past_reviews=past,
        now=now,
        new_account_days=new_account_days,
    )
    if loaded.case.purged_at is not None:
        raise Conflict(
            "The case photo was deleted at the end of its retention period; this candidate can no longer be reviewed.",
            rule="case_purged",
        )
    review = Review(
        candidate_id=candidate.id,
        reviewer_id=reviewer.id,
        reviewer_organisation_id=reviewer.organisation_id,
        decision=outcome.decision.value,
        rationale=rationale,
        created_at=now,
    )
    session.add(review)
    candidate.status = outcome.new_status.value
    if outcome.new_status in rule.FINAL_STATUSES:
        candidate.decided_at = now
    try:
        session.flush()
    except IntegrityError as clash:  # the same reviewer, deciding twice at once
        session.rollback()
        raise Conflict("You have already recorded your decision on this candidate.", rule="already_reviewed") from clash
    notification = _notify_record_owner(session, loaded=loaded, now=now) if outcome.confirmed_now else None
    if notification is not None and notification.webhook_status == WEBHOOK_PENDING and deliver_webhook is not None:
        after_commit(session, partial(deliver_webhook, notification.id))
    record_event(
        session,
        action=AuditAction.REVIEW_RECORDED,
        actor_id=reviewer.id,
        organisation_id=reviewer.organisation_id,
        target_type="candidate",
        target_id=candidate.id,
        details={"candidate_id": candidate.id, "decision": outcome.decision.value, "status": outcome.new_status.value},
    )
    session.commit()
    return RecordedReview(review=review, candidate_status=outcome.new_status.value, notification=notification)


def _notify_record_owner(session: Session, *, loaded: Loaded, now: datetime) -> Notification:
    """A notice for the record's organisation; its webhook, if any, is sent after commit."""
    assert loaded.record is not None  # a redacted candidate cannot be confirmed
    owner = session.get(Organisation, loaded.record.organisation_id)
    has_webhook = owner is not None and bool(owner.webhook_url) and bool(owner.webhook_secret)
    notification = Notification(
        organisation_id=loaded.record.organisation_id,
        candidate_id=loaded.candidate.id,
        kind=NOTIFICATION_MATCH_CONFIRMED,
        created_at=now,
        webhook_status=WEBHOOK_PENDING if has_webhook else None,
    )
    session.add(notification)
    session.flush()
    return notification


def _past_reviews(session: Session, candidate_id: int) -> list[rule.PastReview]:
    """Every review of the candidate, with when its reviewer's account was created (the rule's facts)."""
    rows = session.execute(
        select(Review, User.created_at)
        .join(User, User.id == Review.reviewer_id)
        .where(Review.candidate_id == candidate_id)
        .order_by(Review.id)
    )
    return [
        rule.PastReview(
            reviewer_id=review.reviewer_id,
            organisation_id=review.reviewer_organisation_id,
            decision=review.decision,
            account_created_at=created_at,
            reviewed_at=review.created_at,
            platform=review.reviewer_organisation_id is None,
        )
        for review, created_at in rows
    ]


def _as_reviewer(user: User) -> rule.Reviewer:
    return rule.Reviewer(
        user_id=user.id,
        organisation_id=user.organisation_id,
        account_created_at=user.created_at,
        platform=is_platform_reviewer(user),
    )


def is_platform_reviewer(user: User) -> bool:
    """Operator staff holding the platform reviewer role (and no organisation)."""
    return user.organisation_id is None and Role.PLATFORM_REVIEWER.value in user.roles


def review_out(review: Review) -> ReviewOut:
    """The reviewer's own review, as the API shows it."""
    return ReviewOut(
        id=review.id,
        candidate_id=review.candidate_id,
        decision=review.decision,
        rationale=review.rationale,
        created_at=review.created_at,
    )


# --- notifications --------------------------------------------------------------------------


def list_notifications(
    session: Session, *, viewer: User, unread_only: bool = False, limit: int = 100
) -> list[NotificationOut]:
    """The viewer's organisation's notices, newest first."""
    if viewer.organisation_id is None:
        return []
    query = _notifications_of(viewer).order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return [_notification_out(*row, viewer=viewer) for row in session.execute(query).all()]


def mark_notification_read(session: Session, *, viewer: User, notification_id: int) -> NotificationOut:
    """Mark one of the organisation's notices read (again is harmless)."""
    row = session.execute(_notifications_of(viewer).where(Notification.id == notification_id)).first()
    if row is None:
        raise NotFound("There is no such notification.")
    notification = row[0]
    if notification.read_at is None:
        notification.read_at = utcnow()
    session.commit()
    return _notification_out(*row, viewer=viewer)


def _notifications_of(viewer: User):
    """Notices of the viewer's organisation with their record's id, owner and reference (not the record)."""
    return (
        select(Notification, Record.id, Record.organisation_id, Record.case_reference)
        .join(Candidate, Candidate.id == Notification.candidate_id)
        .outerjoin(Record, Record.id == Candidate.record_id)
        .where(Notification.organisation_id == viewer.organisation_id)
    )


def _notification_out(
    notification: Notification,
    record_id: int | None,
    record_organisation_id: int | None,
    record_reference: str | None,
    *,
    viewer: User,
) -> NotificationOut:
    own = record_id is not None and record_organisation_id == viewer.organisation_id
    return NotificationOut(
        id=notification.id,
        kind=notification.kind,
        candidate_id=notification.candidate_id,
        record_id=record_id if own else None,
        record_case_reference=record_reference if own else None,
        created_at=notification.created_at,
        read_at=notification.read_at,
        webhook_status=notification.webhook_status,
        webhook_next_attempt_at=notification.webhook_next_attempt_at
        if notification.webhook_status == "failed"
        else None,
    )


# --- loading ----------------------------------------------------------------------------------


def _load(session: Session, *, viewer: User, candidate_id: int, lock: bool = False) -> Loaded:
    """The candidate if the viewer's organisation may see it, else NotFound (never Forbidden)."""
    candidate = session.get(Candidate, candidate_id, with_for_update=lock, populate_existing=lock)
    if candidate is None:
        raise NotFound(_NOT_FOUND)
    case = session.get_one(Case, candidate.case_id)
    record = session.get(Record, candidate.record_id) if candidate.record_id is not None else None
    parties = rule.Parties(
        case_organisation_id=case.organisation_id,
        case_submitted_by=case.submitted_by,
        record_organisation_id=record.organisation_id if record is not None else None,
    )
    if not rule.may_see(
        parties, viewer.organisation_id, platform=is_platform_reviewer(viewer)
    ) or not _in_good_standing(session, parties):
        raise NotFound(_NOT_FOUND)
    return Loaded(candidate=candidate, case=case, record=record, parties=parties)


def _in_good_standing(session: Session, parties: rule.Parties) -> bool:
    """Both organisations of the candidate may take part now (a redacted one has no record side)."""
    now = utcnow()
    for organisation_id in (parties.case_organisation_id, parties.record_organisation_id):
        if organisation_id is None:
            continue
        organisation = session.get(Organisation, organisation_id)
        if organisation is None or not in_good_standing(organisation.status, organisation.vetting_expires_at, now):
            return False
    return True
