"""Cookies set while a page is made, written onto whatever response goes out.

Every cookie of the pages is HttpOnly (no script reads it), SameSite=Strict (never
sent with a request from another site), path `/`, and Secure outside local
development (`REUNITE_ENVIRONMENT=development` serves plain http on localhost). A
route, a dependency or an error page queues a cookie on the request with
`queue_cookie`; `security.WebSecurityMiddleware` adds the queued Set-Cookie headers
to the response, whether it is a page, a redirect or an error page.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from fastapi import Request
from starlette.responses import Response

from service.settings import Settings

QUEUED_COOKIES = "web_cookies"  # key in the ASGI scope's state


def cookie_is_secure(settings: Settings) -> bool:
    return settings.environment != "development"


def queue_cookie(request: Request, name: str, value: str | None) -> None:
    """Set (or, with None, delete) a cookie on the response to this request, whatever it is."""
    settings: Settings = request.app.state.settings
    carrier = Response()
    options: dict[str, Any] = dict(path="/", httponly=True, secure=cookie_is_secure(settings), samesite="strict")
    if value is None:
        carrier.delete_cookie(name, **options)
    else:
        carrier.set_cookie(name, value, **options)
    queued = request.scope.setdefault("state", {}).setdefault(QUEUED_COOKIES, {})
    queued[name] = carrier.headers["set-cookie"]  # the last word on a cookie wins


def queued_cookie_headers(scope: MutableMapping[str, Any]) -> list[str]:
    return list(scope.get("state", {}).get(QUEUED_COOKIES, {}).values())
