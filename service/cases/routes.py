"""Cases API: submit a probe photo, follow its search (thin: see service.py).

Submitting needs `submit_cases` (caseworkers); reading needs `read_cases`
(caseworkers and reviewers of the submitting organisation). Refusals become
`{"detail": sentence}` answers through the app's one refusal handler (a 429
also carries Retry-After). The case is dispatched to the workers only after it
has committed. The search mode, number of leads, date taken and age at photo are
taken as text and checked by the service, so a bad one gets a sentence, not a
list of field errors. `GET /cases/review-load` gives what each mode costs in review
before a caseworker chooses. The multipart body of a submission is read only once
the caller is known to be allowed to submit (`service.photos.upload_form`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from service.cases import service
from service.cases.models import Case
from service.cases.modes import MAX_LEADS, REVIEWS_PER_CANDIDATE
from service.cases.schemas import (
    CandidateOut,
    CaseAccepted,
    CaseOut,
    CasePage,
    CaseSummary,
    InvestigativeCost,
    ModeHistoryOut,
    OpenQueue,
    ReviewLoadOut,
)
from service.db import utcnow
from service.deps import CurrentUser, DbId, DbOffset, DbSession, DispatcherDep, SettingsDep, VaultDep, permission
from service.photos.quality import case_faces
from service.photos.service import read_upload
from service.photos.upload_form import Upload, upload_form, upload_permission
from service.reviews.candidate_facts import CandidateFacts, candidate_facts
from service.reviews.models import Candidate
from service.problems import Responses
from vetting.permissions import Action

router = APIRouter(tags=["cases"])
REFUSALS: Responses = {404: {"description": "No such case in your organisation"}}
SUBMIT_REFUSALS: Responses = {
    400: {"description": "Empty file"},
    413: {"description": "Too large"},
    415: {"description": "Not a still image"},
    422: {"description": "Refused: {detail}"},
    429: {"description": "Daily quota used; see Retry-After"},
}
MODE_HELP = (
    "alerting (the default): the records within the calibrated review threshold. investigative: the "
    f"candidate_limit closest records per face (1 to {MAX_LEADS}), with no threshold; leads, not matches."
)


class CaseFields(BaseModel):
    """The text fields of a case's multipart form (besides `file`)."""

    case_reference: str = Field(min_length=1, max_length=100)
    purpose: str = Field(min_length=1, max_length=2000)
    search_mode: str | None = Field(None, max_length=20, description=MODE_HELP)
    candidate_limit: str | None = Field(None, max_length=20, description="1 to 50; investigative only.")
    taken_at: str | None = Field(None, max_length=20, description="The case photo's date, YYYY-MM-DD.")
    age_at_photo: str | None = Field(
        None, max_length=20, description="The age of the person in the case photo, in years."
    )


@router.post(
    "/cases",
    status_code=202,
    response_model=CaseAccepted,
    responses=SUBMIT_REFUSALS,
    **upload_permission(Action.SUBMIT_CASES, CaseFields),
)
def submit_case(
    user: CurrentUser,
    session: DbSession,
    settings: SettingsDep,
    vault: VaultDep,
    dispatcher: DispatcherDep,
    upload: Annotated[Upload[CaseFields], Depends(upload_form(CaseFields))],
) -> CaseAccepted:
    """Search the records for the face(s) in a photo (multipart: `file` and the fields); the search runs in
    the background."""
    now, form, file = utcnow(), upload.fields, upload.required_file
    search = service.parse_search(form.search_mode, form.candidate_limit)
    facts = service.parse_photo_facts(form.taken_at, form.age_at_photo, now=now)
    case = service.submit_case(
        session,
        vault=vault,
        settings=settings,
        actor=user,
        case_reference=form.case_reference,
        purpose=form.purpose,
        now=now,
        search=search,
        photo_facts=facts,
        dispatch=dispatcher.case,
        read_file=lambda: read_upload(file.file, max_bytes=settings.max_upload_bytes),
    )
    return CaseAccepted(id=case.id, status=case.status)


@router.get("/cases", response_model=CasePage, **permission(Action.READ_CASES))
def list_cases(
    user: CurrentUser,
    session: DbSession,
    case_reference: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[DbOffset, Query()] = 0,
) -> CasePage:
    """Your organisation's cases, newest first."""
    cases, total = service.list_cases(session, actor=user, case_reference=case_reference, limit=limit, offset=offset)
    return CasePage(items=[_summary(session, case) for case in cases], total=total, limit=limit, offset=offset)


@router.get("/cases/review-load", response_model=ReviewLoadOut, **permission(Action.SUBMIT_CASES))
def get_review_load(user: CurrentUser, session: DbSession) -> ReviewLoadOut:
    """What each search mode has cost your organisation in review lately, and its open review queue now."""
    load = service.review_load(session, actor=user, now=utcnow())
    words = service.review_load_words(load)
    return ReviewLoadOut(
        window_days=load.days,
        alerting=ModeHistoryOut(**vars(load.alerting)),
        investigative=InvestigativeCost(
            **vars(load.investigative), max_leads_per_face=MAX_LEADS, reviews_per_candidate=REVIEWS_PER_CANDIDATE
        ),
        open_queue=OpenQueue(candidates=load.open_candidates, reviews_needed=load.reviews_needed),
        summary=" ".join(
            (f"Alerting: {words['alerting']}", f"Investigative: {words['investigative']}", words["queue"])
        ),
    )


@router.get("/cases/{case_id}", response_model=CaseOut, responses=REFUSALS, **permission(Action.READ_CASES))
def get_case(case_id: DbId, user: CurrentUser, session: DbSession, settings: SettingsDep) -> CaseOut:
    """A case's progress and outcome, in words, with its faces' quality flags and its candidates."""
    case, candidates = service.case_details(session, actor=user, case_id=case_id)
    facts = candidate_facts(session, [candidate for candidate, _ in candidates])  # a few queries, not per candidate
    return CaseOut(
        **_summary(session, case).model_dump(),
        searched_at=case.searched_at,
        candidates=[_candidate(candidate, status, facts[candidate.id]) for candidate, status in candidates],
        face_quality=case_faces(session, case.id, settings.quality_gates()),
    )


def _summary(session: Session, case: Case) -> CaseSummary:
    return CaseSummary(
        id=case.id,
        case_reference=case.case_reference,
        status=case.status,
        status_message=service.case_words(session, case),
        faces=case.faces,
        search_mode=case.search_mode,
        candidate_limit=case.candidate_limit,
        created_at=case.created_at,
        retention_until=case.retention_until,
        purged_at=case.purged_at,
    )


def _candidate(candidate: Candidate, status: str, facts: CandidateFacts) -> CandidateOut:
    return CandidateOut(
        id=candidate.id,
        record_id=candidate.record_id,
        rank=candidate.rank,
        distance=candidate.distance,
        distance_band=facts.band,
        years_between=facts.years_between,
        search_mode=candidate.search_mode,
        lead_label=facts.lead_label,
        status=status,
    )
