"""Review API: the queue, a candidate side by side, its two photos, decisions, notifications.

Thin: the rule is `vetting.review`, the work `service.py`. Service refusals (and
`vetting.review.ReviewRefused`) become `{"detail": sentence, "rule": code}` through
the app's one refusal handler. Photos
are answered with `Cache-Control: no-store` and only after their view is audited.
A confirmation's webhook is sent after the response: `record_review` registers it as an
after-commit effect, and `deps.get_webhook_delivery` queues `webhooks.deliver` after the response.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from service.deps import CurrentUser, DbId, DbSession, SettingsDep, VaultDep, WebhookDeliveryDep, permission
from service.photos.service import Size
from service.reviews import service
from service.reviews.schemas import CandidateOut, NotificationOut, ReviewQueue, ReviewRecorded, ReviewRequest
from service.problems import Responses
from vetting.permissions import Action

router = APIRouter(tags=["reviews"])
NOT_YOURS: Responses = {404: {"description": "No such candidate, or not your organisation's"}}
PHOTO: Responses = {200: {"content": {"image/*": {}}, "description": "The decrypted photo"}, **NOT_YOURS}
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@router.get("/reviews/queue", response_model=ReviewQueue, **permission(Action.REVIEW_CANDIDATES))
def queue(user: CurrentUser, session: DbSession, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> ReviewQueue:
    """Candidates you may decide, oldest first, and your organisation's unread confirmed matches."""
    return service.review_queue(session, reviewer=user, limit=limit)


@router.get(
    "/candidates/{candidate_id}",
    response_model=CandidateOut,
    responses=NOT_YOURS,
    **permission(Action.REVIEW_CANDIDATES),
)
def candidate(candidate_id: DbId, user: CurrentUser, session: DbSession, settings: SettingsDep) -> CandidateOut:
    """Probe and record side by side, each face's quality flagged; no other reviewer's decision is shown."""
    return service.candidate_details(session, viewer=user, candidate_id=candidate_id, gates=settings.quality_gates())


@router.get(
    "/candidates/{candidate_id}/probe-image", response_class=Response, responses=PHOTO, **permission(Action.VIEW_PHOTOS)
)
def probe_image(
    candidate_id: DbId, user: CurrentUser, session: DbSession, vault: VaultDep, size: Size = "full"
) -> Response:
    """The case photo or its thumbnail (`size=thumbnail`), audited."""
    data, content_type = service.open_candidate_photo(
        session, vault=vault, viewer=user, candidate_id=candidate_id, side="probe", size=size
    )
    return Response(content=data, media_type=content_type, headers=NO_STORE)


@router.get(
    "/candidates/{candidate_id}/record-image",
    response_class=Response,
    responses=PHOTO,
    **permission(Action.VIEW_PHOTOS),
)
def record_image(
    candidate_id: DbId, user: CurrentUser, session: DbSession, vault: VaultDep, size: Size = "full"
) -> Response:
    """The record's photo or its thumbnail (`size=thumbnail`), audited."""
    data, content_type = service.open_candidate_photo(
        session, vault=vault, viewer=user, candidate_id=candidate_id, side="record", size=size
    )
    return Response(content=data, media_type=content_type, headers=NO_STORE)


@router.post(
    "/candidates/{candidate_id}/reviews",
    status_code=201,
    response_model=ReviewRecorded,
    responses={
        **NOT_YOURS,
        403: {"description": "You submitted the case"},
        409: {"description": "Already decided, redacted, or already reviewed by you"},
    },
    **permission(Action.REVIEW_CANDIDATES),
)
def review(
    candidate_id: DbId,
    body: ReviewRequest,
    user: CurrentUser,
    session: DbSession,
    deliver_webhook: WebhookDeliveryDep,
    settings: SettingsDep,
) -> ReviewRecorded:
    """Record your decision (confirm, reject or inconclusive) with a rationale."""
    recorded = service.record_review(
        session,
        reviewer=user,
        candidate_id=candidate_id,
        decision=body.decision,
        rationale=body.rationale,
        new_account_days=settings.review_new_account_days,
        deliver_webhook=deliver_webhook,
    )
    return ReviewRecorded(review=service.review_out(recorded.review), candidate_status=recorded.candidate_status)


@router.get("/notifications", response_model=list[NotificationOut], **permission(Action.READ_NOTIFICATIONS))
def notifications(
    user: CurrentUser, session: DbSession, unread: bool = False, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[NotificationOut]:
    """Your organisation's confirmed-match notices, newest first."""
    return service.list_notifications(session, viewer=user, unread_only=unread, limit=limit)


@router.post(
    "/notifications/{notification_id}/read",
    response_model=NotificationOut,
    responses={404: {"description": "No such notification"}},
    **permission(Action.READ_NOTIFICATIONS),
)
def read_notification(notification_id: DbId, user: CurrentUser, session: DbSession) -> NotificationOut:
    return service.mark_notification_read(session, viewer=user, notification_id=notification_id)
