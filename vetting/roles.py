"""The roles a user can hold; what each may do is in `vetting.permissions`."""

from enum import StrEnum


class Role(StrEnum):
    CASEWORKER = "caseworker"
    REVIEWER = "reviewer"
    ORG_ADMIN = "org_admin"
    PLATFORM_ADMIN = "platform_admin"
    AUDITOR = "auditor"


# Roles held by operator staff, who belong to no organisation.
OPERATOR_ROLES = frozenset({Role.PLATFORM_ADMIN, Role.AUDITOR})
# Roles held by staff of an approved organisation.
ORGANISATION_ROLES = frozenset({Role.CASEWORKER, Role.REVIEWER, Role.ORG_ADMIN})
