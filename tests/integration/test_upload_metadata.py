"""Uploaded photos are stored, and served, without their metadata and upright.

A phone's JPEG carries GPS coordinates, the time, the camera and often XMP, an ICC
profile and a comment. None of it may survive into what the service keeps and shows
reviewers of other organisations: the stored photo is the upright pixels only.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms
from sqlalchemy import select

from service.photos.models import Photo
from service.photos.service import check_upload
from tests.integration.test_records import (  # noqa: F401  (people is a fixture)
    API,
    bearer,
    create_record,
    people,
)

SECRET_PLACE = b"Hidden-Farm-Lane-7"  # in the comment and the XMP: must appear nowhere stored


def phone_photo() -> bytes:
    """60×40 as stored (red left half, blue right half), EXIF orientation 6 (shown turned 90° clockwise),
    with GPS, a camera, XMP, an ICC profile and a comment."""
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:, :30] = (220, 20, 20)
    pixels[:, 30:] = (20, 20, 220)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.BodySerialNumber] = "SN-123456"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef], gps[ExifTags.GPS.GPSLatitude] = "N", (51.0, 30.0, 12.5)
    gps[ExifTags.GPS.GPSLongitudeRef], gps[ExifTags.GPS.GPSLongitude] = "W", (0.0, 7.0, 39.0)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description>' + SECRET_PLACE + b"</rdf:Description></x:xmpmeta>"
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(
        buffer,
        "JPEG",
        quality=95,
        exif=exif.tobytes(),
        comment=SECRET_PLACE,
        xmp=xmp,
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
    )
    return buffer.getvalue()


def assert_metadata_free_and_upright(data: bytes) -> None:
    assert SECRET_PLACE not in data and b"PhoneMaker" not in data and b"SN-123456" not in data
    assert b"Exif\x00\x00" not in data and b"http://ns.adobe.com/xap/1.0/" not in data and b"ICC_PROFILE" not in data
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        assert len(image.getexif()) == 0 and image.getexif().get_ifd(ExifTags.IFD.GPSInfo) == {}
        assert not {"exif", "xmp", "icc_profile", "comment"} & set(image.info)
        assert image.size == (40, 60)  # turned upright: what was the left half is now the top
        upright = np.asarray(image.convert("RGB"), dtype=int)
    assert upright[5, 20, 0] > 150 and upright[5, 20, 2] < 80  # red at the top
    assert upright[55, 20, 2] > 150 and upright[55, 20, 0] < 80  # blue at the bottom


def test_the_phone_photo_carries_what_must_go():
    data = phone_photo()
    with Image.open(io.BytesIO(data)) as image:
        assert image.getexif().get_ifd(ExifTags.IFD.GPSInfo) and image.size == (60, 40)
    with pytest.raises(AssertionError):
        assert_metadata_free_and_upright(data)


def test_a_record_photo_is_served_without_metadata_and_upright(app, client, db, settings, people):
    headers = bearer(settings, people.caseworker)
    record_id = create_record(client, headers)
    answer = client.post(
        f"{API}/records/{record_id}/photos", headers=headers, files={"file": ("phone.jpg", phone_photo(), "image/jpeg")}
    )
    assert answer.status_code == 202, answer.text
    photo_id = answer.json()["photo_id"]
    served = client.get(f"{API}/records/{record_id}/photos/{photo_id}/image", headers=headers)
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert_metadata_free_and_upright(served.content)
    photo = db.get(Photo, photo_id)
    assert (photo.width, photo.height, photo.byte_size) == (40, 60, len(served.content))
    db.rollback()


def test_a_case_photo_is_stored_without_metadata_and_upright(app, client, db, settings, people):
    answer = client.post(
        f"{API}/cases",
        headers=bearer(settings, people.caseworker),
        data={"case_reference": "PROBE-GPS", "purpose": "Looking for a missing child"},
        files={"file": ("phone.jpg", phone_photo(), "image/jpeg")},
    )
    assert answer.status_code == 202, answer.text
    photo = db.scalars(select(Photo).where(Photo.case_id == answer.json()["id"])).one()
    stored = app.state.vault.open(photo.storage_key, photo.wrapped_key)  # what the probe-image routes serve
    assert_metadata_free_and_upright(stored)
    assert photo.content_type == "image/jpeg"
    db.rollback()


def test_the_stored_photo_fits_the_upload_cap_so_the_workers_accept_it(settings):
    noise = np.random.default_rng(3).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    upload, at_95 = io.BytesIO(), io.BytesIO()
    Image.fromarray(noise).save(upload, "JPEG", quality=70)
    Image.fromarray(noise).save(at_95, "JPEG", quality=95)
    cap = settings.model_copy(update={"max_upload_bytes": len(upload.getvalue())})
    assert at_95.tell() > cap.max_upload_bytes  # re-encoding at the first quality would not fit
    assert len(check_upload(upload.getvalue(), cap).data) <= cap.max_upload_bytes
