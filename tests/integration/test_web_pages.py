"""The reviewer, notification, organisation-admin, platform-admin and auditor pages, without a browser.

Each person signs in through the sign-in page and keeps their own cookies (one TestClient
each, on https so the Secure cookies are kept). Forms are posted with the CSRF token read
from the page, as a browser would. The candidate is arranged with the ORM, its photos
sealed by the real vault from the face_recognition sdist's photos (the worker that would
make it is tested elsewhere); everything else goes through the pages.

Organisation "finders" submits the case; organisation "keepers" owns the record.
"""

from __future__ import annotations

import io
import json
import re
from datetime import date, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from matching.quality import QualityGates
from service.audit.models import AuditEvent
from service.audit.signing import load_signer
from service.audit.verify import Problem, Report, verify_bundle
from service.auth.models import User
from service.auth.service import BAD_CREDENTIALS
from service.cases.models import Case
from service.db import utcnow
from service.organisations.models import Organisation, OrganisationDecision
from service.photos.models import Embedding
from service.photos.service import check_upload, store_photo
from service.reviews import service as reviews_service
from service.reviews.models import Candidate, Notification, Review
from service.web.routes.audit import describe
from tests.support.gallery import make_record
from tests.support.pages import CSRF, Person, text_of
from tests.support.service import PASSWORD, Account, make_organisation, make_user

LABEL = "Pseudonym-Wren"  # the record's label: never on any page
GUARDIAN = "Guardian Ashdown"
BOX = {"box_top": 60, "box_right": 300, "box_bottom": 290, "box_left": 70}
RATIONALE = "Same ear shape and the same gap between the front teeth."


# --- the world ------------------------------------------------------------------------------------


@pytest.fixture
def world(app, db, sdist_images) -> dict:
    finders, keepers = make_organisation(db, name="Finders"), make_organisation(db, name="Keepers")
    accounts = {
        "submitter": make_user(db, "caseworker", organisation=finders),
        "finder_reviewer": make_user(db, "reviewer", organisation=finders),
        "keeper_reviewer": make_user(db, "reviewer", organisation=keepers),
        "keeper_caseworker": make_user(db, "caseworker", organisation=keepers),
        "keeper_admin": make_user(db, "org_admin", "reviewer", organisation=keepers),
        "admin_1": make_user(db, "platform_admin"),
        "admin_2": make_user(db, "platform_admin"),
        "auditor": make_user(db, "auditor"),
    }
    record = make_record(
        db,
        organisation_id=keepers.id,
        user_id=accounts["keeper_caseworker"].user.id,
        case_reference="KEEP-7",
        label=LABEL,
        guardian_name=GUARDIAN,
        date_of_birth=date(2015, 3, 1),
        missing_since=date(2024, 6, 1),
    )
    gallery = _embedded_photo(
        app,
        db,
        sdist_images / "obama.jpg",
        organisation_id=keepers.id,
        uploaded_by=accounts["keeper_caseworker"].user.id,
        record_id=record.id,
        taken_at=date(2023, 9, 1),
    )
    case = Case(
        organisation_id=finders.id,
        submitted_by=accounts["submitter"].user.id,
        case_reference="FIND-1",
        purpose="Search for a missing child",
        status="searched",
        faces=1,
        attempts=1,
        retention_until=utcnow() + timedelta(days=30),
    )
    db.add(case)
    db.flush()
    probe = _embedded_photo(
        app, db, sdist_images / "obama2.jpg", organisation_id=finders.id, uploaded_by=case.submitted_by, case_id=case.id
    )
    candidate = Candidate(
        case_id=case.id,
        record_id=record.id,
        probe_embedding_id=probe,
        gallery_embedding_id=gallery,
        distance=0.35,
        rank=1,
        model_id="dlib_resnet_v1",
        model_version="test",
        status="pending_review",
    )
    db.add(candidate)
    db.commit()
    return {
        "accounts": accounts,
        "candidate": candidate.id,
        "finders": finders.id,
        "keepers": keepers.id,
        "record": record.id,
    }


def _embedded_photo(app, db, path, **where) -> int:
    """A real photo sealed as an upload is, with one embedded face; the embedding's id."""
    image = check_upload(path.read_bytes(), app.state.settings)
    photo = store_photo(db, vault=app.state.vault, image=image, **where)
    photo.status, photo.faces_found = "embedded", 1
    embedding = Embedding(
        photo_id=photo.id,
        face_index=0,
        **BOX,
        quality=json.dumps({"box_px": 230, "sharpness": 180.0, "asymmetry": 0.05, "detection_score": 1.9}),
        vector=np.zeros(128, np.float32).tobytes(),
        model_id="dlib_resnet_v1",
        model_version="test",
    )
    db.add(embedding)
    db.flush()
    return embedding.id


@pytest.fixture
def person(app, world):
    return lambda name: Person(app, world["accounts"][name])


def count(db, model, *where) -> int:
    """Rows now committed (a fresh transaction: reading an account's attributes may have begun one)."""
    db.rollback()
    found = db.scalar(select(func.count()).select_from(model).where(*where))
    db.rollback()
    return found


def reread(db, model, row_id: int):
    """The row as now committed, detached from any earlier transaction's view."""
    db.rollback()
    row = db.get(model, row_id, populate_existing=True)
    db.rollback()
    return row


# --- permissions ----------------------------------------------------------------------------------


def test_a_reviewer_cannot_open_admin_audit_or_user_pages(person, world, db):
    reviewer = person("keeper_reviewer")
    for path in (
        "/admin/organisations",
        f"/admin/organisations/{world['finders']}",
        "/admin/denylist",
        "/audit",
        "/organisation/users",
    ):
        answer = reviewer.get(path, expect=403)
        assert "Not available to your role" in answer.text
    # A forged form gets no further, even with a valid token of the reviewer's own session.
    answer = reviewer.post(
        "/reviews", f"/admin/organisations/{world['finders']}/decisions", decision="revoke", reason="No reason at all"
    )
    assert answer.status_code == 403
    assert count(db, OrganisationDecision) == 0
    # The nav offers only what the role allows.
    queue = reviewer.get("/reviews").text
    assert 'href="/reviews"' in queue and 'href="/notifications"' in queue
    assert 'href="/audit"' not in queue and 'href="/admin/organisations"' not in queue


def test_an_auditor_reads_the_trail_but_can_change_nothing(person, world, db):
    auditor = person("auditor")
    assert "Audit trail" in auditor.get("/audit").text
    for path in (
        "/admin/organisations",
        "/admin/denylist",
        "/organisation/users",
        "/reviews",
        "/notifications",
        f"/reviews/candidates/{world['candidate']}",
    ):
        auditor.get(path, expect=403)
    attempts = [
        (f"/admin/organisations/{world['finders']}/decisions", {"decision": "suspend", "reason": "Testing"}),
        ("/admin/denylist", {"domain": "police.example", "reason": "Testing"}),
        ("/organisation/users", {"email": "new@finders.example.org", "password": PASSWORD, "roles": "reviewer"}),
        (f"/reviews/candidates/{world['candidate']}", {"decision": "confirm", "rationale": RATIONALE}),
    ]
    for action, fields in attempts:
        assert auditor.post("/audit", action, **fields).status_code == 403, action
    assert count(db, OrganisationDecision) == 0
    assert count(db, Review) == 0
    assert count(db, User, User.email == "new@finders.example.org") == 0
    assert reread(db, Organisation, world["finders"]).status == "approved"


def test_a_form_without_the_session_token_changes_nothing(person, world, db):
    reviewer = person("keeper_reviewer")
    answer = reviewer.http.post(
        f"/reviews/candidates/{world['candidate']}", data={"decision": "confirm", "rationale": RATIONALE}
    )
    assert answer.status_code == 403 and "Please try again" in answer.text
    assert count(db, Review) == 0


# --- reviewing ----------------------------------------------------------------------------------


def test_two_reviewers_confirm_on_the_page_without_seeing_each_other(app, person, world, db, sdist_images):
    candidate = world["candidate"]
    page = f"/reviews/candidates/{candidate}"

    # The record's organisation's reviewer: queue, side-by-side page, photos, decision.
    keeper = person("keeper_reviewer")
    queue = text_of(keeper.get("/reviews"))
    assert "1 candidate is waiting for your decision" in queue and f"Review candidate {candidate}" in queue
    shown = keeper.get(page)
    words = text_of(shown)
    assert "Case photo" in words and "Record photo" in words
    notice = reviews_service.candidate_details(
        db,
        viewer=db.get(User, world["accounts"]["keeper_reviewer"].user.id),
        candidate_id=candidate,
        gates=QualityGates(),
    ).notice
    db.rollback()
    assert " ".join(notice.split()) in words  # the standing notice on the model's limits
    assert "Under review" in words and "KEEP-7" in words and "FIND-1" not in words  # own references only
    assert "Rank 1" in words and "about 8.5 years" in words  # age at photo from the date of birth
    for name, value in BOX.items():  # the face box, for the page's script to draw
        assert f'data-{name.replace("_", "-")}="{value}"' in shown.text
    assert LABEL not in shown.text and GUARDIAN not in shown.text
    assert 'alt="Case photo"' in shown.text and 'alt="Record photo"' in shown.text
    image = keeper.get(f"{page}/photos/record")
    assert image.content == check_upload((sdist_images / "obama.jpg").read_bytes(), app.state.settings).data
    assert image.headers["cache-control"] == "no-store"
    db.rollback()
    viewed = db.scalars(select(AuditEvent).where(AuditEvent.action == "photo_viewed")).all()
    assert [json.loads(event.details)["side"] for event in viewed] == ["record"]
    db.rollback()

    # A rationale too short is refused with a sentence, and nothing is recorded.
    short = keeper.post(page, page, decision="confirm", rationale="same")
    assert short.status_code == 422 and "at least 10 characters" in text_of(short)
    assert count(db, Review) == 0
    done = keeper.post(page, page, decision="confirm", rationale=RATIONALE)
    assert (done.status_code, done.headers["location"]) == (303, page)
    after = text_of(keeper.get(page))
    assert "You recorded confirm" in after and RATIONALE in after and "Waiting for a second reviewer" in after

    # The case's organisation's reviewer sees it undecided, with nobody's decision.
    finder = person("finder_reviewer")
    assert "already been reviewed by someone else" in text_of(finder.get("/reviews"))
    before = finder.get(page)
    assert "Under review" in text_of(before)
    assert RATIONALE not in before.text and "You recorded" not in before.text
    assert "Waiting for a second reviewer" not in before.text
    done = finder.post(page, page, decision="confirm", rationale="The eyes, nose and hairline all match.")
    assert done.status_code == 303
    assert "Confirmed by two reviewers" in text_of(finder.get(page))

    # The submitter never gets a form, and the record's organisation is notified.
    submitter_view = person("keeper_caseworker").get("/notifications")
    notice = text_of(submitter_view)
    assert "Match confirmed for record KEEP-7" in notice and f"record {world['record']}" in notice
    assert count(db, Notification, Notification.organisation_id == world["keepers"]) == 1
    assert "There are no notifications" in text_of(person("submitter").get("/notifications"))


def test_marking_a_notification_read(person, world, db):
    db.add(
        Notification(
            organisation_id=world["keepers"],
            candidate_id=world["candidate"],
            kind="match_confirmed",
            created_at=utcnow(),
        )
    )
    db.commit()
    keeper = person("keeper_caseworker")
    [notification_id] = [int(n) for n in re.findall(r"/notifications/(\d+)/read", keeper.get("/notifications").text)]
    answer = keeper.post("/notifications", f"/notifications/{notification_id}/read")
    assert answer.status_code == 303
    assert reread(db, Notification, notification_id).read_at is not None
    # Another organisation's notice does not exist for them.
    outsider = person("finder_reviewer")
    assert outsider.post("/notifications", f"/notifications/{notification_id}/read").status_code == 404


# --- organisation admin -----------------------------------------------------------------------------


def test_an_org_admin_adds_and_removes_a_user_within_the_rules(person, world, db):
    admin = person("keeper_admin")
    page = "/organisation/users"
    assert world["accounts"]["keeper_reviewer"].email in admin.get(page).text

    refused = admin.post(page, page, email="new-caseworker@keepers.example.org", password=PASSWORD, roles="caseworker")
    assert refused.status_code == 403 and "you do not hold: caseworker" in text_of(refused)
    short = admin.post(page, page, email="new@keepers.example.org", password="short", roles="reviewer")
    assert short.status_code == 422 and "at least 12 characters" in text_of(short)
    police = admin.post(page, page, email="someone@met.police.uk", password=PASSWORD, roles="reviewer")
    assert police.status_code == 422
    assert (
        count(
            db,
            User,
            User.email.in_(["new-caseworker@keepers.example.org", "new@keepers.example.org", "someone@met.police.uk"]),
        )
        == 0
    )

    added = admin.post(page, page, email="new@keepers.example.org", password=PASSWORD, roles="reviewer")
    assert added.status_code == 303
    db.rollback()
    new_user = db.scalars(select(User).where(User.email == "new@keepers.example.org")).one()
    assert (new_user.organisation_id, new_user.roles) == (world["keepers"], frozenset({"reviewer"}))
    new_id = new_user.id
    db.rollback()
    # Their first sign-in shows, once, the key of the authenticator app their role needs.
    first = TestClient(admin.http.app, base_url="https://testserver", follow_redirects=False)
    form = {
        "email": "new@keepers.example.org",
        "password": PASSWORD,
        "next": "/",
        "csrf_token": CSRF.search(first.get("/sign-in").text).group(1),
    }
    enrolling = first.post("/sign-in", data=form)
    assert enrolling.status_code == 200 and "Add Reunite to your authenticator app" in text_of(enrolling)
    secret = re.search(r'class="totp-secret">([A-Z2-7]+)<', enrolling.text).group(1)
    again = first.post("/sign-in", data=form)  # the key is shown once only
    assert again.status_code == 401 and BAD_CREDENTIALS in text_of(again) and secret not in again.text
    newcomer = Person(admin.http.app, Account(user=new_user, email="new@keepers.example.org", totp_secret=secret))
    newcomer.get("/reviews")

    removed = admin.post(page, f"{page}/{new_id}/remove")
    assert removed.status_code == 303
    assert reread(db, User, new_id).status == "removed"
    newcomer.get("/reviews", expect=303)  # their session ended at once
    own = admin.post(page, f"{page}/{world['accounts']['keeper_admin'].user.id}/remove")
    assert own.status_code == 409 and "last org_admin" in text_of(own)


# --- platform admin -------------------------------------------------------------------------------


def test_two_different_platform_admins_approve_and_a_suspension_needs_a_reason(app, person, db):
    applicant = make_organisation(db, status="applied", name="Hope Line", website="https://hope-line.example.org")
    make_user(db, "org_admin", organisation=applicant, email="admin@hope-line.example.org")
    db.commit()
    applicant_id = applicant.id
    page = f"/admin/organisations/{applicant_id}"
    first, second = person("admin_1"), person("admin_2")

    listed = text_of(first.get("/admin/organisations"))
    assert "Hope Line" in listed
    details = text_of(first.get(page))
    for submitted in (
        "https://hope-line.example.org",
        "contact@helping-hands.example.org",
        "Finding missing children",
        "admin@hope-line.example.org",
        "Law-enforcement checks",
        "Passed",
    ):
        assert submitted in details
    assert "Failed" not in details

    assert first.post(page, f"{page}/decisions", decision="approve", reason="References checked.").status_code == 303
    assert "a second, different platform admin must approve it too" in text_of(first.get(page))
    again = first.post(page, f"{page}/decisions", decision="approve", reason="Once more.")
    assert again.status_code == 409 and "second, different platform admin" in text_of(again)
    assert second.post(page, f"{page}/decisions", decision="approve", reason="Registry confirmed.").status_code == 303
    assert reread(db, Organisation, applicant_id).status == "approved"

    no_reason = second.post(page, f"{page}/decisions", decision="suspend", reason="  ")
    assert no_reason.status_code == 422 and "Give the reason" in text_of(no_reason)
    assert reread(db, Organisation, applicant_id).status == "approved"
    assert (
        second.post(page, f"{page}/decisions", decision="suspend", reason="Complaint under investigation.").status_code
        == 303
    )
    history = text_of(first.get(page))
    assert "Suspended" in history and "Complaint under investigation." in history
    assert reread(db, Organisation, applicant_id).status == "suspended"


def test_denylist_domains_are_added_and_removed(person, db):
    admin = person("admin_1")
    page = "/admin/denylist"
    assert admin.post(page, page, domain="harbour-police.example", reason="Port police force.").status_code == 303
    assert "harbour-police.example" in admin.get(page).text
    duplicate = admin.post(page, page, domain="harbour-police.example", reason="Again.")
    assert duplicate.status_code == 409 and "already refused" in text_of(duplicate)
    shipped = admin.post(page, f"{page}/remove", domain="police.uk")
    assert shipped.status_code == 409 and "shipped denylist" in text_of(shipped)
    assert admin.post(page, f"{page}/remove", domain="harbour-police.example").status_code == 303
    assert "harbour-police.example" not in admin.get(page).text


# --- audit ----------------------------------------------------------------------------------------


def test_the_auditor_searches_exports_and_verifies(app, person, world, db):
    auditor = person("auditor")
    auditor_id = world["accounts"]["auditor"].user.id
    found = auditor.get(f"/audit?action=login&actor={auditor_id}")
    rows = re.findall(r"<code>login</code>", found.text)
    assert len(rows) == 1  # the auditor's own sign-in, and nobody else's
    empty = auditor.get("/audit?since=2000-01-01T00:00&until=2000-01-02T00:00")
    assert "No event matches these filters." in text_of(empty)
    bad = auditor.get("/audit?since=yesterday", expect=422)
    assert "From is not a date and time" in text_of(bad)

    table = auditor.post("/audit", "/audit/export", format="csv", action="login")
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    assert table.headers["cache-control"] == "no-store"
    lines = table.text.strip().splitlines()
    assert lines[0].startswith("seq,at,actor_id") and all(",login," in line for line in lines[1:]) and len(lines) > 1

    bundle = auditor.post("/audit", "/audit/export", format="jsonl")
    assert "attachment" in bundle.headers["content-disposition"]
    trusted = load_signer(app.state.settings.audit_key_file).public_key_pem
    report = verify_bundle(io.StringIO(bundle.text), trusted_key_pem=trusted)
    assert report.ok and report.first_seq == 1

    verified = auditor.post("/audit", "/audit/verify")
    assert verified.status_code == 200
    assert "Chain verified All" in text_of(verified)  # the heading, then the figures
    assert "Export header signs seq 1 to" in text_of(verified)  # what the signatures cover
    db.rollback()
    actions = db.scalars(select(AuditEvent.action).order_by(AuditEvent.seq.desc()).limit(3)).all()
    assert actions[0] == "audit_verified" and "audit_exported" in actions
    db.rollback()


def test_a_failed_verification_is_said_in_words():
    report = Report(
        key_id="k",
        events=5,
        first_seq=1,
        last_seq=5,
        problems=[
            Problem(4, "the hash does not match the event's fields: the event was changed"),
            Problem(None, "the bundle's public key is not the trusted key"),
        ],
    )
    described = describe(report)
    assert not described["ok"]
    assert described["headline"] == (
        "Verification failed for the whole trail: the bundle's public key is not the trusted key."
    )
    assert described["problems"][1].startswith("Event 4: the hash does not match")


def test_a_withdrawn_candidate_shows_no_photo_and_no_form(person, world, db):
    candidate = db.get(Candidate, world["candidate"])
    candidate.status, candidate.record_id = "redacted", None
    db.commit()
    page = person("finder_reviewer").get(f"/reviews/candidates/{world['candidate']}")
    words = text_of(page)
    assert "Withdrawn (the record's consent was withdrawn)" in words
    assert "This photo is not available" in words and "<img" not in page.text
    assert "Record my decision" not in words and "consent was withdrawn, so this candidate was withdrawn" in words
    assert "KEEP-7" not in words
