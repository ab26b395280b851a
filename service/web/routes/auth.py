"""Start page, sign in (with the second factor where required) and sign out.

Signing in goes through `service.auth.service.sign_in`, the function behind the
API's token endpoint: the same rate limits, second factor, denylist check and
audit event. An applicant whose organisation is being vetted is signed in and shown
the organisation status page on every page, with a way to sign out; a user whose
organisation is suspended, expired, rejected or revoked gets no session, and the
same page says why. An account that must set up its authenticator app is shown its
key once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import Response

from service.auth import service as auth_service
from service.auth.routes import client_address
from service.deps import PUBLIC, DbSession, SettingsDep
from service.refusal import Refusal
from service.web.pages import organisation_status_page, page_router
from service.web.render import redirect, render, safe_next
from service.web.session import (
    REFRESH_COOKIE,
    OrganisationUnavailable,
    SignInRequired,
    end_session,
    optional_page_user,
    signed_in_user,
    start_session,
)

router = page_router(tags=["pages: sign-in"])


@router.get("/", **PUBLIC)
def home(request: Request, session: DbSession, settings: SettingsDep) -> Response:
    """The start page: what the signed-in user's roles let them do, or what Reunite is."""
    optional_page_user(request, session, settings)
    return render(request, "home.html", {"title": "Reunite"})


@router.get("/sign-in", **PUBLIC)
def sign_in_form(request: Request, session: DbSession, settings: SettingsDep, next: str = "/") -> Response:
    if optional_page_user(request, session, settings) is not None:
        return redirect(request, safe_next(next))
    return render(request, "auth/sign_in.html", _form(next=safe_next(next)))


@router.post("/sign-in", **PUBLIC)
def sign_in(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    otp: Annotated[str, Form(max_length=10)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    target = safe_next(next)
    if not email.strip() or not password:
        return render(
            request,
            "auth/sign_in.html",
            _form(email=email, next=target, error="Enter your email address and your password."),
            status_code=400,
        )
    try:
        pair = auth_service.sign_in(
            session,
            settings=settings,
            email=email,
            password=password,
            otp=otp.replace(" ", "") or None,
            address=client_address(request),
        )
    except auth_service.EnrolmentRequired:
        return _enrol(request, session, settings, email=email, password=password)
    except auth_service.OrganisationRefused as refused:  # why, without a session (item 15: no tokens)
        return organisation_status_page(
            request, OrganisationUnavailable(refused.organisation, refused.standing), signed_in=False
        )
    except Refusal as refused:
        page = render(
            request,
            "auth/sign_in.html",
            _form(email=email, next=target, error=refused.message),
            status_code=refused.status,
        )
        page.headers.update(refused.headers or {})
        return page
    start_session(request, pair)
    return redirect(request, target)


@router.post("/sign-out", **PUBLIC)
def sign_out(request: Request, session: DbSession, settings: SettingsDep) -> Response:
    """End the session: every token of the user stops working at once, on every device."""
    try:
        user = signed_in_user(request, session, settings)  # an expired access token is renewed, then ended
    except SignInRequired:
        user = None
    if user is not None:
        auth_service.sign_out(session, user=user)
    elif refresh_token := request.cookies.get(REFRESH_COOKIE):  # no session to renew (a suspended organisation)
        auth_service.sign_out_refresh_token(session, refresh_token=refresh_token)
    end_session(request)
    return redirect(request, "/sign-in", flash="You have signed out.", kind="info")


def _enrol(request: Request, session, settings, *, email: str, password: str) -> Response:
    """The right password of an account that must set up its authenticator app: its key, shown once."""
    try:
        enrolment = auth_service.enrol_totp(
            session, settings=settings, email=email, password=password, address=client_address(request)
        )
    except Refusal as refused:
        return render(
            request, "auth/sign_in.html", _form(email=email, error=refused.message), status_code=refused.status
        )
    return render(
        request,
        "invitations/authenticator.html",
        {
            "title": "Add Reunite to your authenticator app",
            "email": email.strip().lower(),
            "totp_uri": enrolment.uri,
            "totp_secret": enrolment.secret,
            "enrolling": True,
        },
    )


def _form(*, email: str = "", next: str = "/", error: str | None = None) -> dict:
    return {"title": "Sign in", "email": email, "next": next, "error": error}
