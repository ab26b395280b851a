"""Cases API: submit a probe photo, follow its search (thin: see service.py).

Submitting needs `submit_cases` (caseworkers); reading needs `read_cases`
(caseworkers and reviewers of the submitting organisation). Refusals become
`{"detail": sentence}` answers through `refusal_route` (a 429
also carries Retry-After). The case is dispatched to the workers only after it
has committed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile

from service.calibration.service import band_lookup
from service.cases import service
from service.cases.models import Case
from service.cases.schemas import CandidateOut, CaseAccepted, CaseOut, CasePage, CaseSummary
from service.db import utcnow
from service.deps import CurrentUser, DbSession, DispatcherDep, SettingsDep, VaultDep, permission
from service.photos.quality import case_faces
from service.photos.service import UploadRefused, read_upload
from service.records.routes import refusal_route
from service.reviews.models import Candidate
from service.worker.dispatch import dispatch_after_commit
from vetting.permissions import Action

router = APIRouter(tags=["cases"], route_class=refusal_route(service.CaseError, UploadRefused))
REFUSALS = {404: {"description": "No such case in your organisation"}}
SUBMIT_REFUSALS = {400: {"description": "Empty file"}, 413: {"description": "Too large"},
                   415: {"description": "Not a still image"}, 422: {"description": "Refused: {detail}"},
                   429: {"description": "Daily quota used; see Retry-After"}}


@router.post("/cases", status_code=202, response_model=CaseAccepted, responses=SUBMIT_REFUSALS,
             **permission(Action.SUBMIT_CASES))
def submit_case(file: Annotated[UploadFile, File()],
                case_reference: Annotated[str, Form(min_length=1, max_length=100)],
                purpose: Annotated[str, Form(min_length=1, max_length=2000)],
                user: CurrentUser, session: DbSession, settings: SettingsDep, vault: VaultDep,
                dispatcher: DispatcherDep) -> CaseAccepted:
    """Search the records for the face(s) in a photo; the search runs in the background."""
    case = service.submit_case(session, vault=vault, settings=settings, actor=user, case_reference=case_reference,
                               purpose=purpose, now=utcnow(),
                               read_file=lambda: read_upload(file.file, max_bytes=settings.max_upload_bytes))
    dispatch_after_commit(dispatcher.case, case.id)
    return CaseAccepted(id=case.id, status=case.status)


@router.get("/cases", response_model=CasePage, **permission(Action.READ_CASES))
def list_cases(user: CurrentUser, session: DbSession,
               case_reference: Annotated[str | None, Query(max_length=100)] = None,
               limit: Annotated[int, Query(ge=1, le=100)] = 50,
               offset: Annotated[int, Query(ge=0)] = 0) -> CasePage:
    """Your organisation's cases, newest first."""
    cases, total = service.list_cases(session, actor=user, case_reference=case_reference, limit=limit,
                                      offset=offset)
    return CasePage(items=[_summary(case) for case in cases], total=total, limit=limit, offset=offset)


@router.get("/cases/{case_id}", response_model=CaseOut, responses=REFUSALS, **permission(Action.READ_CASES))
def get_case(case_id: int, user: CurrentUser, session: DbSession, settings: SettingsDep) -> CaseOut:
    """A case's progress and outcome, in words, with its faces' quality flags and its candidates."""
    case, candidates = service.case_details(session, actor=user, case_id=case_id)
    band = band_lookup(session)  # one policy read per model, not per candidate
    return CaseOut(**_summary(case).model_dump(), searched_at=case.searched_at,
                   candidates=[_candidate(candidate, status, band) for candidate, status in candidates],
                   face_quality=case_faces(session, case.id, settings.quality_gates()))


def _summary(case: Case) -> CaseSummary:
    return CaseSummary(id=case.id, case_reference=case.case_reference, status=case.status,
                       status_message=service.case_words(case), faces=case.faces, created_at=case.created_at,
                       retention_until=case.retention_until, purged_at=case.purged_at)


def _candidate(candidate: Candidate, status: str, band) -> CandidateOut:
    return CandidateOut(id=candidate.id, record_id=candidate.record_id, rank=candidate.rank, distance=candidate.distance,
                        distance_band=band(candidate.model_id, candidate.distance), status=status)
