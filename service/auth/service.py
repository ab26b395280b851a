"""Sign-in, token rotation, logout and account creation (logic only; routes are thin).

Every function takes the session explicitly and keyword-only arguments. Sign-in
writes its audit event (success or failure) and commits before answering, so a
refused attempt is recorded even though the request fails.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from service.audit.service import record_event
from service.auth.models import LoginAttempt, RefreshToken, User, UserRole
from service.auth.passwords import hash_password, new_totp_secret, totp_step, verify_password
from service.auth.tokens import issue_access_token
from service.db import utcnow
from service.organisations.denylist import current_denylist
from service.settings import Settings
from vetting.exclusion import check_email
from vetting.roles import OPERATOR_ROLES, Role

# Operators hold the keys to every organisation's data: a second factor is mandatory.
TOTP_REQUIRED_ROLES = OPERATOR_ROLES


class AuthRefused(Exception):
    """Sign-in or refresh refused; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    token_type: str = "bearer"


def normalise_email(email: str) -> str:
    return email.strip().lower()


def create_user(
    session: Session,
    *,
    email: str,
    password: str,
    roles: set[str] | frozenset[str],
    organisation_id: int | None = None,
    with_totp: bool = False,
) -> User:
    """Add a user (not committed); operators always get a TOTP secret."""
    user = User(
        email=normalise_email(email),
        password_hash=hash_password(password),
        organisation_id=organisation_id,
        token_version=0,
        status="active",
    )
    user.role_rows = [UserRole(role=Role(role).value) for role in sorted(roles)]
    if with_totp or set(roles) & TOTP_REQUIRED_ROLES:
        user.totp_secret = new_totp_secret()
    session.add(user)
    session.flush()
    return user


def sign_in(
    session: Session, *, settings: Settings, email: str, password: str, otp: str | None, address: str
) -> TokenPair:
    """Check rate limits, password, denylist and second factor; issue a token pair."""
    email = normalise_email(email)
    _check_rate_limits(session, settings=settings, email=email, address=address)
    user = session.scalars(select(User).where(User.email == email)).first()
    refusal = _refusal_for(session, user, password=password, otp=otp)
    session.add(LoginAttempt(email=email, address=address, succeeded=refusal is None))
    if refusal is not None:
        reason, status, message = refusal
        record_event(session, action="login_failed", actor_id=user.id if user else None,
                     organisation_id=user.organisation_id if user else None, details={"reason": reason})
        session.commit()
        raise AuthRefused(status, message)
    record_event(session, action="login", actor_id=user.id, organisation_id=user.organisation_id)
    pair = _issue_pair(session, settings=settings, user=user, family_id=str(uuid.uuid4()))
    session.commit()
    return pair


def rotate_refresh_token(session: Session, *, settings: Settings, refresh_token: str) -> TokenPair:
    """Exchange a refresh token for a new pair; reusing a spent one revokes its family."""
    stored = session.scalars(select(RefreshToken).where(RefreshToken.token_hash == _digest(refresh_token))).first()
    now = utcnow()
    if stored is None or stored.revoked_at is not None or stored.expires_at <= now:
        raise AuthRefused(401, "Please sign in again.")
    user = session.get(User, stored.user_id)
    if stored.used_at is not None:
        _revoke_family(session, stored.family_id)
        record_event(session, action="refresh_token_reused", actor_id=user.id,
                     organisation_id=user.organisation_id, details={"family": stored.family_id})
        session.commit()
        raise AuthRefused(401, "This sign-in was ended for safety. Please sign in again.")
    if user is None or user.status != "active" or check_email(user.email, current_denylist(session)) is not None:
        raise AuthRefused(401, "Please sign in again.")
    stored.used_at = now
    record_event(session, action="token_refreshed", actor_id=user.id, organisation_id=user.organisation_id)
    pair = _issue_pair(session, settings=settings, user=user, family_id=stored.family_id)
    session.commit()
    return pair


def end_sessions(session: Session, *, user: User) -> None:
    """Every access token issued so far and every refresh token of the user stop working."""
    user.token_version += 1
    session.execute(
        update(RefreshToken).where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def sign_out(session: Session, *, user: User) -> None:
    """End every session of the user: older access tokens and all refresh tokens stop working."""
    end_sessions(session, user=user)
    record_event(session, action="logout", actor_id=user.id, organisation_id=user.organisation_id)
    session.commit()


def _refusal_for(session: Session, user: User | None, *, password: str, otp: str | None):
    """(reason code, HTTP status, message) when sign-in must be refused, else None."""
    if not verify_password(password, user.password_hash if user else None) or user.status != "active":
        return ("bad_credentials", 401, "The email or password is not right.")
    if check_email(user.email, current_denylist(session)) is not None:
        return ("denylisted_domain", 403, "This account's email domain belongs to a law-enforcement body; "
                "Reunite does not serve them.")
    if user.totp_secret or user.roles & TOTP_REQUIRED_ROLES:
        if not otp:
            return ("otp_missing", 401, "Enter the 6-digit code from your authenticator app.")
        step = totp_step(user.totp_secret, otp) if user.totp_secret else None
        if step is None:
            return ("otp_wrong", 401, "The code from your authenticator app is not right.")
        if not _use_totp_step(session, user, step):
            return ("otp_reused", 401, "That code has been used already. Wait for the next code from your "
                    "authenticator app.")
    return None


def _use_totp_step(session: Session, user: User, step: int) -> bool:
    """Record the code's step as used, unless it or a later one was: of two uses at once, one wins."""
    claimed = session.execute(
        update(User).where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step).execution_options(synchronize_session=False))
    return claimed.rowcount == 1


def _check_rate_limits(session: Session, *, settings: Settings, email: str, address: str) -> None:
    since = utcnow() - timedelta(minutes=settings.login_window_minutes)
    failures = select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.succeeded.is_(False), LoginAttempt.at >= since
    )
    by_account = session.scalar(failures.where(LoginAttempt.email == email))
    by_address = session.scalar(failures.where(LoginAttempt.address == address))
    if by_account >= settings.login_failures_per_account or by_address >= settings.login_failures_per_address:
        raise AuthRefused(429, f"Too many failed sign-ins. Try again in {settings.login_window_minutes} minutes.")


def _issue_pair(session: Session, *, settings: Settings, user: User, family_id: str) -> TokenPair:
    access, expires_in = issue_access_token(
        secret=settings.signing_secret(),
        user_id=user.id,
        token_version=user.token_version,
        lifetime=timedelta(minutes=settings.access_token_minutes),
    )
    refresh = secrets.token_urlsafe(32)
    session.add(RefreshToken(
        user_id=user.id, family_id=family_id, token_hash=_digest(refresh),
        expires_at=utcnow() + timedelta(days=settings.refresh_token_days),
    ))
    return TokenPair(access_token=access, expires_in=expires_in, refresh_token=refresh)


def _revoke_family(session: Session, family_id: str) -> None:
    session.execute(
        update(RefreshToken).where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
