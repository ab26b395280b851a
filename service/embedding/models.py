"""Which embedding model the service matches with, and the jobs that re-embed the gallery (ORM only).

`ActiveEmbeddingModel` has at most one row (id 1): the model every search and every
two-way match uses. No row means the default model (`matching.embedders`). A
`ReembedJob` embeds every searchable record photo and open case photo with a target
model, from the stored originals, and makes that model the active one only when every
photo is done. `ReembedFailure` lists the photos a job could not embed (ids and a
reason code only), so later batches skip them and the job can report them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow

ACTIVE_ROW_ID = 1


class ActiveEmbeddingModel(Base):
    __tablename__ = "active_embedding_model"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always ACTIVE_ROW_ID
    model_id: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    switched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The job that switched to this model.
    job_id: Mapped[int | None] = mapped_column(ForeignKey("reembed_jobs.id"))


class ReembedJob(Base):
    __tablename__ = "reembed_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_model_id: Mapped[str] = mapped_column(String(64), index=True)
    target_model_version: Mapped[str] = mapped_column(String(64))
    source_model_id: Mapped[str] = mapped_column(String(64))  # the active model when the job started
    # queued | running | complete | failed | cancelled
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    # Photos to embed (searchable record photos and open case photos), those embedded with
    # the target model, those that could not be; refreshed after every batch.
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    # Batch claims: `batches` is raised by each claim and is the claim's token;
    # `batch_claimed_at` is set while a batch is in hand (NULL between batches).
    batches: Mapped[int] = mapped_column(Integer, default=0)
    batch_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last claim or release
    message: Mapped[str | None] = mapped_column(Text)  # why it failed or was cancelled, in words
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # first batch claimed
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # who cancelled; NULL otherwise


class ReembedFailure(Base):
    __tablename__ = "reembed_failures"
    __table_args__ = (UniqueConstraint("job_id", "photo_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("reembed_jobs.id"), index=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"))
    reason: Mapped[str] = mapped_column(String(30))  # unreadable | no_face | faces_changed | error
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
