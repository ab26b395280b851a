"""Records through the API: registration and its refusals, isolation, consent withdrawal and expiry.

Also the helpers the upload and case tests share (people, bodies, photos, audit
reads). Access tokens are minted directly and passwords are not really hashed:
nobody signs in here. Faces are not analysed either: embeddings and candidates
that a worker would write are inserted directly, so the erasure can be checked
without the cost of dlib.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from service.audit.models import AuditEvent
from service.auth import service as auth_service
from service.auth.tokens import issue_access_token
from service.cases.models import Case
from service.db import utcnow
from service.photos.index_log import append_index_change
from service.photos.models import Embedding, IndexChange, Photo
from service.records.models import Consent, Record
from service.retention import expire_consents
from service.reviews.models import Candidate
from tests.support.service import make_organisation, make_user

API = "/api/v1"
GUARDIAN = "Margaret Example-Guardian"
LABEL = "Child A-17"
MODEL = "dlib_face_recognition_resnet_model_v1"


# --- shared helpers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    user_id: int
    organisation_id: int | None
    token_version: int


@dataclass(frozen=True)
class People:
    caseworker: Person  # organisation A
    colleague: Person  # a second caseworker of A
    reviewer: Person  # of A
    other: Person  # a caseworker of organisation B
    other_reviewer: Person  # of B


@pytest.fixture
def people(db, monkeypatch) -> People:
    """Two approved organisations and their staff; nobody signs in, so no real password hashes."""
    monkeypatch.setattr(auth_service, "hash_password", lambda password: "not-a-usable-hash")
    a, b = make_organisation(db, name="A"), make_organisation(db, name="B")
    specs = {
        "caseworker": ("caseworker", a),
        "colleague": ("caseworker", a),
        "reviewer": ("reviewer", a),
        "other": ("caseworker", b),
        "other_reviewer": ("reviewer", b),
    }
    users = {name: make_user(db, role, organisation=org).user for name, (role, org) in specs.items()}
    db.commit()
    found = People(**{name: Person(u.id, u.organisation_id, u.token_version) for name, u in users.items()})
    db.rollback()
    return found


def bearer(settings, person: Person) -> dict[str, str]:
    token, _ = issue_access_token(
        secret=settings.signing_secret(),
        user_id=person.user_id,
        token_version=person.token_version,
        lifetime=timedelta(minutes=5),
    )
    return {"Authorization": f"Bearer {token}"}


def record_body(**changes) -> dict:
    """A valid record relative to today; `consent` changes are merged into the consent."""
    now = utcnow()
    missing_since = now.date() - timedelta(days=30)
    consent = {
        "guardian_name": GUARDIAN,
        "guardian_relationship": "grandmother",
        "responsibility_verified_by": "court order seen",
        "lawful_basis": "consent",
        "purpose": "Finding the child",
        "notice_version": "2026-1",
        "obtained_at": (now - timedelta(days=1)).isoformat(),
        "expires_at": (now + timedelta(days=365)).isoformat(),
    }
    consent |= changes.pop("consent", {})
    born = missing_since - timedelta(days=9 * 365)
    body = {
        "case_reference": "REF-1",
        "label": LABEL,
        "date_of_birth": born.isoformat(),
        "missing_since": missing_since.isoformat(),
        "consent": consent,
    }
    return {key: value for key, value in (body | changes).items() if value is not None}


def create_record(client, headers, **changes) -> int:
    response = client.post(f"{API}/records", json=record_body(**changes), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def jpeg_bytes(seed: int = 0, size: int = 96) -> bytes:
    """A small photo-like JPEG (noise: no face, and every one different)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def upload_photo(client, headers, record_id: int, data: bytes | None = None, **form) -> dict:
    data = data if data is not None else jpeg_bytes(record_id)
    response = client.post(
        f"{API}/records/{record_id}/photos",
        headers=headers,
        data=form,
        files={"file": ("photo.jpg", data, "image/jpeg")},
    )
    assert response.status_code == 202, response.text
    return response.json()


def audit_trail(db, after: int = 0) -> list[tuple[str, int | None, int | None, str | None, str | None, dict]]:
    """(action, actor, organisation, target type, target id, details) of every event after seq `after`."""
    db.rollback()
    events = db.scalars(select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq)).all()
    found = [
        (e.action, e.actor_id, e.organisation_id, e.target_type, e.target_id, json.loads(e.details)) for e in events
    ]
    db.rollback()
    return found


def audit_head(db) -> int:
    head = db.scalar(select(func.coalesce(func.max(AuditEvent.seq), 0)))
    db.rollback()
    return head


def stored_files(settings) -> list:
    root = settings.photo_root
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def file_stored(settings, storage_key: str) -> bool:
    return any(path.name == storage_key for path in stored_files(settings))


def add_faces(db, photo_id: int, count: int) -> list[int]:
    """Embeddings a worker would have written for a photo, with their IndexChange adds."""
    ids = []
    for face_index in range(count):
        embedding = Embedding(
            photo_id=photo_id,
            face_index=face_index,
            box_top=1,
            box_right=20,
            box_bottom=20,
            box_left=1,
            quality="{}",
            vector=np.zeros(128, np.float32).tobytes(),
            model_id=MODEL,
            model_version="1",
        )
        db.add(embedding)
        db.flush()
        append_index_change(db, op="add", embedding_id=embedding.id, model_id=MODEL)
        ids.append(embedding.id)
    db.get(Photo, photo_id).status = "embedded"
    db.commit()
    return ids


def add_case(db, person: Person, *, retention_days: int = 30) -> int:
    case = Case(
        organisation_id=person.organisation_id,
        submitted_by=person.user_id,
        case_reference="PROBE",
        purpose="test",
        status="searched",
        attempts=0,
        retention_until=utcnow() + timedelta(days=retention_days),
    )
    db.add(case)
    db.commit()
    return case.id


def add_candidate(
    db, *, case_id: int, record_id: int, gallery_embedding_id: int | None, probe_embedding_id: int = 10_001
) -> int:
    candidate = Candidate(
        case_id=case_id,
        record_id=record_id,
        probe_embedding_id=probe_embedding_id,
        gallery_embedding_id=gallery_embedding_id,
        distance=0.41,
        rank=1,
        model_id=MODEL,
        model_version="1",
        status="pending_review",
    )
    db.add(candidate)
    db.commit()
    return candidate.id


# --- registering and reading ----------------------------------------------------------------


def test_a_caseworker_registers_a_record_and_reads_it(client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    response = client.post(f"{API}/records", json=record_body(), headers=headers)
    assert response.status_code == 201, response.text
    created = response.json()
    record_id = created["id"]
    assert (created["status"], created["label"], created["photos"]) == ("active", LABEL, [])
    assert created["consent"]["valid_now"] is True and created["consent"]["lawful_basis"] == "consent"

    record = db.get(Record, record_id)
    assert (record.organisation_id, record.created_by) == (people.caseworker.organisation_id, people.caseworker.user_id)
    assert record.consent.guardian_name == GUARDIAN and record.consent.withdrawn_at is None
    db.rollback()

    upload_photo(client, headers, record_id)
    detail = client.get(f"{API}/records/{record_id}", headers=headers)
    assert detail.status_code == 200
    shown = detail.json()
    assert shown["consent"]["guardian_name"] == GUARDIAN  # the owning caseworker sees it, audited below
    assert [(p["status"], p["status_message"]) for p in shown["photos"]] == [("queued", "Waiting to be processed.")]

    listed = client.get(f"{API}/records", headers=headers)
    assert listed.status_code == 200
    assert GUARDIAN not in listed.text  # never in lists
    page = listed.json()
    assert (page["total"], [item["id"] for item in page["items"]]) == (1, [record_id])
    assert page["items"][0]["photo_count"] == 1 and "guardian_name" not in page["items"][0]["consent"]

    second = create_record(client, headers, case_reference="REF-2")

    def listed_ids(query: str = "") -> list[int]:
        return [item["id"] for item in client.get(f"{API}/records{query}", headers=headers).json()["items"]]

    assert listed_ids() == [second, record_id]
    assert listed_ids("?case_reference=REF-1") == [record_id]
    one = client.get(f"{API}/records?limit=1&offset=1", headers=headers).json()
    assert (one["total"], [i["id"] for i in one["items"]]) == (2, [record_id])

    actor, org = people.caseworker.user_id, people.caseworker.organisation_id
    photo_id = shown["photos"][0]["id"]
    assert audit_trail(db) == [
        ("record_created", actor, org, "record", str(record_id), {"record_id": record_id, "lawful_basis": "consent"}),
        ("photo_uploaded", actor, org, "photo", str(photo_id), {"record_id": record_id}),
        ("record_viewed", actor, org, "record", str(record_id), {}),
        ("record_created", actor, org, "record", str(second), {"record_id": second, "lawful_basis": "consent"}),
    ]


def _days(days: int) -> str:
    return (utcnow() + timedelta(days=days)).isoformat()


def _date(days: int) -> str:
    return (utcnow().date() + timedelta(days=days)).isoformat()


# (changes to a valid body, words the refusal must contain)
INVALID_RECORDS = [
    ({"age_years": 9}, "not both"),
    ({"date_of_birth": None}, "not both and not neither"),
    ({"missing_since": _date(3)}, "went missing cannot be in the future"),
    ({"date_of_birth": _date(-10), "missing_since": _date(-20)}, "date of birth must be before"),
    ({"date_of_birth": _date(-30 - 18 * 366)}, "under 18"),
    ({"consent": {"obtained_at": _days(2)}}, "obtained in the future"),
    ({"consent": {"obtained_at": _days(-400), "expires_at": _days(-1)}}, "already expired"),
    ({"consent": {"expires_at": _days(2000)}}, "at most 730 days"),
]
# Refused by shape (pydantic): the sentence names the fields.
MALFORMED_RECORDS = [
    ({"consent": {"lawful_basis": "curiosity"}}, "consent.lawful_basis"),
    ({"consent": {"obtained_at": "2026-01-01T10:00:00"}}, "consent.obtained_at"),  # no time zone
    ({"date_of_birth": None, "age_years": 18}, "age_years"),
    ({"label": "   "}, "label"),
]


def test_each_invalid_record_is_refused_with_a_sentence_and_creates_nothing(client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    for changes, words in INVALID_RECORDS + MALFORMED_RECORDS:
        response = client.post(f"{API}/records", json=record_body(**changes), headers=headers)
        assert response.status_code == 422, (changes, response.text)
        detail = response.json()["detail"]
        assert words in detail and detail.endswith("."), (changes, detail)
    assert db.scalar(select(func.count(Record.id))) == 0 and db.scalar(select(func.count(Consent.id))) == 0
    assert audit_trail(db) == []

    create_record(client, headers, age_years=9, date_of_birth=None)  # age instead of a date of birth is fine


def test_the_consent_maximum_is_a_setting(app, client, settings, people):
    app.state.settings = settings.model_copy(update={"consent_max_days": 30})
    response = client.post(
        f"{API}/records",
        json=record_body(consent={"expires_at": _days(60)}),
        headers=bearer(settings, people.caseworker),
    )
    assert response.status_code == 422 and "at most 30 days" in response.json()["detail"]


def test_a_case_reference_is_unique_within_an_organisation_only(client, db, settings, people):
    create_record(client, bearer(settings, people.caseworker))
    duplicate = client.post(f"{API}/records", json=record_body(), headers=bearer(settings, people.colleague))
    assert duplicate.status_code == 409
    assert duplicate.json() == {"detail": "Your organisation already has a record with this case reference."}
    create_record(client, bearer(settings, people.other))  # organisation B may use the same reference
    assert db.scalar(select(func.count(Record.id))) == 2


def test_another_organisations_records_and_photos_are_not_found(client, db, settings, people):
    mine = bearer(settings, people.caseworker)
    record_id = create_record(client, mine)
    photo_id = upload_photo(client, mine, record_id)["photo_id"]
    sent_before = len(client.app.state.dispatcher.sent)
    theirs = bearer(settings, people.other)
    calls = [
        ("GET", f"/records/{record_id}", {}),
        ("POST", f"/records/{record_id}/photos", {"files": {"file": ("p.jpg", jpeg_bytes(), "image/jpeg")}}),
        ("GET", f"/records/{record_id}/photos/{photo_id}", {}),
        ("GET", f"/records/{record_id}/photos/{photo_id}/image", {}),
        ("POST", f"/records/{record_id}/consent/withdraw", {}),
    ]
    for method, path, extra in calls:
        response = client.request(method, API + path, headers=theirs, **extra)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json() == {"detail": "There is no such record in your organisation."}
    assert client.get(f"{API}/records", headers=theirs).json()["total"] == 0
    # A photo id of another record of one's own organisation is not found either.
    own_other = create_record(client, mine, case_reference="REF-2")
    assert client.get(f"{API}/records/{own_other}/photos/{photo_id}", headers=mine).status_code == 404
    # Reviewers do not manage records at all.
    assert client.get(f"{API}/records/{record_id}", headers=bearer(settings, people.reviewer)).status_code == 403

    assert db.scalar(select(func.count(Photo.id))) == 1 and len(client.app.state.dispatcher.sent) == sent_before
    record = db.get(Record, record_id)
    assert (record.status, record.consent.withdrawn_at) == ("active", None)
    db.rollback()


# --- consent withdrawal ----------------------------------------------------------------------


def test_withdrawal_erases_photos_faces_index_entries_and_candidates(app, client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    record_id = create_record(client, headers)
    keep_id = create_record(client, headers, case_reference="REF-KEEP")
    photo_ids = [upload_photo(client, headers, record_id, jpeg_bytes(seed))["photo_id"] for seed in (1, 2)]
    kept_photo = upload_photo(client, headers, keep_id, jpeg_bytes(3))["photo_id"]
    faces = add_faces(db, photo_ids[0], 2) + add_faces(db, photo_ids[1], 1)
    kept_faces = add_faces(db, kept_photo, 1)
    case_id = add_case(db, people.other)
    candidate = add_candidate(db, case_id=case_id, record_id=record_id, gallery_embedding_id=faces[0])
    untouched = add_candidate(db, case_id=case_id, record_id=keep_id, gallery_embedding_id=kept_faces[0])
    storage_keys = [db.get(Photo, photo_id).storage_key for photo_id in photo_ids]
    thumbnail_keys = [db.get(Photo, photo_id).thumbnail_key for photo_id in photo_ids]
    db.rollback()
    assert all(file_stored(settings, key) for key in storage_keys + thumbnail_keys)
    head = audit_head(db)

    response = client.post(f"{API}/records/{record_id}/consent/withdraw", headers=headers)
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert {
        k: outcome[k]
        for k in ("status", "already_withdrawn", "photos_erased", "embeddings_removed", "candidates_redacted")
    } == {
        "status": "withdrawn",
        "already_withdrawn": False,
        "photos_erased": 2,
        "embeddings_removed": 3,
        "candidates_redacted": 1,
    }

    # Files, keys and fingerprints are gone; the random storage name is kept to find stray files.
    assert not any(file_stored(settings, key) for key in storage_keys + thumbnail_keys)
    for photo_id, key in zip(photo_ids, storage_keys):
        photo = db.get(Photo, photo_id)
        assert (photo.status, photo.wrapped_key, photo.thumbnail_wrapped_key, photo.sha256, photo.storage_key) == (
            "erased",
            None,
            None,
            None,
            key,
        )
        assert photo.erased_at is not None and "withdrawn" in photo.status_message
    # Faces are deleted and every index replica is told to drop each of them.
    assert db.scalars(select(Embedding.id).where(Embedding.photo_id.in_(photo_ids))).all() == []
    removes = db.execute(select(IndexChange.embedding_id, IndexChange.model_id).where(IndexChange.op == "remove")).all()
    assert sorted(removes) == sorted((face, MODEL) for face in faces)
    # Candidates pointing at the record are cut loose; others are untouched.
    redacted = db.get(Candidate, candidate)
    assert (redacted.record_id, redacted.gallery_embedding_id, redacted.distance, redacted.status) == (
        None,
        None,
        None,
        "redacted",
    )
    other = db.get(Candidate, untouched)
    assert (other.record_id, other.status, db.get(Photo, kept_photo).status) == (keep_id, "pending_review", "embedded")
    record = db.get(Record, record_id)
    assert record.status == "withdrawn"
    assert record.consent.withdrawn_at is not None and record.consent.guardian_name is None
    db.rollback()

    actor, org = people.caseworker.user_id, people.caseworker.organisation_id
    counts = {"photos_erased": 2, "embeddings_removed": 3, "candidates_redacted": 1}
    assert audit_trail(db, head) == [("consent_withdrawn", actor, org, "record", str(record_id), counts)]
    assert not any(GUARDIAN in str(event) or LABEL in str(event) for event in audit_trail(db))

    # Idempotent: a repeat finds nothing to do and writes nothing.
    again = client.post(f"{API}/records/{record_id}/consent/withdraw", headers=headers)
    assert again.status_code == 200
    assert (again.json()["already_withdrawn"], again.json()["photos_erased"]) == (True, 0)
    assert again.json()["withdrawn_at"] == outcome["withdrawn_at"]
    # No more photos, and the erased ones say so.
    refused = client.post(
        f"{API}/records/{record_id}/photos", headers=headers, files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")}
    )
    assert refused.status_code == 409 and "withdrawn" in refused.json()["detail"]
    image = client.get(f"{API}/records/{record_id}/photos/{photo_ids[0]}/image", headers=headers)
    assert image.status_code == 410 and image.json() == {"detail": "This photo has been erased."}
    shown = client.get(f"{API}/records/{record_id}", headers=headers).json()
    assert shown["consent"]["guardian_name"] is None and {p["status"] for p in shown["photos"]} == {"erased"}
    assert [event[0] for event in audit_trail(db, head)] == ["consent_withdrawn", "record_viewed"]


# --- consent expiry (the scheduled job) ------------------------------------------------------


def test_expired_consent_is_erased_like_a_withdrawal(app, client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    expiring = create_record(client, headers, consent={"expires_at": _days(10)})
    lasting = create_record(client, headers, case_reference="REF-2")
    photo_id = upload_photo(client, headers, expiring)["photo_id"]
    lasting_photo = upload_photo(client, headers, lasting)["photo_id"]
    faces = add_faces(db, photo_id, 1)
    candidate = add_candidate(db, case_id=add_case(db, people.other), record_id=expiring, gallery_embedding_id=faces[0])
    storage_key = db.get(Photo, photo_id).storage_key
    db.rollback()
    head = audit_head(db)

    with app.state.session_factory() as session:
        assert expire_consents(session, vault=app.state.vault, now=utcnow() + timedelta(days=9)) == []
        later = utcnow() + timedelta(days=11)
        assert expire_consents(session, vault=app.state.vault, now=later) == [expiring]
        assert expire_consents(session, vault=app.state.vault, now=later) == []  # nothing left to do

    record = db.get(Record, expiring)
    assert (record.status, record.consent.guardian_name, record.consent.withdrawn_at) == ("expired", None, None)
    photo = db.get(Photo, photo_id)
    assert (photo.status, photo.wrapped_key) == ("erased", None) and "expired" in photo.status_message
    assert not file_stored(settings, storage_key)
    assert db.scalar(select(func.count(Embedding.id)).where(Embedding.photo_id == photo_id)) == 0
    assert db.scalars(select(IndexChange.embedding_id).where(IndexChange.op == "remove")).all() == faces
    assert (db.get(Candidate, candidate).status, db.get(Candidate, candidate).record_id) == ("redacted", None)
    assert (db.get(Record, lasting).status, db.get(Photo, lasting_photo).status) == ("active", "queued")
    db.rollback()
    assert audit_trail(db, head) == [
        (
            "consent_expired",
            None,
            people.caseworker.organisation_id,
            "record",
            str(expiring),
            {"photos_erased": 1, "embeddings_removed": 1, "candidates_redacted": 1},
        ),
    ]
    refused = client.post(
        f"{API}/records/{expiring}/photos", headers=headers, files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")}
    )
    assert refused.status_code == 409 and "expired" in refused.json()["detail"]


def test_a_record_whose_consent_lapsed_before_the_job_ran_takes_no_photos(client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    record_id = create_record(client, headers)
    db.get(Record, record_id).consent.expires_at = utcnow() - timedelta(minutes=1)
    db.commit()
    refused = client.post(
        f"{API}/records/{record_id}/photos", headers=headers, files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")}
    )
    assert refused.status_code == 409 and "expired" in refused.json()["detail"]
    assert db.scalar(select(func.count(Photo.id))) == 0
