"""Cases: a submitted probe photo and the outcome of searching it (ORM only)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow


class CaseStatus(StrEnum):
    """Where a case is in its search; the values are what the database stores."""

    QUEUED = "queued"
    PROCESSING = "processing"
    SEARCHED = "searched"
    NO_FACE = "no_face"
    REJECTED_INPUT = "rejected_input"
    FAILED = "failed"


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    submitted_by: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    case_reference: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(Text)
    # queued | processing | searched | no_face | rejected_input | failed
    status: Mapped[str] = mapped_column(String(20), default=CaseStatus.QUEUED, index=True)
    status_message: Mapped[str | None] = mapped_column(Text)
    # alerting: the calibrated threshold and top-k; investigative: the best `candidate_limit`
    # records per face with no threshold (service.cases.modes).
    search_mode: Mapped[str] = mapped_column(String(20), default="alerting", server_default="alerting")
    candidate_limit: Mapped[int | None] = mapped_column(Integer)  # investigative only: 1..50
    faces: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retention_until: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    searched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
