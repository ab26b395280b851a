"""Photo uploads through the API: the accepted path, and every kind of bad file on both upload routes.

A refused file must answer the right 4xx with a sentence and leave nothing
behind: no photo or case row, no file under the photo root, no task dispatched.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
import numpy as np
from PIL import Image
from sqlalchemy import func, select

from matching.images import decode_image
from service.cases.models import Case
from service.db import utcnow
from service.photos.models import Photo
from service.photos.service import check_upload
from service.records import service as records_service
from service.records.models import Record
from service.worker.dispatch import PROCESS_RECORD_PHOTO
from tests.integration.test_records import (  # noqa: F401  (people is a fixture)
    API,
    audit_head,
    audit_trail,
    bearer,
    create_record,
    jpeg_bytes,
    people,
    stored_files,
)
from tests.unit.test_images import png_header_only


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def test_an_accepted_photo_is_encrypted_queued_and_dispatched_once(app, client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    record_id = create_record(client, headers)
    data = jpeg_bytes(7, size=160)
    taken_at = (utcnow().date() - timedelta(days=60)).isoformat()
    head = audit_head(db)

    response = client.post(
        f"{API}/records/{record_id}/photos",
        headers=headers,
        data={"taken_at": taken_at},
        files={"file": ("photo.jpg", data, "image/jpeg")},
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "queued"
    photo_id = accepted["photo_id"]

    photo = db.get(Photo, photo_id)
    assert (photo.record_id, photo.case_id, photo.status, photo.organisation_id) == (
        record_id,
        None,
        "queued",
        people.caseworker.organisation_id,
    )
    stored_form = check_upload(data, settings).data  # the upright pixels, re-encoded without metadata
    assert (photo.width, photo.height, photo.byte_size, photo.content_type) == (
        160,
        160,
        len(stored_form),
        "image/jpeg",
    )
    assert photo.taken_at.isoformat() == taken_at
    date_of_birth = db.get(Record, record_id).date_of_birth
    assert photo.age_at_photo == pytest.approx((photo.taken_at - date_of_birth).days / 365.2425, abs=0.01)
    storage_key, wrapped_key = photo.storage_key, photo.wrapped_key
    thumbnail_key, thumbnail_wrapped_key = photo.thumbnail_key, photo.thumbnail_wrapped_key
    db.rollback()

    stored = {path.name: path for path in stored_files(settings)}
    assert set(stored) == {storage_key, thumbnail_key}  # the photo and its thumbnail, nothing else
    blob = stored[storage_key].read_bytes()
    assert stored_form[:64] not in blob and stored_form[1000:1100] not in blob  # encrypted at rest
    assert app.state.vault.open(storage_key, wrapped_key) == stored_form
    thumbnail = app.state.vault.open(thumbnail_key, thumbnail_wrapped_key)
    assert thumbnail not in stored[thumbnail_key].read_bytes()  # encrypted at rest too
    with Image.open(io.BytesIO(thumbnail)) as small:
        assert small.format == "JPEG" and max(small.size) <= 320
    assert app.state.dispatcher.sent == [(PROCESS_RECORD_PHOTO, photo_id)]

    status = client.get(f"{API}/records/{record_id}/photos/{photo_id}", headers=headers)
    assert status.status_code == 200
    assert (status.json()["status"], status.json()["status_message"]) == ("queued", "Waiting to be processed.")

    image = client.get(f"{API}/records/{record_id}/photos/{photo_id}/image", headers=headers)
    assert image.status_code == 200 and image.content == stored_form
    assert image.headers["cache-control"] == "no-store" and image.headers["content-type"] == "image/jpeg"
    small = client.get(f"{API}/records/{record_id}/photos/{photo_id}/image?size=thumbnail", headers=headers)
    assert small.status_code == 200 and small.content == thumbnail
    assert small.headers["cache-control"] == "no-store"

    actor, org = people.caseworker.user_id, people.caseworker.organisation_id
    assert audit_trail(db, head) == [
        ("photo_uploaded", actor, org, "photo", str(photo_id), {"record_id": record_id}),
        ("photo_viewed", actor, org, "photo", str(photo_id), {"record_id": record_id, "size": "full"}),
        ("photo_viewed", actor, org, "photo", str(photo_id), {"record_id": record_id, "size": "thumbnail"}),
    ]


class BrokerDown:
    """A dispatcher whose broker cannot be reached."""

    def record_photo(self, photo_id: int) -> None:
        raise ConnectionError("broker unreachable")

    def case(self, case_id: int) -> None:
        raise ConnectionError("broker unreachable")


@pytest.mark.one_backend
def test_an_upload_whose_dispatch_fails_is_still_accepted_and_left_queued(
    app, client, db, settings, people, monkeypatch
):
    """The row is committed before the dispatch; the reaper re-queues what the broker missed."""
    monkeypatch.setattr(app.state, "dispatcher", BrokerDown())
    headers = bearer(settings, people.caseworker)
    record_id = create_record(client, headers)
    response = client.post(
        f"{API}/records/{record_id}/photos",
        headers=headers,
        files={"file": ("photo.jpg", jpeg_bytes(3, size=96), "image/jpeg")},
    )
    assert response.status_code == 202, response.text
    db.rollback()
    assert db.get(Photo, response.json()["photo_id"]).status == "queued"


# (name, bytes or a function of the test's settings, expected status, words of the sentence)
BAD_FILES = [
    ("empty", b"", 400, "empty"),
    ("too large", jpeg_bytes(1, size=200), 413, "MB"),
    ("not an image", b"%PDF-1.4 this is a document, not a photo\n" * 20, 415, "not a photo"),
    ("truncated", jpeg_bytes(2, size=200)[:3000], 422, "damaged or incomplete"),
    ("decompression bomb", png_header_only(60_000, 60_000), 413, "megapixels"),
    ("a line of pixels at the pixel cap", png_header_only(1, 40_000_000), 413, "longest side"),
    ("a strip", png_header_only(300, 9_000), 422, "times as long as wide"),
    ("animated", animated_gif(), 415, "still photo"),
]


@pytest.mark.parametrize("kind, data, status, words", BAD_FILES, ids=[bad[0] for bad in BAD_FILES])
def test_every_bad_file_is_refused_on_both_routes_and_leaves_nothing(
    app, client, db, settings, people, kind, data, status, words
):
    if kind == "too large":
        app.state.settings = settings.model_copy(update={"max_upload_bytes": 2048})
    assert_refused_on_both_routes(app, client, db, settings, people, data, status, words)


def saved(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def second_frame() -> Image.Image:
    return Image.new("RGB", (48, 48), "blue")


# The bad-image corpus, beyond the kinds above; every file is sent as "upload.jpg", image/jpeg.
BAD_IMAGE_CORPUS = [
    ("truncated PNG", saved(Image.new("RGB", (64, 64), "red"), "PNG")[:60], 422, "damaged or incomplete"),
    ("huge dimensions in the header", png_header_only(2**31 - 1, 1), 413, "megapixels"),
    (
        "animated PNG",
        saved(Image.new("RGB", (48, 48), "red"), "PNG", save_all=True, append_images=[second_frame()]),
        415,
        "still photo",
    ),
    (
        "animated WebP",
        saved(Image.new("RGB", (48, 48), "red"), "WEBP", save_all=True, append_images=[second_frame()]),
        415,
        "still photo",
    ),
    (
        "multi-page TIFF",
        saved(Image.new("RGB", (48, 48), "red"), "TIFF", save_all=True, append_images=[second_frame()]),
        415,
        "still photo",
    ),
    (
        "SVG disguised as .jpg",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" '
        b'height="64"><script>alert(1)</script></svg>',
        415,
        "not a photo",
    ),
    (
        "HTML disguised as .jpg",
        b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>",
        415,
        "not a photo",
    ),
    ("GIF/JavaScript polyglot", b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00;*/=alert(1);//", 415, "not a photo"),
]


@pytest.mark.one_backend
@pytest.mark.parametrize("kind, data, status, words", BAD_IMAGE_CORPUS, ids=[bad[0] for bad in BAD_IMAGE_CORPUS])
def test_the_bad_image_corpus_is_refused_on_both_routes_and_leaves_nothing(
    app, client, db, settings, people, kind, data, status, words
):
    assert_refused_on_both_routes(app, client, db, settings, people, data, status, words)


# Valid but unusual photos: each is accepted on both routes, stored, queued, and decodes for the worker.
# Every photo is stored as its pixels re-encoded as a JPEG without metadata, so every one is served as one.
ODD_BUT_VALID = [
    ("CMYK JPEG", saved(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG"), "image/jpeg"),
    ("16-bit greyscale PNG", saved(Image.new("I;16", (64, 64), 40000), "PNG"), "image/jpeg"),
    ("palette PNG with transparency", saved(Image.new("P", (64, 64), 1), "PNG", transparency=1), "image/jpeg"),
    # A JPEG with an HTML tail decodes as a photo; what is stored and served is its pixels only.
    ("JPEG with an HTML tail", jpeg_bytes(5, size=64) + b"<html><script>alert(1)</script></html>", "image/jpeg"),
]


@pytest.mark.one_backend
@pytest.mark.parametrize("kind, data, media_type", ODD_BUT_VALID, ids=[odd[0] for odd in ODD_BUT_VALID])
def test_odd_but_valid_photos_are_accepted_and_decode_for_the_worker(
    app, client, db, settings, people, kind, data, media_type
):
    headers = bearer(settings, people.caseworker)
    record_id = create_record(client, headers)
    answer = client.post(
        f"{API}/records/{record_id}/photos", headers=headers, files={"file": ("upload.jpg", data, "image/jpeg")}
    )
    assert answer.status_code == 202, answer.text
    case = client.post(
        f"{API}/cases",
        headers=headers,
        data={"case_reference": "PROBE-1", "purpose": "Looking"},
        files={"file": ("upload.jpg", data, "image/jpeg")},
    )
    assert case.status_code == 202, case.text
    photo_id = answer.json()["photo_id"]
    served = client.get(f"{API}/records/{record_id}/photos/{photo_id}/image", headers=headers)
    assert served.status_code == 200
    assert served.headers["content-type"] == media_type and served.headers["x-content-type-options"] == "nosniff"
    assert b"<html>" not in served.content and b"<script>" not in served.content
    decoded = decode_image(served.content)  # what the worker does with the stored photo
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape[2] == 3
    assert len(app.state.dispatcher.sent) == 2


def assert_refused_on_both_routes(app, client, db, settings, people, data, status, words) -> None:
    headers = bearer(settings, people.caseworker)
    record_id = create_record(client, headers)
    head = audit_head(db)
    routes = {
        "record photo": (f"{API}/records/{record_id}/photos", {}),
        "case": (f"{API}/cases", {"case_reference": "PROBE-1", "purpose": "Looking for a missing child"}),
    }
    for route, (url, form) in routes.items():
        response = client.post(url, headers=headers, data=form, files={"file": ("upload.jpg", data, "image/jpeg")})
        assert response.status_code == status, (route, response.text)
        detail = response.json()["detail"]
        assert words in detail and detail.endswith(".") and len(detail.split()) >= 5, (route, detail)

    assert db.scalar(select(func.count(Photo.id))) == 0 and db.scalar(select(func.count(Case.id))) == 0
    db.rollback()
    assert stored_files(settings) == []
    assert app.state.dispatcher.sent == []
    assert audit_trail(db, head) == []


def test_photo_dates_must_be_possible(client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    record_id = create_record(client, headers)
    for taken_at, words in [
        ((utcnow().date() + timedelta(days=3)).isoformat(), "cannot be in the future"),
        ("1900-01-01", "before the child's date of birth"),
    ]:
        response = client.post(
            f"{API}/records/{record_id}/photos",
            headers=headers,
            data={"taken_at": taken_at},
            files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")},
        )
        assert response.status_code == 422 and words in response.json()["detail"], response.text
    assert db.scalar(select(func.count(Photo.id))) == 0 and stored_files(settings) == []


def test_a_failure_after_the_file_was_sealed_erases_it(app, client, db, settings, people, monkeypatch):
    headers = bearer(settings, people.caseworker)
    record_id = create_record(client, headers)

    def failing_event(*args, **kwargs):
        raise RuntimeError("the audit trail is unavailable")

    monkeypatch.setattr(records_service, "record_event", failing_event)
    with pytest.raises(RuntimeError):
        client.post(
            f"{API}/records/{record_id}/photos", headers=headers, files={"file": ("p.jpg", jpeg_bytes(), "image/jpeg")}
        )
    assert db.scalar(select(func.count(Photo.id))) == 0
    db.rollback()
    assert stored_files(settings) == [] and app.state.dispatcher.sent == []
