"""The organisation vetting state machine, expiry and role grants: every move, legal and illegal."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from vetting.organisations import (
    Decision,
    GrantRefused,
    Status,
    TransitionRefused,
    check_grant,
    decide,
    in_good_standing,
    is_expired,
    pending_approvals,
    vetting_expiry,
)

ALICE, BOB = 1, 2
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

# Every decision other than approve, from every status: where it leads, or None if refused.
SIMPLE_MOVES = {
    (Status.APPLIED, Decision.REJECT): Status.REJECTED,
    (Status.EXPIRED, Decision.REJECT): Status.REJECTED,
    (Status.APPROVED, Decision.SUSPEND): Status.SUSPENDED,
    (Status.SUSPENDED, Decision.REINSTATE): Status.APPROVED,
    (Status.APPROVED, Decision.EXPIRE): Status.EXPIRED,
    **{(status, Decision.REVOKE): Status.REVOKED for status in Status if status is not Status.REVOKED},
}


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("decision", [d for d in Decision if d is not Decision.APPROVE])
def test_every_simple_move_is_either_allowed_or_refused(status, decision):
    expected = SIMPLE_MOVES.get((status, decision))
    if expected is None:
        with pytest.raises(TransitionRefused) as refused:
            decide(status, decision, actor_id=ALICE)
        assert refused.value.code == ("final" if status is Status.REVOKED else "not_allowed")
        assert refused.value.message.startswith("This organisation ")
    else:
        outcome = decide(status, decision, actor_id=ALICE)
        assert (outcome.from_status, outcome.new_status, outcome.changed) == (status, expected, True)
        assert not outcome.starts_vetting_period


@pytest.mark.parametrize("status", [Status.APPLIED, Status.EXPIRED])
def test_two_different_admins_approve_an_organisation_being_vetted(status):
    first = decide(status, "approve", actor_id=ALICE, prior_approvals=set())
    assert first.new_status is status and not first.changed and not first.starts_vetting_period
    assert first.approvals == {ALICE}
    second = decide(status, "approve", actor_id=BOB, prior_approvals=first.approvals)
    assert second.new_status is Status.APPROVED and second.starts_vetting_period
    assert second.approvals == {ALICE, BOB}


def test_the_same_admin_cannot_approve_twice():
    with pytest.raises(TransitionRefused) as refused:
        decide("applied", "approve", actor_id=ALICE, prior_approvals={ALICE})
    assert refused.value.code == "same_approver"
    assert "different platform admin" in refused.value.message


def test_an_approval_needs_a_person():
    with pytest.raises(TransitionRefused) as refused:
        decide("applied", "approve", actor_id=None)
    assert refused.value.code == "no_actor"


@pytest.mark.parametrize("status", [Status.APPROVED, Status.REJECTED, Status.SUSPENDED, Status.REVOKED])
def test_approval_is_refused_outside_vetting(status):
    with pytest.raises(TransitionRefused):
        decide(status, "approve", actor_id=BOB, prior_approvals={ALICE})


def test_revoked_is_final():
    for decision in Decision:
        with pytest.raises(TransitionRefused) as refused:
            decide("revoked", decision, actor_id=ALICE, prior_approvals={BOB})
        assert refused.value.code == "final"
        assert "final" in refused.value.message


def test_unknown_statuses_and_decisions_are_errors():
    with pytest.raises(ValueError):
        decide("dormant", "approve", actor_id=ALICE)
    with pytest.raises(ValueError):
        decide("applied", "promote", actor_id=ALICE)


@dataclass
class Past:
    decision: str
    actor_id: int | None
    from_status: str
    to_status: str


def test_pending_approvals_count_only_the_current_round():
    assert pending_approvals([]) == set()
    history = [Past("approve", ALICE, "applied", "applied")]
    assert pending_approvals(history) == {ALICE}
    history += [Past("approve", BOB, "applied", "approved"), Past("expire", None, "approved", "expired")]
    assert pending_approvals(history) == set()  # re-vetting starts afresh
    history += [Past("approve", BOB, "expired", "expired")]
    assert pending_approvals(history) == {BOB}


def test_re_vetting_after_expiry_needs_two_new_approvals():
    history = [
        Past("approve", ALICE, "applied", "applied"),
        Past("approve", BOB, "applied", "approved"),
        Past("expire", None, "approved", "expired"),
    ]
    first = decide("expired", "approve", actor_id=ALICE, prior_approvals=pending_approvals(history))
    assert first.new_status is Status.EXPIRED
    history.append(Past("approve", ALICE, "expired", "expired"))
    with pytest.raises(TransitionRefused):
        decide("expired", "approve", actor_id=ALICE, prior_approvals=pending_approvals(history))
    assert (
        decide("expired", "approve", actor_id=BOB, prior_approvals=pending_approvals(history)).new_status
        is Status.APPROVED
    )


def test_vetting_expiry_and_is_expired():
    expires = vetting_expiry(NOW, 365)
    assert expires == NOW + timedelta(days=365)
    assert not is_expired("approved", expires, expires - timedelta(seconds=1))
    assert is_expired("approved", expires, expires)
    assert not is_expired("suspended", expires, expires + timedelta(days=1))
    assert not is_expired("approved", None, NOW)
    with pytest.raises(ValueError):
        vetting_expiry(NOW, 0)


@pytest.mark.parametrize(
    ("granter", "requested", "code"),
    [
        ({"org_admin"}, {"org_admin"}, None),
        ({"org_admin", "reviewer"}, {"reviewer"}, None),
        ({"org_admin", "caseworker", "reviewer"}, {"caseworker", "reviewer"}, None),
        ({"org_admin"}, {"reviewer"}, "not_held"),
        ({"org_admin", "caseworker"}, {"caseworker", "reviewer"}, "not_held"),
        ({"org_admin"}, {"platform_admin"}, "operator_role"),
        ({"platform_admin", "org_admin"}, {"platform_admin"}, "operator_role"),
        ({"org_admin"}, {"auditor"}, "operator_role"),
        ({"org_admin"}, {"superuser"}, "unknown_role"),
        ({"org_admin"}, set(), "unknown_role"),
    ],
)
def test_nobody_grants_a_role_they_do_not_hold(granter, requested, code):
    if code is None:
        assert check_grant(granter_roles=granter, requested_roles=requested) == requested
        return
    with pytest.raises(GrantRefused) as refused:
        check_grant(granter_roles=granter, requested_roles=requested)
    assert refused.value.code == code


def test_good_standing_is_approved_and_in_date():
    expires = NOW + timedelta(days=1)
    assert in_good_standing("approved", expires, NOW)
    assert in_good_standing("approved", None, NOW)  # no end date recorded
    assert not in_good_standing("approved", expires, expires)  # the period ends at its last instant
    for status in ("applied", "rejected", "suspended", "revoked", "expired"):
        assert not in_good_standing(status, expires, NOW), status
