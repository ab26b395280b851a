"""Review pages: the queue, one candidate side by side, decisions, and the organisation's notices.

Thin over `service.reviews.service`, exactly like the API's review routes: the queue
is the reviewer's own (oldest first), a candidate is shown only to the organisations
involved and never with another reviewer's decision, photos are served only through
`open_candidate_photo` (which audits every view) and never cached, and a decision
goes through `record_review` (the two-person rule under a row lock). A confirmation's
webhook is sent after the answer, as the API does.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from service.deps import DbId, DbSession, SettingsDep, VaultDep, WebhookDeliveryDep
from service.photos.service import Size
from service.refusal import REFUSALS
from service.reviews import service
from service.reviews.schemas import CandidateOut, PhotoSide, ReviewRequest
from service.web.pages import page_router
from service.web.render import add_nav, band_words, image_response, redirect, render
from service.web.session import PageUser, PhotoUser, page_permission, photo_permission
from vetting.permissions import Action, allowed
from vetting.review import Status as CandidateStatus

router = page_router(tags=["pages: reviews"])
add_nav(
    "Review queue",
    "/reviews",
    Action.REVIEW_CANDIDATES,
    order=30,
    description="Possible matches waiting for your decision, oldest first.",
)
add_nav(
    "Notifications",
    "/notifications",
    Action.READ_NOTIFICATIONS,
    order=40,
    description="Matches confirmed on your organisation's records.",
)

DECISIONS = (
    ("confirm", "Confirm", "These photos show the same child."),
    ("reject", "Reject", "These photos do not show the same child."),
    ("inconclusive", "Inconclusive", "I cannot tell from these photos."),
)
DECISION_WORDS = {value: words for value, words, _ in DECISIONS}
STATUS_CLASSES: dict[str, str] = {
    CandidateStatus.CONFIRMED: "status-ok",
    CandidateStatus.REJECTED: "status-bad",
    CandidateStatus.REDACTED: "status-bad",
}
STATUS_WORDS = {
    "under_review": "Under review",
    CandidateStatus.PENDING_REVIEW: "Waiting for reviewers",
    CandidateStatus.AWAITING_SECOND_REVIEW: "Waiting for a second reviewer",
    CandidateStatus.CONFIRMED: "Confirmed by two reviewers",
    CandidateStatus.REJECTED: "Rejected",
    CandidateStatus.REDACTED: "Withdrawn (the record's consent was withdrawn)",
}
INVOLVEMENT_WORDS = {
    "submitted_case": "Submitted the case",
    "owns_record": "Owns the record",
    "both": "Submitted the case and owns the record",
    "independent": "Independent review (platform reviewer)",
}
RATIONALE_HELP = (
    "Say what you compared and why you decided so (at least 10 characters). It is kept with your "
    "decision; other reviewers of this candidate do not see it."
)
WEBHOOK_WORDS = {
    None: "",
    "pending": "Being sent to your organisation's webhook",
    "sent": "Sent to your webhook",
    "failed": "Could not be sent to your webhook",
}


# --- the queue ---------------------------------------------------------------------------------


@router.get("/reviews", **page_permission(Action.REVIEW_CANDIDATES))
def queue(request: Request, user: PageUser, session: DbSession) -> Response:
    """The candidates this reviewer may decide, oldest first, with counts."""
    waiting = service.review_queue(session, reviewer=user)
    return render(
        request,
        "reviews/queue.html",
        {
            "title": "Candidates to review",
            "queue": waiting,
            "involvement": INVOLVEMENT_WORDS,
        },
    )


# --- one candidate -----------------------------------------------------------------------------


@router.get("/reviews/candidates/{candidate_id}", **page_permission(Action.REVIEW_CANDIDATES))
def candidate(
    request: Request, candidate_id: DbId, user: PageUser, session: DbSession, settings: SettingsDep
) -> Response:
    details = service.candidate_details(session, viewer=user, candidate_id=candidate_id, gates=settings.quality_gates())
    return _candidate_page(request, details)


@router.post("/reviews/candidates/{candidate_id}", **page_permission(Action.REVIEW_CANDIDATES))
def decide(
    request: Request,
    candidate_id: DbId,
    user: PageUser,
    session: DbSession,
    settings: SettingsDep,
    deliver_webhook: WebhookDeliveryDep,
    decision: Annotated[str, Form(max_length=20)] = "",
    rationale: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """Record the reviewer's decision; a refusal is shown on the candidate's page."""
    try:
        body = ReviewRequest(decision=decision, rationale=rationale)
    except ValidationError as invalid:
        details = service.candidate_details(
            session, viewer=user, candidate_id=candidate_id, gates=settings.quality_gates()
        )
        return _candidate_page(
            request, details, error=_form_problem(invalid), decision=decision, rationale=rationale, status_code=422
        )
    try:
        service.record_review(
            session,
            reviewer=user,
            candidate_id=candidate_id,
            decision=body.decision,
            rationale=body.rationale,
            new_account_days=settings.review_new_account_days,
            deliver_webhook=deliver_webhook,
        )
    except REFUSALS as refused:
        if refused.status == 404:
            raise
        session.rollback()
        details = service.candidate_details(
            session, viewer=user, candidate_id=candidate_id, gates=settings.quality_gates()
        )
        return _candidate_page(
            request, details, error=refused.message, decision=decision, rationale=rationale, status_code=refused.status
        )
    return redirect(
        request,
        f"/reviews/candidates/{candidate_id}",
        flash=f"Your decision ({DECISION_WORDS[body.decision].lower()}) was recorded.",
    )


@router.get("/reviews/candidates/{candidate_id}/photos/{side}", **photo_permission(Action.VIEW_PHOTOS))
def photo(
    candidate_id: DbId,
    side: Literal["probe", "record"],
    user: PhotoUser,
    session: DbSession,
    vault: VaultDep,
    size: Size = "full",
) -> Response:
    """One side's photo, decrypted, its view audited, never cached."""
    data, media_type = service.open_candidate_photo(
        session, vault=vault, viewer=user, candidate_id=candidate_id, side=side, size=size
    )
    return image_response(data, media_type)


def _candidate_page(
    request: Request,
    details: CandidateOut,
    *,
    error: str | None = None,
    decision: str = "",
    rationale: str = "",
    status_code: int = 200,
) -> Response:
    probe = details.probe.photo
    record = details.record.photo if details.record else None
    return render(
        request,
        "reviews/candidate.html",
        {
            "title": f"{'Investigative lead' if details.lead_label else 'Candidate match'} {details.id}",
            "c": details,
            "status_words": STATUS_WORDS.get(details.status, details.status),
            "status_class": STATUS_CLASSES.get(details.status, "status-wait"),
            "band": band_words(details.distance_band),
            "probe_src": _photo_src(details.id, "probe", probe),
            "record_src": _photo_src(details.id, "record", record),
            "years_apart": details.years_between,
            "decisions": DECISIONS,
            "decision_words": DECISION_WORDS,
            "why_not": _why_not(details),
            "error": error,
            "decision": decision,
            "rationale": rationale,
            "rationale_help": RATIONALE_HELP,
        },
        status_code=status_code,
    )


def _photo_src(candidate_id: int, side: str, photo: PhotoSide | None) -> str | None:
    """This page's audited address for a side's photo, when the service offers one."""
    if photo is None or photo.image_url is None:
        return None
    return f"/reviews/candidates/{candidate_id}/photos/{side}"


def _why_not(details: CandidateOut) -> str | None:
    """Why this viewer cannot decide now, in words (None when they can or already did)."""
    if details.can_decide or details.your_review is not None:
        return None
    if details.status == CandidateStatus.REDACTED:
        return "The record's consent was withdrawn, so this candidate was withdrawn and its photos erased."
    if details.status in (CandidateStatus.CONFIRMED, CandidateStatus.REJECTED):
        return f"This candidate has already been {details.status}; no further decision is taken."
    return (
        "You cannot decide this candidate: its case was submitted by you (two other reviewers must decide), "
        "or its case photo was deleted at the end of its retention period."
    )


def _form_problem(invalid: ValidationError) -> str:
    fields = {str(error["loc"][0]) for error in invalid.errors() if error.get("loc")}
    if "decision" in fields:
        return "Choose confirm, reject or inconclusive."
    return "Write your reasons: at least 10 characters, and at most 2,000."


# --- notifications -------------------------------------------------------------------------------


@router.get("/notifications", **page_permission(Action.READ_NOTIFICATIONS))
def notifications(request: Request, user: PageUser, session: DbSession) -> Response:
    """The organisation's confirmed matches on its records, newest first."""
    notices = service.list_notifications(session, viewer=user)
    return render(
        request,
        "reviews/notifications.html",
        {
            "title": "Notifications",
            "notices": notices,
            "webhook_words": WEBHOOK_WORDS,
            "can_review": allowed(user.roles, Action.REVIEW_CANDIDATES),
            "can_open_records": allowed(user.roles, Action.MANAGE_RECORDS),
            "unread": sum(notice.read_at is None for notice in notices),
        },
    )


@router.post("/notifications/{notification_id}/read", **page_permission(Action.READ_NOTIFICATIONS))
def mark_read(request: Request, notification_id: DbId, user: PageUser, session: DbSession) -> Response:
    service.mark_notification_read(session, viewer=user, notification_id=notification_id)
    return redirect(request, "/notifications", flash="The notification is marked as read.")
