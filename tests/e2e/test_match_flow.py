"""From photo to reviewed match, through the HTTP API, with a real Celery worker process on real faces.

The API runs in this process (TestClient on create_app); its dispatcher sends tasks to a
real broker, and a real `reunite worker` process embeds, indexes and searches:

- on PostgreSQL, the worker takes its tasks from Redis (the production arrangement);
- on SQLite, the same flow runs on the embedded default: the filesystem broker in the
  data folder and a single worker process, as `reunite serve` starts it.

Everything the people in the story do goes through HTTP: organisations apply and two
platform admins approve them, organisation admins add their staff, caseworkers register
records and upload photos, submit cases and withdraw consent, reviewers decide, an
auditor reads the trail. Only the operator accounts are made in the database, and
access tokens are minted rather than signed in for (argon2 costs about half a second a
hash here; sign-in is tested in tests/integration/test_auth.py). Progress is followed by
polling the API with a deadline; a timeout reports the last answer and the worker's log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from matching.calibration import DEFAULT_REVIEW_THRESHOLD
from service.auth.models import User
from service.photos.service import check_upload
from service.auth.tokens import issue_access_token
from service.db import utcnow
from service.photos.models import Photo
from service.worker.dispatch import CeleryDispatcher
from tests.support.service import ESTABLISHED_ACCOUNT_AGE, PASSWORD, make_user
from tests.support.workers import Workers, poll, redis_database

pytestmark = [pytest.mark.faces, pytest.mark.worker_process]

API = "/api/v1"
DEADLINE_SECONDS = 60
CASE_FINISHED = {"searched", "no_face", "rejected_input", "failed"}
PHOTO_PENDING = {"queued", "processing"}
GUARDIAN = "Guardian Featherstonehaugh"  # must never reach the audit trail
AUDITED_ACTIONS = ("photo_uploaded", "case_submitted", "photo_viewed", "review_recorded")
RATIONALE = "Same face shape, eyes and ears in both photos; the dates fit the case."
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


@pytest.fixture(scope="session")
def redis_url():
    yield from redis_database()


@pytest.fixture
def worker_concurrency() -> int:
    """Pool processes of the worker; a test that wants more parametrizes this name."""
    return 1


# --- the world: an API on a broker, a worker, two approved organisations -------------------------


@dataclass
class Flow:
    """The API client, everyone's headers and ids, and HTTP steps that poll until the worker is done."""

    client: object
    db: object
    workers: Workers
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    organisations: dict[str, int] = field(default_factory=dict)

    def get(self, who: str, path: str, expect: int = 200):
        response = self.client.get(f"{API}{path}", headers=self.headers[who])
        assert response.status_code == expect, f"GET {path} as {who}: {response.status_code} {response.text}"
        return response

    def post(self, who: str, path: str, expect: int, **kwargs) -> dict:
        response = self.client.post(f"{API}{path}", headers=self.headers[who], **kwargs)
        assert response.status_code == expect, f"POST {path} as {who}: {response.status_code} {response.text}"
        return response.json()

    def create_record(self, case_reference: str, label: str) -> int:
        now = utcnow()
        missing_since = now.date() - timedelta(days=60)
        body = {
            "case_reference": case_reference,
            "label": label,
            "age_years": 9,
            "missing_since": missing_since.isoformat(),
            "consent": {
                "guardian_name": GUARDIAN,
                "guardian_relationship": "mother",
                "responsibility_verified_by": "birth certificate seen",
                "lawful_basis": "consent",
                "purpose": "Finding the child and reuniting the family",
                "notice_version": "2026-1",
                "obtained_at": (now - timedelta(days=1)).isoformat(),
                "expires_at": (now + timedelta(days=365)).isoformat(),
            },
        }
        return self.post("a_caseworker", "/records", 201, json=body)["id"]

    def upload(self, record_id: int, path: Path) -> int:
        accepted = self.post(
            "a_caseworker",
            f"/records/{record_id}/photos",
            202,
            files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
        )
        assert accepted["status"] == "queued"
        return accepted["photo_id"]

    def wait_embedded(self, record_id: int, photo_id: int) -> dict:
        photo = poll(
            lambda: self.get("a_caseworker", f"/records/{record_id}/photos/{photo_id}").json(),
            until=lambda shown: shown["status"] not in PHOTO_PENDING,
            what=f"record photo {photo_id} to be processed",
            seconds=DEADLINE_SECONDS,
            explain=self.workers.log_tails,
        )
        assert photo["status"] == "embedded", photo
        return photo

    def submit(self, path: Path, case_reference: str) -> int:
        accepted = self.post(
            "b_caseworker",
            "/cases",
            202,
            data={"case_reference": case_reference, "purpose": "Looking for a missing child"},
            files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
        )
        assert accepted["status"] == "queued"
        return accepted["id"]

    def wait_searched(self, case_id: int) -> dict:
        case = poll(
            lambda: self.get("b_caseworker", f"/cases/{case_id}").json(),
            until=lambda shown: shown["status"] in CASE_FINISHED,
            what=f"case {case_id} to be searched",
            seconds=DEADLINE_SECONDS,
            explain=self.workers.log_tails,
        )
        assert case["status"] == "searched", case
        return case

    def case_photo_id(self, case_id: int) -> int:
        """The stored case photo's id (the API names it only on candidates), for the audit check."""
        photo_id = self.db.scalar(select(Photo.id).where(Photo.case_id == case_id))
        self.db.rollback()
        return photo_id


@pytest.fixture
def flow(backend, app, client, db, settings, tmp_path, monkeypatch, request, worker_concurrency) -> Flow:
    """The API on a real broker, a worker process (started first: it boots while we arrange), two organisations.

    Organisation A owns the record; organisation B submits the cases.
    """
    broker_url = request.getfixturevalue("redis_url") if backend == "postgresql" else None
    app.state.dispatcher = CeleryDispatcher(settings.model_copy(update={"broker_url": broker_url}))
    workers = Workers(settings, broker_url, tmp_path)
    request.addfinalizer(lambda: workers.stop_all(warm=False))  # idle by then: nothing to finish
    workers.start(concurrency=worker_concurrency)

    found = Flow(client=client, db=db, workers=workers)
    operators = {
        name: make_user(db, role).user
        for name, role in (("admin_1", "platform_admin"), ("admin_2", "platform_admin"), ("auditor", "auditor"))
    }
    db.commit()
    for name, user in operators.items():
        found.users[name], found.headers[name] = user.id, bearer(settings, user.id, user.token_version)
    db.rollback()
    for letter, domain in (("a", "hope-line.example.org"), ("b", "safe-harbour.example.org")):
        organisation_id, admin_email = apply_and_approve(found, letter, domain)
        found.organisations[letter] = organisation_id
        admin = db.scalars(select(User).where(User.email == admin_email)).one()
        found.headers[f"{letter}_admin"] = bearer(settings, admin.id, admin.token_version)
        db.rollback()
        for role in ("caseworker", "reviewer"):
            added = found.post(
                f"{letter}_admin",
                f"/organisations/{organisation_id}/users",
                201,
                json={"email": f"{role}@{domain}", "password": PASSWORD, "roles": [role]},
            )
            name = f"{letter}_{role}"
            found.users[name], found.headers[name] = added["id"], bearer(settings, added["id"], 0)
    # Staff of long standing: the two-person rule wants an established, independent confirmer.
    db.execute(update(User).values(created_at=utcnow() - ESTABLISHED_ACCOUNT_AGE))
    db.commit()
    return found


def apply_and_approve(flow: Flow, letter: str, domain: str) -> tuple[int, str]:
    """An organisation applies through the API and two different platform admins approve it."""
    admin_email = f"admin@{domain}"
    response = flow.client.post(
        f"{API}/organisations/applications",
        json={
            "name": f"Organisation {letter.upper()}",
            "org_type": "ngo",
            "country": "GB",
            "registration_number": f"REG-{letter}",
            "website": f"https://{domain}",
            "contact_email": f"office@{domain}",
            "admin_email": admin_email,
            "admin_password": PASSWORD,
            "attestation": {"no_law_enforcement": True, "purpose": "Reuniting missing children with their families"},
        },
    )
    assert response.status_code == 201, response.text
    organisation_id = response.json()["id"]
    for admin in ("admin_1", "admin_2"):
        decided = flow.post(
            admin,
            f"/organisations/{organisation_id}/decisions",
            200,
            json={"decision": "approve", "reason": "Registration and references checked."},
        )
    assert decided["status"] == "approved"
    return organisation_id, admin_email


def bearer(settings, user_id: int, token_version: int) -> dict[str, str]:
    token, _ = issue_access_token(
        secret=settings.signing_secret(), user_id=user_id, token_version=token_version, lifetime=timedelta(minutes=15)
    )
    return {"Authorization": f"Bearer {token}"}


def audit_trail(flow: Flow) -> list[dict]:
    """Every audit event, as the auditor reads them through the API."""
    events, after = [], 0
    while after is not None:
        page = flow.get("auditor", f"/audit/events?limit=1000&after_seq={after}").json()
        events += page["events"]
        after = page["next_after_seq"]
    return events


def event(action: str, actor: int, organisation: int, target_type: str, target_id: int, **details) -> tuple:
    return (action, actor, organisation, target_type, str(target_id), details)


# --- the flow on the face_recognition sdist's photos -----------------------------------------------


def test_a_case_photo_finds_the_record_two_reviewers_confirm_and_withdrawal_erases_it(flow, sdist_images, settings):
    # A registers a consented record and uploads a photo; the worker embeds it.
    record_id = flow.create_record("A-2026-001", "Child A-1")
    record_photo_id = flow.upload(record_id, sdist_images / "obama.jpg")
    flow.wait_embedded(record_id, record_photo_id)

    # B submits another photo of the same person: the record is ranked first, awaiting review.
    case_id = flow.submit(sdist_images / "obama2.jpg", "B-CASE-1")
    case = flow.wait_searched(case_id)
    assert case["faces"] == 1
    [candidate] = case["candidates"]
    assert (candidate["record_id"], candidate["rank"], candidate["status"]) == (record_id, 1, "under_review")
    assert candidate["distance"] <= DEFAULT_REVIEW_THRESHOLD
    candidate_id = candidate["id"]

    # B's reviewer (not the submitter) compares both photos and confirms.
    queue = flow.get("b_reviewer", "/reviews/queue").json()
    assert [(item["candidate_id"], item["your_organisation"]) for item in queue["items"]] == [
        (candidate_id, "submitted_case")
    ]
    shown = flow.get("b_reviewer", f"/candidates/{candidate_id}").json()
    assert (shown["status"], shown["can_decide"], shown["record"]["record_id"]) == ("under_review", True, record_id)
    probe_photo_id = shown["probe"]["photo"]["photo_id"]
    # Served as stored: the upright pixels re-encoded without metadata.
    assert (
        flow.get("b_reviewer", f"/candidates/{candidate_id}/probe-image").content
        == check_upload((sdist_images / "obama2.jpg").read_bytes(), settings).data
    )
    assert (
        flow.get("b_reviewer", f"/candidates/{candidate_id}/record-image").content
        == check_upload((sdist_images / "obama.jpg").read_bytes(), settings).data
    )
    decided = flow.post(
        "b_reviewer", f"/candidates/{candidate_id}/reviews", 201, json={"decision": "confirm", "rationale": RATIONALE}
    )
    assert decided["candidate_status"] == "awaiting_second_review"
    mine = flow.get("b_reviewer", f"/candidates/{candidate_id}").json()
    assert (mine["status"], mine["your_review"]["decision"], mine["can_decide"]) == (
        "awaiting_second_review",
        "confirm",
        False,
    )

    # A's reviewer sees the candidate as undecided (not B's decision), looks, and confirms.
    queue = flow.get("a_reviewer", "/reviews/queue").json()
    assert [(i["candidate_id"], i["your_organisation"], i["reviewed_by_others"]) for i in queue["items"]] == [
        (candidate_id, "owns_record", True)
    ]
    before = flow.get("a_reviewer", f"/candidates/{candidate_id}").json()
    assert (before["status"], before["your_review"], before["can_decide"]) == ("under_review", None, True)
    flow.get("a_reviewer", f"/candidates/{candidate_id}/probe-image")
    decided = flow.post(
        "a_reviewer", f"/candidates/{candidate_id}/reviews", 201, json={"decision": "confirm", "rationale": RATIONALE}
    )
    assert decided["candidate_status"] == "confirmed"
    for reviewer in ("a_reviewer", "b_reviewer"):
        assert flow.get(reviewer, f"/candidates/{candidate_id}").json()["status"] == "confirmed"
    assert flow.get("b_caseworker", f"/cases/{case_id}").json()["candidates"][0]["status"] == "confirmed"

    # A, which owns the record, is notified; B is not.
    for person in ("a_reviewer", "a_caseworker"):
        notices = flow.get(person, "/notifications").json()
        assert [(n["kind"], n["candidate_id"], n["record_id"]) for n in notices] == [
            ("match_confirmed", candidate_id, record_id)
        ]
    assert [n["candidate_id"] for n in flow.get("a_reviewer", "/reviews/queue").json()["notifications"]] == [
        candidate_id
    ]
    assert flow.get("b_reviewer", "/notifications").json() == []

    # Someone else entirely: nothing within the threshold.
    other_case_id = flow.submit(sdist_images / "biden.jpg", "B-CASE-2")
    other = flow.wait_searched(other_case_id)
    assert (other["faces"], other["candidates"]) == (1, [])

    # A withdraws consent; once the call returns, no search finds the record and its candidate is redacted.
    withdrawn = flow.post("a_caseworker", f"/records/{record_id}/consent/withdraw", 200)
    assert (
        withdrawn["status"],
        withdrawn["photos_erased"],
        withdrawn["embeddings_removed"],
        withdrawn["candidates_redacted"],
    ) == ("withdrawn", 1, 1, 1)
    late_case_id = flow.submit(sdist_images / "obama3.jpg", "B-CASE-3")
    late = flow.wait_searched(late_case_id)
    assert (late["faces"], late["candidates"]) == (1, [])
    [redacted] = flow.get("b_caseworker", f"/cases/{case_id}").json()["candidates"]
    assert (redacted["id"], redacted["record_id"], redacted["distance"], redacted["status"]) == (
        candidate_id,
        None,
        None,
        "redacted",
    )
    after = flow.get("b_reviewer", f"/candidates/{candidate_id}").json()
    assert (after["status"], after["record"], after["probe"]["photo"]["image_url"]) == ("redacted", None, None)
    flow.get("b_reviewer", f"/candidates/{candidate_id}/record-image", expect=404)

    # The audit trail: exactly these uploads, submissions, photo views and reviews, in order.
    trail = audit_trail(flow)
    u, o = flow.users, flow.organisations
    assert [
        (e["action"], e["actor_id"], e["organisation_id"], e["target_type"], e["target_id"], e["details"])
        for e in trail
        if e["action"] in AUDITED_ACTIONS
    ] == [
        event("photo_uploaded", u["a_caseworker"], o["a"], "photo", record_photo_id, record_id=record_id),
        event(
            "case_submitted",
            u["b_caseworker"],
            o["b"],
            "case",
            case_id,
            case_id=case_id,
            photo_id=probe_photo_id,
            search_mode="alerting",
        ),
        event(
            "photo_viewed",
            u["b_reviewer"],
            o["b"],
            "candidate",
            candidate_id,
            candidate_id=candidate_id,
            photo_id=probe_photo_id,
            side="probe",
            size="full",
        ),
        event(
            "photo_viewed",
            u["b_reviewer"],
            o["b"],
            "candidate",
            candidate_id,
            candidate_id=candidate_id,
            photo_id=record_photo_id,
            side="record",
            size="full",
        ),
        event(
            "review_recorded",
            u["b_reviewer"],
            o["b"],
            "candidate",
            candidate_id,
            candidate_id=candidate_id,
            decision="confirm",
            status="awaiting_second_review",
        ),
        event(
            "photo_viewed",
            u["a_reviewer"],
            o["a"],
            "candidate",
            candidate_id,
            candidate_id=candidate_id,
            photo_id=probe_photo_id,
            side="probe",
            size="full",
        ),
        event(
            "review_recorded",
            u["a_reviewer"],
            o["a"],
            "candidate",
            candidate_id,
            candidate_id=candidate_id,
            decision="confirm",
            status="confirmed",
        ),
        event(
            "case_submitted",
            u["b_caseworker"],
            o["b"],
            "case",
            other_case_id,
            case_id=other_case_id,
            photo_id=flow.case_photo_id(other_case_id),
            search_mode="alerting",
        ),
        event(
            "case_submitted",
            u["b_caseworker"],
            o["b"],
            "case",
            late_case_id,
            case_id=late_case_id,
            photo_id=flow.case_photo_id(late_case_id),
            search_mode="alerting",
        ),
    ]
    assert [e["action"] for e in trail].count("consent_withdrawn") == 1
    assert GUARDIAN not in json.dumps(trail) and "Child A-1" not in json.dumps(trail)


# --- every identity of ../shared ---------------------------------------------------------------------


@pytest.fixture
def postgres_only(backend):
    if backend != "postgresql":
        pytest.skip("the ../shared identities run on PostgreSQL + Redis only (the sdist flow covers SQLite)")


@pytest.mark.parametrize("worker_concurrency", [2])
def test_every_shared_identity_finds_its_own_record_first(postgres_only, shared_images, flow):
    """One photo per person enrolled (people with one photo are distractors), another one searched."""
    people = {
        folder.name: sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        for folder in sorted((shared_images / "identities").iterdir())
    }
    records, uploads = {}, []
    for number, (person, photos) in enumerate(people.items(), start=1):
        records[person] = flow.create_record(f"A-SHARED-{number}", f"Child S-{number}")
        uploads.append((records[person], flow.upload(records[person], photos[0])))
    for record_id, photo_id in uploads:
        flow.wait_embedded(record_id, photo_id)

    probes = {
        person: flow.submit(photos[1], f"B-SHARED-{person}") for person, photos in people.items() if len(photos) > 1
    }
    assert len(probes) >= 5
    for person, case_id in probes.items():
        case = flow.wait_searched(case_id)
        assert case["candidates"], f"no candidate for a second photo of {person}"
        best = case["candidates"][0]
        assert (best["rank"], best["record_id"]) == (1, records[person]), f"{person}: {case['candidates']}"
