"""Every line of JWT code in Reunite: issuing and checking access tokens with python-jose.

Keeping it in one module means the JWT library could be swapped by editing this
file alone. Access tokens are short-lived HS256 JWTs carrying the user id (`sub`),
the user's token version (`ver`), `iat`, `exp` and a unique `jti`. Decoding pins
the algorithm list, requires every claim and rejects anything else: `alg: none`,
another HMAC or an RSA-signed token never validates. The token version lets the
service cut off every outstanding token of a user at once (logout, removal).
Refresh tokens are not JWTs: they are random strings stored hashed (see service).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from jose import JWTError, jwt

from service.db import utcnow

ALGORITHM = "HS256"
ACCESS_TYPE = "access"
REQUIRED_CLAIMS = ("sub", "exp", "iat", "jti", "ver", "typ")


class InvalidToken(Exception):
    """The token is malformed, tampered with, expired or of the wrong kind."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    token_version: int
    token_id: str
    expires_at: datetime


def issue_access_token(*, secret: str, user_id: int, token_version: int, lifetime: timedelta) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds."""
    now = utcnow()
    claims = {
        "sub": str(user_id),
        "ver": token_version,
        "typ": ACCESS_TYPE,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), int(lifetime.total_seconds())


def read_access_token(token: str, *, secret: str) -> AccessClaims:
    """Verify signature, algorithm, expiry and claims; raise InvalidToken otherwise."""
    options = {f"require_{claim}": True for claim in ("exp", "iat", "sub", "jti")}
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options=options)
    except JWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if any(claim not in claims for claim in REQUIRED_CLAIMS) or claims["typ"] != ACCESS_TYPE:
        raise InvalidToken("not an access token")
    try:
        return AccessClaims(
            user_id=int(claims["sub"]),
            token_version=int(claims["ver"]),
            token_id=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=utcnow().tzinfo),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidToken("malformed claims") from exc
