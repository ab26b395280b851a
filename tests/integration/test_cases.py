"""Cases through the API: submission, reading, isolation, daily quotas, and the retention purge."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from service.cases.models import Case
from service.db import utcnow
from service.photos.models import Embedding, IndexChange, Photo
from service.retention import purge_cases
from service.reviews.models import Candidate
from service.worker.dispatch import PROCESS_CASE
from tests.integration.test_records import (  # noqa: F401  (people is a fixture)
    API,
    add_candidate,
    add_faces,
    audit_head,
    audit_trail,
    bearer,
    create_record,
    file_stored,
    jpeg_bytes,
    people,
    stored_files,
)

FORM = {"case_reference": "PROBE-7", "purpose": "A child seen at a shelter may be a missing child"}


def submit(client, headers, seed: int = 0, **form):
    return client.post(
        f"{API}/cases", headers=headers, data=FORM | form, files={"file": ("probe.jpg", jpeg_bytes(seed), "image/jpeg")}
    )


def test_a_submitted_case_is_stored_queued_audited_and_dispatched(app, client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    before = utcnow()
    response = submit(client, headers)
    assert response.status_code == 202, response.text
    case_id = response.json()["id"]
    assert response.json()["status"] == "queued"

    case = db.get(Case, case_id)
    assert (case.status, case.organisation_id, case.submitted_by, case.case_reference) == (
        "queued",
        people.caseworker.organisation_id,
        people.caseworker.user_id,
        FORM["case_reference"],
    )
    retention = timedelta(days=settings.case_retention_days)
    assert before + retention <= case.retention_until <= utcnow() + retention
    photo = db.scalars(select(Photo).where(Photo.case_id == case_id)).one()
    assert (photo.record_id, photo.status, photo.wrapped_key is not None) == (None, "queued", True)
    photo_id = photo.id
    db.rollback()
    assert app.state.dispatcher.sent == [(PROCESS_CASE, case_id)]
    assert audit_trail(db) == [
        (
            "case_submitted",
            people.caseworker.user_id,
            people.caseworker.organisation_id,
            "case",
            str(case_id),
            {"case_id": case_id, "photo_id": photo_id, "search_mode": "alerting"},
        )
    ]

    shown = client.get(f"{API}/cases/{case_id}", headers=headers)
    assert shown.status_code == 200
    body = shown.json()
    assert (body["status"], body["status_message"], body["faces"], body["candidates"]) == (
        "queued",
        "Waiting to be searched.",
        None,
        [],
    )

    # What a worker would write, as the submitting organisation sees it.
    record_id = create_record(client, bearer(settings, people.other))
    case = db.get(Case, case_id)
    case.status, case.faces, case.searched_at = "searched", 1, utcnow()
    db.commit()
    candidate_id = add_candidate(db, case_id=case_id, record_id=record_id, gallery_embedding_id=None)
    body = client.get(f"{API}/cases/{case_id}", headers=headers).json()
    # A searched case's words follow the candidates it shows (service.cases.service.case_words).
    assert body["faces"] == 1 and body["status_message"] == (
        "Searched the gallery: 1 possible match is waiting for human review."
    )
    # An open candidate reads under_review to anyone who has not decided it, so the
    # case page cannot tell a second reviewer what the first one decided.
    assert body["candidates"] == [
        {
            "id": candidate_id,
            "record_id": record_id,
            "rank": 1,
            "distance": 0.41,
            "distance_band": "possible",
            "years_between": None,
            "search_mode": "alerting",
            "lead_label": None,
            "status": "under_review",
        }
    ]
    # Reviewers of the submitting organisation may follow it too.
    assert client.get(f"{API}/cases/{case_id}", headers=bearer(settings, people.reviewer)).status_code == 200


def test_cases_are_listed_newest_first_for_the_own_organisation_only(client, settings, people):
    headers = bearer(settings, people.caseworker)
    first, second = (submit(client, headers, seed).json()["id"] for seed in (1, 2))
    other = submit(client, bearer(settings, people.other), 3).json()["id"]

    page = client.get(f"{API}/cases", headers=headers).json()
    assert (page["total"], [item["id"] for item in page["items"]]) == (2, [second, first])
    assert client.get(f"{API}/cases?limit=1&offset=1", headers=headers).json()["items"][0]["id"] == first
    assert client.get(f"{API}/cases?case_reference=nothing", headers=headers).json()["total"] == 0
    theirs = client.get(f"{API}/cases", headers=bearer(settings, people.other)).json()
    assert [item["id"] for item in theirs["items"]] == [other]


def test_another_organisations_case_is_not_found_even_to_reviewers_owning_a_candidate(client, db, settings, people):
    case_id = submit(client, bearer(settings, people.caseworker)).json()["id"]
    record_id = create_record(client, bearer(settings, people.other))
    add_candidate(db, case_id=case_id, record_id=record_id, gallery_embedding_id=None)
    for person in (people.other, people.other_reviewer):
        response = client.get(f"{API}/cases/{case_id}", headers=bearer(settings, person))
        assert response.status_code == 404
        assert response.json() == {"detail": "There is no such case in your organisation."}
    # Reviewers never submit.
    assert submit(client, bearer(settings, people.reviewer)).status_code == 403


def test_the_daily_quota_of_a_person_answers_429_with_the_reset_time(app, client, db, settings, people):
    app.state.settings = settings.model_copy(update={"daily_cases_per_user": 2})
    headers = bearer(settings, people.caseworker)
    assert [submit(client, headers, seed).status_code for seed in (1, 2)] == [202, 202]
    head = audit_head(db)

    refused = submit(client, headers, 3)
    assert refused.status_code == 429
    wait = int(refused.headers["retry-after"])
    tomorrow = utcnow().date() + timedelta(days=1)
    assert 0 < wait <= 86_400
    detail = refused.json()["detail"]
    assert "00:00 UTC" in detail and tomorrow.strftime("%d %B %Y") in detail and "one person" in detail
    assert db.scalar(select(func.count(Case.id))) == 2 and db.scalar(select(func.count(Photo.id))) == 2
    db.rollback()
    assert len(app.state.dispatcher.sent) == 2
    assert audit_trail(db, head) == [
        (
            "case_refused",
            people.caseworker.user_id,
            people.caseworker.organisation_id,
            None,
            None,
            {"rule": "user_daily_quota"},
        )
    ]
    # A colleague still has their own allowance.
    assert submit(client, bearer(settings, people.colleague), 4).status_code == 202


def test_the_daily_quota_of_an_organisation_covers_all_its_people(app, client, db, settings, people):
    app.state.settings = settings.model_copy(update={"daily_cases_per_organisation": 2})
    assert submit(client, bearer(settings, people.caseworker), 1).status_code == 202
    assert submit(client, bearer(settings, people.colleague), 2).status_code == 202
    refused = submit(client, bearer(settings, people.caseworker), 3)
    assert refused.status_code == 429 and "Your organisation" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) > 0
    assert db.scalar(select(func.count(Case.id))) == 2
    db.rollback()
    assert len(stored_files(settings)) == 2 * 2  # two photos, each with its thumbnail
    assert submit(client, bearer(settings, people.other), 4).status_code == 202  # B has its own quota


def test_case_photos_and_faces_are_purged_after_the_retention_period(app, client, db, settings, people):
    case_id = submit(client, bearer(settings, people.caseworker)).json()["id"]
    keep_id = submit(client, bearer(settings, people.caseworker), 1).json()["id"]
    photo = db.scalars(select(Photo).where(Photo.case_id == case_id)).one()
    photo_id, storage_key = photo.id, photo.storage_key
    db.get(Case, keep_id).retention_until = utcnow() + timedelta(days=60)
    db.commit()
    [probe] = add_faces(db, photo_id, 1)
    record_id = create_record(client, bearer(settings, people.other))
    candidate_id = add_candidate(
        db, case_id=case_id, record_id=record_id, gallery_embedding_id=None, probe_embedding_id=probe
    )
    case = db.get(Case, case_id)
    case.status = "searched"
    retention_until = case.retention_until
    db.commit()
    head = audit_head(db)

    with app.state.session_factory() as session:
        assert purge_cases(session, vault=app.state.vault, now=retention_until - timedelta(minutes=1)) == []
        assert purge_cases(session, vault=app.state.vault, now=retention_until + timedelta(seconds=1)) == [case_id]
        assert purge_cases(session, vault=app.state.vault, now=retention_until + timedelta(days=1)) == []

    case = db.get(Case, case_id)
    assert case.status == "searched" and case.purged_at is not None
    photo = db.get(Photo, photo_id)
    assert (photo.status, photo.wrapped_key, photo.sha256) == ("erased", None, None)
    assert not file_stored(settings, storage_key)
    assert db.get(Embedding, probe) is None
    assert db.scalars(select(IndexChange.embedding_id).where(IndexChange.op == "remove")).all() == [probe]
    candidate = db.get(Candidate, candidate_id)
    assert (candidate.probe_embedding_id, candidate.record_id, candidate.status) == (probe, record_id, "pending_review")
    kept = db.scalars(select(Photo).where(Photo.case_id == keep_id)).one()
    assert kept.status == "queued" and file_stored(settings, kept.storage_key)
    db.rollback()
    assert audit_trail(db, head) == [
        (
            "case_purged",
            None,
            people.caseworker.organisation_id,
            "case",
            str(case_id),
            {"photos_erased": 1, "embeddings_removed": 1},
        )
    ]
    shown = client.get(f"{API}/cases/{case_id}", headers=bearer(settings, people.caseworker)).json()
    assert shown["purged_at"] is not None and "erased when the retention period ended" in shown["status_message"]
