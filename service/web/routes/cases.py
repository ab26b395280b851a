"""Caseworker pages for cases: list and search, submitting a photo with its purpose, and a case
page that follows the search until it is done and says how many candidates await review.

Submitting needs `submit_cases`; reading needs `read_cases` (caseworkers and
reviewers of the submitting organisation). The pages call `service.cases.service`
like `/api/v1/cases`: the same daily quotas, upload checks and audit event. The
case is handed to the workers once it has committed; the case page polls
`/cases/{id}/status` and reloads itself when the search has finished. People
decide on candidates in the review pages, never here.

The form offers the two search modes (alerting by default; investigative needs its
number of leads) with what each has cost the organisation in review and its open
review queue, before anything is sent; and the case photo's date or the age in it, so
every candidate can show the years between its two photos.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from service.cases import service as cases
from service.cases.models import Case, CaseStatus
from service.cases.modes import ALERTING, INVESTIGATIVE, MAX_LEADS
from service.db import utcnow
from service.deps import DbId, DbSession, DispatcherDep, SettingsDep, VaultDep
from service.photos.quality import case_faces
from service.photos.service import read_upload
from service.photos.upload_form import Upload
from service.reviews.candidate_facts import candidate_facts
from service.web.pages import page_router
from service.refusal import Refusal
from service.web.render import add_nav, band_words, redirect, render
from service.web.session import PageUser, PhotoUser, page_permission, photo_permission
from service.web.uploads import page_upload_form, page_upload_permission
from vetting.permissions import Action, allowed
from vetting.review import UNDER_REVIEW
from vetting.review import Status as CandidateStatus

router = page_router(tags=["pages: cases"])
add_nav(
    "Cases",
    "/cases",
    Action.READ_CASES,
    order=20,
    description="Search the records with a photo, and follow each search.",
)
PAGE_SIZE = 25
SEARCHING = (CaseStatus.QUEUED, CaseStatus.PROCESSING)
AWAITING_REVIEW = (UNDER_REVIEW, CandidateStatus.PENDING_REVIEW, CandidateStatus.AWAITING_SECOND_REVIEW)
CANDIDATE_WORDS = {
    "under_review": "Waiting for two reviewers",
    CandidateStatus.PENDING_REVIEW: "Waiting for two reviewers",
    CandidateStatus.AWAITING_SECOND_REVIEW: "Waiting for a second reviewer",
    CandidateStatus.CONFIRMED: "Confirmed by two reviewers; the organisation that registered the child has been told",
    CandidateStatus.REJECTED: "Not the same child, a reviewer decided",
    CandidateStatus.REDACTED: "Withdrawn: the family withdrew consent, so the record and its photos are gone",
}


@router.get("/cases", **page_permission(Action.READ_CASES))
def case_list(
    request: Request,
    user: PageUser,
    session: DbSession,
    case_reference: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    wanted = case_reference.strip()
    found, total = cases.list_cases(
        session, actor=user, case_reference=wanted or None, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    return render(
        request,
        "cases/list.html",
        {
            "title": "Cases",
            "cases": [(case, cases.case_words(session, case)) for case in found],
            "total": total,
            "case_reference": wanted,
            "page": page,
            "pages": max(1, -(-total // PAGE_SIZE)),
            "can_submit": allowed(user.roles, Action.SUBMIT_CASES),
        },
    )


@router.get("/cases/new", **page_permission(Action.SUBMIT_CASES))
def new_case_form(request: Request, user: PageUser, session: DbSession) -> Response:
    return _new_case_page(
        request,
        session,
        user,
        {
            "case_reference": "",
            "purpose": "",
            "search_mode": ALERTING,
            "candidate_limit": "",
            "taken_at": "",
            "age_at_photo": "",
        },
    )


class CasePageFields(BaseModel):
    case_reference: str = Field("", max_length=200)
    purpose: str = Field("", max_length=4000)
    search_mode: str = Field(ALERTING, max_length=40)
    candidate_limit: str = Field("", max_length=40)
    taken_at: str = Field("", max_length=40)
    age_at_photo: str = Field("", max_length=40)


@router.post("/cases/new", **page_upload_permission(Action.SUBMIT_CASES))
def submit_case(
    request: Request,
    user: PageUser,
    session: DbSession,
    settings: SettingsDep,
    vault: VaultDep,
    dispatcher: DispatcherDep,
    upload: Annotated[Upload[CasePageFields], Depends(page_upload_form(CasePageFields))],
) -> Response:
    """Store the photo and queue its search; the case page follows it (the form is read only after the
    session and role checks: service.web.uploads)."""
    file, form = upload.file, upload.fields
    case_reference, purpose, search_mode = form.case_reference, form.purpose, form.search_mode
    candidate_limit, taken_at, age_at_photo = form.candidate_limit, form.taken_at, form.age_at_photo
    typed = {
        "case_reference": case_reference,
        "purpose": purpose,
        "search_mode": search_mode,
        "candidate_limit": candidate_limit,
        "taken_at": taken_at,
        "age_at_photo": age_at_photo,
    }
    if file is None or not file.filename:
        return _new_case_page(request, session, user, typed, status_code=400, error="Choose the photo to search with.")
    if len(case_reference.strip()) > 100 or len(purpose.strip()) > 2000:
        return _new_case_page(
            request,
            session,
            user,
            typed,
            status_code=422,
            error="The case reference may have up to 100 characters and the purpose up to 2,000.",
        )
    now = utcnow()
    try:
        # The number of leads stays in the form when alerting is chosen after typing it; it is not used then.
        leads = candidate_limit if search_mode.strip().lower() == INVESTIGATIVE else None
        search = cases.parse_search(search_mode, leads)
        facts = cases.parse_photo_facts(taken_at, age_at_photo, now=now)
        case = cases.submit_case(
            session,
            vault=vault,
            settings=settings,
            actor=user,
            case_reference=case_reference,
            purpose=purpose,
            now=now,
            search=search,
            photo_facts=facts,
            dispatch=dispatcher.case,
            read_file=lambda: read_upload(file.file, max_bytes=settings.max_upload_bytes),
        )
    except Refusal as refused:
        session.rollback()
        return _new_case_page(request, session, user, typed, status_code=refused.status, error=refused.message)
    return redirect(
        request,
        f"/cases/{case.id}",
        flash="The photo was received. The search has started; this page shows when it is done.",
    )


@router.get("/cases/{case_id}", **page_permission(Action.READ_CASES))
def case_page(request: Request, case_id: DbId, user: PageUser, session: DbSession, settings: SettingsDep) -> Response:
    case, candidates = cases.case_details(session, actor=user, case_id=case_id)
    facts = candidate_facts(session, [candidate for candidate, _ in candidates])
    shown = [
        {
            "candidate": candidate,
            "status": status,
            "words": CANDIDATE_WORDS.get(status, status),
            "band": band_words(facts[candidate.id].band),
            "years_between": facts[candidate.id].years_between,
            "lead_label": facts[candidate.id].lead_label,
        }
        for candidate, status in candidates
    ]
    return render(
        request,
        "cases/detail.html",
        {
            "title": f"Case {case.case_reference}",
            "case": case,
            "words": cases.case_words(session, case),
            "searching": case.status in SEARCHING,
            "candidates": shown,
            "investigative": case.search_mode == INVESTIGATIVE,
            "awaiting": sum(1 for item in shown if item["status"] in AWAITING_REVIEW),
            "faces": case_faces(session, case.id, settings.quality_gates()),
            "tone": _tone(case),
        },
    )


@router.get("/cases/{case_id}/status", **photo_permission(Action.READ_CASES))
def case_progress(case_id: DbId, user: PhotoUser, session: DbSession) -> dict:
    """For the case page's poller: whether the search has finished, in words (no personal data)."""
    case = cases.own_case(session, actor=user, case_id=case_id)
    return {"done": case.status not in SEARCHING, "status": case.status, "message": cases.case_words(session, case)}


def _tone(case: Case) -> str:
    if case.status == CaseStatus.SEARCHED:
        return "ok"
    return "wait" if case.status in SEARCHING else "bad"


def _new_case_page(
    request: Request, session, user, typed: dict, *, status_code: int = 200, error: str | None = None
) -> Response:
    """The form, with what each search mode costs in review, read now for the user's organisation."""
    load = cases.review_load(session, actor=user, now=utcnow())
    return render(
        request,
        "cases/new.html",
        {
            "title": "Search with a photo",
            "form": typed,
            "error": error,
            "max_leads": MAX_LEADS,
            "load": cases.review_load_words(load),
            "today": utcnow().date().isoformat(),
        },
        status_code=status_code,
    )
