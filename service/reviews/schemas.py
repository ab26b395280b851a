"""Request and response shapes of the review queue, candidates, reviews and notifications.

Nothing here carries a child's name, a record's label, a raw distance or a vector:
reviewers get a distance band, photo dates, ages, face boxes and quality figures, and
case references only of their own organisation's cases and records.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, StringConstraints

Rationale = Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=2000)]
# Why the reviewer's organisation may see the candidate.
Involvement = Literal["submitted_case", "owns_record", "both", "independent"]  # independent: a platform reviewer


class ReviewRequest(BaseModel):
    decision: Literal["confirm", "reject", "inconclusive"]
    rationale: Rationale


class ReviewOut(BaseModel):
    id: int
    candidate_id: int
    decision: str
    rationale: str
    created_at: datetime


class ReviewRecorded(BaseModel):
    """The reviewer's own review and the candidate's status as it now stands."""

    review: ReviewOut
    candidate_status: str


class NotificationOut(BaseModel):
    id: int
    kind: str
    candidate_id: int
    record_id: int | None  # None once the record's consent has been withdrawn
    record_case_reference: str | None
    created_at: datetime
    read_at: datetime | None
    webhook_status: str | None
    webhook_next_attempt_at: datetime | None = None  # a failed delivery is tried again then


class QueueItem(BaseModel):
    candidate_id: int
    case_id: int
    rank: int
    distance_band: str | None  # beyond_threshold: farther than the review threshold (investigative only)
    years_between: float | None  # between the two photos, from ages or dates; None when unknown
    search_mode: str  # alerting | investigative
    lead_label: str | None  # investigative only: "Lead 7 of 25: ... not a match"
    created_at: datetime
    your_organisation: Involvement
    # Someone else has already recorded a decision (which one is not said).
    reviewed_by_others: bool


class ReviewQueue(BaseModel):
    waiting: int  # candidates this reviewer may decide
    waiting_second_review: int  # of those, how many someone else has already reviewed
    items: list[QueueItem]
    notifications: list[NotificationOut]  # the organisation's unread confirmed matches


class FaceBox(BaseModel):
    top: int
    right: int
    bottom: int
    left: int


class FaceOut(BaseModel):
    box: FaceBox
    quality: dict[str, float]  # box_px, sharpness, asymmetry, detection_score
    # Below a quality gate (service.photos.quality): compared all the same, to be weighed with care.
    low_quality: bool = False
    quality_flags: list[str] = []  # why, in plain words


class PhotoSide(BaseModel):
    """One side of the comparison: the photo's facts and the face that was compared."""

    photo_id: int
    taken_at: date | None
    age_at_photo: float | None
    width: int | None
    height: int | None
    face: FaceOut | None
    image_url: str | None  # None when the photo has been erased


class CaseSide(BaseModel):
    case_id: int
    case_reference: str | None  # only for the organisation that submitted the case
    submitted_by_your_organisation: bool
    photo: PhotoSide | None


class RecordSide(BaseModel):
    record_id: int
    case_reference: str | None  # only for the organisation that owns the record
    owned_by_your_organisation: bool
    missing_since: date
    photo: PhotoSide | None


class ModelOut(BaseModel):
    id: str
    version: str


class CandidateOut(BaseModel):
    id: int
    status: str  # `under_review` while open, until the viewer has decided
    rank: int
    distance_band: str | None  # beyond_threshold: farther than the review threshold (investigative only)
    years_between: float | None  # between the two photos, from ages or dates; None when unknown
    search_mode: str  # alerting | investigative
    lead_label: str | None  # investigative only: "Lead 7 of 25: ... not a match"
    model: ModelOut
    created_at: datetime
    probe: CaseSide
    record: RecordSide | None  # None once redacted
    can_decide: bool
    your_review: ReviewOut | None
    notice: str  # the model's measured limits with children
