"""Caseworker pages for records: list and search, a new record with its consent, a record with
its photos, photo upload, and consent withdrawal with a confirmation step.

Every page needs `manage_records` and calls `service.records.service`, like
`/api/v1/records`: the same consent rules, upload checks, audit events (viewing a
record shows the guardian's name and is audited; so is every photo shown) and
erasure on withdrawal. Uploads are handed to the workers after they commit; the
record page then follows each photo's processing until it is done.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import Depends, Form, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from service.db import utcnow
from service.deps import DbId, DbSession, DispatcherDep, SettingsDep, VaultDep
from service.photos.models import Photo, PhotoStatus
from service.photos.quality import FaceQualityOut, photo_faces
from service.photos.service import Size, read_upload
from service.photos.upload_form import Upload
from service.records import service as records
from service.records.models import Record, RecordStatus
from service.records.schemas import LawfulBasis, NewRecord
from service.web.forms import field_errors, validation_message
from service.web.pages import page_router
from service.refusal import Refusal
from service.web.render import add_nav, image_response, plural, redirect, render
from service.web.session import PageUser, PhotoUser, page_permission, photo_permission
from service.web.uploads import page_upload_form, page_upload_permission
from vetting.permissions import Action

router = page_router(tags=["pages: records"])
add_nav(
    "Records",
    "/records",
    Action.MANAGE_RECORDS,
    order=10,
    description="Children registered with their family's consent, and their photos.",
)
MANAGE = page_permission(Action.MANAGE_RECORDS)
PAGE_SIZE = 25
PENDING_PHOTO = (PhotoStatus.QUEUED, PhotoStatus.PROCESSING)
PHOTO_STATUS_SHORT: dict[str, str] = {
    PhotoStatus.QUEUED: "Waiting",
    PhotoStatus.PROCESSING: "Processing",
    PhotoStatus.EMBEDDED: "Ready",
    PhotoStatus.NO_FACE: "No face found",
    PhotoStatus.SEVERAL_FACES: "Several faces",
    PhotoStatus.LOW_QUALITY: "Not added",
    PhotoStatus.REJECTED_INPUT: "Refused",
    PhotoStatus.FAILED: "Failed",
    PhotoStatus.ERASED: "Erased",
}

LAWFUL_BASES: dict[str, str] = {
    LawfulBasis.CONSENT: "Consent: the guardian's explicit consent (the usual choice)",
    LawfulBasis.VITAL_INTERESTS: "Vital interests: to protect the child's life when consent cannot be obtained in time",
    LawfulBasis.LEGITIMATE_INTERESTS: "Legitimate interests: your organisation's child-protection work, where "
    "national law allows it for a substantial public interest",
    LawfulBasis.PUBLIC_TASK: "Public task: your organisation has a child-protection duty in law",
}
LABELS = {
    "case_reference": "Case reference",
    "label": "Label",
    "date_of_birth": "Date of birth",
    "age_years": "Age in years",
    "missing_since": "Missing since",
    "guardian_name": "Guardian's name",
    "guardian_relationship": "Relationship to the child",
    "responsibility_verified_by": "How parental responsibility was checked",
    "lawful_basis": "Lawful basis",
    "purpose": "Purpose agreed with the guardian",
    "notice_version": "Privacy notice version",
    "obtained_at": "Consent given on",
    "expires_at": "Consent ends on",
}
TEXT_FIELDS = (
    "case_reference",
    "label",
    "date_of_birth",
    "age_years",
    "missing_since",
    "guardian_name",
    "guardian_relationship",
    "responsibility_verified_by",
    "lawful_basis",
    "purpose",
    "notice_version",
    "obtained_at",
    "expires_at",
    "utc_offset",
)
# UTC offsets in use somewhere on Earth, for the consent times.
UTC_OFFSETS = (
    "-12:00",
    "-11:00",
    "-10:00",
    "-09:30",
    "-09:00",
    "-08:00",
    "-07:00",
    "-06:00",
    "-05:00",
    "-04:00",
    "-03:30",
    "-03:00",
    "-02:00",
    "-01:00",
    "+00:00",
    "+01:00",
    "+02:00",
    "+03:00",
    "+03:30",
    "+04:00",
    "+04:30",
    "+05:00",
    "+05:30",
    "+05:45",
    "+06:00",
    "+06:30",
    "+07:00",
    "+08:00",
    "+08:45",
    "+09:00",
    "+09:30",
    "+10:00",
    "+10:30",
    "+11:00",
    "+12:00",
    "+12:45",
    "+13:00",
    "+14:00",
)


# --- list and search ---------------------------------------------------------------------------------


@router.get("/records", **MANAGE)
def record_list(
    request: Request,
    user: PageUser,
    session: DbSession,
    case_reference: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The organisation's records, newest first; search by exact case reference."""
    wanted = case_reference.strip()
    rows, total = records.list_records(
        session, actor=user, case_reference=wanted or None, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    return render(
        request,
        "records/list.html",
        {
            "title": "Records",
            "rows": rows,
            "total": total,
            "case_reference": wanted,
            "page": page,
            "pages": max(1, -(-total // PAGE_SIZE)),
            "now": utcnow(),
        },
    )


# --- a new record with its consent ----------------------------------------------------------------


@router.get("/records/new", **MANAGE)
def new_record_form(request: Request, user: PageUser, settings: SettingsDep) -> Response:
    blank = {name: "" for name in TEXT_FIELDS} | {"lawful_basis": LawfulBasis.CONSENT.value, "utc_offset": "+00:00"}
    return _new_record_page(request, settings, blank)


@router.post("/records/new", **MANAGE)
def create_record(
    request: Request,
    user: PageUser,
    session: DbSession,
    settings: SettingsDep,
    case_reference: Annotated[str, Form(max_length=200)] = "",
    label: Annotated[str, Form(max_length=200)] = "",
    date_of_birth: Annotated[str, Form(max_length=20)] = "",
    age_years: Annotated[str, Form(max_length=5)] = "",
    missing_since: Annotated[str, Form(max_length=20)] = "",
    guardian_name: Annotated[str, Form(max_length=400)] = "",
    guardian_relationship: Annotated[str, Form(max_length=100)] = "",
    responsibility_verified_by: Annotated[str, Form(max_length=400)] = "",
    lawful_basis: Annotated[str, Form(max_length=50)] = "",
    purpose: Annotated[str, Form(max_length=4000)] = "",
    notice_version: Annotated[str, Form(max_length=40)] = "",
    obtained_at: Annotated[str, Form(max_length=30)] = "",
    expires_at: Annotated[str, Form(max_length=30)] = "",
    utc_offset: Annotated[str, Form(max_length=6)] = "+00:00",
) -> Response:
    typed = dict(
        case_reference=case_reference,
        label=label,
        date_of_birth=date_of_birth,
        age_years=age_years,
        missing_since=missing_since,
        guardian_name=guardian_name,
        guardian_relationship=guardian_relationship,
        responsibility_verified_by=responsibility_verified_by,
        lawful_basis=lawful_basis,
        purpose=purpose,
        notice_version=notice_version,
        obtained_at=obtained_at,
        expires_at=expires_at,
        utc_offset=utc_offset,
    )
    offset = utc_offset if utc_offset in UTC_OFFSETS else "+00:00"
    consent = _present(
        guardian_name=guardian_name,
        guardian_relationship=guardian_relationship,
        responsibility_verified_by=responsibility_verified_by,
        lawful_basis=lawful_basis,
        purpose=purpose,
        notice_version=notice_version,
        obtained_at=_with_offset(obtained_at, offset),
        expires_at=_with_offset(expires_at, offset),
    )
    try:
        body = NewRecord(
            **_present(
                case_reference=case_reference,
                label=label,
                date_of_birth=date_of_birth or None,
                age_years=age_years.strip() or None,
                missing_since=missing_since,
            ),
            consent=consent,
        )
    except ValidationError as invalid:
        return _new_record_page(
            request,
            settings,
            typed,
            status_code=422,
            errors=field_errors(invalid, LABELS),
            error=validation_message(invalid, LABELS),
        )
    try:
        record = records.create_record(
            session, actor=user, body=body, now=utcnow(), max_consent_days=settings.consent_max_days
        )
    except Refusal as refused:
        return _new_record_page(request, settings, typed, status_code=refused.status, error=refused.message)
    return redirect(
        request, f"/records/{record.id}", flash="The record is registered. Now add one or more photos of the child."
    )


def _present(**values) -> dict:
    """The values that were given (an empty field is "missing", not an empty string)."""
    return {name: value for name, value in values.items() if value not in ("", None)}


def _with_offset(local: str, offset: str) -> str:
    """`2026-11-27T10:30` typed in a form, with the chosen UTC offset: ISO 8601 with a time zone."""
    local = local.strip()
    if "T" not in local:
        return local  # empty, or not a date and time: the model says which
    seconds = "" if local.count(":") >= 2 else ":00"
    return f"{local}{seconds}{offset}"


def _new_record_page(
    request: Request,
    settings,
    typed: dict,
    *,
    status_code: int = 200,
    error: str | None = None,
    errors: dict | None = None,
) -> Response:
    return render(
        request,
        "records/new.html",
        {
            "title": "Register a child",
            "form": typed,
            "error": error,
            "errors": errors or {},
            "lawful_bases": [(str(basis), words) for basis, words in LAWFUL_BASES.items()],
            "offsets": [(offset, f"UTC{offset}") for offset in UTC_OFFSETS],
            "max_consent_days": settings.consent_max_days,
            "today": utcnow().date().isoformat(),
        },
        status_code=status_code,
    )


# --- one record: details, photos, upload ------------------------------------------------------------


@router.get("/records/{record_id}", **MANAGE)
def record_page(
    request: Request, record_id: DbId, user: PageUser, session: DbSession, settings: SettingsDep
) -> Response:
    return _record_page(request, session, settings, user, record_id)


class PhotoPageFields(BaseModel):
    taken_at: str = Field("", max_length=20)


@router.post("/records/{record_id}/photos", **page_upload_permission(Action.MANAGE_RECORDS))
def upload_photo(
    request: Request,
    record_id: DbId,
    user: PageUser,
    session: DbSession,
    settings: SettingsDep,
    vault: VaultDep,
    dispatcher: DispatcherDep,
    upload: Annotated[Upload[PhotoPageFields], Depends(page_upload_form(PhotoPageFields))],
) -> Response:
    """Check, encrypt and queue a photo; the record page then shows how its processing goes.

    The form is read only after the session and role checks (service.web.uploads)."""
    file, taken_at = upload.file, upload.fields.taken_at
    try:
        taken = date.fromisoformat(taken_at) if taken_at.strip() else None
    except ValueError:
        return _record_page(
            request,
            session,
            settings,
            user,
            record_id,
            status_code=422,
            upload_error="The date the photo was taken is not a date.",
        )
    if file is None or not file.filename:
        return _record_page(
            request, session, settings, user, record_id, status_code=400, upload_error="Choose a photo to upload."
        )
    try:
        photo = records.add_record_photo(
            session,
            vault=vault,
            settings=settings,
            actor=user,
            record_id=record_id,
            taken_at=taken,
            now=utcnow(),
            read_file=lambda: read_upload(file.file, max_bytes=settings.max_upload_bytes),
            dispatch=dispatcher.record_photo,
        )
    except Refusal as refused:
        if refused.status == 404:
            raise
        return _record_page(
            request, session, settings, user, record_id, status_code=refused.status, upload_error=refused.message
        )
    return redirect(
        request,
        f"/records/{record_id}#photo-{photo.id}",
        flash="The photo was uploaded. It is being processed; this page shows when it is ready.",
    )


@router.get("/records/{record_id}/photos/{photo_id}/image", **photo_permission(Action.MANAGE_RECORDS))
def photo_image(
    record_id: DbId, photo_id: DbId, user: PhotoUser, session: DbSession, vault: VaultDep, size: Size = "thumbnail"
) -> Response:
    """The photo or its thumbnail, decrypted for this view only (audited: photo_viewed; never cached)."""
    data, media_type = records.read_record_photo(
        session, vault=vault, actor=user, record_id=record_id, photo_id=photo_id, size=size
    )
    return image_response(data, media_type)


@router.get("/records/{record_id}/status", **photo_permission(Action.MANAGE_RECORDS))
def photo_progress(record_id: DbId, user: PhotoUser, session: DbSession) -> dict:
    """For the record page's poller: whether every photo has been processed (no personal data)."""
    record = records.own_record(session, actor=user, record_id=record_id)
    photos = records.record_photos(session, record_id=record.id)
    waiting = [photo for photo in photos if photo.status in PENDING_PHOTO]
    message = f"{plural(len(waiting), 'photo')} still being processed…" if waiting else "All photos processed."
    return {"done": not waiting, "message": message}


def _record_page(
    request: Request,
    session,
    settings,
    user,
    record_id: int,
    *,
    status_code: int = 200,
    upload_error: str | None = None,
) -> Response:
    record, photos = records.record_details(session, actor=user, record_id=record_id)
    faces = photo_faces(session, [photo.id for photo in photos], settings.quality_gates())
    now = utcnow()
    return render(
        request,
        "records/detail.html",
        {
            "title": f"Record {record.case_reference}",
            "record": record,
            "consent": record.consent,
            "consent_valid": record.consent.valid_at(now),
            "photos": [_photo_view(photo, faces[photo.id]) for photo in photos],
            "accepts_photos": record.status == RecordStatus.ACTIVE and record.consent.valid_at(now),
            "processing": any(photo.status in PENDING_PHOTO for photo in photos),
            "lawful_basis_words": LAWFUL_BASES.get(record.consent.lawful_basis, record.consent.lawful_basis),
            "upload_error": upload_error,
        },
        status_code=status_code,
    )


def _photo_view(photo: Photo, faces: list[FaceQualityOut]) -> dict:
    status = photo.status
    face = faces[0] if faces and status == PhotoStatus.EMBEDDED else None
    flagged = face is not None and face.low_quality
    tone = (
        "warn"
        if flagged
        else "ok"
        if status == PhotoStatus.EMBEDDED
        else "wait"
        if status in PENDING_PHOTO
        else "info"
        if status == PhotoStatus.ERASED
        else "bad"
    )
    short = "Ready, low quality" if flagged else PHOTO_STATUS_SHORT.get(status, status.replace("_", " ").capitalize())
    return {
        "photo": photo,
        "words": records.photo_words(photo),
        "tone": tone,
        "short": short,
        "face": face,
        "shown": status != PhotoStatus.ERASED and photo.thumbnail_key is not None,
    }


# --- consent withdrawal ----------------------------------------------------------------------------


@router.get("/records/{record_id}/withdraw", **MANAGE)
def withdrawal_form(request: Request, record_id: DbId, user: PageUser, session: DbSession) -> Response:
    """What withdrawal will erase, before anything is done."""
    return _withdrawal_page(request, session, user, record_id)


@router.post("/records/{record_id}/withdraw", **MANAGE)
def withdraw(
    request: Request,
    record_id: DbId,
    user: PageUser,
    session: DbSession,
    settings: SettingsDep,
    vault: VaultDep,
    confirmed: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    if confirmed != "yes":
        return _withdrawal_page(
            request,
            session,
            user,
            record_id,
            status_code=400,
            error="Tick the box to confirm that the family has asked to withdraw consent.",
        )
    outcome = records.withdraw_consent(
        session, vault=vault, index_dir=settings.index_dir, actor=user, record_id=record_id, now=utcnow()
    )
    if outcome.already_withdrawn:
        return redirect(
            request,
            f"/records/{record_id}",
            kind="info",
            flash="Consent for this record had already been withdrawn; everything was erased then.",
        )
    return redirect(
        request,
        f"/records/{record_id}",
        flash=(
            f"Consent withdrawn. Erased: {plural(outcome.photos_erased, 'photo')}, "
            f"{plural(outcome.embeddings_removed, 'face measurement')}; "
            f"{plural(outcome.candidates_redacted, 'possible match', 'possible matches')} hidden from reviewers."
        ),
    )


def _withdrawal_page(
    request: Request, session, user, record_id: int, *, status_code: int = 200, error: str | None = None
) -> Response:
    record: Record = records.own_record(session, actor=user, record_id=record_id)
    photos = [
        photo for photo in records.record_photos(session, record_id=record.id) if photo.status != PhotoStatus.ERASED
    ]
    return render(
        request,
        "records/withdraw.html",
        {
            "title": "Withdraw consent",
            "record": record,
            "photo_count": len(photos),
            "already": record.status == RecordStatus.WITHDRAWN,
            "error": error,
        },
        status_code=status_code,
    )
