"""Invitations API (thin: see service.py).

An org_admin invites a colleague (`POST .../invitations`, the link shown once), lists
and withdraws invitations; the colleague accepts with the link's token and a password
of their own (`POST /invitations/accept`, PUBLIC). Service refusals become
`{"detail": sentence, "rule": code}` with their status, as in the organisations API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.auth.routes import client_address
from service.db import utcnow
from service.deps import PUBLIC, CurrentUser, DbId, DbSession, SettingsDep, permission
from service.invitations import service
from service.invitations.models import Invitation
from service.invitations.schemas import Accepted, AcceptInvitation, InvitationCreated, InvitationOut, NewInvitation
from service.problems import Responses
from vetting.permissions import Action

router = APIRouter(tags=["invitations"])
REFUSALS: Responses = {
    422: {"description": "Refused by a rule: {detail, rule}"},
    409: {"description": "State conflict"},
}


@router.post(
    "/organisations/{organisation_id}/invitations",
    status_code=201,
    response_model=InvitationCreated,
    responses=REFUSALS,
    **permission(Action.MANAGE_USERS),
)
def invite(
    organisation_id: DbId,
    body: NewInvitation,
    request: Request,
    user: CurrentUser,
    session: DbSession,
    settings: SettingsDep,
) -> InvitationCreated:
    """Invite a colleague with roles you hold yourself; `accept_url` is shown in this answer only."""
    invitation, token = service.invite_user(
        session,
        organisation_id=organisation_id,
        actor=user,
        email=body.email,
        roles=body.roles,
        settings=settings,
        now=utcnow(),
    )
    return InvitationCreated(
        id=invitation.id,
        email=invitation.email,
        roles=invitation.role_codes,
        expires_at=invitation.expires_at,
        accept_url=str(request.base_url).rstrip("/") + service.accept_path(token),
    )


@router.get(
    "/organisations/{organisation_id}/invitations",
    response_model=list[InvitationOut],
    **permission(Action.MANAGE_USERS),
)
def list_invitations(organisation_id: DbId, user: CurrentUser, session: DbSession) -> list[InvitationOut]:
    now = utcnow()
    found = service.list_invitations(session, organisation_id=organisation_id, actor=user)
    return [invitation_out(invitation, now) for invitation in found]


@router.post(
    "/organisations/{organisation_id}/invitations/{invitation_id}/revoke",
    response_model=InvitationOut,
    responses=REFUSALS,
    **permission(Action.MANAGE_USERS),
)
def revoke(organisation_id: DbId, invitation_id: DbId, user: CurrentUser, session: DbSession) -> InvitationOut:
    """Withdraw a waiting invitation: its link stops working at once."""
    now = utcnow()
    invitation = service.revoke_invitation(
        session, organisation_id=organisation_id, actor=user, invitation_id=invitation_id, now=now
    )
    return invitation_out(invitation, now)


@router.post(
    "/invitations/accept",
    status_code=201,
    response_model=Accepted,
    responses=REFUSALS
    | {
        404: {"description": "Unknown, expired, withdrawn or used link"},
        429: {"description": "Too many failed attempts"},
    },
    **PUBLIC,
)
def accept(body: AcceptInvitation, request: Request, session: DbSession, settings: SettingsDep) -> Accepted:
    """Accept an invitation with a password of your own; then sign in as usual."""
    user = service.accept_invitation(
        session,
        token=body.token,
        password=body.password,
        settings=settings,
        address=client_address(request),
        now=utcnow(),
    )
    return Accepted(user_id=user.id)


def invitation_out(invitation: Invitation, now) -> InvitationOut:
    return InvitationOut(
        id=invitation.id,
        email=invitation.email,
        roles=invitation.role_codes,
        state=invitation.state(now),
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
        accepted_user_id=invitation.accepted_user_id,
    )
