"""Request and response shapes of the organisations, users and denylist API.

Bodies are validated here for shape only (lengths, formats, required fields); the
policy (the law-enforcement exclusion, the vetting state machine, who may grant
which role) is applied by the service through `vetting`, so that its refusals can
name the rule that refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from service.auth.passwords import MIN_PASSWORD_LENGTH
from vetting.organisations import Status

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=1024)]
# Shape only: the domain is checked (IDNA, denylist) by vetting.exclusion.check_email, and the
# address is kept as typed (lower-cased) so that signing in with it later matches.
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
CountryCode = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$")]


class Attestation(BaseModel):
    no_law_enforcement: bool
    purpose: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Application(BaseModel):
    name: Text
    org_type: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
    country: CountryCode
    registration_number: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    website: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    contact_email: Email
    admin_email: Email
    admin_password: Password
    attestation: Attestation


class ApplicationReceived(BaseModel):
    id: int
    status: Status


class DecisionRequest(BaseModel):
    decision: Literal["approve", "reject"]
    reason: Reason


class ReasonRequest(BaseModel):
    reason: Reason


class DecisionOut(BaseModel):
    id: int
    decision: str
    from_status: str
    to_status: str
    actor_id: int | None
    reason: str
    at: datetime


class CheckOut(BaseModel):
    """One law-enforcement check, re-run against today's denylist."""

    check: str  # org_type, contact_email, website, attestation or user_email
    user_id: int | None = None
    passed: bool
    rule: str | None = None
    detail: str | None = None


class OrganisationSummary(BaseModel):
    id: int
    name: str
    org_type: str
    country: str
    status: str
    applied_at: datetime
    approved_at: datetime | None
    vetting_expires_at: datetime | None


class OrganisationOut(OrganisationSummary):
    registration_number: str
    website: str
    contact_email: str
    attests_no_law_enforcement: bool
    purpose: str
    # Operators only (None for an organisation's own users):
    decisions: list[DecisionOut] | None = None
    pending_approvals: list[int] | None = None
    checks: list[CheckOut] | None = None


class NewUser(BaseModel):
    email: Email
    password: Password
    roles: list[Annotated[str, StringConstraints(max_length=20)]] = Field(min_length=1, max_length=5)


class UserOut(BaseModel):
    id: int
    email: str
    roles: list[str]
    status: str
    created_at: datetime


class NewDenylistDomain(BaseModel):
    domain: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=253)]
    reason: Reason


class DenylistEntry(BaseModel):
    domain: str
    source: Literal["shipped", "added"]
    reason: str | None = None
    added_by: int | None = None
    added_at: datetime | None = None


class WebhookIn(BaseModel):
    url: str = Field(min_length=9, max_length=300)


class WebhookOut(BaseModel):
    url: str
    secret: str = Field(description="Shown once: verify X-Reunite-Signature with it.")
