"""The gallery rule, written once: which records (and their photos' faces) may be searched now.

A record is searchable while it is active, its consent is valid now (obtained, not
expired, not withdrawn) and its organisation is in good standing
(service.organisations.standing, the SQL form of `vetting.organisations.in_good_standing`).
Every query that decides what may be matched or proposed uses these: the worker's
searches and two-way matching, the re-embedder, the re-embedding's progress.

The locking forms take the record rows FOR SHARE until commit, so a consent
withdrawal (which updates the record first) waits for the writer and then sees what it
wrote, or commits first and is seen here.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from service.organisations.models import Organisation
from service.organisations.standing import in_good_standing, organisation_in_good_standing
from service.photos.models import Embedding, Photo, PhotoStatus
from service.records.models import Consent, Record, RecordStatus
from service.reviews.candidate_facts import age_of_photo


def consent_valid(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """The record is active and its consent (joined) is valid at `now`."""
    return (
        Record.status == RecordStatus.ACTIVE,
        Consent.withdrawn_at.is_(None),
        Consent.obtained_at <= now,
        Consent.expires_at > now,
    )


def lock_searchable_records(
    session: Session, record_ids: list[int], *, now: datetime, require_approved: bool = True
) -> set[int]:
    """The given records that are active with valid consent (and an approved organisation), locked FOR SHARE."""
    if not record_ids:
        return set()
    query = (
        select(Record.id)
        .join(Consent, Consent.record_id == Record.id)
        .where(Record.id.in_(record_ids), *consent_valid(now))
        .with_for_update(read=True, of=Record)
    )
    if require_approved:
        query = query.join(Organisation, Organisation.id == Record.organisation_id).where(in_good_standing(now))
    return set(session.scalars(query).all())


def record_in_good_standing(session: Session, record_id: int, now: datetime) -> bool:
    """Whether the record's organisation is in good standing now."""
    return (
        session.scalar(select(organisation_in_good_standing(Record.organisation_id, now)).where(Record.id == record_id))
        or False
    )


def eligible_gallery_embeddings(
    session: Session, embedding_ids: list[int], *, model_id: str, now: datetime, lock: bool = True
) -> dict[int, int]:
    """Embedding id -> record id for the ids that may be proposed now, their records locked FOR SHARE.

    `lock=False` only counts (how far an investigative search must reach); what is
    written is always decided under the lock.
    """
    if not embedding_ids:
        return {}
    query = (
        select(Embedding.id, Photo.record_id)
        .join(Photo, Photo.id == Embedding.photo_id)
        .join(Record, Record.id == Photo.record_id)
        .join(Consent, Consent.record_id == Record.id)
        .join(Organisation, Organisation.id == Record.organisation_id)
        .where(
            Embedding.id.in_(embedding_ids),
            Embedding.model_id == model_id,
            Photo.status == PhotoStatus.EMBEDDED,
            in_good_standing(now),
            *consent_valid(now),
        )
    )
    if lock:
        query = query.with_for_update(read=True, of=Record)
    return {row.id: row.record_id for row in session.execute(query).all()}


def gallery_photo_ages(session: Session, embedding_ids: list[int]) -> dict[int, tuple[float | None, date | None]]:
    """Embedding id -> (age, date taken) of its record photo; the age from the date of birth when not recorded."""
    if not embedding_ids:
        return {}
    rows = session.execute(
        select(Embedding.id, Photo.age_at_photo, Photo.taken_at, Record.date_of_birth)
        .join(Photo, Photo.id == Embedding.photo_id)
        .join(Record, Record.id == Photo.record_id)
        .where(Embedding.id.in_(embedding_ids))
    ).all()
    return {row.id: (age_of_photo(row.age_at_photo, row.taken_at, row.date_of_birth), row.taken_at) for row in rows}
