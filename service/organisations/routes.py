"""Organisations API: applications, vetting decisions, users and the denylist (thin: see service.py).

Service refusals (`service.refusal.Refusal`, and vetting's `PolicyRefused`) are
answered `{"detail": sentence, "rule": code}` with their status by the app's one
refusal handler, so each route states only what it does. Applications are PUBLIC; every other route names its action.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from service.auth.models import User
from service.auth.routes import client_address
from service.deps import PUBLIC, CurrentUser, DbId, DbSession, SettingsDep, permission
from service.organisations import service
from service.organisations.schemas import (
    Application,
    ApplicationReceived,
    DecisionRequest,
    DenylistEntry,
    NewDenylistDomain,
    NewUser,
    OrganisationOut,
    OrganisationSummary,
    ReasonRequest,
    UserOut,
    WebhookIn,
    WebhookOut,
)
from service.settings import Settings
from service.problems import Responses
from vetting.organisations import Decision, Status
from vetting.permissions import Action


router = APIRouter(tags=["organisations"])
REFUSALS: Responses = {
    422: {"description": "Refused by a rule: {detail, rule}"},
    409: {"description": "State conflict"},
}


@router.post(
    "/organisations/applications",
    status_code=201,
    response_model=ApplicationReceived,
    responses=REFUSALS | {429: {"description": "Too many applications (Retry-After)"}},
    **PUBLIC,
)
def apply(body: Application, request: Request, session: DbSession, settings: SettingsDep) -> ApplicationReceived:
    """Apply for vetting; creates the organisation and its first org_admin."""
    organisation = service.apply(session, application=body, settings=settings, address=client_address(request))
    return ApplicationReceived(id=organisation.id, status=organisation.status)


@router.get("/organisations", response_model=list[OrganisationSummary], **permission(Action.READ_ORGANISATION))
def list_organisations(
    user: CurrentUser, session: DbSession, status: Status | None = None
) -> list[OrganisationSummary]:
    """Operators see every organisation (filter by status); others only their own."""
    found = service.list_organisations(session, viewer=user, status=status.value if status else None)
    return [OrganisationSummary.model_validate(organisation, from_attributes=True) for organisation in found]


@router.get("/organisations/{organisation_id}", response_model=OrganisationOut, **permission(Action.READ_ORGANISATION))
def get_organisation(organisation_id: DbId, user: CurrentUser, session: DbSession) -> OrganisationOut:
    return service.organisation_details(session, viewer=user, organisation_id=organisation_id)


@router.post(
    "/organisations/{organisation_id}/decisions",
    response_model=OrganisationOut,
    responses=REFUSALS,
    **permission(Action.DECIDE_ORGANISATION),
)
def decide(
    organisation_id: DbId, body: DecisionRequest, user: CurrentUser, session: DbSession, settings: SettingsDep
) -> OrganisationOut:
    """Approve (two different platform admins are needed) or reject an application."""
    return _decide(session, organisation_id, body.decision, body.reason, actor=user, settings=settings)


@router.post(
    "/organisations/{organisation_id}/suspend",
    response_model=OrganisationOut,
    responses=REFUSALS,
    **permission(Action.DECIDE_ORGANISATION),
)
def suspend(
    organisation_id: DbId, body: ReasonRequest, user: CurrentUser, session: DbSession, settings: SettingsDep
) -> OrganisationOut:
    """Suspend an approved organisation; its users are refused from their next request."""
    return _decide(session, organisation_id, Decision.SUSPEND, body.reason, actor=user, settings=settings)


@router.post(
    "/organisations/{organisation_id}/reinstate",
    response_model=OrganisationOut,
    responses=REFUSALS,
    **permission(Action.DECIDE_ORGANISATION),
)
def reinstate(
    organisation_id: DbId, body: ReasonRequest, user: CurrentUser, session: DbSession, settings: SettingsDep
) -> OrganisationOut:
    return _decide(session, organisation_id, Decision.REINSTATE, body.reason, actor=user, settings=settings)


@router.post(
    "/organisations/{organisation_id}/revoke",
    response_model=OrganisationOut,
    responses=REFUSALS,
    **permission(Action.DECIDE_ORGANISATION),
)
def revoke(
    organisation_id: DbId, body: ReasonRequest, user: CurrentUser, session: DbSession, settings: SettingsDep
) -> OrganisationOut:
    """Revoke an organisation's access for good."""
    return _decide(session, organisation_id, Decision.REVOKE, body.reason, actor=user, settings=settings)


def _decide(
    session: Session, organisation_id: int, decision: str, reason: str, *, actor: User, settings: Settings
) -> OrganisationOut:
    service.decide_organisation(
        session,
        organisation_id=organisation_id,
        decision=decision,
        actor=actor,
        reason=reason,
        period_days=settings.vetting_period_days,
    )
    return service.organisation_details(session, viewer=actor, organisation_id=organisation_id)


@router.get("/organisations/{organisation_id}/users", response_model=list[UserOut], **permission(Action.MANAGE_USERS))
def list_users(organisation_id: DbId, user: CurrentUser, session: DbSession) -> list[UserOut]:
    members = service.list_users(session, organisation_id=organisation_id, actor=user)
    return [_user_out(member) for member in members]


@router.post(
    "/organisations/{organisation_id}/users",
    status_code=201,
    response_model=UserOut,
    responses=REFUSALS,
    **permission(Action.MANAGE_USERS),
)
def add_user(organisation_id: DbId, body: NewUser, user: CurrentUser, session: DbSession) -> UserOut:
    """Add a user with roles you hold yourself (caseworker, reviewer, org_admin)."""
    added = service.add_user(
        session, organisation_id=organisation_id, actor=user, email=body.email, password=body.password, roles=body.roles
    )
    return _user_out(added)


@router.delete(
    "/organisations/{organisation_id}/users/{user_id}",
    status_code=204,
    responses=REFUSALS,
    **permission(Action.MANAGE_USERS),
)
def remove_user(organisation_id: DbId, user_id: DbId, user: CurrentUser, session: DbSession) -> None:
    """Remove a user; their tokens stop working at once."""
    service.remove_user(session, organisation_id=organisation_id, actor=user, user_id=user_id)


@router.put(
    "/organisations/{organisation_id}/webhook",
    response_model=WebhookOut,
    responses=REFUSALS,
    **permission(Action.MANAGE_WEBHOOK),
)
def set_webhook(organisation_id: DbId, body: WebhookIn, user: CurrentUser, session: DbSession) -> WebhookOut:
    """Send confirmed matches also to this https address, signed with HMAC-SHA256.

    The signing secret is shown in this answer only; setting the address again makes a new one.
    """
    secret = service.set_webhook(session, organisation_id=organisation_id, actor=user, url=body.url)
    return WebhookOut(url=body.url, secret=secret)


@router.delete(
    "/organisations/{organisation_id}/webhook", status_code=204, responses=REFUSALS, **permission(Action.MANAGE_WEBHOOK)
)
def remove_webhook(organisation_id: DbId, user: CurrentUser, session: DbSession) -> None:
    service.remove_webhook(session, organisation_id=organisation_id, actor=user)


@router.get("/denylist/domains", response_model=list[DenylistEntry], **permission(Action.MANAGE_DENYLIST))
def list_denylist(session: DbSession) -> list[DenylistEntry]:
    return service.list_denylist(session)


@router.post(
    "/denylist/domains",
    status_code=201,
    response_model=DenylistEntry,
    responses=REFUSALS,
    **permission(Action.MANAGE_DENYLIST),
)
def add_denylist_domain(body: NewDenylistDomain, user: CurrentUser, session: DbSession) -> DenylistEntry:
    """Refuse a law-enforcement domain and its subdomains for emails and websites."""
    row = service.add_denylist_domain(session, domain=body.domain, reason=body.reason, actor=user)
    return DenylistEntry(
        domain=row.domain, source="added", reason=row.reason, added_by=row.added_by, added_at=row.added_at
    )


@router.delete("/denylist/domains/{domain}", status_code=204, responses=REFUSALS, **permission(Action.MANAGE_DENYLIST))
def remove_denylist_domain(domain: str, user: CurrentUser, session: DbSession) -> None:
    """Remove an added domain; the shipped list is read-only."""
    service.remove_denylist_domain(session, domain=domain, actor=user)


def _user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id, email=user.email, roles=sorted(user.roles), status=user.status, created_at=user.created_at
    )
