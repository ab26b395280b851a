"""The invitation page: a colleague opens the link an org_admin passed on and chooses a password.

Public (the person has no account yet); the token in the address is the only
credential. Thin over `service.invitations.service`: a link that is unknown,
expired, withdrawn or used gets one plain page that does not say which, and every
failure counts towards the sign-in rate limit of the caller's address. The answer
is never cached and sends no referrer (security middleware), so the link does not
linger in caches or leak to other sites.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import Response

from service.auth.passwords import MIN_PASSWORD_LENGTH, totp_uri
from service.auth.routes import client_address
from service.db import utcnow
from service.deps import PUBLIC, DbSession, SettingsDep
from service.invitations import service as invitations
from service.refusal import Refused
from service.web.pages import page_router
from service.web.render import redirect, render
from service.web.routes.org_admin import ROLE_CHOICES

router = page_router(tags=["pages: invitations"])
ROLE_MEANINGS = {value: (words, meaning) for value, words, meaning in ROLE_CHOICES}


@router.get("/invitations/{token}", **PUBLIC)
def invitation(request: Request, token: str, session: DbSession, settings: SettingsDep) -> Response:
    """Who invites them, to do what, and the form to choose a password."""
    return _page(request, session, settings, token)


@router.post("/invitations/{token}", **PUBLIC)
def accept(
    request: Request,
    token: str,
    session: DbSession,
    settings: SettingsDep,
    password: Annotated[str, Form(max_length=1024)] = "",
    password_again: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """Create the account with the chosen password; then sign in as usual."""
    if password != password_again:
        return _page(
            request,
            session,
            settings,
            token,
            status_code=422,
            password_problem=True,
            error="The two passwords are not the same. Type the same password twice.",
        )
    try:
        user = invitations.accept_invitation(
            session, token=token, password=password, settings=settings, address=client_address(request), now=utcnow()
        )
    except Refused as refused:
        if refused.rule != "weak_password":
            raise  # an address the denylist now refuses: the refusal's own page
        session.rollback()
        return _page(
            request, session, settings, token, error=refused.message, password_problem=True, status_code=refused.status
        )
    if user.totp_secret:
        return render(
            request,
            "invitations/authenticator.html",
            {
                "title": "Add Reunite to your authenticator app",
                "email": user.email,
                "totp_uri": totp_uri(user.totp_secret, email=user.email, issuer=settings.totp_issuer),
                "totp_secret": user.totp_secret,
                "enrolling": False,
            },
        )
    return redirect(
        request,
        "/sign-in",
        flash="Your account is ready. Sign in with your email address and the password you have just chosen.",
    )


def _page(
    request: Request,
    session,
    settings,
    token: str,
    *,
    error: str | None = None,
    password_problem: bool = False,
    status_code: int = 200,
) -> Response:
    found, organisation = invitations.invitation_for_token(
        session, token=token, settings=settings, address=client_address(request), now=utcnow()
    )
    return render(
        request,
        "invitations/accept.html",
        {
            "title": "Join your organisation on Reunite",
            "invitation": found,
            "organisation": organisation,
            "roles": [ROLE_MEANINGS.get(role, (role, "")) for role in found.role_codes],
            "token": token,
            "min_password": MIN_PASSWORD_LENGTH,
            "error": error,
            "password_problem": password_problem,
        },
        status_code=status_code,
    )
