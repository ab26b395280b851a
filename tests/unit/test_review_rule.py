"""The two-person rule of vetting.review, branch by branch, and the distance bands reviewers see."""

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest

from matching.calibration import DEFAULT_REVIEW_THRESHOLD, DISTANCE_BANDS, distance_band
from vetting.review import (
    UNDER_REVIEW,
    Parties,
    PastReview,
    ReviewRefused,
    Reviewer,
    Status,
    check_may_decide,
    decide,
    may_see,
    status_from_reviews,
    visible_status,
)

CASE_ORG, RECORD_ORG, OUTSIDER_ORG = 1, 2, 3
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # the clock every decision here is taken at
OLD = NOW - timedelta(days=400)  # when the established accounts were created
SUBMITTER = Reviewer(10, CASE_ORG, OLD)
CASE_1, CASE_2 = Reviewer(11, CASE_ORG, OLD), Reviewer(12, CASE_ORG, OLD)
RECORD_1, RECORD_2 = Reviewer(21, RECORD_ORG, OLD), Reviewer(22, RECORD_ORG, OLD)
OUTSIDER = Reviewer(31, OUTSIDER_ORG, OLD)
PLATFORM = Reviewer(41, None, OLD, platform=True)
PARTIES = Parties(case_organisation_id=CASE_ORG, case_submitted_by=SUBMITTER.user_id, record_organisation_id=RECORD_ORG)
REDACTED_PARTIES = Parties(
    case_organisation_id=CASE_ORG, case_submitted_by=SUBMITTER.user_id, record_organisation_id=None
)
ONE_ORG = Parties(case_organisation_id=CASE_ORG, case_submitted_by=SUBMITTER.user_id, record_organisation_id=CASE_ORG)


def past(reviewer: Reviewer, decision: str, at: datetime = NOW) -> PastReview:
    return PastReview(
        reviewer_id=reviewer.user_id,
        organisation_id=reviewer.organisation_id,
        decision=decision,
        account_created_at=reviewer.account_created_at,
        reviewed_at=at,
        platform=reviewer.platform,
    )


def run(*steps: tuple[Reviewer, str], parties: Parties = PARTIES) -> Status:
    """Apply decisions one after another, as the service does, and return the final status."""
    status, reviews = Status.PENDING_REVIEW, []
    for reviewer, decision in steps:
        status = decide(status, decision, parties=parties, reviewer=reviewer, past_reviews=reviews, now=NOW).new_status
        reviews.append(past(reviewer, decision))
    return status


def refusal(status: str, reviewer: Reviewer, reviews=(), parties: Parties = PARTIES) -> str:
    with pytest.raises(ReviewRefused) as refused:
        decide(status, "confirm", parties=parties, reviewer=reviewer, past_reviews=reviews, now=NOW)
    assert refused.value.message.endswith(".")
    return refused.value.code


# --- who may review -----------------------------------------------------------------------------


def test_reviewers_of_the_submitting_and_the_record_organisation_may_see_a_candidate():
    assert may_see(PARTIES, CASE_ORG) and may_see(PARTIES, RECORD_ORG)
    assert not may_see(PARTIES, OUTSIDER_ORG)
    assert not may_see(PARTIES, None)  # an operator belongs to no organisation
    assert not may_see(REDACTED_PARTIES, RECORD_ORG) and may_see(REDACTED_PARTIES, CASE_ORG)


@pytest.mark.parametrize("status", list(Status))
def test_an_outsider_is_told_nothing_whatever_the_status(status):
    assert refusal(status, OUTSIDER) == "not_yours"


def test_a_reviewer_of_no_organisation_is_an_outsider():
    assert refusal("pending_review", Reviewer(40, None)) == "not_yours"


@pytest.mark.parametrize("status", ["pending_review", "awaiting_second_review", "redacted"])
def test_a_redacted_candidate_takes_no_decision(status):
    parties = REDACTED_PARTIES if status != "redacted" else PARTIES
    assert refusal(status, CASE_1, parties=parties) == "redacted"


@pytest.mark.parametrize("status", ["confirmed", "rejected"])
@pytest.mark.parametrize("reviewer", [CASE_1, RECORD_1, SUBMITTER])
def test_a_decided_candidate_takes_no_further_decision(status, reviewer):
    assert refusal(status, reviewer) == "decided"


@pytest.mark.parametrize("status", ["pending_review", "awaiting_second_review"])
def test_the_submitter_never_reviews_their_own_case(status):
    assert refusal(status, SUBMITTER, [past(CASE_1, "confirm")]) == "own_case"
    assert refusal(status, SUBMITTER, parties=ONE_ORG) == "own_case"


@pytest.mark.parametrize("first_decision", ["confirm", "inconclusive"])
def test_a_reviewer_decides_once_whatever_they_decided(first_decision):
    status = "awaiting_second_review" if first_decision == "confirm" else "pending_review"
    assert refusal(status, RECORD_1, [past(RECORD_1, first_decision)]) == "already_reviewed"


def test_check_may_decide_passes_an_eligible_reviewer():
    check_may_decide(
        "awaiting_second_review", parties=PARTIES, reviewer=RECORD_1, past_reviews=[past(CASE_1, "confirm")]
    )


def test_unknown_decisions_and_statuses_are_errors():
    with pytest.raises(ValueError):
        decide("pending_review", "maybe", parties=PARTIES, reviewer=CASE_1, past_reviews=[], now=NOW)
    with pytest.raises(ValueError):
        decide("lost", "confirm", parties=PARTIES, reviewer=CASE_1, past_reviews=[], now=NOW)


# --- what each decision does --------------------------------------------------------------------


@pytest.mark.parametrize("reviewer", [CASE_1, RECORD_1])
@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        ("confirm", Status.AWAITING_SECOND_REVIEW),
        ("reject", Status.REJECTED),
        ("inconclusive", Status.PENDING_REVIEW),
    ],
)
def test_the_first_decision(reviewer, decision, expected):
    outcome = decide("pending_review", decision, parties=PARTIES, reviewer=reviewer, past_reviews=[], now=NOW)
    assert (outcome.from_status, outcome.new_status) == (Status.PENDING_REVIEW, expected)
    assert outcome.changed is (expected is not Status.PENDING_REVIEW)
    assert not outcome.confirmed_now


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        ("inconclusive", Status.AWAITING_SECOND_REVIEW),
        ("reject", Status.REJECTED),
    ],
)
def test_inconclusive_or_reject_after_one_confirmation(decision, expected):
    outcome = decide(
        "awaiting_second_review",
        decision,
        parties=PARTIES,
        reviewer=RECORD_1,
        past_reviews=[past(CASE_1, "confirm")],
        now=NOW,
    )
    assert outcome.new_status is expected and not outcome.confirmed_now


@pytest.mark.parametrize(("first", "second"), [(CASE_1, RECORD_1), (RECORD_1, CASE_1), (RECORD_1, RECORD_2)])
def test_two_confirmations_including_the_record_organisation_confirm(first, second):
    outcome = decide(
        "awaiting_second_review",
        "confirm",
        parties=PARTIES,
        reviewer=second,
        past_reviews=[past(first, "confirm")],
        now=NOW,
    )
    assert outcome.new_status is Status.CONFIRMED and outcome.confirmed_now


def test_two_confirmations_from_the_submitting_organisation_only_still_await_the_record_organisation():
    assert run((CASE_1, "confirm"), (CASE_2, "confirm")) is Status.AWAITING_SECOND_REVIEW
    # The next confirmation from the record's organisation completes it ...
    assert run((CASE_1, "confirm"), (CASE_2, "confirm"), (RECORD_1, "confirm")) is Status.CONFIRMED
    # ... and a rejection from anyone eligible still ends it.
    assert run((CASE_1, "confirm"), (CASE_2, "confirm"), (RECORD_1, "reject")) is Status.REJECTED
    assert run((CASE_1, "confirm"), (CASE_2, "confirm"), (RECORD_1, "inconclusive")) is Status.AWAITING_SECOND_REVIEW


def test_when_one_organisation_submitted_the_case_and_owns_the_record_a_platform_reviewer_must_confirm():
    # Two accounts of the one organisation are not two independent people.
    assert run((CASE_1, "confirm"), (CASE_2, "confirm"), parties=ONE_ORG) is Status.AWAITING_SECOND_REVIEW
    assert run((CASE_1, "confirm"), (CASE_2, "confirm"), (PLATFORM, "confirm"), parties=ONE_ORG) is Status.CONFIRMED
    assert run((PLATFORM, "confirm"), (CASE_1, "confirm"), parties=ONE_ORG) is Status.CONFIRMED
    assert run((PLATFORM, "reject"), parties=ONE_ORG) is Status.REJECTED


def test_a_platform_reviewer_sees_only_candidates_that_need_one():
    assert may_see(ONE_ORG, None, platform=True)
    assert not may_see(PARTIES, None, platform=True) and not may_see(REDACTED_PARTIES, None, platform=True)
    assert refusal("pending_review", PLATFORM) == "not_yours"
    # ... and two platform reviewers alone still lack the record's organisation.
    assert (
        run((PLATFORM, "confirm"), (Reviewer(42, None, OLD, platform=True), "confirm"), parties=ONE_ORG)
        is Status.AWAITING_SECOND_REVIEW
    )


def fresh(user_id: int, organisation_id: int | None, *, days_old: int, platform: bool = False) -> Reviewer:
    return Reviewer(user_id, organisation_id, NOW - timedelta(days=days_old), platform=platform)


def test_two_new_accounts_cannot_confirm_together():
    new_1, new_2 = fresh(23, RECORD_ORG, days_old=2), fresh(24, RECORD_ORG, days_old=29)
    assert run((new_1, "confirm"), (new_2, "confirm")) is Status.AWAITING_SECOND_REVIEW
    # A new account of the record's organisation and the submitting organisation's own account neither.
    assert run((CASE_1, "confirm"), (new_1, "confirm")) is Status.AWAITING_SECOND_REVIEW
    # An established reviewer of another organisation than the submitting one completes it.
    assert run((new_1, "confirm"), (new_2, "confirm"), (RECORD_1, "confirm")) is Status.CONFIRMED
    assert run((CASE_1, "confirm"), (new_1, "confirm"), (RECORD_1, "confirm")) is Status.CONFIRMED
    assert run((new_1, "confirm"), (fresh(25, RECORD_ORG, days_old=30), "confirm")) is Status.CONFIRMED  # the bound
    # A new platform reviewer is not established either.
    assert (
        run((CASE_1, "confirm"), (fresh(43, None, days_old=1, platform=True), "confirm"), parties=ONE_ORG)
        is Status.AWAITING_SECOND_REVIEW
    )


def test_an_accounts_age_is_taken_when_it_confirmed_so_the_outcome_never_changes_later():
    new = fresh(23, RECORD_ORG, days_old=5)
    reviews = [past(CASE_1, "confirm"), past(new, "confirm")]
    assert status_from_reviews(reviews, parties=PARTIES) is Status.AWAITING_SECOND_REVIEW
    later = [past(CASE_1, "confirm"), past(new, "confirm", at=NOW + timedelta(days=90))]
    assert status_from_reviews(later, parties=PARTIES) is Status.CONFIRMED  # it had aged when it confirmed
    assert status_from_reviews(reviews, parties=PARTIES, new_account_days=5) is Status.CONFIRMED  # the setting
    unknown = PastReview(reviewer_id=26, organisation_id=RECORD_ORG, decision="confirm")  # no dates: not established
    assert status_from_reviews([past(CASE_1, "confirm"), unknown], parties=PARTIES) is Status.AWAITING_SECOND_REVIEW


def test_inconclusive_decisions_neither_count_nor_block():
    assert run((CASE_1, "inconclusive"), (RECORD_1, "inconclusive")) is Status.PENDING_REVIEW
    assert run((CASE_1, "inconclusive"), (RECORD_1, "confirm"), (CASE_2, "confirm")) is Status.CONFIRMED
    assert run((CASE_1, "inconclusive"), (RECORD_1, "confirm")) is Status.AWAITING_SECOND_REVIEW


def test_a_reject_after_two_confirmations_is_refused_because_the_candidate_is_decided():
    reviews = [past(CASE_1, "confirm"), past(RECORD_1, "confirm")]
    with pytest.raises(ReviewRefused):
        decide("confirmed", "reject", parties=PARTIES, reviewer=RECORD_2, past_reviews=reviews, now=NOW)


def test_reviews_by_the_submitter_or_an_outsider_count_for_nothing():
    assert (
        status_from_reviews([past(SUBMITTER, "confirm"), past(RECORD_1, "confirm")], parties=PARTIES)
        is Status.AWAITING_SECOND_REVIEW
    )
    assert (
        status_from_reviews([past(OUTSIDER, "confirm"), past(RECORD_1, "confirm")], parties=PARTIES)
        is Status.AWAITING_SECOND_REVIEW
    )
    assert (
        status_from_reviews([past(SUBMITTER, "reject"), past(OUTSIDER, "reject")], parties=PARTIES)
        is Status.PENDING_REVIEW
    )


def test_every_order_of_every_set_of_reviews_ends_in_the_same_valid_status():
    """Walk all sequences of up to three different eligible reviewers and check the invariants."""
    eligible = [CASE_1, CASE_2, RECORD_1, RECORD_2]
    decisions = ["confirm", "reject", "inconclusive"]
    for size in (1, 2, 3):
        for reviewers in itertools.permutations(eligible, size):
            for chosen in itertools.product(decisions, repeat=size):
                steps = list(zip(reviewers, chosen))
                try:
                    status = run(*steps)
                except ReviewRefused as refused:
                    # Only a decided candidate refuses an eligible newcomer.
                    assert refused.code == "decided"
                    continue
                confirmers = {r.user_id for r, d in steps if d == "confirm"}
                by_owner = {r.user_id for r, d in steps if d == "confirm" and r.organisation_id == RECORD_ORG}
                if "reject" in chosen:
                    assert status is Status.REJECTED
                elif len(confirmers) >= 2 and by_owner:
                    assert status is Status.CONFIRMED
                elif confirmers:
                    assert status is Status.AWAITING_SECOND_REVIEW
                else:
                    assert status is Status.PENDING_REVIEW
                reviews = [past(r, d) for r, d in steps]
                assert {status_from_reviews(order, parties=PARTIES) for order in itertools.permutations(reviews)} == {
                    status
                }


# --- what a reviewer sees -----------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending_review", "awaiting_second_review"])
def test_an_open_status_is_hidden_until_the_viewer_has_decided(status):
    assert visible_status(status, has_reviewed=False) == UNDER_REVIEW
    assert visible_status(status, has_reviewed=True) == status


@pytest.mark.parametrize("status", ["confirmed", "rejected", "redacted"])
def test_a_final_status_is_shown_to_everyone_who_may_see_the_candidate(status):
    assert visible_status(status, has_reviewed=False) == status


# --- distance bands -----------------------------------------------------------------------------


def test_distance_bands_cover_every_distance_from_strongest_to_weakest():
    (strong, strong_edge), (possible, possible_edge) = DISTANCE_BANDS
    assert 0 < strong_edge < possible_edge < DEFAULT_REVIEW_THRESHOLD
    assert [distance_band(d) for d in (0.0, strong_edge)] == [strong, strong]
    assert [distance_band(d) for d in (math.nextafter(strong_edge, 1), possible_edge)] == [possible, possible]
    assert [distance_band(d) for d in (math.nextafter(possible_edge, 1), DEFAULT_REVIEW_THRESHOLD, 2.0)] == ["weak"] * 3
    assert distance_band(None) is None


@pytest.mark.parametrize("bad", [-0.1, math.nan])
def test_a_distance_that_is_no_distance_is_an_error(bad):
    with pytest.raises(ValueError):
        distance_band(bad)
