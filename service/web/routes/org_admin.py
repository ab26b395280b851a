"""Organisation admin pages: the organisation's users, invitations, adding one with roles, removing one.

Thin over `service.organisations.service` and `service.invitations.service`, as the
API's routes. The usual way in is an invitation: the admin gives an email address
and roles they hold themselves (the policy refuses the rest) and is shown, once, a
link to pass on; the colleague chooses their own password on it (see
`routes/invitations.py`). Creating an account with a first password stays available
for when a link cannot be passed on. Removing a user ends their sessions at once;
the last org_admin cannot be removed. Refusals are shown on the page, next to the form.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from service.auth.models import User
from service.auth.passwords import MIN_PASSWORD_LENGTH
from service.db import utcnow
from service.deps import DbId, DbSession, SettingsDep
from service.invitations import service as invitations
from service.invitations.schemas import NewInvitation
from service.organisations import service
from service.organisations.models import Organisation
from service.organisations.schemas import NewUser
from service.refusal import REFUSALS
from service.web.pages import page_router
from service.web.render import add_nav, redirect, render
from service.web.session import NotPermitted, PageUser, page_permission
from vetting.permissions import Action
from vetting.roles import Role

router = page_router(tags=["pages: organisation admin"])
add_nav(
    "Users",
    "/organisation/users",
    Action.MANAGE_USERS,
    order=50,
    description="Your organisation's users and their roles.",
)

ROLE_CHOICES = (
    (Role.CASEWORKER.value, "Caseworker", "registers records and photos, submits case photos"),
    (Role.REVIEWER.value, "Reviewer", "compares candidate matches and records decisions"),
    (Role.ORG_ADMIN.value, "Organisation admin", "invites, adds and removes users"),
)
ROLE_WORDS = {value: words for value, words, _ in ROLE_CHOICES}


def _organisation_of(admin: User) -> int:
    """The admin's organisation: managing users is an organisation role, so there is one."""
    if admin.organisation_id is None:
        raise NotPermitted()
    return admin.organisation_id


@router.get("/organisation/users", **page_permission(Action.MANAGE_USERS))
def users(request: Request, user: PageUser, session: DbSession) -> Response:
    return _users_page(request, session, user)


@router.post("/organisation/users", **page_permission(Action.MANAGE_USERS))
def add_user(
    request: Request,
    user: PageUser,
    session: DbSession,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    roles: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
) -> Response:
    """Create a colleague's account with the roles ticked."""
    try:
        body = NewUser(email=email, password=password, roles=roles)
    except ValidationError as invalid:
        return _users_page(
            request,
            session,
            user,
            error=_form_problem(invalid),
            email=email,
            roles=roles,
            add_open=True,
            status_code=422,
        )
    try:
        added = service.add_user(
            session,
            organisation_id=_organisation_of(user),
            actor=user,
            email=body.email,
            password=body.password,
            roles=body.roles,
        )
    except REFUSALS as refused:
        session.rollback()
        return _users_page(
            request,
            session,
            user,
            error=refused.message,
            email=email,
            roles=roles,
            add_open=True,
            status_code=refused.status,
        )
    return redirect(
        request,
        "/organisation/users",
        flash=f"User {added.id} was added and can sign in now. Give them their first password by a safe route.",
    )


@router.post("/organisation/invitations", **page_permission(Action.MANAGE_USERS))
def invite(
    request: Request,
    user: PageUser,
    session: DbSession,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)] = "",
    roles: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
) -> Response:
    """Invite a colleague; the page shows the link once (it is never stored, so never shown again)."""
    try:
        body = NewInvitation(email=email, roles=roles)
    except ValidationError as invalid:
        return _users_page(
            request,
            session,
            user,
            invite_error=_form_problem(invalid),
            invite_email=email,
            invite_roles=roles,
            status_code=422,
        )
    try:
        invitation, token = invitations.invite_user(
            session,
            organisation_id=_organisation_of(user),
            actor=user,
            email=body.email,
            roles=body.roles,
            settings=settings,
            now=utcnow(),
        )
    except REFUSALS as refused:
        session.rollback()
        return _users_page(
            request,
            session,
            user,
            invite_error=refused.message,
            invite_email=email,
            invite_roles=roles,
            status_code=refused.status,
        )
    link = str(request.base_url).rstrip("/") + invitations.accept_path(token)
    return _users_page(request, session, user, created=invitation, link=link)


@router.post("/organisation/invitations/{invitation_id}/revoke", **page_permission(Action.MANAGE_USERS))
def revoke_invitation(request: Request, invitation_id: DbId, user: PageUser, session: DbSession) -> Response:
    """Withdraw a waiting invitation: its link stops working at once."""
    try:
        invitations.revoke_invitation(
            session, organisation_id=_organisation_of(user), actor=user, invitation_id=invitation_id, now=utcnow()
        )
    except REFUSALS as refused:
        if refused.status == 404:
            raise
        session.rollback()
        return _users_page(request, session, user, invite_error=refused.message, status_code=refused.status)
    return redirect(request, "/organisation/users", flash="The invitation was withdrawn; its link no longer works.")


@router.post("/organisation/users/{user_id}/remove", **page_permission(Action.MANAGE_USERS))
def remove_user(request: Request, user_id: DbId, user: PageUser, session: DbSession) -> Response:
    """Remove a user: their sessions end at once."""
    try:
        service.remove_user(session, organisation_id=_organisation_of(user), actor=user, user_id=user_id)
    except REFUSALS as refused:
        if refused.status == 404:
            raise
        session.rollback()
        return _users_page(request, session, user, error=refused.message, status_code=refused.status)
    return redirect(request, "/organisation/users", flash="The user was removed; they can no longer sign in.")


def _users_page(
    request: Request,
    session,
    actor: User,
    *,
    error: str | None = None,
    email: str = "",
    roles: list[str] | None = None,
    invite_error: str | None = None,
    invite_email: str = "",
    invite_roles: list[str] | None = None,
    created=None,
    link: str | None = None,
    add_open: bool = False,
    status_code: int = 200,
) -> Response:
    organisation_id = _organisation_of(actor)
    members = service.list_users(session, organisation_id=organisation_id, actor=actor)
    now = utcnow()
    waiting = [
        invitation
        for invitation in invitations.list_invitations(session, organisation_id=organisation_id, actor=actor)
        if invitation.state(now) == "pending"
    ]
    organisation = session.get(Organisation, organisation_id)
    return render(
        request,
        "org_admin/users.html",
        {
            "title": "Users",
            "organisation": organisation,
            "members": members,
            "role_choices": ROLE_CHOICES,
            "role_words": ROLE_WORDS,
            "actor_roles": actor.roles,
            "error": error,
            "email": email,
            "chosen_roles": set(roles or []),
            "min_password": MIN_PASSWORD_LENGTH,
            "invitations": waiting,
            "invite_error": invite_error,
            "invite_email": invite_email,
            "invite_roles": set(invite_roles or []),
            "created": created,
            "link": link,
            "add_open": add_open,
        },
        status_code=status_code,
    )


def _form_problem(invalid: ValidationError) -> str:
    fields = {str(error["loc"][0]) for error in invalid.errors() if error.get("loc")}
    if "email" in fields:
        return "Enter the person's email address, such as name@your-organisation.org."
    if "password" in fields:
        return f"Give a first password of at least {MIN_PASSWORD_LENGTH} characters."
    return "Tick at least one role."
