"""Request and response shapes of the invitations API (shape only; the rules are in service.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from service.organisations.schemas import Email

# The password's strength is judged by the service (`create_user`), which says what is wrong in words.
Password = Annotated[str, StringConstraints(max_length=1024)]
Token = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class NewInvitation(BaseModel):
    email: Email
    roles: list[Annotated[str, StringConstraints(max_length=20)]] = Field(min_length=1, max_length=5)


class InvitationOut(BaseModel):
    id: int
    email: str
    roles: list[str]
    state: Literal["pending", "accepted", "revoked", "expired"]
    created_at: datetime
    expires_at: datetime
    accepted_user_id: int | None = None


class InvitationCreated(BaseModel):
    id: int
    email: str
    roles: list[str]
    expires_at: datetime
    accept_url: str = Field(description="Shown once: pass it on to the colleague by your own channel.")


class AcceptInvitation(BaseModel):
    token: Token
    password: Password


class Accepted(BaseModel):
    user_id: int
