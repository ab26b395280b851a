"""Cross-site request forgery protection: a per-session secret and a token in every form.

The secret is a random value in an HttpOnly, SameSite=Strict cookie, created on
the first page a browser sees and replaced at every sign-in and sign-out (so a
secret planted before sign-in is useless after it). A form carries
HMAC(server key, secret) in its hidden `csrf_token` field, or a script sends it in
the `X-CSRF-Token` header. `check_csrf`, a dependency of every page router, refuses
any POST (or other unsafe method) whose token does not match the cookie's secret,
compared in constant time (`secrets.compare_digest`); the page then explains
that the form was out of date. Another site can neither read the cookie nor
compute the token.

Upload pages (marked by `service.web.uploads.page_upload_permission`) are the one
exception to where the check happens: reading their multipart form here would read
the whole upload before the session is checked, so `check_csrf` leaves the form's
token to `page_upload_form`, which reads the form only after the session and role
checks and calls `check_token` before anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request

from service.deps import reads_upload
from service.web.cookies import queue_cookie

CSRF_COOKIE = "reunite_csrf"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_STATE_KEY = "csrf_secret"


class CsrfRefused(Exception):
    """A POST without the token of this browser's session."""


def sign(request: Request, purpose: str, value: str) -> str:
    """A hex HMAC of `value` under the service's secret, separated by `purpose`."""
    key = request.app.state.settings.signing_secret().encode()
    return hmac.new(key, f"{purpose}\n{value}".encode(), hashlib.sha256).hexdigest()


def csrf_secret(request: Request) -> str:
    """This browser's secret, created (and its cookie queued) when it has none yet."""
    secret = getattr(request.state, _STATE_KEY, None) or request.cookies.get(CSRF_COOKIE)
    if not secret:
        secret = renew_csrf_secret(request)
    setattr(request.state, _STATE_KEY, secret)
    return secret


def renew_csrf_secret(request: Request) -> str:
    secret = secrets.token_urlsafe(32)
    setattr(request.state, _STATE_KEY, secret)
    queue_cookie(request, CSRF_COOKIE, secret)
    return secret


def csrf_token(request: Request) -> str:
    """The value for a form's hidden `csrf_token` field (or the X-CSRF-Token header)."""
    return sign(request, "csrf", csrf_secret(request))


async def check_csrf(request: Request) -> None:
    """Dependency of every page router: refuse unsafe methods without this session's token."""
    if request.method in SAFE_METHODS:
        return
    submitted = request.headers.get(HEADER)
    if submitted is None and _is_form(request):
        if reads_upload(request.scope.get("route")):
            return  # page_upload_form checks the form's token once the session is known
        value = (await request.form()).get(FORM_FIELD)
        submitted = value if isinstance(value, str) else None
    check_token(request, submitted)


def check_token(request: Request, submitted: str | None) -> None:
    """CsrfRefused unless `submitted` is this browser's token."""
    secret = request.cookies.get(CSRF_COOKIE)
    expected = sign(request, "csrf", secret) if secret else ""
    if not secret or not submitted or not secrets.compare_digest(submitted.encode(), expected.encode()):
        raise CsrfRefused()


def _is_form(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))
