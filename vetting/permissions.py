"""Who may do what: one table of role × action, deny by default.

Routes name the `Action` they perform; `allowed(roles, action)` is the only
question the service asks. An action absent from every role's row is refused to
everyone. Organisation scoping (a caseworker sees only their organisation's
records) is a second, separate check in the service: this table says what kind of
thing a role may do, not on whose objects.
"""

from enum import StrEnum

from vetting.roles import Role


class Action(StrEnum):
    READ_SELF = "read_self"
    READ_ORGANISATION = "read_organisation"
    LIST_ORGANISATIONS = "list_organisations"
    DECIDE_ORGANISATION = "decide_organisation"  # approve, reject, suspend, reinstate, revoke
    MANAGE_DENYLIST = "manage_denylist"
    MANAGE_USERS = "manage_users"  # an organisation admin, within their organisation
    MANAGE_WEBHOOK = "manage_webhook"  # where confirmed matches are also sent
    READ_AUDIT = "read_audit"
    EXPORT_AUDIT = "export_audit"
    MANAGE_RECORDS = "manage_records"
    SUBMIT_CASES = "submit_cases"
    READ_CASES = "read_cases"
    REVIEW_CANDIDATES = "review_candidates"
    VIEW_PHOTOS = "view_photos"
    READ_NOTIFICATIONS = "read_notifications"  # an organisation's confirmed-match notices (and marking them read)
    READ_MODEL_CARD = "read_model_card"  # the model in use, its calibration and measured limits
    MANAGE_MODELS = "manage_models"  # start or cancel re-embedding the gallery with another model


_EVERY_ROLE = {Action.READ_SELF, Action.READ_MODEL_CARD}

PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.CASEWORKER: frozenset(
        _EVERY_ROLE
        | {
            Action.READ_ORGANISATION,
            Action.MANAGE_RECORDS,
            Action.SUBMIT_CASES,
            Action.READ_CASES,
            Action.READ_NOTIFICATIONS,
        }
    ),
    Role.REVIEWER: frozenset(
        _EVERY_ROLE
        | {
            Action.READ_ORGANISATION,
            Action.READ_CASES,
            Action.REVIEW_CANDIDATES,
            Action.VIEW_PHOTOS,
            Action.READ_NOTIFICATIONS,
        }
    ),
    Role.ORG_ADMIN: frozenset(_EVERY_ROLE | {Action.READ_ORGANISATION, Action.MANAGE_USERS, Action.MANAGE_WEBHOOK}),
    Role.PLATFORM_ADMIN: frozenset(
        _EVERY_ROLE
        | {
            Action.READ_ORGANISATION,
            Action.LIST_ORGANISATIONS,
            Action.DECIDE_ORGANISATION,
            Action.MANAGE_DENYLIST,
            Action.MANAGE_MODELS,
        }
    ),
    Role.PLATFORM_REVIEWER: frozenset(_EVERY_ROLE | {Action.REVIEW_CANDIDATES, Action.VIEW_PHOTOS}),
    Role.AUDITOR: frozenset(
        _EVERY_ROLE | {Action.READ_ORGANISATION, Action.LIST_ORGANISATIONS, Action.READ_AUDIT, Action.EXPORT_AUDIT}
    ),
}


def allowed(roles: frozenset[str] | set[str], action: Action) -> bool:
    """True when any of the roles grants the action; unknown roles grant nothing."""
    for name in roles:
        try:
            role = Role(name)
        except ValueError:
            continue
        if action in PERMISSIONS[role]:
            return True
    return False
