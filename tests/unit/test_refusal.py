"""The one refusal type: what the app's one handler answers for each kind of refusal."""

import pytest

from service.refusal import Conflict, NotFound, Refusal, Refused, TooMany, problem
from vetting.organisations import GrantRefused, TransitionRefused
from vetting.review import ReviewRefused


@pytest.mark.parametrize(
    ("refusal", "status"),
    [
        (ReviewRefused("x", code="not_yours"), 404),
        (ReviewRefused("x", code="own_case"), 403),
        (ReviewRefused("x", code="decided"), 409),
        (ReviewRefused("x", code="already_reviewed"), 409),
        (ReviewRefused("x", code="redacted"), 409),
        (TransitionRefused("x", code="final"), 409),
        (GrantRefused("x", code="unknown_role"), 422),
        (GrantRefused("x", code="not_held"), 403),
    ],
)
def test_a_policy_refusal_carries_the_status_it_is_answered_with(refusal, status):
    assert problem(refusal) == (status, {"detail": "x", "rule": refusal.code}, None)


def test_a_refusal_answers_its_sentence_and_rule_only_when_it_has_one():
    assert problem(Refusal(410, "This photo has been erased.")) == (
        410,
        {"detail": "This photo has been erased."},
        None,
    )
    assert problem(Refused("No.", rule="weak_password")) == (422, {"detail": "No.", "rule": "weak_password"}, None)
    assert (NotFound("Gone.").status, Conflict("Busy.").status) == (404, 409)


def test_too_many_says_when_to_try_again():
    refusal = TooMany("Too many applications.", retry_after=60)
    assert problem(refusal) == (429, {"detail": "Too many applications."}, {"Retry-After": "60"})
    assert refusal.retry_after == 60 and Refusal(401, "Please sign in again.").retry_after is None
