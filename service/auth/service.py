"""Sign-in, token rotation, logout and account creation (logic only; routes are thin).

Every function takes the session explicitly and keyword-only arguments. Sign-in
writes its audit event (success or failure) and commits before answering, so a
refused attempt is recorded even though the request fails.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeGuard

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from service.audit.actions import AuditAction
from service.audit.service import record_event
from service.auth.models import LoginAttempt, RefreshToken, User, UserRole, UserStatus
from service.auth.passwords import (
    check_password,
    hash_password,
    new_totp_secret,
    totp_step,
    totp_uri,
    verify_password,
)
from service.auth.tokens import issue_access_token
from service.db import rows_changed, utcnow
from service.deps import ORGANISATION_STATUS_MESSAGES, organisation_standing
from service.organisations.denylist import current_denylist
from service.organisations.models import Organisation
from service.refusal import Refusal, TooMany
from service.settings import Settings
from vetting.exclusion import check_email
from vetting.roles import OPERATOR_ROLES, ORGANISATION_ROLES, Role

# A second factor is mandatory for every role. Operators hold the keys to every organisation's
# data; caseworkers and reviewers see children's photos; an org_admin creates the accounts that
# do (choosing their first passwords) and points confirmed matches at a webhook, so taking over an
# org_admin is one step from the photos.
TOTP_REQUIRED_ROLES = OPERATOR_ROLES | ORGANISATION_ROLES
# One answer for a wrong password, a missing, wrong or used code, an unknown or removed account:
# it never tells that the password was right.
BAD_CREDENTIALS = "The email, password or code from your authenticator app is not right."
# Failures older than this no longer slow an account down, even without a success since.
BACKOFF_MEMORY = timedelta(days=1)
# Besides good standing: an organisation still applying may sign in (its admin follows the application).
SIGN_IN_STANDINGS = {"applied"}


class EnrolmentRequired(Refusal):
    """The password was right, and the account must set up its authenticator app before signing in."""

    def __init__(self) -> None:
        super().__init__(
            403,
            "Your role needs a code from an authenticator app, which this account has not set "
            "up yet. Set it up now: POST your email and password to /api/v1/auth/totp/enrol "
            "(or sign in on the web page), add the key to your app, then sign in with a code.",
        )


class OrganisationRefused(Refusal):
    """Right credentials, but the user's organisation cannot work now: no tokens (the page says why)."""

    def __init__(self, standing: str, organisation: Organisation | None):
        super().__init__(
            403, ORGANISATION_STATUS_MESSAGES.get(standing, "Your organisation cannot use Reunite at present.")
        )
        self.standing = standing
        self.organisation = organisation


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str


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
    """Add a user (not committed); operators always get a TOTP secret.

    Others get one when `with_totp` (an invitation shows it at acceptance); otherwise a user
    whose role needs one sets it up at first sign-in (`enrol_totp`). The password must be
    hard to guess for zxcvbn, which also knows the email and the organisation's name.
    """
    organisation = session.get(Organisation, organisation_id) if organisation_id is not None else None
    check_password(password, password_words(email, organisation.name if organisation else None))
    user = User(
        email=normalise_email(email),
        password_hash=hash_password(password),
        organisation_id=organisation_id,
        token_version=0,
        status=UserStatus.ACTIVE,
    )
    user.role_rows = [UserRole(role=Role(role).value) for role in sorted(roles)]
    if with_totp or set(roles) & OPERATOR_ROLES:
        user.totp_secret = new_totp_secret()
    session.add(user)
    session.flush()
    return user


def login_clock() -> datetime:
    """The time sign-in limits are worked out at; tests replace it (no waiting on the wall clock)."""
    return utcnow()


def password_words(email: str, organisation_name: str | None) -> list[str]:
    """What an attacker knows of an account, for zxcvbn to count as guessable: its email and organisation."""
    name = organisation_name or ""
    words = re.split(r"[\W_]+", f"{email} {name}".lower())
    return [word for word in [email, name, name.replace(" ", ""), *words] if len(word) > 2]


def sign_in(
    session: Session,
    *,
    settings: Settings,
    email: str,
    password: str,
    otp: str | None,
    address: str,
    now: datetime | None = None,
) -> TokenPair:
    """Check rate limits, password, second factor, denylist and standing; issue a token pair."""
    email, now = normalise_email(email), now or login_clock()
    check_rate_limits(session, settings=settings, email=email, address=address, now=now)
    user = session.scalars(select(User).where(User.email == email)).first()
    refusal = _refusal_for(session, user, password=password, otp=otp)
    session.add(LoginAttempt(email=email, address=address, succeeded=refusal is None, at=now))
    if refusal is not None:
        reason, error = refusal
        record_event(
            session,
            action=AuditAction.LOGIN_FAILED,
            actor_id=user.id if user else None,
            organisation_id=user.organisation_id if user else None,
            details={"reason": reason},
        )
        session.commit()
        raise error
    assert user is not None  # _refusal_for refuses an unknown address
    record_event(session, action=AuditAction.LOGIN, actor_id=user.id, organisation_id=user.organisation_id)
    pair = _issue_pair(session, settings=settings, user=user, family_id=str(uuid.uuid4()))
    session.commit()
    return pair


def rotate_refresh_token(session: Session, *, settings: Settings, refresh_token: str) -> TokenPair:
    """Exchange a refresh token for a new pair; reusing a spent one revokes its family."""
    stored = session.scalars(select(RefreshToken).where(RefreshToken.token_hash == _digest(refresh_token))).first()
    now = utcnow()
    if stored is None or stored.revoked_at is not None or stored.expires_at <= now:
        raise Refusal(401, "Please sign in again.")
    user = session.get(User, stored.user_id)
    if user is None:
        raise Refusal(401, "Please sign in again.")
    if stored.used_at is not None:
        # One of two holders of the family is a thief, and the access token issued with the newest
        # refresh token may be theirs: every access token of the user stops working now, not on expiry.
        end_sessions(session, user=user)
        record_event(
            session,
            action=AuditAction.REFRESH_TOKEN_REUSED,
            actor_id=user.id,
            organisation_id=user.organisation_id,
            details={"family": stored.family_id},
        )
        session.commit()
        raise Refusal(401, "This sign-in was ended for safety. Please sign in again.")
    if user.status != UserStatus.ACTIVE or check_email(user.email, current_denylist(session)) is not None:
        raise Refusal(401, "Please sign in again.")
    if standing_refusal := _standing_refusal(session, user):
        raise standing_refusal
    stored.used_at = now
    record_event(session, action=AuditAction.TOKEN_REFRESHED, actor_id=user.id, organisation_id=user.organisation_id)
    pair = _issue_pair(session, settings=settings, user=user, family_id=stored.family_id)
    session.commit()
    return pair


def end_sessions(session: Session, *, user: User) -> None:
    """Every access token issued so far and every refresh token of the user stop working."""
    user.token_version += 1
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def sign_out(session: Session, *, user: User) -> None:
    """End every session of the user: older access tokens and all refresh tokens stop working."""
    end_sessions(session, user=user)
    record_event(session, action=AuditAction.LOGOUT, actor_id=user.id, organisation_id=user.organisation_id)
    session.commit()


def sign_out_refresh_token(session: Session, *, refresh_token: str) -> None:
    """End the sign-in a refresh token belongs to, when no session could be renewed to sign out properly.

    A user whose organisation is suspended gets no new access token, so after the old one expired
    only the refresh token is left; unrevoked, it would work again once the organisation is
    reinstated. Holding it is the proof: its whole family is revoked.
    """
    stored = session.scalars(select(RefreshToken).where(RefreshToken.token_hash == _digest(refresh_token))).first()
    if stored is None:
        return
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == stored.family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    user = session.get(User, stored.user_id)
    record_event(
        session,
        action=AuditAction.LOGOUT,
        actor_id=stored.user_id,
        organisation_id=user.organisation_id if user else None,
    )
    session.commit()


def enrol_totp(
    session: Session, *, settings: Settings, email: str, password: str, address: str, now: datetime | None = None
) -> Enrolment:
    """Give an account whose role needs a second factor, and that has none, its authenticator key.

    The password is checked as at sign-in (rate limits, failures counted), and any other case
    (a wrong password, an account that has a key or needs none) gets the one sign-in refusal.
    Of two enrolments at once, one wins: the key is set only where there was none.
    """
    email, now = normalise_email(email), now or login_clock()
    check_rate_limits(session, settings=settings, email=email, address=address, now=now)
    user = session.scalars(select(User).where(User.email == email)).first()
    secret = new_totp_secret()
    enrolled = (
        _right_password(user, password)
        and user.status == UserStatus.ACTIVE
        and needs_totp_enrolment(user)
        and rows_changed(
            session.execute(
                update(User)
                .where(User.id == user.id, User.totp_secret.is_(None))
                .values(totp_secret=secret)
                .execution_options(synchronize_session=False)
            )
        )
        == 1
    )
    if not enrolled or user is None:  # (enrolled implies an account; said for the type checker)
        session.add(LoginAttempt(email=email, address=address, succeeded=False, at=now))
        record_event(
            session,
            action=AuditAction.TOTP_ENROL_FAILED,
            actor_id=user.id if user else None,
            organisation_id=user.organisation_id if user else None,
        )
        session.commit()
        raise Refusal(401, BAD_CREDENTIALS)
    record_event(session, action=AuditAction.TOTP_ENROLLED, actor_id=user.id, organisation_id=user.organisation_id)
    session.commit()
    return Enrolment(secret=secret, uri=totp_uri(secret, email=email, issuer=settings.totp_issuer))


def _right_password(user: User | None, password: str) -> TypeGuard[User]:
    """Whether the account exists and the password is its own (an absent account costs the same time)."""
    return verify_password(password, user.password_hash if user else None)


def needs_totp_enrolment(user: User) -> bool:
    return user.totp_secret is None and bool(user.roles & TOTP_REQUIRED_ROLES)


def _refusal_for(session: Session, user: User | None, *, password: str, otp: str | None):
    """(reason code, Refusal) when sign-in must be refused, else None.

    Nothing after the password is told apart from a wrong password until the second factor
    is right too: only then the denylist and the organisation's standing are named.
    """
    bad = Refusal(401, BAD_CREDENTIALS)
    if not _right_password(user, password) or user.status != UserStatus.ACTIVE:
        return ("bad_credentials", bad)
    if needs_totp_enrolment(user):
        return ("otp_not_enrolled", EnrolmentRequired())
    if user.totp_secret:
        if not otp:
            return ("otp_missing", bad)
        step = totp_step(user.totp_secret, otp)
        if step is None:
            return ("otp_wrong", bad)
        if not _use_totp_step(session, user, step):
            return ("otp_reused", bad)
    if check_email(user.email, current_denylist(session)) is not None:
        return (
            "denylisted_domain",
            Refusal(403, "This account's email domain belongs to a law-enforcement body; Reunite does not serve them."),
        )
    if standing_refusal := _standing_refusal(session, user):
        return ("organisation_unavailable", standing_refusal)
    return None


def _standing_refusal(session: Session, user: User) -> OrganisationRefused | None:
    """A suspended, revoked, rejected or expired organisation's users get no new tokens."""
    if user.organisation_id is None:
        return None
    organisation = session.get(Organisation, user.organisation_id)
    standing = organisation_standing(organisation)
    if standing is None or standing in SIGN_IN_STANDINGS:
        return None
    return OrganisationRefused(standing, organisation)


def _use_totp_step(session: Session, user: User, step: int) -> bool:
    """Record the code's step as used, unless it or a later one was: of two uses at once, one wins."""
    claimed = session.execute(
        update(User)
        .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    return rows_changed(claimed) == 1


def check_rate_limits(session: Session, *, settings: Settings, email: str, address: str, now: datetime) -> None:
    """Refuse (429, with when to retry) an address with too many recent failures, or an account
    still inside its back-off: the delay doubles with each failure since its last success."""
    failures = select(LoginAttempt.at).where(LoginAttempt.succeeded.is_(False))
    since = now - timedelta(minutes=settings.login_window_minutes)
    by_address = session.scalars(
        failures.where(LoginAttempt.address == address, LoginAttempt.at >= since).order_by(LoginAttempt.at)
    ).all()
    if len(by_address) >= settings.login_failures_per_address:
        wait = by_address[len(by_address) - settings.login_failures_per_address] - since
        raise _too_many("Too many failed sign-ins from your network.", wait)
    last_success = session.scalar(
        select(func.max(LoginAttempt.at)).where(LoginAttempt.email == email, LoginAttempt.succeeded.is_(True))
    )
    counted_from = max(filter(None, [last_success, now - BACKOFF_MEMORY]))
    by_account = session.scalars(
        failures.where(LoginAttempt.email == email, LoginAttempt.at > counted_from).order_by(LoginAttempt.at)
    ).all()
    if backoff := account_backoff(len(by_account), settings=settings):
        remaining = by_account[-1] + backoff - now
        if remaining > timedelta(0):
            raise _too_many("Too many failed sign-ins for this account.", remaining)


def attempts_kept_for(settings: Settings) -> timedelta:
    """How long an attempt can still count for a limit: sign-in and link windows, account backoff, applications."""
    window = timedelta(minutes=max(settings.login_window_minutes, settings.application_window_minutes))
    return max(window, BACKOFF_MEMORY)


def prune_login_attempts(session: Session, *, settings: Settings, now: datetime) -> int:
    """Delete attempts that no limit counts any more (each holds an email and a network address)."""
    pruned = rows_changed(
        session.execute(delete(LoginAttempt).where(LoginAttempt.at < now - attempts_kept_for(settings)))
    )
    session.commit()
    return pruned


def account_backoff(failures: int, *, settings: Settings) -> timedelta | None:
    """How long an account waits after its latest failure: none for the first few, then doubling, capped."""
    extra = failures - settings.login_failures_per_account
    if extra < 0:
        return None
    seconds = settings.login_backoff_seconds * 2 ** min(extra, 40)
    return timedelta(seconds=min(seconds, settings.login_backoff_max_seconds))


def _too_many(reason: str, wait: timedelta) -> TooMany:
    seconds = max(1, math.ceil(wait.total_seconds()))
    when = f"{seconds} seconds" if seconds < 120 else f"{math.ceil(seconds / 60)} minutes"
    return TooMany(f"{reason} Try again in {when}.", retry_after=seconds)


def _issue_pair(session: Session, *, settings: Settings, user: User, family_id: str) -> TokenPair:
    access, expires_in = issue_access_token(
        secret=settings.signing_secret(),
        user_id=user.id,
        token_version=user.token_version,
        lifetime=timedelta(minutes=settings.access_token_minutes),
    )
    refresh = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=_digest(refresh),
            expires_at=utcnow() + timedelta(days=settings.refresh_token_days),
        )
    )
    return TokenPair(access_token=access, expires_in=expires_in, refresh_token=refresh)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
