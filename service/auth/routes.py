"""Auth API: token (OAuth2 password flow with optional one-time code), refresh, revoke, logout, me."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Form, Request

from service.auth import service
from service.auth.schemas import Me, RefreshRequest, TokenResponse, TotpEnrolment
from service.deps import PUBLIC, CurrentUser, DbSession, SettingsDep, permission
from service.problems import Responses
from vetting.permissions import Action

router = APIRouter(tags=["auth"])
# How sign-in and refresh refuse (service.refusal.Refusal), documented for the OpenAPI schema.
SIGN_IN_REFUSALS: Responses = {
    401: {"description": "Wrong or missing credentials, code or refresh token"},
    403: {
        "description": "The account's email domain is refused, its organisation cannot use "
        "the service now, or its second factor must be set up first"
    },
    429: {"description": "Too many failed sign-ins or applications"},
}


def client_address(request: Request) -> str:
    """The client's address: the peer's, or what trusted proxies (REUNITE_TRUSTED_PROXIES) forwarded."""
    peer = request.client.host if request.client else "unknown"
    return forwarded_client(peer, request.headers.get("x-forwarded-for"), request.app.state.settings.trusted_proxies)


def forwarded_client(peer: str, forwarded_for: str | None, trusted_proxies: Iterable[str]) -> str:
    """The first address, from the nearest hop back, that is not a trusted proxy.

    X-Forwarded-For is believed only as far as it was written by trusted proxies: each appends
    the address it received from, so a client's own (forged) entries are further left, and
    never reached while an untrusted hop comes first. Anything unparseable stops the walk.
    """
    networks = [ipaddress.ip_network(proxy, strict=False) for proxy in trusted_proxies]

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    client = peer
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    while trusted(client) and hops:
        hop = hops.pop()
        try:
            client = str(ipaddress.ip_address(hop))
        except ValueError:
            break
    return client


@router.post("/auth/token", response_model=TokenResponse, responses=SIGN_IN_REFUSALS, **PUBLIC)
def token(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    otp: Annotated[str | None, Form(max_length=10)] = None,
) -> TokenResponse:
    pair = service.sign_in(
        session, settings=settings, email=username, password=password, otp=otp, address=client_address(request)
    )
    return TokenResponse(**asdict(pair))


@router.post("/auth/totp/enrol", response_model=TotpEnrolment, responses=SIGN_IN_REFUSALS, **PUBLIC)
def enrol_totp(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
) -> TotpEnrolment:
    """Set up the second factor of an account whose role needs one and that has none yet (shown once)."""
    enrolment = service.enrol_totp(
        session, settings=settings, email=username, password=password, address=client_address(request)
    )
    return TotpEnrolment(secret=enrolment.secret, otpauth_uri=enrolment.uri)


@router.post("/auth/refresh", response_model=TokenResponse, responses=SIGN_IN_REFUSALS, **PUBLIC)
def refresh(body: RefreshRequest, session: DbSession, settings: SettingsDep) -> TokenResponse:
    pair = service.rotate_refresh_token(session, settings=settings, refresh_token=body.refresh_token)
    return TokenResponse(**asdict(pair))


@router.post("/auth/revoke", status_code=204, **PUBLIC)
def revoke(body: RefreshRequest, session: DbSession) -> None:
    """End the sign-in a refresh token belongs to (RFC 7009): the token is the proof, so this works
    when no access token can be had any more, as when the organisation is suspended. An unknown
    token is answered the same."""
    service.sign_out_refresh_token(session, refresh_token=body.refresh_token)


@router.post("/auth/logout", status_code=204, **permission(Action.READ_SELF))
def logout(user: CurrentUser, session: DbSession) -> None:
    service.sign_out(session, user=user)


@router.get("/me", response_model=Me, **permission(Action.READ_SELF))
def me(user: CurrentUser) -> Me:
    return Me(
        id=user.id,
        email=user.email,
        roles=sorted(user.roles),
        organisation_id=user.organisation_id,
        totp_enabled=user.totp_secret is not None,
    )
