"""Every ORM model, imported in one place so Alembic and the app see the whole schema."""

from service.audit.models import AuditCheckpoint, AuditEvent
from service.auth.models import LoginAttempt, RefreshToken, User, UserRole
from service.calibration.models import Calibration, EvaluationReport
from service.cases.models import Case
from service.embedding.models import ActiveEmbeddingModel, ReembedFailure, ReembedJob
from service.invitations.models import Invitation
from service.organisations.models import DenylistDomain, Organisation, OrganisationDecision
from service.photos.models import Embedding, IndexChange, Photo
from service.records.models import Consent, Record
from service.reviews.models import Candidate, Notification, Review

__all__ = [
    "ActiveEmbeddingModel",
    "AuditCheckpoint",
    "AuditEvent",
    "Calibration",
    "Candidate",
    "Case",
    "Consent",
    "DenylistDomain",
    "Embedding",
    "EvaluationReport",
    "IndexChange",
    "Invitation",
    "Notification",
    "Photo",
    "ReembedFailure",
    "ReembedJob",
    "Record",
    "Review",
    "LoginAttempt",
    "Organisation",
    "OrganisationDecision",
    "RefreshToken",
    "User",
    "UserRole",
]
