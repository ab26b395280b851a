"""The denylist in force: the shipped law-enforcement domains plus the ones admins added."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.organisations.models import DenylistDomain
from vetting.exclusion import Denylist


def current_denylist(session: Session) -> Denylist:
    return Denylist.shipped(session.scalars(select(DenylistDomain.domain)))
