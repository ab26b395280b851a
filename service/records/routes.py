"""Records API: records with consent, their photos, and consent withdrawal (thin: see service.py).

Every route needs `manage_records`, held by caseworkers of approved organisations;
another organisation's record answers 404. Refusals of the service and of the
upload checks (`service.refusal.Refusal`) are answered by the app's one refusal
handler with their status and sentence. The routes are plain `def`s,
so FastAPI runs them in its threadpool: decoding an upload never blocks the event
loop. A photo's multipart body is read only once the caller is known to be allowed
to upload (`service.photos.upload_form`). Work is handed to the workers only after
the transaction has committed.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel

from service.db import utcnow
from service.deps import CurrentUser, DbId, DbOffset, DbSession, DispatcherDep, SettingsDep, VaultDep, permission
from service.photos.models import Photo
from service.photos.quality import FaceQualityOut, photo_faces
from service.photos.service import Size, read_upload
from service.photos.upload_form import Upload, upload_form, upload_permission
from service.records import service
from service.records.models import Consent, Record
from service.problems import Responses
from service.records.schemas import (
    ConsentDetails,
    ConsentSummary,
    NewRecord,
    PhotoAccepted,
    PhotoOut,
    RecordOut,
    RecordPage,
    RecordSummary,
    WithdrawalOut,
)
from vetting.permissions import Action


router = APIRouter(tags=["records"])
REFUSALS: Responses = {
    404: {"description": "No such record in your organisation"},
    409: {"description": "State conflict"},
    422: {"description": "Refused: {detail}"},
}
UPLOAD_REFUSALS: Responses = REFUSALS | {
    400: {"description": "Empty file"},
    413: {"description": "Too large"},
    415: {"description": "Not a still image"},
}


@router.post(
    "/records", status_code=201, response_model=RecordOut, responses=REFUSALS, **permission(Action.MANAGE_RECORDS)
)
def create_record(body: NewRecord, user: CurrentUser, session: DbSession, settings: SettingsDep) -> RecordOut:
    """Register a missing child's record with the guardian's consent."""
    record = service.create_record(
        session, actor=user, body=body, now=utcnow(), max_consent_days=settings.consent_max_days
    )
    return _record_out(record, photos=[], faces={})


@router.get("/records", response_model=RecordPage, **permission(Action.MANAGE_RECORDS))
def list_records(
    user: CurrentUser,
    session: DbSession,
    case_reference: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[DbOffset, Query()] = 0,
) -> RecordPage:
    """Your organisation's records, newest first (the guardian's name is never listed)."""
    rows, total = service.list_records(session, actor=user, case_reference=case_reference, limit=limit, offset=offset)
    items = [_summary(record, photo_count=count) for record, count in rows]
    return RecordPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/records/{record_id}", response_model=RecordOut, responses=REFUSALS, **permission(Action.MANAGE_RECORDS))
def get_record(record_id: DbId, user: CurrentUser, session: DbSession, settings: SettingsDep) -> RecordOut:
    """One record with its consent and photos, each with its face's quality and flags (audited)."""
    record, photos = service.record_details(session, actor=user, record_id=record_id)
    faces = photo_faces(session, [photo.id for photo in photos], settings.quality_gates())
    return _record_out(record, photos=photos, faces=faces)


class PhotoFields(BaseModel):
    """The text fields of a record photo's multipart form (besides `file`)."""

    taken_at: date | None = None


def record_path(record_id: DbId) -> int:
    """The record id of an upload's path, checked before its form is read."""
    return record_id


@router.post(
    "/records/{record_id}/photos",
    status_code=202,
    response_model=PhotoAccepted,
    responses=UPLOAD_REFUSALS,
    **upload_permission(Action.MANAGE_RECORDS, PhotoFields),
)
def upload_photo(
    record_id: DbId,
    user: CurrentUser,
    session: DbSession,
    settings: SettingsDep,
    vault: VaultDep,
    dispatcher: DispatcherDep,
    upload: Annotated[Upload[PhotoFields], Depends(upload_form(PhotoFields, path=record_path))],
) -> PhotoAccepted:
    """Add a photo of the child (multipart: `file`, optional `taken_at`); it is processed in the background."""
    file = upload.required_file
    photo = service.add_record_photo(
        session,
        vault=vault,
        settings=settings,
        actor=user,
        record_id=record_id,
        read_file=lambda: read_upload(file.file, max_bytes=settings.max_upload_bytes),
        taken_at=upload.fields.taken_at,
        now=utcnow(),
        dispatch=dispatcher.record_photo,
    )
    return PhotoAccepted(photo_id=photo.id, status=photo.status)


@router.get(
    "/records/{record_id}/photos/{photo_id}",
    response_model=PhotoOut,
    responses=REFUSALS,
    **permission(Action.MANAGE_RECORDS),
)
def get_photo(
    record_id: DbId, photo_id: DbId, user: CurrentUser, session: DbSession, settings: SettingsDep
) -> PhotoOut:
    """A photo's processing status, in words, with its face's quality and flags."""
    photo = service.record_photo(session, actor=user, record_id=record_id, photo_id=photo_id)
    return photo_out(photo, photo_faces(session, [photo.id], settings.quality_gates())[photo.id])


@router.get(
    "/records/{record_id}/photos/{photo_id}/image",
    response_class=Response,
    responses=REFUSALS | {200: {"content": {"image/jpeg": {}}}, 410: {"description": "Erased"}},
    **permission(Action.MANAGE_RECORDS),
)
def get_photo_image(
    record_id: DbId, photo_id: DbId, user: CurrentUser, session: DbSession, vault: VaultDep, size: Size = "full"
) -> Response:
    """The photo itself or its thumbnail (`size=thumbnail`), decrypted (audited; never cached)."""
    data, media_type = service.read_record_photo(
        session, vault=vault, actor=user, record_id=record_id, photo_id=photo_id, size=size
    )
    return Response(
        data, media_type=media_type, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    )


@router.post(
    "/records/{record_id}/consent/withdraw",
    response_model=WithdrawalOut,
    responses=REFUSALS,
    **permission(Action.MANAGE_RECORDS),
)
def withdraw_consent(
    record_id: DbId, user: CurrentUser, session: DbSession, settings: SettingsDep, vault: VaultDep
) -> WithdrawalOut:
    """Withdraw consent: answers only after the record's photos, faces and matches are erased."""
    outcome = service.withdraw_consent(
        session, vault=vault, index_dir=settings.index_dir, actor=user, record_id=record_id, now=utcnow()
    )
    return WithdrawalOut(**vars(outcome))


# --- response shapes -------------------------------------------------------------------------


def photo_out(photo: Photo, faces: list[FaceQualityOut]) -> PhotoOut:
    """The photo, with its enrolled face's quality (`faces`: the photo's stored faces, from photo_faces)."""
    face = faces[0] if faces else None
    return PhotoOut(
        id=photo.id,
        record_id=photo.record_id,
        status=photo.status,
        status_message=service.photo_words(photo),
        faces_found=photo.faces_found,
        taken_at=photo.taken_at,
        age_at_photo=photo.age_at_photo,
        created_at=photo.created_at,
        processed_at=photo.processed_at,
        erased_at=photo.erased_at,
        low_quality=face is not None and face.low_quality,
        face=face,
    )


def _consent_summary(consent: Consent) -> dict[str, Any]:
    return dict(
        lawful_basis=consent.lawful_basis,
        notice_version=consent.notice_version,
        obtained_at=consent.obtained_at,
        expires_at=consent.expires_at,
        withdrawn_at=consent.withdrawn_at,
        valid_now=consent.valid_at(utcnow()),
    )


def _record_fields(record: Record, *, photo_count: int) -> dict[str, Any]:
    return dict(
        id=record.id,
        case_reference=record.case_reference,
        label=record.label,
        status=record.status,
        date_of_birth=record.date_of_birth,
        age_years=record.age_years,
        missing_since=record.missing_since,
        created_at=record.created_at,
        photo_count=photo_count,
    )


def _summary(record: Record, *, photo_count: int) -> RecordSummary:
    return RecordSummary(
        **_record_fields(record, photo_count=photo_count), consent=ConsentSummary(**_consent_summary(record.consent))
    )


def _record_out(record: Record, *, photos: list[Photo], faces: dict[int, list[FaceQualityOut]]) -> RecordOut:
    consent = record.consent
    details = ConsentDetails(
        **_consent_summary(consent),
        guardian_name=consent.guardian_name,
        guardian_relationship=consent.guardian_relationship,
        responsibility_verified_by=consent.responsibility_verified_by,
        purpose=consent.purpose,
    )
    return RecordOut(
        **_record_fields(record, photo_count=len(photos)),
        consent=details,
        photos=[photo_out(photo, faces.get(photo.id, [])) for photo in photos],
    )
