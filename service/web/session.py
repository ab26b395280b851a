"""The browser session: the API's own tokens, kept in HttpOnly cookies.

Signing in goes through `service.auth.service.sign_in` (rate limits, second factor,
audit event), exactly like `POST /api/v1/auth/token`; the access token and the
refresh token it returns are stored in two cookies that scripts cannot read
(HttpOnly), that are never sent from another site (SameSite=Strict) and, outside
local development, only over HTTPS (Secure). They are session cookies: closing
the browser forgets them.

On every request the access token is checked by `service.deps.user_for_token`, the
check the API uses (signature, expiry, the user's status and token version), and
the user's organisation is checked again, so a suspension or a sign-out takes
effect on the very next page. When the short-lived access token has expired, a page
load exchanges the refresh token for a new pair (`rotate_refresh_token`, which
revokes the whole sign-in if a spent refresh token is ever replayed). Photos and
status polls never refresh: the browser asks for them in parallel, and two
parallel exchanges of one refresh token would look like a replay. Signing out
raises the token version and revokes the refresh tokens, so a copied cookie is
worthless afterwards.

The cookies are queued with `service.web.cookies.queue_cookie`, which says how
they are protected.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from service.auth import service as auth_service
from service.auth.models import User
from service.auth.service import TokenPair
from service.deps import ACTION_KEY, DbSession, SettingsDep, organisation_standing, user_for_token
from service.organisations.models import Organisation
from service.refusal import Refusal
from service.settings import Settings
from service.web.cookies import queue_cookie
from service.web.csrf import renew_csrf_secret
from vetting.permissions import Action, allowed

ACCESS_COOKIE = "reunite_access"
REFRESH_COOKIE = "reunite_refresh"


class SignInRequired(Exception):
    """No valid session: the page sends the browser to the sign-in page."""


class OrganisationUnavailable(Exception):
    """The user's organisation is pending, rejected, suspended, expired or revoked."""

    def __init__(self, organisation: Organisation | None, standing: str):
        super().__init__(standing)
        self.organisation, self.standing = organisation, standing


class NotPermitted(Exception):
    """The user's roles do not grant the page's action."""


# --- the session cookies ----------------------------------------------------------------------


def start_session(request: Request, pair: TokenPair) -> None:
    """Keep a freshly issued token pair in the session cookies; a new sign-in gets a new CSRF secret."""
    queue_cookie(request, ACCESS_COOKIE, pair.access_token)
    queue_cookie(request, REFRESH_COOKIE, pair.refresh_token)
    renew_csrf_secret(request)


def end_session(request: Request) -> None:
    queue_cookie(request, ACCESS_COOKIE, None)
    queue_cookie(request, REFRESH_COOKIE, None)
    renew_csrf_secret(request)


# --- the signed-in user --------------------------------------------------------------------------


def signed_in_user(request: Request, session: Session, settings: Settings, *, refresh: bool = True) -> User:
    """The session's user, whatever their organisation's standing; SignInRequired otherwise."""
    try:
        user = user_for_token(session, settings, request.cookies.get(ACCESS_COOKIE))
    except HTTPException:
        refreshed = _refreshed_user(request, session, settings) if refresh else None
        if refreshed is None:
            raise SignInRequired() from None
        user = refreshed
    request.state.page_user = user
    return user


def _refreshed_user(request: Request, session: Session, settings: Settings) -> User | None:
    refresh_token = request.cookies.get(REFRESH_COOKIE)
    if not refresh_token:
        return None
    try:
        pair = auth_service.rotate_refresh_token(session, settings=settings, refresh_token=refresh_token)
        user = user_for_token(session, settings, pair.access_token)
    except (Refusal, HTTPException):
        end_session(request)
        return None
    queue_cookie(request, ACCESS_COOKIE, pair.access_token)
    queue_cookie(request, REFRESH_COOKIE, pair.refresh_token)
    return user


def _check_standing(session: Session, user: User) -> User:
    if user.organisation_id is not None:
        organisation = session.get(Organisation, user.organisation_id)
        standing = organisation_standing(organisation)
        if standing is not None:
            raise OrganisationUnavailable(organisation, standing)
    return user


def optional_page_user(request: Request, session: Session, settings: Settings) -> User | None:
    """For public pages: the signed-in user (standing checked, OrganisationUnavailable if not), or None."""
    try:
        user = signed_in_user(request, session, settings)
    except SignInRequired:
        return None
    return _check_standing(session, user)


def get_page_user(request: Request, session: DbSession, settings: SettingsDep) -> User:
    """The signed-in user of an organisation in good standing (or an operator)."""
    return _check_standing(session, signed_in_user(request, session, settings))


def get_photo_user(request: Request, session: DbSession, settings: SettingsDep) -> User:
    """As `get_page_user`, without refreshing the session (images and status polls)."""
    return _check_standing(session, signed_in_user(request, session, settings, refresh=False))


PageUser = Annotated[User, Depends(get_page_user)]
PhotoUser = Annotated[User, Depends(get_photo_user)]


class _RequiresOnPage:
    """Admits the page's user only if a role grants `action`."""

    def __init__(self, action: Action):
        self.action = action

    def __call__(self, user: PageUser) -> User:
        return _admit(user, self.action)


class _RequiresForPhoto(_RequiresOnPage):
    def __call__(self, user: PhotoUser) -> User:
        return _admit(user, self.action)


def _admit(user: User, action: Action) -> User:
    if not allowed(user.roles, action):
        raise NotPermitted()
    return user


def page_permission(action: Action) -> dict[str, Any]:
    """Route keyword arguments for a page: a signed-in user whose roles grant `action`.

    Declare `user: PageUser` in the route to receive that user.
    """
    return {"dependencies": [Depends(_RequiresOnPage(action))], "openapi_extra": {ACTION_KEY: action.value}}


def photo_permission(action: Action) -> dict[str, Any]:
    """As `page_permission`, for images and status polls (declare `user: PhotoUser`)."""
    return {"dependencies": [Depends(_RequiresForPhoto(action))], "openapi_extra": {ACTION_KEY: action.value}}
