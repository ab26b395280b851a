"""Request and response shapes of the auth API."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=16, max_length=200)


class Me(BaseModel):
    id: int
    email: str
    roles: list[str]
    organisation_id: int | None
    totp_enabled: bool


class TotpEnrolment(BaseModel):
    secret: str = Field(description="The authenticator key (base32), shown once.")
    otpauth_uri: str
