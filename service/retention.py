"""Erasure and retention: consent withdrawal and expiry, the purge of old case photos.

Erasing photos happens in two steps. First, in one transaction, every photo loses
its wrapped data key and its sha256 (a fingerprint that could confirm a given
picture was here) and becomes `erased`; its embeddings are deleted, each with an
`IndexChange` remove, so every index replica drops it before its next search; and,
for a record, the candidates that pointed at it are redacted. Only after that
commit are the encrypted files deleted. In this order a rollback never leaves rows
pointing at deleted files, and a file left behind by a crash between the two steps
is unreadable anyway: the only copy of its data key was erased by the commit. The
storage key (a random file name, not personal data) is kept so that such a file
can still be found and deleted.

Scheduled jobs, run by the workers' maintenance task; each commits its own work,
one record or case per short transaction, and writes an audit event per record or
case with counts only:
- `expire_consents(session, vault=, now=)`: records whose consent has expired stop
  matching at once and are erased exactly like a withdrawal (status `expired`).
  Keeping the photos of a child whose family's consent has lapsed is not what a
  careful operator expects; the organisation can register a new record with
  renewed consent.
- `purge_cases(session, vault=, now=)`: case photos and their embeddings past the
  case's `retention_until` are erased; the case keeps its status and gains
  `purged_at`; its candidates are kept (their probe embedding id stays as a bare
  number).

`files_erased_on_failure` serves uploads: a photo sealed to disk by a transaction
that then fails is erased at once, so a refused or failed upload leaves no file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.audit.actions import AuditAction
from service.audit.service import record_event
from service.cases.models import Case
from service.db import checkpoint_after_erasure, rows_changed
from service.photos.index_log import append_index_change
from service.photos.models import Embedding, Photo, PhotoStatus
from service.photos.storage import PhotoVault, SealedPhoto
from service.records.models import Consent, Record, RecordStatus
from service.reviews.models import Candidate
from vetting.review import Status as CandidateStatus

log = structlog.get_logger("reunite.retention")

WITHDRAWN_MESSAGE = "Erased: consent was withdrawn."
EXPIRED_MESSAGE = "Erased: consent expired."
PURGED_MESSAGE = "Erased: the case's retention period ended."
ERASED_LABEL = "(erased)"  # a withdrawn or expired record's label: the real one is gone
# Records in these states still hold photos that expiry must erase.
LIVE_RECORD_STATUSES = (RecordStatus.ACTIVE, RecordStatus.FOUND)
# Lock the record's row only: its consent is loaded by an outer join, which PostgreSQL cannot lock.
LOCK_RECORD = {"of": Record}


@dataclass
class Erasure:
    """What one erasure removed, and the files to delete once it has committed."""

    photos_erased: int = 0
    embeddings_removed: int = 0
    candidates_redacted: int = 0
    storage_keys: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "photos_erased": self.photos_erased,
            "embeddings_removed": self.embeddings_removed,
            "candidates_redacted": self.candidates_redacted,
        }


# --- erasure building blocks (not committed) ---------------------------------------------------


def erase_photos(session: Session, *, photos: Sequence[Photo], now: datetime, message: str) -> Erasure:
    """Erase the photos' keys and embeddings (with IndexChange removes); files are left to the caller."""
    erasure = Erasure()
    photo_ids = [photo.id for photo in photos]
    if not photo_ids:
        return erasure
    # Every embedding of these photos, even of a photo already marked erased: a
    # worker that raced an earlier erasure must not leave a searchable face behind.
    faces = session.execute(
        select(Embedding.id, Embedding.model_id).where(Embedding.photo_id.in_(photo_ids)).order_by(Embedding.id)
    ).all()
    for embedding_id, model_id in faces:
        append_index_change(session, op="remove", embedding_id=embedding_id, model_id=model_id)
    if faces:
        session.execute(delete(Embedding).where(Embedding.id.in_([face.id for face in faces])))
    erasure.embeddings_removed = len(faces)
    for photo in photos:
        erasure.storage_keys += [key for key in (photo.storage_key, photo.thumbnail_key) if key]
        if photo.status == PhotoStatus.ERASED:
            continue
        photo.wrapped_key = None
        photo.thumbnail_wrapped_key = None
        photo.sha256 = None
        photo.taken_at = photo.age_at_photo = None  # when it was taken and the child's age: gone with it
        photo.status = PhotoStatus.ERASED
        photo.status_message = message
        photo.erased_at = now
        photo.claimed_at = None
        erasure.photos_erased += 1
    session.flush()
    return erasure


def redact_candidates(session: Session, *, record_id: int) -> int:
    """Cut every candidate loose from the record: no record, no gallery face, no distance."""
    result = session.execute(
        update(Candidate)
        .where(Candidate.record_id == record_id)
        .values(record_id=None, gallery_embedding_id=None, distance=None, status=CandidateStatus.REDACTED)
    )
    return rows_changed(result)


def erase_record(session: Session, *, record: Record, now: datetime, status: str, message: str) -> Erasure:
    """Erase a record's photos, embeddings and candidates, clear the guardian's name, set `status`."""
    photos = session.scalars(
        select(Photo).where(Photo.record_id == record.id).order_by(Photo.id).with_for_update()
    ).all()
    erasure = erase_photos(session, photos=photos, now=now, message=message)
    erasure.candidates_redacted = redact_candidates(session, record_id=record.id)
    record.status = status
    record.updated_at = now
    scrub_record(record)
    session.flush()
    return erasure


def scrub_record(record: Record) -> None:
    """Clear what could identify the child or the family; keep what proves the erasure was lawful.

    Kept: the organisation's case reference (its own file number, to reconcile its files and
    answer the family), the status, when the child went missing, when the record was made and
    erased, and the consent's legal facts (lawful basis, notice version, obtained, expires and
    withdrawn at). Cleared: the pseudonymous label, date of birth, age and guardian's name.
    """
    record.label = ERASED_LABEL
    record.date_of_birth = None
    record.age_years = None
    record.consent.guardian_name = None


def erase_files(vault: PhotoVault, storage_keys: Sequence[str]) -> None:
    """Delete encrypted files after their keys were erased by a committed transaction."""
    for storage_key in storage_keys:
        try:
            vault.erase(storage_key)
        except OSError as error:
            # The file is unreadable without its key; leave it for an operator, logged by its random name.
            log.warning("photo_file_not_deleted", storage_key=storage_key, error=type(error).__name__)


class _RecordingVault:
    """A vault that remembers the files it sealed, so a failed transaction can erase them."""

    def __init__(self, vault: PhotoVault):
        self._vault = vault
        self.storage_keys: list[str] = []

    def seal(self, data: bytes) -> SealedPhoto:
        sealed = self._vault.seal(data)
        self.storage_keys.append(sealed.storage_key)
        return sealed


@contextmanager
def files_erased_on_failure(vault: PhotoVault) -> Iterator[PhotoVault]:
    """Yield a vault for `store_photo`; if the block raises, every file it sealed is deleted."""
    recording = _RecordingVault(vault)
    try:
        yield recording  # type: ignore[misc]  # store_photo only calls seal
    except BaseException:
        erase_files(vault, recording.storage_keys)
        raise


# --- scheduled jobs ---------------------------------------------------------------------------


def expire_consents(session: Session, *, vault: PhotoVault, now: datetime) -> list[int]:
    """Erase every record whose consent has expired (status `expired`); their ids."""
    due = session.scalars(
        select(Record.id)
        .join(Consent, Consent.record_id == Record.id)
        .where(Record.status.in_(LIVE_RECORD_STATUSES), Consent.withdrawn_at.is_(None), Consent.expires_at <= now)
        .order_by(Record.id)
    ).all()
    session.commit()  # end the read; each record gets its own short transaction below
    expired = []
    for record_id in due:
        record = session.get(Record, record_id, with_for_update=LOCK_RECORD, populate_existing=True)
        if record is None or record.status not in LIVE_RECORD_STATUSES or record.consent.valid_at(now):
            session.rollback()  # withdrawn or renewed meanwhile
            continue
        erasure = erase_record(session, record=record, now=now, status=RecordStatus.EXPIRED, message=EXPIRED_MESSAGE)
        record_event(
            session,
            action=AuditAction.CONSENT_EXPIRED,
            organisation_id=record.organisation_id,
            target_type="record",
            target_id=record.id,
            details=erasure.counts(),
        )
        session.commit()
        erase_files(vault, erasure.storage_keys)
        expired.append(record_id)
    if expired:
        checkpoint_after_erasure(session)
    return expired


def purge_cases(session: Session, *, vault: PhotoVault, now: datetime) -> list[int]:
    """Erase the photos and embeddings of cases past their retention date; their ids."""
    due = session.scalars(
        select(Case.id).where(Case.retention_until <= now, Case.purged_at.is_(None)).order_by(Case.id)
    ).all()
    session.commit()
    purged = []
    for case_id in due:
        case = session.get(Case, case_id, with_for_update=True, populate_existing=True)
        if case is None or case.purged_at is not None:
            session.rollback()
            continue
        photos = session.scalars(
            select(Photo).where(Photo.case_id == case.id).order_by(Photo.id).with_for_update()
        ).all()
        erasure = erase_photos(session, photos=photos, now=now, message=PURGED_MESSAGE)
        case.purged_at = now
        counts = {"photos_erased": erasure.photos_erased, "embeddings_removed": erasure.embeddings_removed}
        record_event(
            session,
            action=AuditAction.CASE_PURGED,
            organisation_id=case.organisation_id,
            target_type="case",
            target_id=case.id,
            details=counts,
        )
        session.commit()
        erase_files(vault, erasure.storage_keys)
        purged.append(case_id)
    if purged:
        checkpoint_after_erasure(session)
    return purged
