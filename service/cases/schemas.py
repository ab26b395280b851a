"""Request and response shapes of the cases API.

A case is submitted as a multipart form (file, case_reference, purpose), so there
is no request model here; the answers are below. A case's candidates are listed
with their record ids and distances for the submitting organisation to follow;
people decide on them through the review queue, never here.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from service.photos.quality import FaceQualityOut


class CaseAccepted(BaseModel):
    id: int
    status: str


class CandidateOut(BaseModel):
    id: int
    record_id: int | None = Field(description="None once the record's consent was withdrawn or expired.")
    rank: int
    distance: float | None
    distance_band: str | None
    status: str = Field(description="under_review while open and not yet decided by the reader.")


class CaseSummary(BaseModel):
    id: int
    case_reference: str
    status: str
    status_message: str
    faces: int | None
    created_at: datetime
    retention_until: datetime
    purged_at: datetime | None = Field(description="When the case photo and its faces were erased.")


class CaseOut(CaseSummary):
    searched_at: datetime | None
    candidates: list[CandidateOut]
    face_quality: list[FaceQualityOut] = Field(default_factory=list, description=(
        "Each face found in the case photo, in order: all are searched; low-quality ones are flagged."))


class CasePage(BaseModel):
    items: list[CaseSummary]
    total: int
    limit: int
    offset: int
