"""Request and response shapes of the records, consent and record-photo API.

Shapes only (lengths, types, enumerations). The checks that depend on today's
date or on settings (consent valid now and not too long, a child when they went
missing, nothing dated in the future) are made by `service.records.service`, so
that each refusal is a sentence a caseworker can act on rather than a field path.

Lawful bases offered (UK/EU GDPR Art. 6(1), each paired with its Art. 9(2)
condition for the biometric data a face embedding is):
- `consent`: the guardian's explicit consent (6(1)(a), 9(2)(a)). The usual basis.
- `vital_interests`: protecting the child's life where consent cannot be obtained
  in time (6(1)(d), 9(2)(c)).
- `legitimate_interests`: the organisation's own child-protection work (6(1)(f)),
  only with a substantial-public-interest condition under national law (9(2)(g)).
- `public_task`: an organisation with a statutory child-protection duty (6(1)(e), 9(2)(g)).
`contract` and `legal_obligation` are not offered: neither describes searching for
a missing child, and the second is the route of compelled disclosure to
authorities, which Reunite does not serve. Whatever the basis, every record still
carries the guardian's consent fields: the design makes consent a condition of
being searchable.

The guardian's name appears only in a record's detail view, to caseworkers of the
owning organisation (who entered it and need it to confirm a guardian's identity,
for example when they ask to withdraw); that view is audited. Lists never show it.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from service.photos.quality import FaceQualityOut


class LawfulBasis(StrEnum):
    CONSENT = "consent"
    VITAL_INTERESTS = "vital_interests"
    LEGITIMATE_INTERESTS = "legitimate_interests"
    PUBLIC_TASK = "public_task"


Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Paragraph = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class ConsentIn(BaseModel):
    guardian_name: Line = Field(description="Name of the person who gave consent (never shown in lists).")
    guardian_relationship: Name = Field(description="Their relationship to the child, e.g. mother, legal guardian.")
    responsibility_verified_by: Line = Field(
        description="How their parental responsibility was verified, e.g. 'birth certificate seen'."
    )
    lawful_basis: LawfulBasis
    purpose: Paragraph = Field(description="The purpose the guardian consented to, as told to them.")
    notice_version: Short = Field(description="Version of the privacy notice the guardian was given.")
    obtained_at: AwareDatetime = Field(description="When consent was given (with a time zone).")
    expires_at: AwareDatetime = Field(
        description="When consent ends (with a time zone); at most the configured maximum after it was obtained."
    )


class NewRecord(BaseModel):
    case_reference: Reference = Field(description="Your organisation's own reference; unique within it.")
    label: Reference = Field(
        description="A pseudonymous label such as 'Child A-17'. It must NOT be the child's name, nor "
        "anything that identifies the child on its own."
    )
    date_of_birth: date | None = Field(None, description="Give this or age_years, not both.")
    age_years: int | None = Field(
        None, ge=0, le=17, description="Age in whole years when they went missing, if the date of birth is unknown."
    )
    missing_since: date
    consent: ConsentIn


class ConsentSummary(BaseModel):
    """What lists show of a consent: never who gave it."""

    lawful_basis: str
    notice_version: str
    obtained_at: datetime
    expires_at: datetime
    withdrawn_at: datetime | None
    valid_now: bool


class ConsentDetails(ConsentSummary):
    guardian_name: str | None  # None once consent is withdrawn or expired
    guardian_relationship: str
    responsibility_verified_by: str
    purpose: str


class PhotoOut(BaseModel):
    id: int
    record_id: int | None
    status: str
    status_message: str
    faces_found: int | None
    taken_at: date | None
    age_at_photo: float | None
    created_at: datetime
    processed_at: datetime | None
    erased_at: datetime | None
    low_quality: bool = Field(
        False,
        description="The enrolled face is below a quality gate: it is in the gallery "
        "and searched, but matches may be missed. See face.quality_flags.",
    )
    face: FaceQualityOut | None = Field(
        None,
        description="The enrolled face's quality figures and flags; "
        "None until processed, or when no face was enrolled.",
    )


class PhotoAccepted(BaseModel):
    photo_id: int
    status: str


class RecordSummary(BaseModel):
    id: int
    case_reference: str
    label: str
    status: str
    date_of_birth: date | None
    age_years: int | None
    missing_since: date
    created_at: datetime
    photo_count: int
    consent: ConsentSummary


class RecordOut(RecordSummary):
    consent: ConsentDetails
    photos: list[PhotoOut]


class RecordPage(BaseModel):
    items: list[RecordSummary]
    total: int
    limit: int
    offset: int


class WithdrawalOut(BaseModel):
    record_id: int
    status: str
    withdrawn_at: datetime
    already_withdrawn: bool = Field(description="True when an earlier call had already erased everything.")
    photos_erased: int
    embeddings_removed: int
    candidates_redacted: int
