"""Alerting and investigative searches, and thresholds per age gap, by the worker on real faces.

The pipeline runs in this process on both databases (as in test_worker.py, whose
remembered dlib analyses these tests share, so each photo is analysed once per run).
What a caseworker and a reviewer then read comes through the API.

The last test uses synthetic vectors, because it is about how far the index is asked.

The gallery: obama.jpg (distance about 0.35 to the probe obama2.jpg), and three other
people beyond the provisional threshold of 0.6 (Lin-Manuel Miranda about 0.71, Biden
0.82, Kit Harington 0.83). The gap tests enrol the same obama.jpg under three records,
so every distance is equal and only the years between the photos differ.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest
from sqlalchemy import select, update

from matching.calibration import DEFAULT_REVIEW_THRESHOLD, DISTANCE_BANDS
from service.auth import service as auth_service
from service.calibration.service import ReviewPolicy
from service.cases.models import Case
from service.db import utcnow
from service.embedding.service import active_model
from service.photos.index_log import append_index_change
from service.photos.models import Embedding, Photo
from service.records.models import Consent
from service.reviews.models import Candidate
from service.worker import pipeline as pipeline_module
from tests.integration.test_records import API, Person, bearer
from tests.integration.test_worker import remembered_analysis
from tests.support.gallery import World, make_case, make_record
from tests.support.service import make_user

LEAD = "an investigative lead, not a match"


@pytest.fixture
def world(app, db, tmp_path, monkeypatch) -> World:
    monkeypatch.setattr(auth_service, "hash_password", lambda password: "not-a-usable-hash")
    monkeypatch.setattr(pipeline_module, "analyse_image", remembered_analysis)
    return World(app, db, tmp_path)


def headers_of(world: World, user=None) -> dict[str, str]:
    user = user or world.user
    person = Person(user.id, user.organisation_id, user.token_version)
    world.db.rollback()  # end the read: reading a case over the API writes an audit event meanwhile
    return bearer(world.settings, person)


def searched(
    world: World,
    data: bytes,
    *,
    mode: str = "alerting",
    limit: int | None = None,
    age: float | None = None,
    taken_at: date | None = None,
) -> int:
    """A case of `data` in the given mode, with the case photo's age and date, searched now; its id."""
    case = world.case(data)
    world.db.execute(update(Case).where(Case.id == case.id).values(search_mode=mode, candidate_limit=limit))
    world.db.execute(update(Photo).where(Photo.case_id == case.id).values(age_at_photo=age, taken_at=taken_at))
    world.db.commit()
    assert world.pipeline.process_case(case.id) == "searched"
    return case.id


def ranked(world: World, case_id: int) -> list[tuple[int, int, str]]:
    """(rank, record id, mode) of the case's candidates, best first."""
    world.db.expire_all()
    rows = world.db.scalars(
        select(Candidate).where(Candidate.case_id == case_id).order_by(Candidate.rank, Candidate.id)
    ).all()
    found = [(c.rank, c.record_id, c.search_mode) for c in rows]
    world.db.rollback()  # end the read: reading a case over the API writes an audit event meanwhile
    return found


@pytest.mark.faces
def test_an_investigative_case_proposes_the_n_closest_records_as_ranked_leads(
    world, client, sdist_images, shared_images
):
    people = shared_images / "identities"
    gallery = {
        name: world.enrol(path.read_bytes()).record_id
        for name, path in (
            ("obama", sdist_images / "obama.jpg"),
            ("lin", people / "lin_manuel_miranda" / "lin-manuel-miranda.png"),
            ("biden", sdist_images / "biden.jpg"),
            ("kit", people / "kit_harington" / "john1.jpeg"),
        )
    }
    probe = (sdist_images / "obama2.jpg").read_bytes()

    # Alerting, as before: the one record within the threshold, a possible match.
    alerting = searched(world, probe)
    assert ranked(world, alerting) == [(1, gallery["obama"], "alerting")]

    leads = searched(world, probe, mode="investigative", limit=3)
    assert ranked(world, leads) == [
        (1, gallery["obama"], "investigative"),
        (2, gallery["lin"], "investigative"),
        (3, gallery["biden"], "investigative"),
    ]
    body = client.get(f"{API}/cases/{leads}", headers=headers_of(world)).json()
    assert (body["search_mode"], body["candidate_limit"]) == ("investigative", 3)
    assert body["status_message"] == (
        "Searched the gallery: 3 investigative leads are waiting for human review; "
        "none of them is a match until two reviewers confirm it."
    )
    shown = body["candidates"]
    assert [c["lead_label"] for c in shown] == [f"Lead {rank} of 3: {LEAD}" for rank in (1, 2, 3)]
    # Beyond the review threshold is said as such, never as a weak match.
    assert [c["distance_band"] for c in shown] == ["strong", "beyond_threshold", "beyond_threshold"]
    assert shown[0]["distance"] < DEFAULT_REVIEW_THRESHOLD < shown[1]["distance"] < shown[2]["distance"]
    alerting_body = client.get(f"{API}/cases/{alerting}", headers=headers_of(world)).json()
    assert alerting_body["candidates"][0]["lead_label"] is None
    assert "1 possible match is waiting" in alerting_body["status_message"]

    # min(N, records that may be proposed): one consent has expired, so 3 of 4, not 50.
    world.db.execute(
        update(Consent).where(Consent.record_id == gallery["kit"]).values(expires_at=utcnow() - timedelta(minutes=1))
    )
    world.db.commit()
    everyone = searched(world, probe, mode="investigative", limit=50)
    assert [rank for rank, _, _ in ranked(world, everyone)] == [1, 2, 3]
    assert gallery["kit"] not in [record for _, record, _ in ranked(world, everyone)]

    # Two-way matching: a new record photo of the same face, exactly as close as the first
    # record, is proposed to the open cases by the alerting rule (as a possible match, not a
    # lead), and each face's ranks are numbered again without a tie (equal distances go by record).
    second = world.enrol((sdist_images / "obama.jpg").read_bytes()).record_id
    world.enrol((sdist_images / "biden.jpg").read_bytes())  # beyond the threshold: two-way never adds leads
    assert ranked(world, leads) == [
        (1, gallery["obama"], "investigative"),
        (2, second, "alerting"),
        (3, gallery["lin"], "investigative"),
        (4, gallery["biden"], "investigative"),
    ]
    assert ranked(world, alerting) == [(1, gallery["obama"], "alerting"), (2, second, "alerting")]
    shown = client.get(f"{API}/cases/{leads}", headers=headers_of(world)).json()["candidates"]
    assert [c["lead_label"] for c in shown] == [
        f"Lead 1 of 4: {LEAD}",
        None,
        f"Lead 3 of 4: {LEAD}",
        f"Lead 4 of 4: {LEAD}",
    ]


@pytest.mark.faces
def test_thresholds_per_age_gap_decide_which_records_are_proposed(world, client, sdist_images):
    """One photo under three records; the case photo shows a 40-year-old, taken on 1 January 2023."""
    obama, probe = (sdist_images / "obama.jpg").read_bytes(), (sdist_images / "obama2.jpg").read_bytes()
    probe_facts = {"age": 40.0, "taken_at": date(2023, 1, 1)}
    # A strict threshold in general, a wider one calibrated for gaps of 5 to 9 years.
    gap_policy = ReviewPolicy(
        threshold=0.30,
        bands=DISTANCE_BANDS,
        top_k=None,
        calibration_id=None,
        calibration_version=None,
        gap_thresholds=(("5-9", 0.40),),
    )
    world.pipeline.policy = gap_policy
    waiting = searched(world, probe, **probe_facts)  # searched before the gallery has anyone
    assert ranked(world, waiting) == []

    def enrol(date_of_birth: date | None, taken_at: date | None) -> int:
        record = make_record(world.db, organisation_id=world.organisation.id, user_id=world.user.id)
        record.date_of_birth = date_of_birth
        photo = world.record_photo(obama, record=record)
        world.db.execute(update(Photo).where(Photo.id == photo.id).values(taken_at=taken_at))
        world.db.commit()
        assert world.pipeline.process_record_photo(photo.id) == "embedded"
        return photo.record_id

    by_ages = enrol(date(1983, 1, 1), date(2016, 1, 1))  # 33 then, 40 now: 7 years, from the ages
    by_dates = enrol(None, date(2022, 7, 1))  # no age: half a year, from the two dates
    unknown = enrol(None, None)

    # Two-way matching applies the gap thresholds too: only the 7-year gap reaches 0.40.
    assert ranked(world, waiting) == [(1, by_ages, "alerting")]
    assert ranked(world, searched(world, probe, **probe_facts)) == [(1, by_ages, "alerting")]
    # The same policy without its gap threshold proposes nobody at this distance.
    world.pipeline.policy = ReviewPolicy(
        threshold=0.30, bands=DISTANCE_BANDS, top_k=None, calibration_id=None, calibration_version=None
    )
    assert ranked(world, searched(world, probe, **probe_facts)) == []

    # The provisional threshold (0.6) proposes all three; each shows its years between photos.
    world.pipeline.policy = None
    everyone = searched(world, probe, **probe_facts)
    assert [record for _, record, _ in ranked(world, everyone)] == [by_ages, by_dates, unknown]
    shown = client.get(f"{API}/cases/{everyone}", headers=headers_of(world)).json()["candidates"]
    assert [c["years_between"] for c in shown] == [7.0, 0.5, None]
    reviewer = make_user(world.db, "reviewer", organisation=world.organisation).user
    world.db.commit()
    as_reviewer = headers_of(world, reviewer)
    queue = client.get(f"{API}/reviews/queue", headers=as_reviewer).json()["items"]
    assert {item["candidate_id"]: item["years_between"] for item in queue if item["case_id"] == everyone} == {
        c["id"]: c["years_between"] for c in shown
    }
    for candidate, years in zip(shown, (7.0, 0.5, None)):
        assert client.get(f"{API}/candidates/{candidate['id']}", headers=as_reviewer).json()["years_between"] == years


def test_an_investigative_search_asks_the_index_for_more_until_it_has_n_records(world):
    """Ten photos of one record sit closer than anyone else: 4 neighbours per lead would find one record."""
    model_id, version = active_model(world.db)
    rng = np.random.default_rng(5)
    probe = rng.normal(size=128).astype(np.float32)
    direction = rng.normal(size=128).astype(np.float32)
    direction /= np.linalg.norm(direction)

    def face(photo: Photo, distance: float, *, indexed: bool = True) -> None:
        embedding = Embedding(
            photo_id=photo.id,
            face_index=0,
            box_top=0,
            box_right=9,
            box_bottom=9,
            box_left=0,
            quality=json.dumps({}),
            vector=(probe + distance * direction).astype(np.float32).tobytes(),
            model_id=model_id,
            model_version=version,
        )
        world.db.add(embedding)
        world.db.flush()
        if indexed:
            append_index_change(world.db, op="add", embedding_id=embedding.id, model_id=model_id)

    def record(*distances: float) -> int:
        row = make_record(world.db, organisation_id=world.organisation.id, user_id=world.user.id)
        for distance in distances:
            photo = Photo(
                organisation_id=world.organisation.id,
                uploaded_by=world.user.id,
                record_id=row.id,
                status="embedded",
                attempts=1,
            )
            world.db.add(photo)
            world.db.flush()
            face(photo, distance)
        return row.id

    crowded = record(*(0.10 + i / 100 for i in range(10)))
    expired = record(0.30)
    world.db.execute(update(Consent).where(Consent.record_id == expired).values(expires_at=utcnow()))
    far = record(0.90)
    case = make_case(world.db, organisation_id=world.organisation.id, user_id=world.user.id)
    case.status, case.search_mode, case.candidate_limit = "processing", "investigative", 2
    photo = Photo(
        organisation_id=world.organisation.id, uploaded_by=world.user.id, case_id=case.id, status="embedded", attempts=1
    )
    world.db.add(photo)
    world.db.flush()
    face(photo, 0.0, indexed=False)  # the probe face, as process_case stores it
    world.db.commit()

    assert world.pipeline.search_case(case.id) == "searched"
    assert [(rank, record) for rank, record, _ in ranked(world, case.id)] == [(1, crowded), (2, far)]
