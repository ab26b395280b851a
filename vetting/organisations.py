"""The organisation vetting state machine, re-vetting expiry and who may grant which role.

An organisation applies (`applied`) and becomes `approved` only once two different
platform admins have approved it; a first approval is recorded but changes nothing.
It may be rejected while being vetted, suspended and reinstated while approved,
revoked from any status (revocation is final), and it expires when its vetting
period ends; an expired organisation is vetted again the same way (two approvals)
or rejected. `decide` answers every move with an `Outcome` or a `TransitionRefused`;
the service stores the outcome, this module never touches a database. Inside an
organisation, nobody can grant a role they do not hold themselves (`check_grant`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar, Protocol

from vetting.refusal import PolicyRefused
from vetting.roles import OPERATOR_ROLES, ORGANISATION_ROLES, Role


class Status(StrEnum):
    APPLIED = "applied"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    SUSPEND = "suspend"
    REINSTATE = "reinstate"
    REVOKE = "revoke"
    EXPIRE = "expire"


APPROVALS_REQUIRED = 2

# Statuses in which an organisation is being vetted: approvals count towards `approved`.
_BEING_VETTED = frozenset({Status.APPLIED, Status.EXPIRED})

# Every decision but approval: the statuses it may start from, and where it leads.
_MOVES: dict[Decision, tuple[frozenset[Status], Status]] = {
    Decision.REJECT: (_BEING_VETTED, Status.REJECTED),
    Decision.SUSPEND: (frozenset({Status.APPROVED}), Status.SUSPENDED),
    Decision.REINSTATE: (frozenset({Status.SUSPENDED}), Status.APPROVED),
    Decision.REVOKE: (frozenset(Status) - {Status.REVOKED}, Status.REVOKED),
    Decision.EXPIRE: (frozenset({Status.APPROVED}), Status.EXPIRED),
}

_STATUS_PHRASES = {
    Status.APPLIED: "is still being vetted",
    Status.APPROVED: "is approved",
    Status.REJECTED: "was rejected",
    Status.SUSPENDED: "is suspended",
    Status.REVOKED: "was revoked, which is final",
    Status.EXPIRED: "has expired vetting",
}

_PARTICIPLES = {
    Decision.APPROVE: "approved",
    Decision.REJECT: "rejected",
    Decision.SUSPEND: "suspended",
    Decision.REINSTATE: "reinstated",
    Decision.REVOKE: "revoked",
    Decision.EXPIRE: "expired",
}


class TransitionRefused(PolicyRefused):
    """The decision is not possible from the organisation's status; `code` names why."""

    status = 409


@dataclass(frozen=True)
class Outcome:
    """What a decision does: the status before and after, and the approvals now on record."""

    decision: Decision
    from_status: Status
    new_status: Status
    approvals: frozenset[int] = frozenset()

    @property
    def changed(self) -> bool:
        return self.new_status is not self.from_status

    @property
    def starts_vetting_period(self) -> bool:
        """True for the approval that completes vetting: a new period begins now."""
        return self.decision is Decision.APPROVE and self.new_status is Status.APPROVED


class PastDecision(Protocol):
    decision: str
    actor_id: int | None
    from_status: str
    to_status: str


def decide(
    status: str, decision: str, *, actor_id: int | None, prior_approvals: Iterable[int] = frozenset()
) -> Outcome:
    """The outcome of `decision` on an organisation in `status`, or TransitionRefused.

    `prior_approvals` are the platform admins who approved in the current round of
    vetting (see `pending_approvals`); `actor_id` is None only for the scheduled expiry.
    """
    status, decision = Status(status), Decision(decision)
    if decision is Decision.APPROVE:
        return _approve(status, actor_id=actor_id, prior_approvals=frozenset(prior_approvals))
    sources, target = _MOVES[decision]
    if status not in sources:
        raise _not_possible(status, decision)
    return Outcome(decision, status, target)


def pending_approvals(history: Iterable[PastDecision]) -> frozenset[int]:
    """Who approved since the organisation's status last changed (oldest decision first).

    A round of vetting starts when the organisation enters `applied` or `expired`;
    approvals from an earlier round (before an expiry, say) do not count again.
    """
    approvers: set[int] = set()
    for past in history:
        if past.from_status != past.to_status:
            approvers.clear()
        elif past.decision == Decision.APPROVE and past.actor_id is not None:
            approvers.add(past.actor_id)
    return frozenset(approvers)


def vetting_expiry(approved_at: datetime, period_days: int) -> datetime:
    """When vetting granted at `approved_at` ends and must be renewed."""
    if period_days < 1:
        raise ValueError("the vetting period must be at least one day")
    return approved_at + timedelta(days=period_days)


def is_expired(status: str, vetting_expires_at: datetime | None, now: datetime) -> bool:
    """True when an approved organisation's vetting period has ended (and it must expire)."""
    return Status(status) is Status.APPROVED and vetting_expires_at is not None and vetting_expires_at <= now


def in_good_standing(status: str, vetting_expires_at: datetime | None, now: datetime) -> bool:
    """The one rule for "this organisation may take part now": approved, and its vetting not expired.

    Everything an organisation's staff or data do goes through it, at the moment they do it:
    its users' requests, its records in the gallery, its cases being searched, candidates
    (both sides) in queues and views, photos, webhooks. The SQL form every query uses is
    `service.organisations.standing`; keep the two the same.
    """
    return Status(status) is Status.APPROVED and not is_expired(status, vetting_expires_at, now)


def _approve(status: Status, *, actor_id: int | None, prior_approvals: frozenset[int]) -> Outcome:
    if status not in _BEING_VETTED:
        raise _not_possible(status, Decision.APPROVE)
    if actor_id is None:
        raise TransitionRefused("An approval must be made by a platform admin.", code="no_actor")
    if actor_id in prior_approvals:
        raise TransitionRefused(
            "You have already approved this organisation; a second, different platform admin must approve it.",
            code="same_approver",
        )
    approvals = prior_approvals | {actor_id}
    new_status = Status.APPROVED if len(approvals) >= APPROVALS_REQUIRED else status
    return Outcome(Decision.APPROVE, status, new_status, approvals)


def _not_possible(status: Status, decision: Decision) -> TransitionRefused:
    return TransitionRefused(
        f"This organisation {_STATUS_PHRASES[status]}, so it cannot be {_PARTICIPLES[decision]}.",
        code="final" if status is Status.REVOKED else "not_allowed",
    )


# --- granting roles inside an organisation ------------------------------------------------


class GrantRefused(PolicyRefused):
    """A role grant is refused; `code` is unknown_role, operator_role or not_held."""

    status = 403
    statuses: ClassVar[dict[str, int]] = {"unknown_role": 422}


def check_grant(*, granter_roles: Iterable[str], requested_roles: Iterable[str]) -> frozenset[Role]:
    """The requested roles, if the granter may give them all; GrantRefused otherwise.

    Organisation users hold only organisation roles (never platform_admin or
    auditor), and nobody can grant a role they do not hold themselves, taken
    literally: an org_admin who is not a reviewer cannot make anyone a reviewer.
    """
    requested = frozenset(requested_roles)
    if not requested:
        raise GrantRefused("Give the user at least one role.", code="unknown_role")
    known = {role.value for role in Role}
    if unknown := sorted(requested - known):
        raise GrantRefused(
            f"Unknown role: {', '.join(unknown)}. Roles are: {', '.join(sorted(ORGANISATION_ROLES))}.",
            code="unknown_role",
        )
    roles = frozenset(Role(name) for name in requested)
    if roles & OPERATOR_ROLES:
        raise GrantRefused("Users of an organisation cannot be platform admins or auditors.", code="operator_role")
    if missing := sorted(roles - frozenset(granter_roles)):
        raise GrantRefused(
            f"You can grant only roles you hold yourself, and you do not hold: {', '.join(missing)}.", code="not_held"
        )
    return roles
