"""Platform admin pages: vetting organisations and keeping the law-enforcement denylist.

Thin over `service.organisations.service`, as the API's routes: an application shows
every detail the organisation submitted and the law-enforcement checks re-run against
today's denylist; approval needs two different platform admins (the policy refuses a
second approval by the same one), and every decision (approve, reject, suspend,
reinstate, revoke) needs a reason. Platform admins only: auditors read, never decide.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select

from service.auth.models import User
from service.deps import DbId, DbSession, SettingsDep
from service.organisations import service
from service.organisations.schemas import NewDenylistDomain, OrganisationOut
from service.refusal import REFUSALS
from service.web.pages import page_router
from service.web.render import add_nav, redirect, render
from service.web.session import PageUser, page_permission
from vetting.organisations import Decision, Status
from vetting.permissions import Action

router = page_router(tags=["pages: platform admin"])
add_nav(
    "Vetting",
    "/admin/organisations",
    Action.DECIDE_ORGANISATION,
    order=60,
    description="Applications to vet, and every organisation's standing.",
)
add_nav(
    "Denylist",
    "/admin/denylist",
    Action.MANAGE_DENYLIST,
    order=65,
    description="Law-enforcement domains refused for organisations and users.",
)

TO_VET = (Status.APPLIED.value, Status.EXPIRED.value)
STATUS_WORDS = {
    "applied": "Applied, being vetted",
    "approved": "Approved",
    "rejected": "Rejected",
    "suspended": "Suspended",
    "revoked": "Revoked",
    "expired": "Vetting expired",
}
CHECK_WORDS = {
    "org_type": "Type of organisation",
    "contact_email": "Contact email",
    "website": "Website",
    "attestation": "Attestation of no law-enforcement use",
    "user_email": "User's email",
}
# The decisions a page offers in each status (the policy has the last word).
DECISIONS_BY_STATUS = {
    "applied": ("approve", "reject", "revoke"),
    "expired": ("approve", "reject", "revoke"),
    "approved": ("suspend", "revoke"),
    "suspended": ("reinstate", "revoke"),
    "rejected": ("revoke",),
}
DECISION_BUTTONS = {
    "approve": "Approve",
    "reject": "Reject the application",
    "suspend": "Suspend",
    "reinstate": "Reinstate",
    "revoke": "Revoke for good",
}
DONE_WORDS = {
    "approve": "approved",
    "reject": "rejected",
    "suspend": "suspended",
    "reinstate": "reinstated",
    "revoke": "revoked",
}


# --- organisations ---------------------------------------------------------------------------


@router.get("/admin/organisations", **page_permission(Action.DECIDE_ORGANISATION))
def organisations(request: Request, user: PageUser, session: DbSession, status: str = "to_vet") -> Response:
    """Applications to vet first; any other status on request."""
    if status not in STATUS_WORDS and status != "all":
        status = "to_vet"
    found = service.list_organisations(session, viewer=user, status=status if status in STATUS_WORDS else None)
    if status == "to_vet":
        found = [organisation for organisation in found if organisation.status in TO_VET]
    return render(
        request,
        "platform_admin/organisations.html",
        {
            "title": "Vetting",
            "organisations": found,
            "status": status,
            "status_words": STATUS_WORDS,
            "tabs": [("to_vet", "To vet"), *STATUS_WORDS.items(), ("all", "All")],
        },
    )


@router.get("/admin/organisations/{organisation_id}", **page_permission(Action.DECIDE_ORGANISATION))
def organisation(request: Request, organisation_id: DbId, user: PageUser, session: DbSession) -> Response:
    return _organisation_page(request, session, user, organisation_id)


@router.post("/admin/organisations/{organisation_id}/decisions", **page_permission(Action.DECIDE_ORGANISATION))
def decide(
    request: Request,
    organisation_id: DbId,
    user: PageUser,
    session: DbSession,
    settings: SettingsDep,
    decision: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Approve, reject, suspend, reinstate or revoke, with the reason given."""
    if decision not in DONE_WORDS:
        return _organisation_page(request, session, user, organisation_id, error="Choose a decision.", status_code=422)
    if not reason.strip():
        return _organisation_page(
            request,
            session,
            user,
            organisation_id,
            reason_for=decision,
            error="Give the reason for this decision; it is kept with it.",
            status_code=422,
        )
    try:
        decided = service.decide_organisation(
            session,
            organisation_id=organisation_id,
            decision=decision,
            actor=user,
            reason=reason.strip(),
            period_days=settings.vetting_period_days,
        )
    except REFUSALS as refused:
        if refused.status == 404:
            raise
        session.rollback()
        return _organisation_page(
            request, session, user, organisation_id, error=refused.message, status_code=refused.status
        )
    return redirect(request, f"/admin/organisations/{organisation_id}", flash=_decided_words(decision, decided.status))


def _decided_words(decision: str, status: str) -> str:
    if decision == Decision.APPROVE and status != Status.APPROVED:
        return "Your approval is recorded. A second, different platform admin must approve it too."
    return f"The organisation is now {STATUS_WORDS.get(status, status).lower()}."


def _organisation_page(
    request: Request,
    session,
    user: User,
    organisation_id: int,
    *,
    error: str | None = None,
    reason_for: str | None = None,
    status_code: int = 200,
) -> Response:
    details: OrganisationOut = service.organisation_details(session, viewer=user, organisation_id=organisation_id)
    members = _members(session, organisation_id)
    people = _emails(
        session, {d.actor_id for d in details.decisions or [] if d.actor_id} | set(details.pending_approvals or [])
    )
    return render(
        request,
        "platform_admin/organisation.html",
        {
            "title": details.name,
            "o": details,
            "members": members,
            "people": people,
            "status_words": STATUS_WORDS,
            "check_words": CHECK_WORDS,
            "member_emails": {member.id: member.email for member in members},
            "decisions": _offered(details, user),
            "buttons": DECISION_BUTTONS,
            "you_approved": user.id in (details.pending_approvals or []),
            "error": error,
            "reason_for": reason_for,
        },
        status_code=status_code,
    )


def _offered(details: OrganisationOut, user: User) -> tuple[str, ...]:
    """The decisions to offer this admin: never a second approval of their own (the policy refuses it)."""
    offered = DECISIONS_BY_STATUS.get(details.status, ())
    if user.id in (details.pending_approvals or []):
        offered = tuple(decision for decision in offered if decision != Decision.APPROVE)
    return offered


def _members(session, organisation_id: int) -> list[User]:
    """The organisation's users (the applicant's admin first), for the vetting page."""
    return list(session.scalars(select(User).where(User.organisation_id == organisation_id).order_by(User.id)))


def _emails(session, user_ids: set[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    return dict(session.execute(select(User.id, User.email).where(User.id.in_(user_ids))).all())


# --- the denylist ----------------------------------------------------------------------------------


@router.get("/admin/denylist", **page_permission(Action.MANAGE_DENYLIST))
def denylist(request: Request, user: PageUser, session: DbSession) -> Response:
    return _denylist_page(request, session)


@router.post("/admin/denylist", **page_permission(Action.MANAGE_DENYLIST))
def add_domain(
    request: Request,
    user: PageUser,
    session: DbSession,
    domain: Annotated[str, Form(max_length=300)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Refuse a domain and its subdomains; its users are signed out at once."""
    try:
        body = NewDenylistDomain(domain=domain, reason=reason)
    except ValidationError:
        return _denylist_page(
            request,
            session,
            error="Give the domain and the reason for refusing it.",
            domain=domain,
            reason=reason,
            status_code=422,
        )
    try:
        row = service.add_denylist_domain(session, domain=body.domain, reason=body.reason, actor=user)
    except REFUSALS as refused:
        session.rollback()
        return _denylist_page(
            request, session, error=refused.message, domain=domain, reason=reason, status_code=refused.status
        )
    return redirect(request, "/admin/denylist", flash=f"{row.domain} and its subdomains are now refused.")


@router.post("/admin/denylist/remove", **page_permission(Action.MANAGE_DENYLIST))
def remove_domain(
    request: Request, user: PageUser, session: DbSession, domain: Annotated[str, Form(max_length=300)] = ""
) -> Response:
    try:
        service.remove_denylist_domain(session, domain=domain, actor=user)
    except REFUSALS as refused:
        session.rollback()
        return _denylist_page(request, session, error=refused.message, status_code=refused.status)
    return redirect(request, "/admin/denylist", flash="The domain was removed from the denylist.")


def _denylist_page(
    request: Request, session, *, error: str | None = None, domain: str = "", reason: str = "", status_code: int = 200
) -> Response:
    entries = service.list_denylist(session)
    added = [entry for entry in entries if entry.source == "added"]
    shipped = [entry for entry in entries if entry.source == "shipped"]
    return render(
        request,
        "platform_admin/denylist.html",
        {
            "title": "Denylist",
            "added": added,
            "shipped": shipped,
            "people": _emails(session, {entry.added_by for entry in added if entry.added_by}),
            "error": error,
            "domain": domain,
            "reason": reason,
        },
        status_code=status_code,
    )
