"""Human review through the API: the queue, the side-by-side view, audited photos, decisions, notices.

Organisation A ("finders") submits cases; organisation B ("keepers") owns the record;
organisation C is an outsider. Rows are made directly with the ORM (the records, cases and
worker code that would make them is tested elsewhere); photos go through the real upload
check and the real vault, from the face_recognition sdist's photos, so the image endpoints
decrypt real bytes. Access tokens are minted directly, and every account shares one argon2
hash (the `quick_hashing` fixture in tests/conftest.py), to keep the tests quick.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from service.audit.models import AuditEvent
from service.auth.models import User
from service.auth.tokens import issue_access_token
from service.cases.models import Case
from service.db import utcnow
from service.organisations.models import Organisation
from service.refusal import REFUSALS
from service.photos.models import Embedding, Photo
from service.photos.service import check_upload, store_photo
from service.reviews import service as reviews_service
from service.reviews.models import Candidate, Notification, Review
from service.reviews.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.support.gallery import make_record
from tests.support.service import make_organisation, make_user
from tests.support.webhooks import Receiver

API = "/api/v1"
LABEL = "Pseudonym-Kestrel"  # the record's label: must never appear in a review response
GUARDIAN = "Guardian Merriweather"
QUALITY = {"box_px": 180, "sharpness": 212.5, "asymmetry": 0.08, "detection_score": 1.7}
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
RATIONALE = "Same ear shape, same scar above the left eyebrow."


# --- arranging the world ----------------------------------------------------------------------


@dataclass
class World:
    """Plain ids only, so tests never reload expired ORM objects."""

    orgs: dict[str, int]
    users: dict[str, int]
    record_id: int
    record_photo_id: int
    record_embedding_id: int
    cases: dict[str, int] = field(default_factory=dict)
    probe_embeddings: dict[str, int] = field(default_factory=dict)
    probe_photos: dict[str, int] = field(default_factory=dict)


USERS = {  # name -> (roles, organisation)
    "submitter": ({"caseworker", "reviewer"}, "A"),
    "a1": ({"reviewer"}, "A"),
    "a2": ({"reviewer"}, "A"),
    "b1": ({"reviewer"}, "B"),
    "b2": ({"reviewer"}, "B"),
    "b_caseworker": ({"caseworker"}, "B"),
    "c1": ({"reviewer"}, "C"),
}


def stored_photo(
    app, db, image_path, *, organisation_id, uploaded_by, record_id=None, case_id=None, taken_at=None, age_at_photo=None
) -> tuple[int, int]:
    """A real photo, checked and sealed as an upload is, with one embedded face: (photo id, embedding id)."""
    image = check_upload(image_path.read_bytes(), app.state.settings)
    photo = store_photo(
        db,
        vault=app.state.vault,
        image=image,
        organisation_id=organisation_id,
        uploaded_by=uploaded_by,
        record_id=record_id,
        case_id=case_id,
        taken_at=taken_at,
        age_at_photo=age_at_photo,
    )
    photo.status, photo.faces_found = "embedded", 1
    embedding = Embedding(
        photo_id=photo.id,
        face_index=0,
        box_top=60,
        box_right=300,
        box_bottom=290,
        box_left=70,
        quality=json.dumps(QUALITY),
        vector=np.zeros(128, np.float32).tobytes(),
        model_id="dlib_resnet_v1",
        model_version="0.3.0+test",
    )
    db.add(embedding)
    db.flush()
    return photo.id, embedding.id


def add_case(app, db, world: World, name: str, *, organisation: str, submitter: str, image) -> None:
    case = Case(
        organisation_id=world.orgs[organisation],
        submitted_by=world.users[submitter],
        case_reference=f"CASE-{name}",
        purpose="Search for a missing child",
        status="searched",
        faces=1,
        attempts=1,
        retention_until=utcnow() + timedelta(days=30),
    )
    db.add(case)
    db.flush()
    photo_id, embedding_id = stored_photo(
        app,
        db,
        image,
        organisation_id=case.organisation_id,
        uploaded_by=case.submitted_by,
        case_id=case.id,
        age_at_photo=9.5,
    )
    world.cases[name], world.probe_embeddings[name], world.probe_photos[name] = case.id, embedding_id, photo_id


def add_candidate(
    db, world: World, case: str, *, minutes: int = 0, status: str = "pending_review", distance: float = 0.35
) -> int:
    candidate = Candidate(
        case_id=world.cases[case],
        record_id=world.record_id,
        probe_embedding_id=world.probe_embeddings[case],
        gallery_embedding_id=world.record_embedding_id,
        distance=distance,
        rank=1,
        model_id="dlib_resnet_v1",
        model_version="0.3.0+test",
        status=status,
        created_at=T0 + timedelta(minutes=minutes),
    )
    db.add(candidate)
    db.flush()
    return candidate.id


@pytest.fixture
def world(app, db, sdist_images) -> World:
    orgs = {
        "A": make_organisation(db, name="Finders"),
        "B": make_organisation(db, name="Keepers"),
        "C": make_organisation(db, name="Elsewhere"),
    }
    users = {name: make_user(db, *roles, organisation=orgs[org]).user for name, (roles, org) in USERS.items()}
    record = make_record(
        db,
        organisation_id=orgs["B"].id,
        user_id=users["b_caseworker"].id,
        case_reference="REC-B-7",
        label=LABEL,
        guardian_name=GUARDIAN,
        date_of_birth=date(2015, 3, 1),
        missing_since=date(2024, 6, 1),
    )
    photo_id, embedding_id = stored_photo(
        app,
        db,
        sdist_images / "obama.jpg",
        organisation_id=orgs["B"].id,
        uploaded_by=users["b_caseworker"].id,
        record_id=record.id,
        taken_at=date(2023, 9, 1),
    )
    found = World(
        orgs={k: v.id for k, v in orgs.items()},
        users={k: v.id for k, v in users.items()},
        record_id=record.id,
        record_photo_id=photo_id,
        record_embedding_id=embedding_id,
    )
    add_case(app, db, found, "main", organisation="A", submitter="submitter", image=sdist_images / "obama2.jpg")
    db.commit()
    return found


def bearer(db, settings, user_id: int) -> dict[str, str]:
    db.expire_all()
    version = db.get(User, user_id).token_version
    db.rollback()
    token, _ = issue_access_token(
        secret=settings.signing_secret(), user_id=user_id, token_version=version, lifetime=timedelta(minutes=5)
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def as_user(db, settings, world):
    return lambda name: bearer(db, settings, world.users[name])


def audit_mark(db) -> int:
    mark = db.scalar(select(func.coalesce(func.max(AuditEvent.seq), 0)))
    db.rollback()
    return mark


def events_since(db, mark: int) -> list[tuple[str, int | None, int | None, str | None, dict]]:
    db.expire_all()
    events = db.scalars(select(AuditEvent).where(AuditEvent.seq > mark).order_by(AuditEvent.seq)).all()
    found = [(e.action, e.actor_id, e.organisation_id, e.target_id, json.loads(e.details)) for e in events]
    db.rollback()
    return found


def review(client, headers, candidate_id: int, decision: str, rationale: str = RATIONALE):
    return client.post(
        f"{API}/candidates/{candidate_id}/reviews", headers=headers, json={"decision": decision, "rationale": rationale}
    )


def queue_ids(client, headers) -> list[int]:
    response = client.get(f"{API}/reviews/queue", headers=headers)
    assert response.status_code == 200, response.text
    return [item["candidate_id"] for item in response.json()["items"]]


# --- the queue --------------------------------------------------------------------------------


def test_each_reviewer_queues_what_they_may_decide_oldest_first(app, client, db, world, as_user, sdist_images):
    add_case(app, db, world, "by_a1", organisation="A", submitter="a1", image=sdist_images / "obama2.jpg")
    add_case(app, db, world, "by_b", organisation="B", submitter="b_caseworker", image=sdist_images / "obama2.jpg")
    add_case(app, db, world, "decided", organisation="A", submitter="submitter", image=sdist_images / "obama2.jpg")
    add_case(app, db, world, "purged", organisation="A", submitter="submitter", image=sdist_images / "obama2.jpg")
    main = add_candidate(db, world, "main", minutes=10)
    by_a1 = add_candidate(db, world, "by_a1", minutes=5)  # older than main
    by_b = add_candidate(db, world, "by_b", minutes=20)
    add_candidate(db, world, "decided", minutes=1, status="rejected")
    add_candidate(db, world, "purged", minutes=2)
    db.get(Case, world.cases["purged"]).purged_at = utcnow()
    db.commit()

    assert queue_ids(client, as_user("submitter")) == [by_a1]  # never their own case
    assert queue_ids(client, as_user("a1")) == [main]
    assert queue_ids(client, as_user("a2")) == [by_a1, main]  # B's own case is not A's business
    assert queue_ids(client, as_user("b1")) == [by_a1, main, by_b]
    assert queue_ids(client, as_user("c1")) == []  # an outsider sees nothing

    first = client.get(f"{API}/reviews/queue", headers=as_user("b1")).json()
    assert (first["waiting"], first["waiting_second_review"]) == (3, 0)
    assert [item["your_organisation"] for item in first["items"]] == ["owns_record", "owns_record", "both"]
    assert first["items"][1] == {
        "candidate_id": main,
        "case_id": world.cases["main"],
        "rank": 1,
        "distance_band": "strong",
        "created_at": first["items"][1]["created_at"],
        "years_between": 1.0,
        "search_mode": "alerting",
        "lead_label": None,
        "your_organisation": "owns_record",
        "reviewed_by_others": False,
    }

    assert review(client, as_user("a2"), main, "inconclusive").status_code == 201
    assert queue_ids(client, as_user("a2")) == [by_a1]  # a reviewer decides once
    after = client.get(f"{API}/reviews/queue", headers=as_user("b1")).json()
    assert (after["waiting"], after["waiting_second_review"]) == (3, 1)
    assert [item["reviewed_by_others"] for item in after["items"]] == [False, True, False]
    limited = client.get(f"{API}/reviews/queue", headers=as_user("b1"), params={"limit": 1}).json()
    assert ([item["candidate_id"] for item in limited["items"]], limited["waiting"]) == ([by_a1], 3)


# --- one candidate, side by side ------------------------------------------------------------


def test_the_second_reviewer_cannot_tell_what_the_first_decided(client, db, world, as_user):
    candidate = add_candidate(db, world, "main")
    db.commit()
    url = f"{API}/candidates/{candidate}"
    before = client.get(url, headers=as_user("b1"))
    assert before.status_code == 200, before.text
    for decision, reviewer in (("confirm", "a1"), ("inconclusive", "a2")):
        assert review(client, as_user(reviewer), candidate, decision).status_code == 201
        # Identical, field for field: neither the status nor anything else gives the decision away.
        assert client.get(url, headers=as_user("b1")).json() == before.json()

    seen = before.json()
    assert seen["status"] == "under_review" and seen["your_review"] is None and seen["can_decide"] is True
    mine = client.get(url, headers=as_user("a1")).json()
    assert mine["status"] == "awaiting_second_review" and mine["can_decide"] is False
    assert (mine["your_review"]["decision"], mine["your_review"]["rationale"]) == ("confirm", RATIONALE)
    assert "reviews" not in mine and RATIONALE not in json.dumps(seen)


def test_the_candidate_view_gives_what_a_reviewer_needs_and_no_names(client, db, world, as_user):
    candidate = add_candidate(db, world, "main", distance=0.47)
    db.commit()
    seen = client.get(f"{API}/candidates/{candidate}", headers=as_user("b1")).json()
    assert (seen["rank"], seen["distance_band"]) == (1, "possible")
    assert seen["model"] == {"id": "dlib_resnet_v1", "version": "0.3.0+test"}
    assert "children" in seen["notice"]
    record_side, probe_side = seen["record"], seen["probe"]
    assert record_side["photo"]["taken_at"] == "2023-09-01"
    assert record_side["photo"]["age_at_photo"] == 8.5  # from the date of birth, 2015-03-01
    assert probe_side["photo"]["age_at_photo"] == 9.5
    assert seen["years_between"] == 1.0  # from the two ages at photo (matching.ages)
    assert record_side["photo"]["face"] == {
        "box": {"top": 60, "right": 300, "bottom": 290, "left": 70},
        "quality": QUALITY,
        "low_quality": False,
        "quality_flags": [],
    }
    assert record_side["photo"]["image_url"] == f"{API}/candidates/{candidate}/record-image"
    assert probe_side["photo"]["image_url"] == f"{API}/candidates/{candidate}/probe-image"
    assert record_side["photo"]["width"] > 0 and record_side["missing_since"] == "2024-06-01"
    # Case references only to their own organisation; the label, the guardian and the distance never.
    assert (record_side["case_reference"], probe_side["case_reference"]) == ("REC-B-7", None)
    other = client.get(f"{API}/candidates/{candidate}", headers=as_user("a1")).json()
    assert (other["record"]["case_reference"], other["probe"]["case_reference"]) == (None, "CASE-main")
    for body in (json.dumps(seen), json.dumps(other)):
        assert LABEL not in body and GUARDIAN not in body and "0.47" not in body and '"distance"' not in body

    submitter_view = client.get(f"{API}/candidates/{candidate}", headers=as_user("submitter")).json()
    assert submitter_view["can_decide"] is False
    assert client.get(f"{API}/candidates/{candidate}", headers=as_user("c1")).status_code == 404
    assert client.get(f"{API}/candidates/999999", headers=as_user("b1")).status_code == 404


# --- photos -------------------------------------------------------------------------------------


def test_photos_are_decrypted_audited_and_never_cached(client, db, world, as_user, sdist_images):
    candidate = add_candidate(db, world, "main")
    db.commit()
    mark = audit_mark(db)
    for side, original in (("probe", "obama2.jpg"), ("record", "obama.jpg")):
        response = client.get(f"{API}/candidates/{candidate}/{side}-image", headers=as_user("b1"))
        assert response.status_code == 200, response.text
        # as stored: the upright pixels re-encoded without metadata
        assert response.content == check_upload((sdist_images / original).read_bytes(), client.app.state.settings).data
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["cache-control"] == "no-store"
    thumbnail = client.get(f"{API}/candidates/{candidate}/record-image?size=thumbnail", headers=as_user("b1"))
    assert thumbnail.status_code == 200 and thumbnail.headers["cache-control"] == "no-store"
    assert thumbnail.headers["content-type"] == "image/jpeg" and len(thumbnail.content) < len(
        (sdist_images / "obama.jpg").read_bytes()
    )
    b1, b_org = world.users["b1"], world.orgs["B"]
    assert events_since(db, mark) == [
        (
            "photo_viewed",
            b1,
            b_org,
            str(candidate),
            {"candidate_id": candidate, "photo_id": world.probe_photos["main"], "side": "probe", "size": "full"},
        ),
        (
            "photo_viewed",
            b1,
            b_org,
            str(candidate),
            {"candidate_id": candidate, "photo_id": world.record_photo_id, "side": "record", "size": "full"},
        ),
        (
            "photo_viewed",
            b1,
            b_org,
            str(candidate),
            {"candidate_id": candidate, "photo_id": world.record_photo_id, "side": "record", "size": "thumbnail"},
        ),
    ]

    mark = audit_mark(db)
    assert client.get(f"{API}/candidates/{candidate}/probe-image", headers=as_user("c1")).status_code == 404
    assert client.get(f"{API}/candidates/{candidate}/record-image", headers=as_user("b_caseworker")).status_code == 403
    assert events_since(db, mark) == []


def test_photos_are_gone_once_erased_or_redacted(client, db, world, as_user):
    candidate = add_candidate(db, world, "main")
    db.commit()
    probe = f"{API}/candidates/{candidate}/probe-image"
    record = f"{API}/candidates/{candidate}/record-image"
    # The case photo purged at the end of its retention: its key is gone.
    photo = db.get(Photo, world.probe_photos["main"])
    photo.wrapped_key, photo.erased_at, photo.status = None, utcnow(), "erased"
    db.commit()
    assert client.get(probe, headers=as_user("a1")).status_code == 404
    assert (
        client.get(f"{API}/candidates/{candidate}", headers=as_user("a1")).json()["probe"]["photo"]["image_url"] is None
    )
    assert client.get(record, headers=as_user("a1")).status_code == 200

    mark = audit_mark(db)
    # Consent withdrawn: the candidate is redacted, as the records service does it.
    row = db.get(Candidate, candidate)
    row.status, row.record_id = "redacted", None
    db.commit()
    assert client.get(record, headers=as_user("a1")).status_code == 404
    assert client.get(record, headers=as_user("b1")).status_code == 404  # no longer B's at all
    assert client.get(f"{API}/candidates/{candidate}", headers=as_user("b1")).status_code == 404
    seen = client.get(f"{API}/candidates/{candidate}", headers=as_user("a1")).json()
    assert (seen["status"], seen["record"], seen["can_decide"]) == ("redacted", None, False)
    refused = review(client, as_user("a1"), candidate, "confirm")
    assert (refused.status_code, refused.json()["rule"]) == (409, "redacted")
    assert [event[0] for event in events_since(db, mark)] == ["candidate_viewed"]  # no photo was shown


# --- decisions, notification and webhook -------------------------------------------------------


def set_webhook(db, organisation_id: int, url: str, secret: str) -> None:
    """As the admin's PUT would (which refuses loopback); the test receiver needs the loopback setting."""
    organisation = db.get(Organisation, organisation_id)
    organisation.webhook_url, organisation.webhook_secret = url, secret
    db.commit()


def test_two_confirmations_confirm_notify_and_send_a_signed_webhook(client, db, world, as_user):
    candidate = add_candidate(db, world, "main")
    secret = "s3cret-for-keepers"
    client.app.state.settings.webhook_allow_loopback = True  # the receiver is on 127.0.0.1
    with Receiver() as receiver:
        set_webhook(db, world.orgs["B"], receiver.url, secret)
        mark = audit_mark(db)
        first = review(client, as_user("a1"), candidate, "confirm")
        assert first.status_code == 201, first.text
        assert first.json()["candidate_status"] == "awaiting_second_review"
        assert first.json()["review"]["decision"] == "confirm"
        # A second confirmation from the submitting organisation alone is not enough ...
        assert (
            review(client, as_user("a2"), candidate, "confirm").json()["candidate_status"] == "awaiting_second_review"
        )
        assert receiver.received == []
        # ... one from the record's organisation is.
        last = review(client, as_user("b1"), candidate, "confirm")
        assert last.json()["candidate_status"] == "confirmed"

    a_org, b_org = world.orgs["A"], world.orgs["B"]
    expected = [
        (
            "review_recorded",
            world.users[name],
            org,
            str(candidate),
            {"candidate_id": candidate, "decision": "confirm", "status": status},
        )
        for name, org, status in (
            ("a1", a_org, "awaiting_second_review"),
            ("a2", a_org, "awaiting_second_review"),
            ("b1", b_org, "confirmed"),
        )
    ]
    assert events_since(db, mark) == expected

    db.expire_all()
    assert db.get(Candidate, candidate).status == "confirmed" and db.get(Candidate, candidate).decided_at
    notices = db.scalars(select(Notification)).all()
    assert [(n.organisation_id, n.candidate_id, n.kind, n.webhook_status) for n in notices] == [
        (b_org, candidate, "match_confirmed", "sent")
    ]
    db.rollback()

    [(headers, body)] = receiver.received
    timestamp = headers[TIMESTAMP_HEADER]
    assert abs(int(timestamp) - time.time()) < 60
    expected_signature = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected_signature}"
    assert headers["Content-Type"] == "application/json"
    sent = json.loads(body)
    assert sent == {
        "event": "match_confirmed",
        "notification_id": notices[0].id,
        "organisation_id": b_org,
        "candidate_id": candidate,
        "record_id": world.record_id,
        "confirmed_at": sent["confirmed_at"],
    }

    # The record's organisation sees the notice in its queue and its notifications, and marks it read.
    queue = client.get(f"{API}/reviews/queue", headers=as_user("b2")).json()
    assert [(n["candidate_id"], n["record_case_reference"]) for n in queue["notifications"]] == [(candidate, "REC-B-7")]
    listed = client.get(f"{API}/notifications", headers=as_user("b_caseworker")).json()
    assert [n["id"] for n in listed] == [notices[0].id]
    assert client.get(f"{API}/notifications", headers=as_user("a1")).json() == []
    assert client.post(f"{API}/notifications/{notices[0].id}/read", headers=as_user("a1")).status_code == 404
    read = client.post(f"{API}/notifications/{notices[0].id}/read", headers=as_user("b_caseworker"))
    assert read.status_code == 200 and read.json()["read_at"]
    assert client.get(f"{API}/reviews/queue", headers=as_user("b2")).json()["notifications"] == []
    assert client.get(f"{API}/notifications", headers=as_user("b2"), params={"unread": True}).json() == []
    # Once decided, everyone who may see it sees the outcome, and nobody can decide again.
    assert client.get(f"{API}/candidates/{candidate}", headers=as_user("b2")).json()["status"] == "confirmed"
    assert review(client, as_user("b2"), candidate, "reject").json()["rule"] == "decided"


def test_a_failed_webhook_is_recorded_and_does_not_undo_the_review(client, db, world, as_user):
    candidate = add_candidate(db, world, "main")
    client.app.state.settings.webhook_allow_loopback = True  # the receiver is on 127.0.0.1
    with Receiver([500]) as receiver:
        set_webhook(db, world.orgs["B"], receiver.url, "another-secret")
        assert review(client, as_user("b1"), candidate, "confirm").status_code == 201
        confirmed = review(client, as_user("b2"), candidate, "confirm")
    assert confirmed.status_code == 201 and confirmed.json()["candidate_status"] == "confirmed"
    assert len(receiver.received) == 1
    db.expire_all()
    assert [n.webhook_status for n in db.scalars(select(Notification))] == ["failed"]
    assert db.get(Candidate, candidate).status == "confirmed"


def test_no_webhook_means_a_notification_only(client, db, world, as_user):
    candidate = add_candidate(db, world, "main")
    db.commit()
    review(client, as_user("a1"), candidate, "confirm")
    assert review(client, as_user("b1"), candidate, "confirm").json()["candidate_status"] == "confirmed"
    db.expire_all()
    assert [(n.organisation_id, n.webhook_status) for n in db.scalars(select(Notification))] == [
        (world.orgs["B"], None)
    ]


def test_a_reject_ends_it_and_refusals_change_nothing(client, db, world, as_user):
    candidate = add_candidate(db, world, "main")
    db.commit()
    mark = audit_mark(db)
    own = review(client, as_user("submitter"), candidate, "confirm")
    assert (own.status_code, own.json()["rule"]) == (403, "own_case")
    assert review(client, as_user("c1"), candidate, "reject").status_code == 404
    assert review(client, as_user("a1"), candidate, "confirm", rationale="too short").status_code == 422
    assert review(client, as_user("a1"), candidate, "maybe").status_code == 422
    assert review(client, as_user("b_caseworker"), candidate, "confirm").status_code == 403  # not a reviewer
    assert events_since(db, mark) == []

    assert review(client, as_user("a1"), candidate, "inconclusive").json()["candidate_status"] == "pending_review"
    again = review(client, as_user("a1"), candidate, "confirm")
    assert (again.status_code, again.json()["rule"]) == (409, "already_reviewed")
    rejected = review(client, as_user("b1"), candidate, "reject", rationale="  Different ear shape and eye spacing.  ")
    assert rejected.status_code == 201
    assert rejected.json()["candidate_status"] == "rejected"
    assert rejected.json()["review"]["rationale"] == "Different ear shape and eye spacing."
    late = review(client, as_user("a2"), candidate, "confirm")
    assert (late.status_code, late.json()["rule"]) == (409, "decided")
    assert [
        (action, details["decision"], details["status"]) for action, _, _, _, details in events_since(db, mark)
    ] == [("review_recorded", "inconclusive", "pending_review"), ("review_recorded", "reject", "rejected")]
    db.expire_all()
    assert db.scalar(select(func.count(Notification.id))) == 0


def test_concurrent_confirmations_end_in_exactly_one_valid_state(app, db, world, monkeypatch):
    """Two reviewers confirm at the same moment: one is first, the other confirms; never both first.

    Reading the earlier reviews is slowed down so that, without the row lock (or SQLite's
    exclusive transactions), both would read none and both would think they were first.
    """
    candidate = add_candidate(db, world, "main")
    db.commit()
    read_reviews = reviews_service._past_reviews

    def slowly(session, candidate_id):
        found = read_reviews(session, candidate_id)
        time.sleep(0.4)
        return found

    monkeypatch.setattr(reviews_service, "_past_reviews", slowly)
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def confirm(name: str) -> None:
        session = app.state.session_factory()
        try:
            start.wait()
            reviewer = session.get(User, world.users[name])
            recorded = reviews_service.record_review(
                session,
                reviewer=reviewer,
                candidate_id=candidate,
                decision="confirm",
                rationale=RATIONALE,
                deliver_webhook=None,
            )
            outcomes[name] = recorded.candidate_status
        except REFUSALS as refused:
            outcomes[name] = f"refused: {refused.rule}"
        finally:
            session.close()

    threads = [threading.Thread(target=confirm, args=(name,)) for name in ("a1", "b1")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes.values()) == ["awaiting_second_review", "confirmed"]
    db.expire_all()
    assert db.get(Candidate, candidate).status == "confirmed"
    assert db.scalar(select(func.count(Review.id))) == 2
    assert db.scalar(select(func.count(Notification.id))) == 1
    statuses = [e[4]["status"] for e in events_since(db, 0) if e[0] == "review_recorded"]
    assert statuses == ["awaiting_second_review", "confirmed"]
