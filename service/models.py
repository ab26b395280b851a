"""Every ORM model, imported in one place so Alembic and the app see the whole schema."""

from service.audit.models import AuditCheckpoint, AuditEvent
from service.auth.models import LoginAttempt, RefreshToken, User, UserRole
from service.organisations.models import DenylistDomain, Organisation, OrganisationDecision

__all__ = [
    "AuditCheckpoint",
    "AuditEvent",
    "DenylistDomain",
    "LoginAttempt",
    "Organisation",
    "OrganisationDecision",
    "RefreshToken",
    "User",
    "UserRole",
]
