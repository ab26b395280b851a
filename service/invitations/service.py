"""Invitations: an org_admin invites a colleague by email address; the colleague sets their own password.

The admin never learns the colleague's password. An invitation carries a 256-bit
random token, shown once to the admin as a link to pass on by their own channel
(Reunite sends no email); only its SHA-256 is stored, and no audit event ever holds
the token or the email address. Inviting applies the rules of adding a user (the
admin's own organisation, roles they hold, the law-enforcement denylist, not one of
the organisation's own users); an address that has an account elsewhere is not told
apart when inviting, and its link then fails at acceptance with the plain refusal
below. Accepting applies the rules again, since the denylist or the organisation's
standing may have changed in between, and creates the user through `create_user`
(argon2, the zxcvbn weak-password refusal, and the TOTP key the page shows once).

A link that is unknown, expired, withdrawn or used gets one refusal that does not
say which. Failed acceptances count as failed sign-ins from the caller's address
(`LoginAttempt`), so guessing links is held to the sign-in rate limit, and each is
audited. Functions take the session first and keyword-only arguments, and commit.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.audit.actions import AuditAction
from service.db import rows_changed
from service.audit.service import record_event
from service.auth.models import LoginAttempt, User
from service.auth.passwords import WeakPassword
from service.auth.service import create_user, normalise_email
from service.invitations.models import Invitation
from service.organisations.denylist import current_denylist
from service.organisations.models import Organisation
from service.organisations.service import (
    check_new_member,
    check_not_a_member,
    email_in_use,
)
from service.refusal import Conflict, Forbidden, NotFound, Refusal, Refused
from service.settings import Settings
from vetting import organisations as policy
from vetting.exclusion import check_email
from vetting.permissions import Action, allowed

TOKEN_BYTES = 32  # 256 bits: guessing a live link is hopeless, and the rate limit makes it slower still
# `LoginAttempt.email` of a failed acceptance: counted with failed sign-ins from the same address.
ATTEMPT_MARK = "(invitation)"

INVALID_LINK = (
    "This invitation link is not valid: it may have expired, been withdrawn or been used already. "
    "Ask your organisation's administrator for a new one."
)
ORGANISATION_CLOSED = "Your organisation cannot take on new users at present; ask its administrator."


class InvalidInvitation(NotFound):
    def __init__(self) -> None:
        super().__init__(INVALID_LINK, rule="invalid_invitation")


class TooManyAttempts(Refusal):
    """Too many failed acceptances from one address: 429 (without a Retry-After)."""

    def __init__(self, message: str):
        super().__init__(429, message)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def accept_path(token: str) -> str:
    """Where the colleague accepts: the page, relative to the service's address."""
    return f"/invitations/{token}"


# --- the admin's side --------------------------------------------------------------------------


def invite_user(
    session: Session,
    *,
    organisation_id: int,
    actor: User,
    email: str,
    roles: Iterable[str],
    settings: Settings,
    now: datetime,
) -> tuple[Invitation, str]:
    """Invite `email` to the actor's organisation with `roles`; the invitation and its token (shown once)."""
    organisation = _admins_organisation(session, actor=actor, organisation_id=organisation_id)
    if not _is_open(organisation, now):
        raise Conflict(ORGANISATION_CLOSED)
    granted = check_new_member(session, actor=actor, email=email, roles=roles)
    check_not_a_member(session, organisation_id=organisation.id, email=email)
    email = normalise_email(email)
    if _pending_for(session, organisation_id=organisation.id, email=email, now=now) is not None:
        raise Conflict("This address already has an invitation waiting; withdraw it first to make a new one.")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    invitation = Invitation(
        organisation_id=organisation.id,
        email=email,
        roles=" ".join(sorted(role.value for role in granted)),
        token_hash=hash_token(token),
        created_by=actor.id,
        created_at=now,
        expires_at=now + timedelta(days=settings.invitation_days),
    )
    session.add(invitation)
    session.flush()
    record_event(
        session,
        action=AuditAction.USER_INVITED,
        actor_id=actor.id,
        organisation_id=organisation.id,
        target_type="invitation",
        target_id=invitation.id,
        details={"invitation_id": invitation.id, "roles": invitation.role_codes, "days": settings.invitation_days},
    )
    session.commit()
    return invitation, token


def list_invitations(session: Session, *, organisation_id: int, actor: User) -> list[Invitation]:
    """Every invitation of the actor's organisation, newest first."""
    _admins_organisation(session, actor=actor, organisation_id=organisation_id, lock=False)
    return list(
        session.scalars(
            select(Invitation)
            .where(Invitation.organisation_id == organisation_id)
            .order_by(Invitation.created_at.desc(), Invitation.id.desc())
        )
    )


def revoke_invitation(
    session: Session, *, organisation_id: int, actor: User, invitation_id: int, now: datetime
) -> Invitation:
    """Withdraw a waiting invitation: its link stops working at once."""
    _admins_organisation(session, actor=actor, organisation_id=organisation_id)
    invitation = session.get(Invitation, invitation_id, with_for_update=True)
    if invitation is None or invitation.organisation_id != organisation_id:
        raise NotFound("There is no such invitation in your organisation.")
    state = invitation.state(now)
    if state != "pending":
        raise Conflict(
            {
                "accepted": "This invitation has already been accepted; remove the user instead.",
                "revoked": "This invitation has already been withdrawn.",
                "expired": "This invitation has already expired.",
            }[state]
        )
    invitation.revoked_at, invitation.revoked_by = now, actor.id
    record_event(
        session,
        action=AuditAction.INVITATION_REVOKED,
        actor_id=actor.id,
        organisation_id=organisation_id,
        target_type="invitation",
        target_id=invitation.id,
        details={"invitation_id": invitation.id},
    )
    session.commit()
    return invitation


# --- the colleague's side ------------------------------------------------------------------------


def invitation_for_token(
    session: Session, *, token: str, settings: Settings, address: str, now: datetime
) -> tuple[Invitation, Organisation]:
    """The waiting invitation a link names, with its organisation; one plain refusal otherwise.

    A failure is counted and audited like a failed acceptance, so the page cannot be
    used to test guessed links faster than acceptance can.
    """
    invitation, organisation = _usable(session, token=token, settings=settings, address=address, now=now)
    session.commit()  # ends the read; nothing was written
    return invitation, organisation


def accept_invitation(
    session: Session, *, token: str, password: str, settings: Settings, address: str, now: datetime
) -> User:
    """Create the invited user with the password they chose; the link cannot be used again."""
    invitation, organisation = _usable(session, token=token, settings=settings, address=address, now=now, lock=True)
    if email_in_use(session, invitation.email):  # inviting did not tell; accepting does not either
        _refuse(session, reason="email_in_use", address=address, invitation=invitation)
    # Claimed by a conditional UPDATE: of two acceptances at once, exactly one changes the row.
    claimed = rows_changed(
        session.execute(
            update(Invitation)
            .where(Invitation.id == invitation.id, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
            .values(accepted_at=now)
        )
    )
    if claimed != 1:
        _refuse(session, reason="used", address=address, invitation=invitation)
    try:
        user = create_user(
            session,
            email=invitation.email,
            password=password,
            roles=set(invitation.role_codes),
            organisation_id=organisation.id,
            with_totp=True,
        )  # the acceptance page shows the key
    except WeakPassword as weak:
        session.rollback()
        raise Refused(str(weak), rule="weak_password") from weak
    except IntegrityError:  # the address was taken by a concurrent request
        _refuse(session, reason="email_in_use", address=address, invitation=invitation)
    invitation.accepted_user_id = user.id
    session.add(LoginAttempt(email=ATTEMPT_MARK, address=address, succeeded=True))
    record_event(
        session,
        action=AuditAction.INVITATION_ACCEPTED,
        actor_id=user.id,
        organisation_id=organisation.id,
        target_type="invitation",
        target_id=invitation.id,
        details={"invitation_id": invitation.id, "user_id": user.id, "roles": invitation.role_codes},
    )
    session.commit()
    return user


def _usable(
    session: Session, *, token: str, settings: Settings, address: str, now: datetime, lock: bool = False
) -> tuple[Invitation, Organisation]:
    """The pending invitation and its open organisation, re-checked against today's denylist."""
    _check_rate(session, settings=settings, address=address, now=now)
    query = select(Invitation).where(Invitation.token_hash == hash_token(token))
    invitation = session.scalars(query.with_for_update() if lock else query).first()
    if invitation is None:
        _refuse(session, reason="unknown", address=address)
    state = invitation.state(now)
    if state != "pending":
        _refuse(session, reason=state, address=address, invitation=invitation)
    organisation = session.get(Organisation, invitation.organisation_id)
    if organisation is None or not _is_open(organisation, now):
        _refuse(
            session,
            reason="organisation_unavailable",
            address=address,
            invitation=invitation,
            error=Forbidden(ORGANISATION_CLOSED),
        )
    if refusal := check_email(invitation.email, current_denylist(session)):
        _refuse(
            session,
            reason="denylisted_domain",
            address=address,
            invitation=invitation,
            error=Refused(refusal.message, rule=refusal.rule),
        )
    return invitation, organisation


def _refuse(
    session: Session, *, reason: str, address: str, invitation: Invitation | None = None, error: Refusal | None = None
) -> NoReturn:
    """Count and audit a failed use of a link (never its token), then raise."""
    session.rollback()
    session.add(LoginAttempt(email=ATTEMPT_MARK, address=address, succeeded=False))
    details: dict[str, str | int] = {"reason": reason}
    if invitation is not None:
        details["invitation_id"] = invitation.id
    record_event(
        session,
        action=AuditAction.INVITATION_ACCEPT_FAILED,
        organisation_id=invitation.organisation_id if invitation else None,
        target_type="invitation" if invitation else None,
        target_id=invitation.id if invitation else None,
        details=details,
    )
    session.commit()
    raise error or InvalidInvitation()


def _check_rate(session: Session, *, settings: Settings, address: str, now: datetime) -> None:
    """The sign-in limit per address: failed sign-ins and failed links from it count together."""
    since = now - timedelta(minutes=settings.login_window_minutes)
    failures = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.succeeded.is_(False), LoginAttempt.at >= since, LoginAttempt.address == address)
    )
    if (failures or 0) >= settings.login_failures_per_address:
        raise TooManyAttempts(f"Too many failed attempts. Try again in {settings.login_window_minutes} minutes.")


# --- shared checks -------------------------------------------------------------------------------


def _admins_organisation(session: Session, *, actor: User, organisation_id: int, lock: bool = True) -> Organisation:
    """The actor's own organisation, if they may manage its users; another one does not exist for them."""
    # Locked for changes, so that two identical invitations at once cannot both pass the checks.
    organisation = session.get(Organisation, organisation_id, with_for_update=lock)
    if organisation is None or actor.organisation_id != organisation.id:
        raise NotFound("There is no such organisation.")
    if not allowed(actor.roles, Action.MANAGE_USERS):
        raise Forbidden("Only your organisation's administrators can invite users.")
    return organisation


def _is_open(organisation: Organisation, now: datetime) -> bool:
    """Approved and within its vetting period."""
    return policy.in_good_standing(organisation.status, organisation.vetting_expires_at, now)


def _pending_for(session: Session, *, organisation_id: int, email: str, now: datetime) -> Invitation | None:
    return session.scalars(
        select(Invitation).where(
            Invitation.organisation_id == organisation_id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
    ).first()
