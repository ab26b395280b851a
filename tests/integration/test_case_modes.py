"""Choosing a case's search mode through the API and the case form, and the review load shown first.

No faces are analysed here (the searches themselves are in test_search_modes.py): cases
are submitted with small noise photos and the dispatcher only records them; candidates
that a worker would have written are inserted directly.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

from sqlalchemy import func, select, update

from service.audit.models import AuditEvent
from service.cases.models import Case
from service.db import utcnow
from service.photos.models import Photo
from service.reviews.models import Candidate
from tests.integration.test_cases import FORM, submit
from tests.integration.test_records import (  # noqa: F401  (people is a fixture)
    API,
    audit_trail,
    bearer,
    jpeg_bytes,
    people,
    stored_files,
)
from tests.integration.test_web_pages import person, world  # noqa: F401  (fixtures)
from tests.support.gallery import make_record
from tests.support.pages import Person, text_of
from tests.support.service import make_organisation, make_user

LEAD = "an investigative lead, not a match"


def counts(db) -> tuple[int, int, int]:
    found = (
        db.scalar(select(func.count(Case.id))),
        db.scalar(select(func.count(Photo.id))),
        db.scalar(select(func.count(AuditEvent.seq))),
    )
    db.rollback()
    return found


# --- the API ----------------------------------------------------------------------------------


def test_an_investigative_case_is_stored_with_its_limit_photo_facts_and_audit(app, client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    response = submit(
        client, headers, search_mode="investigative", candidate_limit="25", taken_at="2024-05-17", age_at_photo="11.5"
    )
    assert response.status_code == 202, response.text
    case_id = response.json()["id"]
    case = db.get(Case, case_id)
    photo = db.scalars(select(Photo).where(Photo.case_id == case_id)).one()
    assert (case.search_mode, case.candidate_limit) == ("investigative", 25)
    assert (photo.taken_at, photo.age_at_photo) == (date(2024, 5, 17), 11.5)
    [event] = audit_trail(db)
    assert event[0] == "case_submitted" and event[5] == {
        "case_id": case_id,
        "photo_id": photo.id,
        "search_mode": "investigative",
        "candidate_limit": 25,
    }
    body = client.get(f"{API}/cases/{case_id}", headers=headers).json()
    assert (body["search_mode"], body["candidate_limit"]) == ("investigative", 25)

    # The default stays alerting, with no limit.
    plain = submit(client, headers, 1).json()["id"]
    assert client.get(f"{API}/cases/{plain}", headers=headers).json()["search_mode"] == "alerting"
    db.rollback()
    assert db.get(Case, plain).candidate_limit is None


def test_bad_modes_limits_dates_and_ages_are_refused_in_words_and_store_nothing(client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    tomorrow = (utcnow() + timedelta(days=2)).date().isoformat()
    refusals = [
        ({"search_mode": "investigative", "candidate_limit": "0"}, "from 1 to 50; 0 is not"),
        ({"search_mode": "investigative", "candidate_limit": "51"}, "from 1 to 50; 51 is not"),
        ({"search_mode": "investigative", "candidate_limit": "twenty"}, "whole number from 1 to 50"),
        ({"search_mode": "investigative", "candidate_limit": "2.5"}, "whole number from 1 to 50"),
        ({"search_mode": "investigative"}, "how many leads"),
        ({"candidate_limit": "10"}, "only for an investigative search"),
        ({"search_mode": "everything"}, "“alerting” or “investigative”"),
        ({"age_at_photo": "nine"}, "number of years"),
        ({"age_at_photo": "-1"}, "from 0 to 120 years"),
        ({"age_at_photo": "nan"}, "from 0 to 120 years"),
        ({"taken_at": "2024-13-01"}, "a date such as"),
        ({"taken_at": tomorrow}, "cannot be in the future"),
    ]
    before = counts(db)
    for form, words in refusals:
        answer = submit(client, headers, **form)
        assert answer.status_code == 422, (form, answer.text)
        assert words in answer.json()["detail"], (form, answer.json())
    assert counts(db) == before == (0, 0, 0)  # no case, no photo, no event (and so no quota used)
    assert stored_files(settings) == []


def test_the_review_load_counts_recent_cases_per_mode_and_the_open_queue(client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    empty = client.get(f"{API}/cases/review-load", headers=headers)
    assert empty.status_code == 200, empty.text
    body = empty.json()
    assert body["alerting"] == {"recent_cases": 0, "average_candidates": None}
    assert body["investigative"] == {
        "recent_cases": 0,
        "average_candidates": None,
        "max_leads_per_face": 50,
        "reviews_per_candidate": 2,
    }
    assert body["open_queue"] == {"candidates": 0, "reviews_needed": 0}
    assert "No history yet" in body["summary"] and "0 open candidates" in body["summary"]

    now = utcnow()
    ours = make_record(db, organisation_id=people.caseworker.organisation_id, user_id=people.caseworker.user_id)
    theirs = make_record(db, organisation_id=people.other.organisation_id, user_id=people.other.user_id)
    probe = iter(range(1, 1000))

    def case(person, mode: str, statuses: list[str], *, days_ago: int = 1, record=theirs, purged=False) -> None:
        row = Case(
            organisation_id=person.organisation_id,
            submitted_by=person.user_id,
            case_reference="LOAD",
            purpose="test",
            status="searched",
            attempts=1,
            search_mode=mode,
            candidate_limit=10 if mode == "investigative" else None,
            created_at=now - timedelta(days=days_ago),
            retention_until=now + timedelta(days=30),
            purged_at=now if purged else None,
        )
        db.add(row)
        db.flush()
        for rank, status in enumerate(statuses, start=1):
            db.add(
                Candidate(
                    case_id=row.id,
                    record_id=record.id,
                    probe_embedding_id=next(probe),
                    gallery_embedding_id=None,
                    distance=0.5,
                    rank=rank,
                    model_id="m",
                    model_version="1",
                    search_mode=mode,
                    status=status,
                )
            )

    case(people.caseworker, "alerting", ["pending_review", "awaiting_second_review", "confirmed"])
    case(people.caseworker, "alerting", ["rejected"])
    case(people.caseworker, "alerting", ["pending_review"] * 5, days_ago=100)  # not recent, but open
    case(people.caseworker, "investigative", ["pending_review"] * 6)
    case(people.caseworker, "investigative", ["pending_review"] * 2, purged=True)  # nothing left to compare
    case(people.other, "alerting", ["pending_review"], record=ours)  # B's case on A's record: A reviews it
    case(people.other, "alerting", ["pending_review"] * 3)  # neither A's case nor A's record
    db.commit()

    body = client.get(f"{API}/cases/review-load", headers=headers).json()
    assert body["window_days"] == 90
    assert body["alerting"] == {"recent_cases": 2, "average_candidates": 2.0}  # (3 + 1) / 2
    assert body["investigative"]["recent_cases"] == 2 and body["investigative"]["average_candidates"] == 4.0
    # Open: 1 + 1 (first case) + 5 (old) + 6 (investigative) + 1 (on A's record) = 14, one awaiting a second.
    assert body["open_queue"] == {"candidates": 14, "reviews_needed": 13 * 2 + 1}
    assert "2 candidates per case on average (2 cases)" in body["summary"]
    assert "14 open candidates, needing at least 27 more reviews" in body["summary"]
    # Only people who may submit cases ask; the figures are about their own organisation.
    assert client.get(f"{API}/cases/review-load", headers=bearer(settings, people.reviewer)).status_code == 403
    other = client.get(f"{API}/cases/review-load", headers=bearer(settings, people.other)).json()
    assert other["alerting"] == {"recent_cases": 2, "average_candidates": 2.0}  # (1 + 3) / 2


# --- the pages --------------------------------------------------------------------------------


def test_the_case_form_shows_the_review_load_and_takes_an_investigative_case(app, db, settings):
    organisation = make_organisation(db, name="Riverside Shelter")
    account = make_user(db, "caseworker", organisation=organisation)
    db.commit()
    caseworker = Person(app, account)
    form = caseworker.get("/cases/new")
    words = text_of(form)
    assert "How to search" in words and "No history yet" in words
    assert "each lead needs 2 reviews, so 25 leads for one face need 50 reviews" in words
    assert "Your organisation's review queue now: 0 open candidates" in words
    assert 'value="alerting" aria-describedby="f-alerting-cost" checked' in form.text  # alerting by default

    def send(**fields):
        token = caseworker.token("/cases/new")
        return caseworker.http.post(
            "/cases/new",
            data={"csrf_token": token, **FORM, **fields},
            files={"file": ("probe.jpg", jpeg_bytes(7), "image/jpeg")},
        )

    refused = send(search_mode="investigative", candidate_limit="")
    assert refused.status_code == 422 and "how many leads" in text_of(refused)
    assert 'value="investigative" aria-describedby="f-investigative-cost" checked' in refused.text  # kept
    assert send(search_mode="investigative", candidate_limit="80").status_code == 422
    assert send(age_at_photo="about nine").status_code == 422
    assert counts(db)[:2] == (0, 0)

    # A number typed before choosing alerting again is not used.
    alerting = send(search_mode="alerting", candidate_limit="12", taken_at="2025-02-01")
    assert alerting.status_code == 303, alerting.text
    done = send(search_mode="investigative", candidate_limit="12", age_at_photo="9")
    assert done.status_code == 303
    db.rollback()
    cases = db.scalars(select(Case).order_by(Case.id)).all()
    assert [(c.search_mode, c.candidate_limit) for c in cases] == [("alerting", None), ("investigative", 12)]
    photos = db.scalars(select(Photo).order_by(Photo.id)).all()
    assert [(p.taken_at, p.age_at_photo) for p in photos] == [(date(2025, 2, 1), None), (None, 9.0)]
    db.rollback()
    page = text_of(caseworker.get(done.headers["location"]))
    assert "Investigative: up to 12 leads per face, leads not matches" in page


def test_an_investigative_lead_is_worded_as_a_lead_everywhere_and_still_needs_two_reviewers(person, world, db):
    candidate = world["candidate"]
    # Farther than the provisional review threshold (0.6): only an investigative search proposes it.
    db.execute(update(Candidate).where(Candidate.id == candidate).values(search_mode="investigative", distance=0.72))
    db.execute(update(Case).values(search_mode="investigative", candidate_limit=5))
    db.commit()
    page = f"/reviews/candidates/{candidate}"

    keeper = person("keeper_reviewer")
    queue = text_of(keeper.get("/reviews"))
    assert f"Lead 1 of 1: {LEAD}" in queue and "Beyond the review threshold" in queue
    shown = text_of(keeper.get(page))
    assert f"Investigative lead {candidate}" in shown and f"Lead 1 of 1: {LEAD}" in shown
    assert "Beyond the review threshold" in shown and "Somewhat similar" not in shown
    assert "Candidate match" not in shown
    case_id = db.get(Candidate, candidate).case_id
    db.rollback()
    finder = person("finder_reviewer")  # reviewers of the submitting organisation read its cases too
    case_page = text_of(finder.get(f"/cases/{case_id}"))
    assert "Investigative leads" in case_page and f"Lead 1 of 1: {LEAD}" in case_page
    assert "Possible matches" not in case_page

    # The same two-person rule: one confirmation is not enough.
    assert keeper.post(page, page, decision="confirm", rationale="Same ears and the same hairline.").status_code == 303
    assert "Waiting for a second reviewer" in text_of(keeper.get(page))
    assert finder.post(page, page, decision="confirm", rationale="The eyes and nose match too.").status_code == 303
    assert "Confirmed by two reviewers" in text_of(finder.get(page))
    db.rollback()
    events = db.scalars(select(AuditEvent.details).where(AuditEvent.action == "review_recorded")).all()
    assert [json.loads(details)["status"] for details in events] == ["awaiting_second_review", "confirmed"]
