"""Candidates proposed by a search, the reviews people record, and notifications (ORM only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow
from vetting.review import Status


class Candidate(Base):
    __tablename__ = "candidates"
    # One candidate per probe face and record: a repeated search never duplicates it.
    __table_args__ = (UniqueConstraint("probe_embedding_id", "record_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    record_id: Mapped[int | None] = mapped_column(ForeignKey("records.id"), index=True)  # None once redacted
    probe_embedding_id: Mapped[int | None] = mapped_column(BigInteger)
    gallery_embedding_id: Mapped[int | None] = mapped_column(BigInteger)
    distance: Mapped[float | None] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    # The mode it was found in (alerting | investigative), so queues and pages can call an
    # investigative candidate a lead without joining its case.
    search_mode: Mapped[str] = mapped_column(String(20), default="alerting", server_default="alerting")
    # pending_review | awaiting_second_review | confirmed | rejected | redacted
    status: Mapped[str] = mapped_column(String(30), default=Status.PENDING_REVIEW, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("candidate_id", "reviewer_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # None for a platform reviewer, who belongs to no organisation.
    reviewer_organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    decision: Mapped[str] = mapped_column(String(20))  # confirm | reject | inconclusive
    rationale: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notification(Base):
    """A confirmed match, shown to the organisation that owns the record."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    kind: Mapped[str] = mapped_column(String(30))  # match_confirmed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # pending | sent | failed | None (no webhook); see service.reviews.webhooks for the retry schedule.
    webhook_status: Mapped[str | None] = mapped_column(String(20))
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the delivery may next be claimed: a failure's backoff, or the lease of an attempt in flight.
    webhook_next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    webhook_last_error: Mapped[str | None] = mapped_column(String(30))  # a short code: timeout, http_503, ...
