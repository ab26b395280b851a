"""Photos, their face embeddings, and the ordered log of index changes (ORM only).

A photo's bytes live encrypted on disk under `storage_key`, sealed with its own data
key, which is stored here only wrapped by the master key: erasing `wrapped_key`
erases the photo, even in backups of the files. `IndexChange` rows are the only way
the FAISS replicas learn about additions and removals.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Date, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow


class PhotoStatus(StrEnum):
    """Where a photo is in its processing; the values are what the database stores."""

    QUEUED = "queued"
    PROCESSING = "processing"
    EMBEDDED = "embedded"
    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    LOW_QUALITY = "low_quality"  # legacy: no photo is refused for its quality now
    REJECTED_INPUT = "rejected_input"
    FAILED = "failed"
    ERASED = "erased"


class Photo(Base):
    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    uploaded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # Exactly one of record_id and case_id is set.
    record_id: Mapped[int | None] = mapped_column(ForeignKey("records.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    storage_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    # A small JPEG for pages and review queues, sealed the same way under its own key.
    thumbnail_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    thumbnail_wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    sha256: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(50))
    byte_size: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    taken_at: Mapped[date | None] = mapped_column(Date)
    age_at_photo: Mapped[float | None] = mapped_column(Float)
    # queued | processing | embedded | no_face | several_faces | low_quality | rejected_input | failed | erased
    status: Mapped[str] = mapped_column(String(20), default=PhotoStatus.QUEUED, index=True)
    status_message: Mapped[str | None] = mapped_column(Text)
    faces_found: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Embedding(Base):
    """One face of one photo: its box, quality figures and vector, stamped with the model."""

    __tablename__ = "embeddings"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"), index=True)
    face_index: Mapped[int] = mapped_column(Integer)
    box_top: Mapped[int] = mapped_column(Integer)
    box_right: Mapped[int] = mapped_column(Integer)
    box_bottom: Mapped[int] = mapped_column(Integer)
    box_left: Mapped[int] = mapped_column(Integer)
    quality: Mapped[str] = mapped_column(Text)  # JSON of matching.faces.FaceQuality
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IndexChange(Base):
    """An addition to or removal from the gallery index, in commit order."""

    __tablename__ = "index_changes"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    op: Mapped[str] = mapped_column(String(6))  # add | remove
    embedding_id: Mapped[int] = mapped_column(BigInteger, index=True)
    model_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
