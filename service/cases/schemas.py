"""Request and response shapes of the cases API.

A case is submitted as a multipart form (file, case_reference, purpose, and optionally
search_mode, candidate_limit, taken_at, age_at_photo), so there is no request model
here; the answers are below. A case's candidates are listed with their record ids and
distances for the submitting organisation to follow; people decide on them through the
review queue, never here. An investigative case's candidates are leads, not matches,
and say so in `lead_label`.
"""

from __future__ import annotations

from datetime import datetime

from typing import Literal

from pydantic import BaseModel, Field

from service.photos.quality import FaceQualityOut

SearchMode = Literal["alerting", "investigative"]


class CaseAccepted(BaseModel):
    id: int
    status: str


class CandidateOut(BaseModel):
    id: int
    record_id: int | None = Field(description="None once the record's consent was withdrawn or expired.")
    rank: int
    distance: float | None
    distance_band: str | None = Field(
        description="beyond_threshold: farther than the review threshold (only investigative searches propose those)."
    )
    years_between: float | None = Field(
        description="Years between the case photo and the record photo, from "
        "the ages at photo, else the dates taken; None when unknown."
    )
    search_mode: SearchMode = Field(description="The mode the candidate was found in.")
    lead_label: str | None = Field(
        description="For an investigative candidate: its rank among its face's "
        "leads, and that it is a lead, not a match."
    )
    status: str = Field(description="under_review while open and not yet decided by the reader.")


class CaseSummary(BaseModel):
    id: int
    case_reference: str
    status: str
    status_message: str
    faces: int | None
    search_mode: SearchMode
    candidate_limit: int | None = Field(description="Investigative only: the most leads proposed per face.")
    created_at: datetime
    retention_until: datetime
    purged_at: datetime | None = Field(description="When the case photo and its faces were erased.")


class CaseOut(CaseSummary):
    searched_at: datetime | None
    candidates: list[CandidateOut]
    face_quality: list[FaceQualityOut] = Field(
        default_factory=list,
        description=("Each face found in the case photo, in order: all are searched; low-quality ones are flagged."),
    )


class CasePage(BaseModel):
    items: list[CaseSummary]
    total: int
    limit: int
    offset: int


class ModeHistoryOut(BaseModel):
    recent_cases: int = Field(description="Searched cases of this mode in the window.")
    average_candidates: float | None = Field(description="Candidates per case; None with no history yet.")


class InvestigativeCost(ModeHistoryOut):
    max_leads_per_face: int
    reviews_per_candidate: int


class OpenQueue(BaseModel):
    candidates: int = Field(description="Open candidates your organisation's reviewers may decide.")
    reviews_needed: int = Field(description="Reviews still needed to decide them all, at least.")


class ReviewLoadOut(BaseModel):
    """What each search mode costs in human review, before a caseworker chooses one."""

    window_days: int
    alerting: ModeHistoryOut
    investigative: InvestigativeCost
    open_queue: OpenQueue
    summary: str
