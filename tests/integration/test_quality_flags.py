"""Quality flags, not refusals: real dlib on real photos, through the worker,
the API and the pages.

A blurred but detectable record photo is enrolled, indexed and found, and flagged; a blurred
case face is searched and flagged, and the reviewer sees the flag; the flags follow the
settings in force, from the stored figures; a photo with no face keeps its clear outcome; a
legacy `low_quality` row still reads sensibly, and one whose file was kept is processed again
after the upgrade (migration 0012).
"""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageFilter
from sqlalchemy import select

from service.db import utcnow
from service.photos.models import Embedding, IndexChange, Photo
from service.worker import pipeline as pipeline_module
from service.worker.dispatch import PROCESS_RECORD_PHOTO, RecordingDispatcher
from service.worker.reaper import reap
from tests.support.gallery import World, faceless_photo
from tests.support.pages import Person, text_of
from tests.support.service import make_user, migrate_down_and_up, sign_in

# Flags are worked out when shown, from the figures each embedding stores as JSON text, the same on either
# database; the worker's writes are tested on both in test_worker.py. So the faces here run once.
pytestmark = [pytest.mark.faces, pytest.mark.one_backend]

BLURRY = "the face is blurry"
_ANALYSES: dict[tuple, list] = {}
real_analyse_image = pipeline_module.analyse_image


def remembered_analysis(image, purpose, settings, embedder=None):
    """dlib is deterministic: each distinct photo is analysed once per run."""
    key = (hashlib.sha256(image.pixels.tobytes()).hexdigest(), purpose, settings, embedder and embedder.id)
    if key not in _ANALYSES:
        _ANALYSES[key] = real_analyse_image(image, purpose, settings, embedder)
    return _ANALYSES[key]


@pytest.fixture
def world(app, db, tmp_path, monkeypatch) -> World:
    monkeypatch.setattr(pipeline_module, "analyse_image", remembered_analysis)
    return World(app, db, tmp_path)


@pytest.fixture
def caseworker(world, db):
    account = make_user(db, "caseworker", "reviewer", organisation=world.organisation)
    db.commit()
    return account


def blurred(path: Path, radius: float = 6) -> bytes:
    """The photo under a Gaussian blur: its face is still found, with a sharpness below the gate."""
    with Image.open(path) as image:
        buffer = io.BytesIO()
        image.convert("RGB").filter(ImageFilter.GaussianBlur(radius)).save(buffer, format="JPEG", quality=92)
        return buffer.getvalue()


def with_settings(app, **changes) -> None:
    """Change the settings in force, as a restart with other `REUNITE_QUALITY_*` values would."""
    app.state.settings = app.state.settings.model_copy(update=changes)


def test_a_blurry_record_photo_is_enrolled_indexed_found_and_flagged(world, app, client, caseworker, sdist_images):
    photo = world.enrol(blurred(sdist_images / "obama.jpg"))  # enrol() asserts "embedded"

    assert photo.faces_found == 1 and photo.status_message == pipeline_module.EMBEDDED
    embedding = world.db.scalars(select(Embedding).where(Embedding.photo_id == photo.id)).one()
    assert world.db.scalars(select(IndexChange.op).where(IndexChange.embedding_id == embedding.id)).all() == ["add"]
    case = world.case((sdist_images / "obama2.jpg").read_bytes())
    assert world.pipeline.process_case(case.id) == "searched"
    assert [(c.record_id, c.rank) for c in world.candidates(case)] == [(photo.record_id, 1)]

    headers = sign_in(client, caseworker)

    def shown() -> dict:
        answer = client.get(f"/api/v1/records/{photo.record_id}", headers=headers)
        assert answer.status_code == 200, answer.text
        (only,) = answer.json()["photos"]
        return only

    first = shown()
    assert (first["status"], first["low_quality"]) == ("embedded", True)
    assert first["face"]["quality_flags"] == [BLURRY] and first["face"]["low_quality"]
    assert 0 < first["face"]["quality"]["sharpness"] < app.state.settings.quality_min_sharpness
    single = client.get(f"/api/v1/records/{photo.record_id}/photos/{photo.id}", headers=headers).json()
    assert single["face"] == first["face"]
    person = Person(app, caseworker)
    page = text_of(person.get(f"/records/{photo.record_id}"))
    assert "Ready, low quality" in page and f"Low quality: {BLURRY}." in page
    assert "It is searched all the same" in page

    # The flags follow the settings in force, from the stored figures: nothing is re-analysed.
    with_settings(app, quality_min_sharpness=0.5)
    assert (shown()["low_quality"], shown()["face"]["quality_flags"]) == (False, [])
    assert "low quality" not in text_of(person.get(f"/records/{photo.record_id}")).lower()
    with_settings(app, quality_min_face_px=10_000)
    assert shown()["face"]["quality_flags"] == ["the face is small (297 px across; 10000 px or more matches better)"]


def test_a_blurry_case_face_is_searched_and_flagged_for_the_caseworker_and_the_reviewer(
    world, app, client, caseworker, sdist_images
):
    record_photo = world.enrol((sdist_images / "obama.jpg").read_bytes())
    case = world.case(blurred(sdist_images / "obama2.jpg"))

    assert world.pipeline.process_case(case.id) == "searched"
    assert world.reload(case).faces == 1
    [candidate] = world.candidates(case)
    assert (candidate.record_id, candidate.rank) == (record_photo.record_id, 1)

    headers = sign_in(client, caseworker)
    shown = client.get(f"/api/v1/cases/{case.id}", headers=headers).json()
    assert [(f["face_index"], f["low_quality"], f["quality_flags"]) for f in shown["face_quality"]] == [
        (0, True, [BLURRY])
    ]
    assert [c["id"] for c in shown["candidates"]] == [candidate.id]
    person = Person(app, caseworker)
    page = text_of(person.get(f"/cases/{case.id}"))
    assert "Low quality The face was searched all the same" in page and BLURRY in page

    details = client.get(f"/api/v1/candidates/{candidate.id}", headers=headers).json()
    probe_face, record_face = details["probe"]["photo"]["face"], details["record"]["photo"]["face"]
    assert (probe_face["low_quality"], probe_face["quality_flags"]) == (True, [BLURRY])
    assert (record_face["low_quality"], record_face["quality_flags"]) == (False, [])
    review = text_of(person.get(f"/reviews/candidates/{candidate.id}"))
    assert review.count("Low quality") == 1 and f"{BLURRY.capitalize()}. Compared all the same" in review


def test_no_face_keeps_its_clear_outcome_and_a_legacy_refusal_reads_sensibly(world, app, client, caseworker):
    photo = world.record_photo(faceless_photo())
    assert world.pipeline.process_record_photo(photo.id) == "no_face"
    case = world.case(faceless_photo())
    assert world.pipeline.process_case(case.id) == "no_face"
    # Before quality became a flag, the worker refused blurry photos as `low_quality`; such rows remain.
    legacy = Photo(
        organisation_id=world.organisation.id,
        uploaded_by=world.user.id,
        record_id=photo.record_id,
        status="low_quality",
        faces_found=1,
        status_message="This photo cannot be used: the face is too blurry. Please upload a clearer photo.",
    )
    world.db.add(legacy)
    world.db.commit()

    headers = sign_in(client, caseworker)
    no_face, old = client.get(f"/api/v1/records/{photo.record_id}", headers=headers).json()["photos"]
    assert (no_face["status"], no_face["low_quality"], no_face["face"]) == ("no_face", False, None)
    assert no_face["status_message"].startswith("No face was found in this photo.")
    answer = client.get(f"/api/v1/cases/{case.id}", headers=headers).json()
    assert (answer["status"], answer["faces"], answer["face_quality"]) == ("no_face", 0, [])
    assert answer["status_message"].startswith("No face was found in this photo, so nothing was searched.")

    assert (old["status"], old["low_quality"], old["face"]) == ("low_quality", False, None)
    assert "was not added to the gallery" in old["status_message"] and "Upload it again" in old["status_message"]
    page = text_of(Person(app, caseworker).get(f"/records/{photo.record_id}"))
    assert "No face found" in page and "Not added" in page
    assert "Upload it again: it will be added and flagged low quality" in page


def test_a_legacy_quality_refusal_whose_file_was_kept_is_enrolled_after_the_upgrade(world, database_url, sdist_images):
    photo = world.record_photo(blurred(sdist_images / "obama.jpg"))
    # As an earlier version left it: refused for its quality, its encrypted file and key kept.
    stored = world.db.get(Photo, photo.id)
    stored.status, stored.attempts, stored.processed_at = "low_quality", 1, utcnow()
    stored.status_message = "This photo cannot be used: the face is too blurry. Please upload a clearer photo."
    world.db.commit()
    world.db.close()

    migrate_down_and_up(database_url, revision="0011", table="photos")
    again = world.db.get(Photo, photo.id)
    assert (again.status, again.attempts, again.claimed_at, again.status_message) == ("queued", 0, None, None)
    world.db.rollback()
    dispatcher = RecordingDispatcher()  # the reaper sends a queued photo on (its clock a few minutes on)
    reap(
        world.app.state.session_factory,
        dispatcher=dispatcher,
        processing_timeout=timedelta(minutes=10),
        now=utcnow() + timedelta(minutes=2),
    )
    assert dispatcher.sent == [(PROCESS_RECORD_PHOTO, photo.id)]
    assert world.pipeline.process_record_photo(photo.id) == "embedded"
    assert world.db.scalars(select(Embedding.photo_id).where(Embedding.photo_id == photo.id)).all() == [photo.id]
