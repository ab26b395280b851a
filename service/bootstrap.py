"""First start: the database schema and the first platform admin."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit.actions import AuditAction
from service.audit.service import record_event
from service.auth.models import User, UserRole
from service.auth.passwords import totp_uri
from service.auth.service import create_user
from vetting.roles import Role


@dataclass(frozen=True)
class NewOperator:
    email: str
    password: str
    totp_uri: str


def create_first_admin(session: Session, *, email: str, issuer: str) -> NewOperator | None:
    """Create a platform admin when there is none; returns its credentials once."""
    exists = session.scalars(
        select(User.id).join(UserRole).where(UserRole.role == Role.PLATFORM_ADMIN.value).limit(1)
    ).first()
    if exists is not None:
        return None
    password = secrets.token_urlsafe(18)
    user = create_user(session, email=email, password=password, roles={Role.PLATFORM_ADMIN.value})
    record_event(
        session,
        action=AuditAction.OPERATOR_CREATED,
        target_type="user",
        target_id=user.id,
        details={"role": Role.PLATFORM_ADMIN.value, "via": "first_start"},
    )
    session.commit()
    assert user.totp_secret is not None  # create_user always enrols TOTP
    return NewOperator(
        email=user.email, password=password, totp_uri=totp_uri(user.totp_secret, email=user.email, issuer=issuer)
    )
