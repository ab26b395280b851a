"""Rendering pages: the Jinja2 environment, `render()`, redirects, flash messages, the navigation.

Templates live in `service/web/templates/` (one folder per area) and extend
`base.html`. Autoescaping is on for every template, and the environment is strict
about undefined names, so a typo fails a test instead of printing nothing.

`render(request, name, context)` adds what every page needs: the signed-in user
(if any), the navigation their roles allow, this session's CSRF token and the flash
message left by the previous request. `redirect(request, url, flash=...)` answers a
form with 303 See Other and leaves a message for the next page (in a signed,
HttpOnly cookie read once); flash texts must never contain personal data.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from matching.report import percent
from service.auth.models import User
from service.web.csrf import FORM_FIELD, csrf_token, sign
from service.web.cookies import queue_cookie
from vetting.permissions import Action, allowed

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
FLASH_COOKIE = "reunite_flash"
FlashKind = Literal["success", "info", "error"]

NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


# --- the navigation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    action: Action
    order: int
    description: str


_NAV: dict[str, NavItem] = {}


def add_nav(label: str, path: str, action: Action, *, order: int = 50, description: str = "") -> None:
    """Show a link in the header to users whose roles grant `action` (call it in a route module)."""
    _NAV[path] = NavItem(label, path, action, order, description)


def nav_for(user: User | None) -> list[NavItem]:
    if user is None:
        return []
    return sorted(
        (item for item in _NAV.values() if allowed(user.roles, item.action)), key=lambda item: (item.order, item.label)
    )


# --- formatting ------------------------------------------------------------------------------------


def format_when(value: datetime | None) -> str:
    """`3 December 2026, 14:05 UTC`; an empty string for None."""
    return f"{value:%-d %B %Y, %H:%M} UTC" if value else ""


def format_day(value: date | datetime | None) -> str:
    return f"{value:%-d %B %Y}" if value else ""


def plural(count: int, one: str, many: str | None = None) -> str:
    """`1 photo`, `3 photos`."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


# What people read instead of a distance band's code (the bands come from the calibration).
# "beyond_threshold" is farther than the review threshold: only investigative leads are, never a match.
BAND_WORDS = {
    "strong": "Very similar",
    "possible": "Similar",
    "weak": "Somewhat similar",
    "beyond_threshold": "Beyond the review threshold",
}


def band_words(band: str | None) -> str:
    return BAND_WORDS.get(band or "", "Not available")


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(when=format_when, day=format_day, band=band_words, percent=percent)
    environment.globals.update(plural=plural, csrf_field_name=FORM_FIELD)
    return environment


templates = Jinja2Templates(env=_environment())


# --- rendering -------------------------------------------------------------------------------------


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200
) -> HTMLResponse:
    """The template `name` with the page context every template may use (see module docstring)."""
    user: User | None = getattr(request.state, "page_user", None)
    page = {
        "user": user,
        "nav": nav_for(user),
        "csrf_token": csrf_token(request),
        "flash": _take_flash(request),
        "current_path": request.url.path,
    }
    return templates.TemplateResponse(request, name, page | (context or {}), status_code=status_code)


def redirect(request: Request, url: str, *, flash: str | None = None, kind: FlashKind = "success") -> RedirectResponse:
    """303 See Other to a local `url`, leaving `flash` for the next page."""
    if flash:
        leave_flash(request, flash, kind)
    return RedirectResponse(url, status_code=303)


def leave_flash(request: Request, text: str, kind: FlashKind = "success") -> None:
    payload = base64.urlsafe_b64encode(json.dumps({"kind": kind, "text": text}).encode()).decode()
    queue_cookie(request, FLASH_COOKIE, f"{payload}.{sign(request, 'flash', payload)}")


def _take_flash(request: Request) -> dict[str, str] | None:
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    queue_cookie(request, FLASH_COOKIE, None)
    payload, _, mac = value.rpartition(".")
    if not secrets.compare_digest(mac.encode(), sign(request, "flash", payload).encode()):
        return None
    try:
        message = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    return {"kind": str(message.get("kind", "info")), "text": str(message.get("text", ""))}


def image_response(data: bytes, media_type: str) -> Response:
    """An image for an <img>: never cached, never sniffed (serve only what an audited service call returned)."""
    return Response(data, media_type=media_type, headers=NO_STORE)


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go to after signing in; anything else (another site, a scheme) gives `default`."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or "\n" in target:
        return default
    return target
