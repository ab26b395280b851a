"""Auth API: token (OAuth2 password flow with optional one-time code), refresh, logout, me."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request

from service.auth import service
from service.auth.schemas import Me, RefreshRequest, TokenResponse
from service.deps import PUBLIC, CurrentUser, DbSession, SettingsDep, permission
from vetting.permissions import Action

router = APIRouter(tags=["auth"])
# How sign-in and refresh refuse (service.AuthRefused), documented for the OpenAPI schema.
SIGN_IN_REFUSALS = {401: {"description": "Wrong or missing credentials, code or refresh token"},
                    403: {"description": "The account's email domain is refused"},
                    429: {"description": "Too many failed sign-ins"}}


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/auth/token", response_model=TokenResponse, responses=SIGN_IN_REFUSALS, **PUBLIC)
def token(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    otp: Annotated[str | None, Form(max_length=10)] = None,
) -> TokenResponse:
    try:
        pair = service.sign_in(session, settings=settings, email=username, password=password, otp=otp,
                               address=client_address(request))
    except service.AuthRefused as refused:
        raise HTTPException(refused.status, refused.message) from refused
    return TokenResponse(**asdict(pair))


@router.post("/auth/refresh", response_model=TokenResponse, responses=SIGN_IN_REFUSALS, **PUBLIC)
def refresh(body: RefreshRequest, session: DbSession, settings: SettingsDep) -> TokenResponse:
    try:
        pair = service.rotate_refresh_token(session, settings=settings, refresh_token=body.refresh_token)
    except service.AuthRefused as refused:
        raise HTTPException(refused.status, refused.message) from refused
    return TokenResponse(**asdict(pair))


@router.post("/auth/logout", status_code=204, **permission(Action.READ_SELF))
def logout(user: CurrentUser, session: DbSession) -> None:
    service.sign_out(session, user=user)


@router.get("/me", response_model=Me, **permission(Action.READ_SELF))
def me(user: CurrentUser) -> Me:
    return Me(id=user.id, email=user.email, roles=sorted(user.roles), organisation_id=user.organisation_id,
              totp_enabled=user.totp_secret is not None)
