"""Accepting an uploaded photo: check it, encrypt it, and queue it for the workers.

The cheap, certain checks run in the request so that a caseworker learns at once
that a file is empty, too large, not a photo, damaged, animated or a
decompression bomb, and nothing is stored for it. Face detection and embedding,
which take seconds, run in a worker afterwards.

What is stored (and later served as the "original") is never the uploaded file:
it is the decoded pixels, turned upright by their EXIF orientation, encoded again
as a JPEG that carries no metadata at all: no EXIF (GPS position, time, camera
serial number), XMP, IPTC, ICC profile or comment. A phone photo of a child
otherwise tells everyone who can see it where it was taken.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from typing import BinaryIO, Literal

from PIL import Image
from sqlalchemy.orm import Session

from matching.images import (
    AnimatedImage,
    EmptyFile,
    FileTooLarge,
    ImageLimits,
    InputRejected,
    NotAnImage,
    SideTooLong,
    TooManyPixels,
    decode_image,
)
from service.photos.models import Photo, PhotoStatus
from service.photos.storage import PhotoVault
from service.refusal import Refusal
from service.settings import Settings

THUMBNAIL_SIDE = 320
STORED_MEDIA_TYPE = "image/jpeg"
# The first of these qualities whose file fits the upload cap (so the workers' decode accepts it).
STORED_JPEG_QUALITIES = (95, 90, 85, 75)
Size = Literal["full", "thumbnail"]

# HTTP status for each kind of refused file.
# (UnusualShape, like a damaged file, is the default 422.)
_STATUS = {EmptyFile: 400, FileTooLarge: 413, TooManyPixels: 413, SideTooLong: 413, NotAnImage: 415, AnimatedImage: 415}


@dataclass(frozen=True)
class CheckedImage:
    data: bytes  # what is stored: the upright pixels as a metadata-free JPEG, never the uploaded bytes
    width: int
    height: int
    source_format: str  # the uploaded file's format
    thumbnail: bytes  # JPEG, upright, at most THUMBNAIL_SIDE on its long side


def read_upload(file: BinaryIO, *, max_bytes: int) -> bytes:
    """An uploaded file's bytes; a file over the cap is refused from its size, without reading it."""
    file.seek(0, 2)
    size = file.tell()
    file.seek(0)
    if size > max_bytes:
        raise Refusal(
            413,
            f"The file is {size / 1_048_576:.1f} MB; photos up to "
            f"{max_bytes / 1_048_576:.0f} MB are accepted. Please send a smaller copy.",
            rule="file_too_large",
        )
    return file.read()


def image_limits(settings: Settings) -> ImageLimits:
    return ImageLimits(
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_upload_pixels,
        max_side=settings.max_upload_side,
        max_aspect=settings.max_upload_aspect,
    )


def check_upload(data: bytes, settings: Settings) -> CheckedImage:
    """Decode once to prove the file is a usable photo (else refuse with a plain sentence), and
    re-encode its upright pixels without metadata: the bytes to store."""
    try:
        image = decode_image(data, image_limits(settings))
    except InputRejected as refusal:
        raise Refusal(_STATUS.get(type(refusal), 422), refusal.message, rule=refusal.code) from refusal
    return CheckedImage(
        data=metadata_free_jpeg(image.pixels, max_bytes=settings.max_upload_bytes),
        width=image.width,
        height=image.height,
        source_format=image.source_format,
        thumbnail=_thumbnail(image.working),
    )


def metadata_free_jpeg(pixels, *, max_bytes: int) -> bytes:
    """Upright RGB pixels as a JPEG with nothing but pixels (Pillow writes EXIF, ICC or a comment
    only when asked to, and an image made from an array has none to carry over)."""
    image = Image.fromarray(pixels)
    for quality in STORED_JPEG_QUALITIES:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= max_bytes:
            break
    return buffer.getvalue()


def _thumbnail(pixels) -> bytes:
    """A small upright JPEG from the decoded working copy (no EXIF or other metadata)."""
    image = Image.fromarray(pixels)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def open_photo(vault: PhotoVault, photo: Photo, size: Size = "full") -> tuple[bytes, str]:
    """Decrypt a photo or its thumbnail: (bytes, media type); PhotoUnavailable once erased."""
    if size == "thumbnail":
        return vault.open(photo.thumbnail_key, photo.thumbnail_wrapped_key), "image/jpeg"
    return vault.open(photo.storage_key, photo.wrapped_key), photo.content_type or "application/octet-stream"


def store_photo(
    session: Session,
    *,
    vault: PhotoVault,
    image: CheckedImage,
    organisation_id: int,
    uploaded_by: int,
    record_id: int | None = None,
    case_id: int | None = None,
    taken_at: date | None = None,
    age_at_photo: float | None = None,
) -> Photo:
    """Encrypt the checked photo and add its row, status queued (not committed).

    `sha256` is the hash of the stored bytes (the metadata-free JPEG that is encrypted
    and served), not of the uploaded file: it identifies what the service holds, and
    the upload's own hash, which could confirm that someone's copy of the file was
    sent here, is never kept.

    If the caller's transaction fails, the encrypted file is left without a key
    in the database and is unreadable; `vault.erase` can remove it.
    """
    sealed = vault.seal(image.data)
    thumbnail = vault.seal(image.thumbnail)
    photo = Photo(
        organisation_id=organisation_id,
        uploaded_by=uploaded_by,
        record_id=record_id,
        case_id=case_id,
        storage_key=sealed.storage_key,
        wrapped_key=sealed.wrapped_key,
        sha256=sealed.sha256,
        thumbnail_key=thumbnail.storage_key,
        thumbnail_wrapped_key=thumbnail.wrapped_key,
        content_type=STORED_MEDIA_TYPE,
        byte_size=len(image.data),
        width=image.width,
        height=image.height,
        taken_at=taken_at,
        age_at_photo=age_at_photo,
        status=PhotoStatus.QUEUED,
        attempts=0,
    )
    session.add(photo)
    session.flush()
    return photo
