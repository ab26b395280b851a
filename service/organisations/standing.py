"""SQL form of the one standing rule, `vetting.organisations.in_good_standing`: approved and in date.

Every query that must leave out organisations not in good standing uses one of these two,
so the rule is written once: `in_good_standing` where `Organisation` (or an alias) is
joined, `organisation_in_good_standing` for an organisation id column without a join.
Data of an organisation not in good standing (records, cases, candidates) is hidden, not
deleted: it comes back when the organisation is reinstated or vetted again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select

from service.organisations.models import Organisation
from vetting.organisations import Status


def in_good_standing(now: datetime, organisation: Any = Organisation) -> ColumnElement[bool]:
    """True for rows of `organisation` (the table or an alias of it) approved and in date at `now`."""
    return and_(
        organisation.status == Status.APPROVED.value,
        or_(organisation.vetting_expires_at.is_(None), organisation.vetting_expires_at > now),
    )


def organisation_in_good_standing(organisation_id: Any, now: datetime) -> ColumnElement[bool]:
    """True when the organisation whose id is in the column `organisation_id` is in good standing."""
    return select(Organisation.id).where(Organisation.id == organisation_id, in_good_standing(now)).exists()
