"""Organisations, their vetting decisions and the extra law-enforcement denylist (ORM only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base, UTCDateTime, utcnow


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    org_type: Mapped[str] = mapped_column(String(50))
    country: Mapped[str] = mapped_column(String(2))
    registration_number: Mapped[str] = mapped_column(String(100))
    website: Mapped[str] = mapped_column(String(300))
    contact_email: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20), index=True)
    attests_no_law_enforcement: Mapped[bool] = mapped_column(Boolean)
    purpose: Mapped[str] = mapped_column(Text)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    vetting_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Optional: confirmed matches are also POSTed here, signed with HMAC-SHA256.
    webhook_url: Mapped[str | None] = mapped_column(String(300))
    webhook_secret: Mapped[str | None] = mapped_column(String(64))

    decisions: Mapped[list[OrganisationDecision]] = relationship(
        back_populates="organisation", order_by="OrganisationDecision.id"
    )


class OrganisationDecision(Base):
    """Who decided what about an organisation, when and why; never edited."""

    __tablename__ = "organisation_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    from_status: Mapped[str] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organisation: Mapped[Organisation] = relationship(back_populates="decisions")


class DenylistDomain(Base):
    """A law-enforcement domain added by a platform admin to the shipped list."""

    __tablename__ = "denylist_domains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
