"""Records (consented gallery entries for one missing child) and their consents (ORM only).

A record carries a pseudonymous label, never the child's name. The guardian's name
sits only in the consent, which is needed to prove consent was given; neither is
ever written to logs or audit details.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base, UTCDateTime, utcnow


class RecordStatus(StrEnum):
    """A record's state; the values are what the database stores."""

    ACTIVE = "active"
    FOUND = "found"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class Record(Base):
    __tablename__ = "records"
    __table_args__ = (UniqueConstraint("organisation_id", "case_reference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    case_reference: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(100))  # pseudonymous
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    age_years: Mapped[int | None] = mapped_column(Integer)  # when the date of birth is unknown
    missing_since: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default=RecordStatus.ACTIVE, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    consent: Mapped[Consent] = relationship(back_populates="record", uselist=False, lazy="joined")


class Consent(Base):
    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("records.id"), unique=True)
    guardian_name: Mapped[str | None] = mapped_column(String(200))  # cleared on withdrawal
    guardian_relationship: Mapped[str] = mapped_column(String(50))
    responsibility_verified_by: Mapped[str] = mapped_column(String(200))
    lawful_basis: Mapped[str] = mapped_column(String(50))
    purpose: Mapped[str] = mapped_column(Text)
    notice_version: Mapped[str] = mapped_column(String(20))
    obtained_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    record: Mapped[Record] = relationship(back_populates="consent")

    def valid_at(self, moment: datetime) -> bool:
        return self.withdrawn_at is None and self.obtained_at <= moment < self.expires_at
