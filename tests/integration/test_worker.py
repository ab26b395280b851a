"""The worker pipeline called directly, on both databases, with real faces (dlib).

Photos are sealed with the app's vault exactly as uploads are; `process_record_photo`,
`process_case` and `search_case` then run in this process (the case's search runs
straight after its faces are stored). Every outcome is checked in the database.

dlib's analysis of a given photo is deterministic, so each distinct photo is analysed
for real once per test run and the result is reused by later tests (the suite would
otherwise spend most of its time re-analysing the same four photos).
"""

from __future__ import annotations

import hashlib
import os
import time as clock
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select, update

from matching.index import VectorIndex
from service.auth import service as auth_service
from service.calibration.service import ReviewPolicy
from service.cases.models import Case
from service.cases.service import case_words
from service.db import utcnow
from service.organisations.models import Organisation
from service.photos.index_log import append_index_change
from service.photos.models import Embedding, IndexChange, Photo
from service.records.models import Consent
from service.worker import pipeline as pipeline_module
from service.worker.celery_app import broker_folders
from service.worker.dispatch import PROCESS_CASE, PROCESS_RECORD_PHOTO, RecordingDispatcher
from service.worker.maintenance import run_maintenance
from service.worker.pipeline import DUPLICATE, NOT_PENDING, claim_row
from service.worker.reaper import GAVE_UP, MAX_ATTEMPTS, reap
from service.worker.replica import vector_to_bytes
from service.worker.runtime import WorkerRuntime
from tests.support.gallery import (
    World,
    add_unchecked_photo,
    faceless_photo,
    make_case,
    make_record,
    side_by_side,
)
from tests.support.service import make_organisation, make_user

pytestmark = pytest.mark.faces


_ANALYSES: dict[tuple, list] = {}


def remembered_analysis(image, purpose, settings, embedder=None):
    key = (hashlib.sha256(image.pixels.tobytes()).hexdigest(), purpose, settings, embedder and embedder.id)
    if key not in _ANALYSES:
        _ANALYSES[key] = real_analyse_image(image, purpose, settings, embedder)
    return _ANALYSES[key]


real_analyse_image = pipeline_module.analyse_image


@pytest.fixture
def world(app, db, tmp_path, monkeypatch) -> World:
    monkeypatch.setattr(auth_service, "hash_password", lambda password: "not-a-usable-hash")
    monkeypatch.setattr(pipeline_module, "analyse_image", remembered_analysis)
    return World(app, db, tmp_path)


def read(path) -> bytes:
    return path.read_bytes()


# --- record photos ----------------------------------------------------------------------------


def test_a_record_photo_with_one_face_is_embedded_and_indexed(world, sdist_images):
    photo = world.enrol(read(sdist_images / "obama.jpg"))

    assert photo.status == "embedded" and photo.faces_found == 1
    assert "gallery" in photo.status_message
    embedding = world.db.scalars(select(Embedding).where(Embedding.photo_id == photo.id)).one()
    assert len(embedding.vector) == 128 * 4 and embedding.model_id and embedding.model_version
    assert embedding.box_right > embedding.box_left
    change = world.db.scalars(select(IndexChange)).one()
    assert (change.op, change.embedding_id, change.model_id) == ("add", embedding.id, embedding.model_id)
    # A second delivery of the same message finds the photo already taken and does nothing.
    assert world.pipeline.process_record_photo(photo.id) == DUPLICATE
    assert len(world.db.scalars(select(Embedding)).all()) == 1


def test_a_photo_without_a_face_says_so(world):
    photo = world.record_photo(faceless_photo())
    assert world.pipeline.process_record_photo(photo.id) == "no_face"
    photo = world.reload(photo)
    assert photo.status == "no_face" and photo.status_message.startswith("No face was found")
    assert world.db.scalars(select(Embedding)).all() == []


def test_a_gallery_photo_with_two_faces_is_refused_with_the_count(world, sdist_images):
    photo = world.record_photo(side_by_side(sdist_images / "obama.jpg", sdist_images / "biden.jpg"))
    assert world.pipeline.process_record_photo(photo.id) == "several_faces"
    photo = world.reload(photo)
    assert photo.status == "several_faces" and photo.faces_found == 2
    assert photo.status_message == "This photo shows 2 faces; upload a photo of the child alone or crop it."
    assert world.db.scalars(select(IndexChange)).all() == []


def test_a_damaged_file_is_rejected_in_words(world):
    record = make_record(world.db, organisation_id=world.organisation.id, user_id=world.user.id)
    photo = add_unchecked_photo(
        world.db,
        vault=world.vault,
        data=b"\xff\xd8\xff not really a jpeg",
        organisation_id=world.organisation.id,
        user_id=world.user.id,
        record_id=record.id,
    )
    world.db.commit()
    assert world.pipeline.process_record_photo(photo.id) == "rejected_input"
    assert world.reload(photo).status_message


def test_a_photo_whose_consent_was_withdrawn_meanwhile_is_not_embedded(world, sdist_images):
    photo = world.record_photo(read(sdist_images / "obama.jpg"))
    assert claim_row(world.app.state.session_factory, Photo, photo.id) is not None  # a worker took it...
    world.withdraw(photo.record_id)
    world.db.execute(update(Photo).where(Photo.id == photo.id).values(status="queued"))  # ...and it is redelivered
    world.db.commit()
    world.pipeline.process_record_photo(photo.id)
    assert world.db.scalars(select(Embedding)).all() == []
    assert world.db.scalars(select(IndexChange).where(IndexChange.op == "add")).all() == []


# --- cases ----------------------------------------------------------------------------------------


def test_a_case_finds_the_right_record_first_and_another_person_finds_none(world, sdist_images):
    obama = world.enrol(read(sdist_images / "obama.jpg"))
    case = world.case(read(sdist_images / "obama2.jpg"))

    assert world.pipeline.process_case(case.id) == "searched"
    case = world.reload(case)
    assert case.status == "searched" and case.faces == 1 and case.searched_at is not None
    assert "1 possible match" in case.status_message
    [candidate] = world.candidates(case)
    assert (candidate.record_id, candidate.rank, candidate.status) == (obama.record_id, 1, "pending_review")
    assert 0 < candidate.distance < 0.6 and candidate.model_id and candidate.model_version
    probe = world.db.get(Embedding, candidate.probe_embedding_id)
    assert world.db.get(Photo, probe.photo_id).case_id == case.id  # the probe face is stored...
    indexed = select(IndexChange).where(IndexChange.embedding_id == probe.id)
    assert world.db.scalars(indexed).all() == []  # ...not indexed

    other = world.case(read(sdist_images / "biden.jpg"))
    assert world.pipeline.process_case(other.id) == "searched"
    assert world.candidates(other) == []
    assert "no record" in world.reload(other).status_message


def test_redelivery_and_a_reaped_rerun_create_no_duplicate_candidates(world, sdist_images):
    world.enrol(read(sdist_images / "obama.jpg"))
    case = world.case(read(sdist_images / "obama2.jpg"))
    assert world.pipeline.process_case(case.id) == "searched"
    first = [(c.id, c.record_id) for c in world.candidates(case)]

    assert world.pipeline.process_case(case.id) == DUPLICATE  # the same message again
    assert world.pipeline.search_case(case.id) == NOT_PENDING
    # As if the worker died after writing: the reaper puts the case back and it runs again.
    world.db.execute(
        update(Case).where(Case.id == case.id).values(status="processing", claimed_at=utcnow() - timedelta(hours=1))
    )
    world.db.commit()
    dispatcher = RecordingDispatcher()
    reap(world.app.state.session_factory, dispatcher=dispatcher, processing_timeout=timedelta(minutes=10))
    assert dispatcher.sent == [(PROCESS_CASE, case.id)]
    assert world.pipeline.process_case(case.id) == "searched"
    assert [(c.id, c.record_id) for c in world.candidates(case)] == first
    assert len(world.db.scalars(select(Embedding).join(Photo).where(Photo.case_id == case.id)).all()) == 1


def test_withdrawn_expired_and_unapproved_records_are_never_proposed(world, sdist_images):
    obama, obama3 = read(sdist_images / "obama.jpg"), read(sdist_images / "obama3.jpg")
    withdrawn = world.enrol(obama)
    expired = world.enrol(obama3)
    suspended_organisation = make_organisation(world.db, name="Suspended")
    unapproved = world.enrol(obama3, organisation=suspended_organisation)
    kept = world.enrol(obama)
    world.withdraw(withdrawn.record_id)
    # Expiry and suspension with no index change: only the database re-check can catch them.
    world.db.execute(
        update(Consent).where(Consent.record_id == expired.record_id).values(expires_at=utcnow() - timedelta(minutes=1))
    )
    world.db.execute(
        update(Organisation).where(Organisation.id == suspended_organisation.id).values(status="suspended")
    )
    world.db.commit()

    case = world.case(read(sdist_images / "obama2.jpg"))
    assert world.pipeline.process_case(case.id) == "searched"
    assert [c.record_id for c in world.candidates(case)] == [kept.record_id]
    assert unapproved.record_id not in [c.record_id for c in world.candidates(case)]


def test_a_new_record_photo_is_matched_against_open_cases(world, sdist_images):
    case = world.case(read(sdist_images / "obama2.jpg"))
    assert world.pipeline.process_case(case.id) == "searched"
    assert world.candidates(case) == []
    closed = world.case(read(sdist_images / "obama2.jpg"))
    assert world.pipeline.process_case(closed.id) == "searched"
    world.db.execute(update(Case).where(Case.id == closed.id).values(retention_until=utcnow() - timedelta(days=1)))
    world.db.commit()

    photo = world.enrol(read(sdist_images / "obama.jpg"))

    [candidate] = world.candidates(case)
    assert (candidate.record_id, candidate.gallery_embedding_id, candidate.rank) == (
        photo.record_id,
        world.db.scalars(select(Embedding.id).where(Embedding.photo_id == photo.id)).one(),
        1,
    )
    assert candidate.status == "pending_review"
    assert world.candidates(closed) == []  # past its retention date: not open any more


def test_two_way_matching_gives_a_face_no_more_than_its_top_k_and_breaks_ties_by_record(world, sdist_images):
    world.pipeline.policy = ReviewPolicy(
        threshold=0.6, bands=(), top_k=1, calibration_id=None, calibration_version=None
    )
    case = world.case(read(sdist_images / "obama2.jpg"))
    assert world.pipeline.process_case(case.id) == "searched"

    first = world.enrol(read(sdist_images / "obama.jpg"))
    second = world.enrol(read(sdist_images / "obama.jpg"))  # the same distance: a tie, lost by the later record

    assert [(c.record_id, c.rank) for c in world.candidates(case)] == [(first.record_id, 1)]
    assert second.status == "embedded"  # enrolled all the same: a later search of another face may find it


def test_a_case_message_follows_the_candidates_two_way_matching_added(world, sdist_images):
    case = world.case(read(sdist_images / "obama2.jpg"))
    assert world.pipeline.process_case(case.id) == "searched"
    assert "no record was close enough" in case_words(world.db, world.reload(case))
    partner = make_organisation(world.db, name="Partner")

    world.enrol(read(sdist_images / "obama.jpg"), organisation=partner)

    assert case_words(world.db, world.reload(case)) == (
        "Searched the gallery: 1 possible match is waiting for human review."
    )
    # Hidden while the record's organisation is suspended, and the words say what is shown.
    world.db.execute(update(Organisation).where(Organisation.id == partner.id).values(status="suspended"))
    world.db.commit()
    assert "no record was close enough" in case_words(world.db, world.reload(case))


@pytest.mark.parametrize("changes", [1, pipeline_module.MODEL_CHANGE_RETRIES + 2])
def test_embedding_again_after_a_model_switch_is_bounded(world, sdist_images, monkeypatch, changes):
    """The active model changes under the write `changes` times: embed again, a few times at most."""
    real = pipeline_module.active_model_for_write
    calls = []

    def switching(session):
        calls.append(1)
        return "a-model-switched-to-meanwhile" if len(calls) <= changes else real(session)

    monkeypatch.setattr(pipeline_module, "active_model_for_write", switching)
    photo = world.record_photo(read(sdist_images / "obama.jpg"))
    outcome = world.pipeline.process_record_photo(photo.id)
    if changes < pipeline_module.MODEL_CHANGE_RETRIES:
        assert (outcome, world.reload(photo).status, len(calls)) == ("embedded", "embedded", changes + 1)
        return
    assert (outcome, len(calls)) == (pipeline_module.REQUEUED, pipeline_module.MODEL_CHANGE_RETRIES)
    assert world.reload(photo).status == "queued"  # back in the queue: the reaper re-sends it, and gives up in time
    assert world.db.scalars(select(Embedding)).all() == []

    calls.clear()
    case = world.case(read(sdist_images / "obama2.jpg"))
    assert world.pipeline.process_case(case.id) == pipeline_module.REQUEUED
    assert (world.reload(case).status, len(calls)) == ("queued", pipeline_module.MODEL_CHANGE_RETRIES)


def test_case_photos_without_a_face_say_so(world):
    case = world.case(faceless_photo())
    assert world.pipeline.process_case(case.id) == "no_face"
    case = world.reload(case)
    assert case.status == "no_face" and case.status_message.startswith("No face was found")
    assert case.faces == 0


# --- the reaper -----------------------------------------------------------------------------------


def test_the_reaper_requeues_stuck_resends_lost_and_gives_up_after_max_attempts(world, sdist_images):
    now = utcnow()
    stuck = world.record_photo(faceless_photo())
    lost = world.record_photo(faceless_photo())
    hopeless = world.record_photo(faceless_photo())
    fresh = world.record_photo(faceless_photo())
    world.db.execute(
        update(Photo)
        .where(Photo.id == stuck.id)
        .values(status="processing", attempts=1, claimed_at=now - timedelta(minutes=11))
    )
    world.db.execute(update(Photo).where(Photo.id == lost.id).values(created_at=now - timedelta(minutes=2)))
    world.db.execute(
        update(Photo)
        .where(Photo.id == hopeless.id)
        .values(status="processing", attempts=MAX_ATTEMPTS, claimed_at=now - timedelta(minutes=11))
    )
    world.db.commit()
    dispatcher = RecordingDispatcher()

    report = reap(
        world.app.state.session_factory, dispatcher=dispatcher, processing_timeout=timedelta(minutes=10), now=now
    )

    assert sorted(dispatcher.sent) == sorted([(PROCESS_RECORD_PHOTO, stuck.id), (PROCESS_RECORD_PHOTO, lost.id)])
    assert report.photos_failed == [hopeless.id]
    assert world.reload(stuck).status == "queued"
    assert (world.reload(hopeless).status, world.reload(hopeless).status_message) == ("failed", GAVE_UP)
    assert world.reload(fresh).status == "queued"
    # Re-sent rows are not re-sent again on the next pass, a minute has not gone by.
    again = RecordingDispatcher()
    reap(
        world.app.state.session_factory,
        dispatcher=again,
        processing_timeout=timedelta(minutes=10),
        now=now + timedelta(seconds=30),
    )
    assert again.sent == []
    # The re-queued photo is then processed normally.
    assert world.pipeline.process_record_photo(stuck.id) == "no_face"


# --- maintenance ------------------------------------------------------------------------------------


def test_maintenance_expires_purges_snapshots_and_tidies_the_broker(app, db, settings, monkeypatch):
    monkeypatch.setattr(auth_service, "hash_password", lambda password: "not-a-usable-hash")
    now = utcnow()
    lapsed = make_organisation(db, name="Lapsed", vetting_expires_at=now - timedelta(days=1))
    user = make_user(db, "caseworker", organisation=lapsed).user
    record = make_record(db, organisation_id=lapsed.id, user_id=user.id)
    photo = Photo(organisation_id=lapsed.id, uploaded_by=user.id, record_id=record.id, status="embedded")
    db.add(photo)
    db.flush()
    face = Embedding(
        photo_id=photo.id,
        face_index=0,
        box_top=0,
        box_right=1,
        box_bottom=1,
        box_left=0,
        quality="{}",
        vector=vector_to_bytes(np.ones(128, dtype=np.float32)),
        model_id="m",
        model_version="1",
    )
    db.add(face)
    db.flush()
    append_index_change(db, op="add", embedding_id=face.id, model_id="m")
    old_case = make_case(db, organisation_id=lapsed.id, user_id=user.id, retention_days=-1)
    db.commit()
    processed = broker_folders(settings)["processed_folder"]
    processed.mkdir(parents=True)
    stale, fresh = processed / "1_old.embed.msg", processed / "2_new.embed.msg"
    for path in (stale, fresh):
        path.write_text("{}")
    two_days_ago = clock.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    runtime = WorkerRuntime.create(settings)

    try:
        done = run_maintenance(runtime)
    finally:
        runtime.close()

    assert done == {
        "organisations_expired": 1,
        "consents_expired": 0,
        "cases_purged": 1,
        "login_attempts_pruned": 0,
        "index_snapshots": 1,
        "broker_files_pruned": 1,
    }
    db.expire_all()
    assert db.get(Organisation, lapsed.id).status == "expired"
    assert db.get(Case, old_case.id).purged_at is not None
    assert VectorIndex.load(settings.data_dir / "index" / "m.faiss").ids().tolist() == [face.id]
    assert fresh.exists() and not stale.exists()
