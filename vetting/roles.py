"""The roles a user can hold; what each may do is in `vetting.permissions`."""

from enum import StrEnum


class Role(StrEnum):
    CASEWORKER = "caseworker"
    REVIEWER = "reviewer"
    ORG_ADMIN = "org_admin"
    PLATFORM_ADMIN = "platform_admin"
    AUDITOR = "auditor"
    # Operator staff who review the candidates no organisation can review independently:
    # those whose case and record belong to one organisation (vetting.review).
    PLATFORM_REVIEWER = "platform_reviewer"


# Roles held by operator staff, who belong to no organisation.
OPERATOR_ROLES = frozenset({Role.PLATFORM_ADMIN, Role.AUDITOR, Role.PLATFORM_REVIEWER})
# Roles held by staff of an approved organisation.
ORGANISATION_ROLES = frozenset({Role.CASEWORKER, Role.REVIEWER, Role.ORG_ADMIN})
