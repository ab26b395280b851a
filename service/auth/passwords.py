"""Password hashing (argon2 through pwdlib) and TOTP second factors (pyotp)."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

import pyotp
import zxcvbn
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_PASSWORD_LENGTH = 12
MIN_PASSWORD_SCORE = 3  # zxcvbn's 0-4: 3 is "safely unguessable" against an offline attack on a slow hash
# zxcvbn's time grows with length; it refuses longer input. A longer password is judged by its start.
ZXCVBN_MAX_LENGTH = 72
_hasher = PasswordHash((Argon2Hasher(),))
# Verifying against this keeps the time of a login for an unknown email the same
# as for a known one, so response times do not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash("reunite-timing-equaliser")


class WeakPassword(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"Passwords must have at least {MIN_PASSWORD_LENGTH} characters.")
    return _hasher.hash(password)


def password_problem(password: str, user_inputs: list[str]) -> str | None:
    """Why the password is too easy to guess (zxcvbn, knowing the account's email and organisation), or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Passwords must have at least {MIN_PASSWORD_LENGTH} characters."
    result = zxcvbn.zxcvbn(password[:ZXCVBN_MAX_LENGTH], user_inputs=[word for word in user_inputs if word])
    if result["score"] >= MIN_PASSWORD_SCORE:
        return None
    feedback = result["feedback"]
    advice = " ".join(filter(None, [feedback.get("warning"), *feedback.get("suggestions", [])]))
    return " ".join(
        filter(
            None, ["This password is too easy to guess.", advice or "Use a longer password of several uncommon words."]
        )
    )


def check_password(password: str, user_inputs: list[str]) -> None:
    """Raise WeakPassword with the reason when the password is too short or too easy to guess."""
    if problem := password_problem(password, user_inputs):
        raise WeakPassword(problem)


def verify_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _hasher.verify(password, _DUMMY_HASH)
        return False
    return _hasher.verify(password, password_hash)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, *, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def totp_clock() -> datetime:
    """The time second-factor codes are checked at: TOTP's one clock, which tests replace."""
    return datetime.now(UTC)


def totp_step(secret: str, code: str | None, *, now: datetime | None = None) -> int | None:
    """The time step whose code this is: the current one or either side of it (clock drift); else None.

    Callers refuse a step at or before the last one used, so a code works once.
    """
    if not code:
        return None
    totp, now = pyotp.TOTP(secret), now or totp_clock()
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code.strip()):
            return step
    return None
