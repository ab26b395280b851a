"""Records: consented gallery entries, their photos, and consent withdrawal.

Every function takes the session first and keyword-only arguments and finds
records only within the actor's organisation (another organisation's record is
"not found", never "forbidden"). Those that change something or show personal
data write their audit event in the same transaction and commit. Refusals are
`service.refusal.Refusal`s carrying an HTTP status and a sentence for the caseworker.

Withdrawal (see `service.retention` for the erasure itself) answers only after the
erasure has committed; the encrypted files are deleted just after that commit.

Transactions stay short (SQLite's are exclusive): an upload checks the record, ends
that transaction, decodes the file with no transaction open, then re-checks the
record under a row lock while it stores the photo, so a withdrawal that committed
in between is never undone by a late upload. The stored photo is handed to the
dispatcher the caller gave only once it has committed (service.effects).

Audited: record_created, record_viewed (the detail view shows the guardian's
name), photo_uploaded, photo_viewed (the decrypted image), consent_withdrawn
(counts only). Lists and a photo's processing status are not audited: they show
no personal data beyond the pseudonymous label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from matching.ages import age_at
from service.audit.actions import AuditAction
from service.audit.service import record_event
from service.auth.models import User
from service.db import checkpoint_after_erasure
from service.effects import after_commit
from service.photos.index_files import discard_snapshots
from service.photos.models import Photo, PhotoStatus
from service.photos.service import Size, check_upload, open_photo, store_photo
from service.photos.storage import PhotoUnavailable, PhotoVault
from service.records.models import Consent, Record, RecordStatus
from service.records.schemas import ConsentIn, NewRecord
from service.refusal import Refusal
from service.retention import LOCK_RECORD, WITHDRAWN_MESSAGE, erase_files, erase_record, files_erased_on_failure
from service.settings import Settings

ADULT_AGE = 18
# A consent obtained "now" on a device whose clock runs a little fast is still accepted.
CLOCK_SKEW = timedelta(minutes=5)
# A date typed as "today" is accepted if it is today anywhere on Earth (UTC+14 is the furthest ahead).
LATEST_TIME_ZONE = timedelta(hours=14)

PHOTO_STATUS_WORDS: dict[str, str] = {
    PhotoStatus.QUEUED: "Waiting to be processed.",
    PhotoStatus.PROCESSING: "Being processed: the face is being found and measured.",
    PhotoStatus.EMBEDDED: "Ready: the face in this photo can be matched.",
    PhotoStatus.NO_FACE: "No face was found in this photo; upload one where the child's face is clearly visible.",
    PhotoStatus.SEVERAL_FACES: "This photo shows several faces; upload one showing only the child.",
    # Legacy: before quality became a flag, such photos were refused; none is refused for its quality now,
    # and those whose file was kept were queued again by migration 0012 (this is for the rest).
    PhotoStatus.LOW_QUALITY: (
        "This photo was not added to the gallery: an earlier version of Reunite refused faces it "
        "judged too small, blurred or turned away. Upload it again: it will be added and flagged "
        "low quality instead."
    ),
    PhotoStatus.REJECTED_INPUT: "This file could not be used as a photo.",
    PhotoStatus.FAILED: "Processing failed; it will be retried. If it stays like this, upload the photo again.",
    PhotoStatus.ERASED: "Erased.",
}


def not_found() -> Refusal:
    return Refusal(404, "There is no such record in your organisation.")


# --- creating and reading records ----------------------------------------------------------


def create_record(session: Session, *, actor: User, body: NewRecord, now: datetime, max_consent_days: int) -> Record:
    """Register a record and its consent; refuse (422, 409) with a sentence."""
    if problem := new_record_problem(body, now=now, max_consent_days=max_consent_days):
        raise Refusal(422, problem)
    organisation_id = _organisation_of(actor)
    if _reference_taken(session, organisation_id=organisation_id, case_reference=body.case_reference):
        raise _duplicate_reference()
    consent = body.consent
    record = Record(
        organisation_id=organisation_id,
        created_by=actor.id,
        case_reference=body.case_reference,
        label=body.label,
        date_of_birth=body.date_of_birth,
        age_years=body.age_years,
        missing_since=body.missing_since,
        status=RecordStatus.ACTIVE,
        created_at=now,
        updated_at=now,
        consent=Consent(
            guardian_name=consent.guardian_name,
            guardian_relationship=consent.guardian_relationship,
            responsibility_verified_by=consent.responsibility_verified_by,
            lawful_basis=consent.lawful_basis.value,
            purpose=consent.purpose,
            notice_version=consent.notice_version,
            obtained_at=consent.obtained_at,
            expires_at=consent.expires_at,
        ),
    )
    session.add(record)
    try:
        session.flush()
    except IntegrityError as error:  # the same reference registered at the same moment
        session.rollback()
        raise _duplicate_reference() from error
    record_event(
        session,
        action=AuditAction.RECORD_CREATED,
        actor_id=actor.id,
        organisation_id=organisation_id,
        target_type="record",
        target_id=record.id,
        details={"record_id": record.id, "lawful_basis": consent.lawful_basis.value},
    )
    session.commit()
    return record


def new_record_problem(body: NewRecord, *, now: datetime, max_consent_days: int) -> str | None:
    """The first reason the record cannot be registered, as a sentence; None when it can."""
    return _child_problem(body, now=now) or _consent_problem(body.consent, now=now, max_consent_days=max_consent_days)


def _child_problem(body: NewRecord, *, now: datetime) -> str | None:
    if (body.date_of_birth is None) == (body.age_years is None):
        return "Give either the child's date of birth or their age in years, not both and not neither."
    if body.missing_since > (now + LATEST_TIME_ZONE).date():
        return "The date the child went missing cannot be in the future."
    if body.date_of_birth is not None:
        if body.date_of_birth > body.missing_since:
            return "The date of birth must be before the date the child went missing."
        if age_on(body.date_of_birth, body.missing_since) >= ADULT_AGE:
            return f"Records are for children: the child must have been under {ADULT_AGE} when they went missing."
    return None


def _consent_problem(consent: ConsentIn, *, now: datetime, max_consent_days: int) -> str | None:
    if consent.obtained_at > now + CLOCK_SKEW:
        return "Consent cannot have been obtained in the future: check the date and time it was given."
    if consent.expires_at <= now:
        return "This consent has already expired: a record needs consent that is valid today."
    if consent.expires_at - consent.obtained_at > timedelta(days=max_consent_days):
        return (
            f"Consent may last at most {max_consent_days} days from when it was given: "
            "set an earlier expiry date, and renew it with the family when it ends."
        )
    return None


def age_on(born: date, on: date) -> int:
    """Age in whole years on a given date."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def list_records(
    session: Session, *, actor: User, case_reference: str | None, limit: int, offset: int
) -> tuple[list[tuple[Record, int]], int]:
    """The organisation's records (newest first) with their photo counts, and the total."""
    where = [Record.organisation_id == _organisation_of(actor)]
    if case_reference:
        where.append(Record.case_reference == case_reference)
    total = session.scalar(select(func.count(Record.id)).where(*where)) or 0
    photo_count = select(func.count(Photo.id)).where(Photo.record_id == Record.id).correlate(Record).scalar_subquery()
    rows = session.execute(
        select(Record, photo_count)
        .where(*where)
        .order_by(Record.created_at.desc(), Record.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return [(record, count) for record, count in rows], total


def record_details(session: Session, *, actor: User, record_id: int) -> tuple[Record, list[Photo]]:
    """One record with its photos; audited, since it shows the guardian's name."""
    record = own_record(session, actor=actor, record_id=record_id)
    photos = record_photos(session, record_id=record.id)
    record_event(
        session,
        action=AuditAction.RECORD_VIEWED,
        actor_id=actor.id,
        organisation_id=record.organisation_id,
        target_type="record",
        target_id=record.id,
    )
    session.commit()
    return record, photos


def record_photos(session: Session, *, record_id: int) -> list[Photo]:
    return list(session.scalars(select(Photo).where(Photo.record_id == record_id).order_by(Photo.id)))


def own_record(session: Session, *, actor: User, record_id: int, lock: bool = False) -> Record:
    """The record if it belongs to the actor's organisation; otherwise "not found"."""
    record = session.get(Record, record_id, with_for_update=LOCK_RECORD if lock else None, populate_existing=lock)
    if record is None or actor.organisation_id is None or record.organisation_id != actor.organisation_id:
        raise not_found()
    return record


def photo_words(photo: Photo) -> str:
    """What the photo's status means, in words: the worker's own message when it left one."""
    if photo.status == PhotoStatus.LOW_QUALITY:  # a legacy refusal: its stored message asks for another photo
        return PHOTO_STATUS_WORDS[PhotoStatus.LOW_QUALITY]
    return photo.status_message or PHOTO_STATUS_WORDS.get(photo.status, photo.status)


# --- photos --------------------------------------------------------------------------------


def add_record_photo(
    session: Session,
    *,
    vault: PhotoVault,
    settings: Settings,
    actor: User,
    record_id: int,
    read_file: Callable[[], bytes],
    taken_at: date | None,
    now: datetime,
    dispatch: Callable[[int], None] | None,
) -> Photo:
    """Check, encrypt and queue a photo of the record; once committed, `dispatch(photo.id)` hands it on.

    `dispatch` is the dispatcher's `record_photo` (None: the caller processes the photo
    itself, as `reunite demo` does); it runs only after the commit (service.effects).

    `read_file` is called only once the record may take a photo, so a refusal about
    the record (404, 409) comes before one about the file. Raises Refusal
    (404, 409, 422) or an upload Refusal (400-422); a refused upload
    leaves neither a row nor a file.
    """
    actor_id, organisation_id = actor.id, _organisation_of(actor)
    record = own_record(session, actor=actor, record_id=record_id)
    _check_accepts_photos(record, now=now)
    _check_taken_at(taken_at, date_of_birth=record.date_of_birth, now=now)
    date_of_birth = record.date_of_birth
    session.commit()  # no transaction (SQLite: no write lock) while the file is read and decoded
    image = check_upload(read_file(), settings)
    with files_erased_on_failure(vault) as sealing_vault:
        record = own_record(session, actor=actor, record_id=record_id, lock=True)
        _check_accepts_photos(record, now=now)  # a withdrawal may have committed meanwhile
        photo = store_photo(
            session,
            vault=sealing_vault,
            image=image,
            organisation_id=organisation_id,
            uploaded_by=actor_id,
            record_id=record.id,
            taken_at=taken_at,
            age_at_photo=age_at_photo(date_of_birth, taken_at),
        )
        photo.created_at = now
        record_event(
            session,
            action=AuditAction.PHOTO_UPLOADED,
            actor_id=actor_id,
            organisation_id=organisation_id,
            target_type="photo",
            target_id=photo.id,
            details={"record_id": record.id},
        )
        if dispatch is not None:
            after_commit(session, partial(dispatch, photo.id))
        session.commit()
    return photo


def age_at_photo(date_of_birth: date | None, taken_at: date | None) -> float | None:
    """The age stored with a record photo: matching.ages' rule, to the hundredth of a year."""
    age = age_at(date_of_birth, taken_at)
    return None if age is None else round(age, 2)


def _check_accepts_photos(record: Record, *, now: datetime) -> None:
    if record.status == RecordStatus.WITHDRAWN:
        raise Refusal(409, "Consent for this record was withdrawn, so no photos can be added to it.")
    if record.status == RecordStatus.EXPIRED or not record.consent.valid_at(now):
        raise Refusal(
            409,
            "Consent for this record has expired or is not yet valid, so no photos can be "
            "added to it: register the child again with renewed consent.",
        )
    if record.status != RecordStatus.ACTIVE:
        raise Refusal(409, f"This record is {record.status}, so no photos can be added to it.")


def _check_taken_at(taken_at: date | None, *, date_of_birth: date | None, now: datetime) -> None:
    if taken_at is None:
        return
    if taken_at > (now + LATEST_TIME_ZONE).date():
        raise Refusal(422, "The date the photo was taken cannot be in the future.")
    if date_of_birth is not None and taken_at < date_of_birth:
        raise Refusal(422, "The photo cannot have been taken before the child's date of birth.")


def record_photo(session: Session, *, actor: User, record_id: int, photo_id: int) -> Photo:
    """A photo of one of the organisation's records; otherwise "not found"."""
    record = own_record(session, actor=actor, record_id=record_id)
    photo = session.get(Photo, photo_id)
    if photo is None or photo.record_id != record.id:
        raise Refusal(404, "There is no such photo of this record.")
    return photo


def read_record_photo(
    session: Session, *, vault: PhotoVault, actor: User, record_id: int, photo_id: int, size: Size = "full"
) -> tuple[bytes, str]:
    """The decrypted image (or thumbnail) and its media type; the view is audited (photo_viewed)."""
    photo = record_photo(session, actor=actor, record_id=record_id, photo_id=photo_id)
    try:
        data, media_type = open_photo(vault, photo, size)
    except PhotoUnavailable as error:
        raise Refusal(410, "This photo has been erased.") from error
    record_event(
        session,
        action=AuditAction.PHOTO_VIEWED,
        actor_id=actor.id,
        organisation_id=photo.organisation_id,
        target_type="photo",
        target_id=photo.id,
        details={"record_id": record_id, "size": size},
    )
    session.commit()
    return data, media_type


# --- consent withdrawal --------------------------------------------------------------------


@dataclass(frozen=True)
class Withdrawal:
    record_id: int
    status: str
    withdrawn_at: datetime
    already_withdrawn: bool
    photos_erased: int = 0
    embeddings_removed: int = 0
    candidates_redacted: int = 0


def withdraw_consent(
    session: Session, *, vault: PhotoVault, index_dir: Path, actor: User, record_id: int, now: datetime
) -> Withdrawal:
    """Erase everything the record's consent allowed; returns once the erasure has committed.

    A repeated call finds the consent already withdrawn and answers the same
    outcome with nothing left to do (idempotent, no second audit event), so a
    caseworker whose first answer was lost can safely try again.
    """
    record = own_record(session, actor=actor, record_id=record_id, lock=True)
    consent = record.consent
    if record.status == RecordStatus.WITHDRAWN and consent.withdrawn_at is not None:
        withdrawn_at = consent.withdrawn_at
        session.commit()
        return Withdrawal(record_id=record.id, status=record.status, withdrawn_at=withdrawn_at, already_withdrawn=True)
    erasure = erase_record(session, record=record, now=now, status=RecordStatus.WITHDRAWN, message=WITHDRAWN_MESSAGE)
    consent.withdrawn_at = now
    record_event(
        session,
        action=AuditAction.CONSENT_WITHDRAWN,
        actor_id=actor.id,
        organisation_id=record.organisation_id,
        target_type="record",
        target_id=record.id,
        details=erasure.counts(),
    )
    session.commit()
    # Files go only after the commit: a rollback must never leave rows pointing at deleted files.
    erase_files(vault, erasure.storage_keys)
    checkpoint_after_erasure(session)  # SQLite: no erased page left behind in the write-ahead log
    if erasure.embeddings_removed:
        discard_snapshots(index_dir)  # nor the child's face vector in an index snapshot file
    return Withdrawal(
        record_id=record.id, status=record.status, withdrawn_at=now, already_withdrawn=False, **erasure.counts()
    )


# --- helpers ---------------------------------------------------------------------------------


def _organisation_of(actor: User) -> int:
    if actor.organisation_id is None:  # operators hold no record permission; this is a safeguard
        raise not_found()
    return actor.organisation_id


def _reference_taken(session: Session, *, organisation_id: int, case_reference: str) -> bool:
    return (
        session.scalar(
            select(Record.id).where(Record.organisation_id == organisation_id, Record.case_reference == case_reference)
        )
        is not None
    )


def _duplicate_reference() -> Refusal:
    return Refusal(409, "Your organisation already has a record with this case reference.")
