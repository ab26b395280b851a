"""Request dependencies: settings, the database session, the current user and permissions.

Every API route is marked either `permission(Action.X)` (authenticated, and the
user's roles must grant X) or `PUBLIC`; `create_app` refuses to start if a route
has neither, so nothing is reachable without a deliberate decision. The current
user is re-read from the database on every request, with their organisation, so
a suspension, a removal or a logout takes effect on the very next request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from annotated_types import Interval
from fastapi import BackgroundTasks, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from service.auth.models import User, UserStatus
from service.auth.tokens import InvalidToken, read_access_token
from service.db import utcnow
from service.organisations.models import Organisation
from vetting.organisations import in_good_standing
from service.photos.storage import PhotoVault
from service.reviews import webhooks
from service.settings import Settings
from service.dispatch import Dispatcher
from vetting.permissions import Action, allowed

# Every id, cursor and offset that reaches the database, whether in a path, a query or a body, is one
# of these. Id columns are INTEGER (32 bits on PostgreSQL; SQLite's driver stops at 64 bits): a larger
# number made the driver fail (a 500), so it is refused first (422, with a sentence).
DB_INT_MAX = 2**31 - 1
DbId = Annotated[int, Interval(ge=1, le=DB_INT_MAX)]
DbOffset = Annotated[int, Interval(ge=0, le=DB_INT_MAX)]

ACTION_KEY = "x-reunite-action"
PUBLIC_KEY = "x-reunite-public"
PUBLIC: dict[str, Any] = {"openapi_extra": {PUBLIC_KEY: True}}
# Marks a route that reads a photo upload itself, after sign-in (service.photos.upload_form): only such a
# route may receive a body as large as the upload cap (service.body_limit), and a page's CSRF check
# leaves its form to it (service.web.csrf).
UPLOAD_KEY = "x-reunite-upload"


def reads_upload(route: object) -> bool:
    return bool((getattr(route, "openapi_extra", None) or {}).get(UPLOAD_KEY))


oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.rollback()  # anything a route did not commit is discarded
        session.close()


def get_vault(request: Request) -> PhotoVault:
    return request.app.state.vault


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


def get_webhook_delivery(request: Request, background: BackgroundTasks) -> Callable[[int], None]:
    """A notification's first webhook attempt, queued to run after the response is sent."""
    factory, allow_loopback = request.app.state.session_factory, request.app.state.settings.webhook_allow_loopback

    def deliver_after_response(notification_id: int) -> None:
        background.add_task(webhooks.deliver, factory, notification_id, allow_loopback=allow_loopback)

    return deliver_after_response


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbSession = Annotated[Session, Depends(get_session)]
VaultDep = Annotated[PhotoVault, Depends(get_vault)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
WebhookDeliveryDep = Annotated[Callable[[int], None], Depends(get_webhook_delivery)]


def unauthenticated(message: str = "Please sign in again.") -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def get_current_user(
    session: DbSession, settings: SettingsDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User:
    user = user_for_token(session, settings, token)
    if user.organisation_id is not None:
        check_organisation_active(session.get(Organisation, user.organisation_id))
    return user


def user_for_token(session: Session, settings: Settings, token: str | None) -> User:
    """The active user an access token names, at its current token version; 401 otherwise.

    Shared by the API's bearer header and the web pages' session cookie.
    """
    if not token:
        raise unauthenticated("Sign-in is required.")
    try:
        claims = read_access_token(token, secret=settings.signing_secret())
    except InvalidToken as exc:
        raise unauthenticated() from exc
    user = session.get(User, claims.user_id)
    if user is None or user.status != UserStatus.ACTIVE or user.token_version != claims.token_version:
        raise unauthenticated()
    return user


def organisation_standing(organisation: Organisation | None) -> str | None:
    """Why the organisation cannot use Reunite now (a status name, or "none"); None when it can."""
    if organisation is None:
        return "none"
    if in_good_standing(organisation.status, organisation.vetting_expires_at, utcnow()):
        return None
    return "expired" if organisation.status == "approved" else organisation.status


def check_organisation_active(organisation: Organisation | None) -> None:
    """Refuse (403) anyone whose organisation is not approved and in date."""
    standing = organisation_standing(organisation)
    if standing is not None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            ORGANISATION_STATUS_MESSAGES.get(standing, "Your organisation cannot use Reunite at present."),
        )


ORGANISATION_STATUS_MESSAGES = {
    "none": "Your account belongs to no organisation.",
    "applied": "Your organisation's application is still being vetted.",
    "rejected": "Your organisation's application was not approved.",
    "suspended": "Your organisation is suspended; contact the Reunite operators.",
    "revoked": "Your organisation's access has been revoked.",
    "expired": "Your organisation's vetting has expired and must be renewed.",
}

CurrentUser = Annotated[User, Depends(get_current_user)]


class Requires:
    """Dependency that admits the current user only if a role grants `action`."""

    def __init__(self, action: Action):
        self.action = action

    def __call__(self, user: CurrentUser) -> User:
        if not allowed(user.roles, self.action):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Your role does not allow this.")
        return user


def permission(action: Action) -> dict[str, Any]:
    """Route keyword arguments: require `action`, and record it in the OpenAPI schema."""
    return {"dependencies": [Depends(Requires(action))], "openapi_extra": {ACTION_KEY: action.value}}
