"""Every audit action code the service writes, in one enum.

`record_event` takes only these, and the auditors' filters (API, pages, exports) accept
exactly these, so a code cannot be written that oversight cannot search for. The values
are stored in hash-chained events: never rename one (the dotted calibration codes
included), or the stored events and their signatures no longer match; add new codes instead.
"""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    # Accounts: sign-in, tokens and second-factor enrolment (service/auth).
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    TOKEN_REFRESHED = "token_refreshed"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    LOGOUT = "logout"
    TOTP_ENROLLED = "totp_enrolled"
    TOTP_ENROL_FAILED = "totp_enrol_failed"

    # Operator accounts created from the command line (bootstrap, `reunite serve`).
    OPERATOR_CREATED = "operator_created"

    # Vetting: applications, decisions, members, webhooks and the domain denylist (service/organisations).
    ORGANISATION_APPLIED = "organisation_applied"
    APPLICATION_REFUSED = "application_refused"
    ORGANISATION_DECISION = "organisation_decision"
    USER_ADDED = "user_added"
    USER_ADD_REFUSED = "user_add_refused"
    USER_REMOVED = "user_removed"
    WEBHOOK_SET = "webhook_set"
    WEBHOOK_REMOVED = "webhook_removed"
    DENYLIST_DOMAIN_ADDED = "denylist_domain_added"
    DENYLIST_DOMAIN_REMOVED = "denylist_domain_removed"

    # Invitations to join an organisation (service/invitations).
    USER_INVITED = "user_invited"
    INVITATION_REVOKED = "invitation_revoked"
    INVITATION_ACCEPTED = "invitation_accepted"
    INVITATION_ACCEPT_FAILED = "invitation_accept_failed"

    # Records of missing children, their photos and consent (service/records).
    RECORD_CREATED = "record_created"
    RECORD_VIEWED = "record_viewed"
    PHOTO_UPLOADED = "photo_uploaded"
    PHOTO_VIEWED = "photo_viewed"  # also written when a reviewer opens a candidate's photo
    CONSENT_WITHDRAWN = "consent_withdrawn"

    # Retention: what the service erased by itself when consent or retention ran out (service/retention.py).
    CONSENT_EXPIRED = "consent_expired"
    CASE_PURGED = "case_purged"

    # Cases (searches) submitted, refused and read (service/cases).
    CASE_SUBMITTED = "case_submitted"
    CASE_REFUSED = "case_refused"
    CASE_VIEWED = "case_viewed"

    # Searches the worker ran for a case or for a new record photo (service/worker).
    SEARCH_STARTED = "search_started"
    SEARCH_FINISHED = "search_finished"
    TWO_WAY_SEARCH_FINISHED = "two_way_search_finished"

    # Review of candidates and the confirmed-match webhook (service/reviews).
    REVIEW_QUEUE_VIEWED = "review_queue_viewed"
    CANDIDATE_VIEWED = "candidate_viewed"
    REVIEW_RECORDED = "review_recorded"
    WEBHOOK_ABANDONED = "webhook_abandoned"

    # Threshold changes and published evaluations: what oversight must find (service/calibration).
    CALIBRATION_CREATED = "calibration.created"
    CALIBRATION_ACTIVATED = "calibration.activated"
    EVALUATION_PUBLISHED = "evaluation.published"

    # Re-embedding the gallery with another model (service/embedding).
    REEMBED_STARTED = "reembed_started"
    REEMBED_CANCELLED = "reembed_cancelled"
    REEMBED_FAILED = "reembed_failed"
    EMBEDDING_MODEL_SWITCHED = "embedding_model_switched"

    # The auditors' own exports and chain verifications (service/audit, service/web/routes/audit.py).
    AUDIT_EXPORTED = "audit_exported"
    AUDIT_VERIFIED = "audit_verified"

    # A demo sandbox seeded by `reunite demo` (service/demo).
    DEMO_SEEDED = "demo_seeded"


def known_action(code: str) -> AuditAction:
    """The action for `code`, or ValueError with a sentence an auditor can act on."""
    try:
        return AuditAction(code)
    except ValueError:
        raise ValueError(
            f"{code!r} is not an audit action code; the codes are listed in the audit "
            "page's Action menu, such as review_recorded or calibration.created."
        ) from None
