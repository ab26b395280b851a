"""The two-person rule for candidate matches: who may review one, and what each decision does.

A candidate is proposed by the machine and concluded only by people:

- **Who may review**: a reviewer of the organisation that submitted the case or of the one
  that owns the record (`may_see`). Anyone else is told the candidate does not exist.
- **Never the submitter**: the person who submitted the case cannot review its candidates.
- **Once each**: a reviewer records one decision per candidate, whatever it was.
- **Reject ends it**: any eligible `reject` makes the candidate `rejected`.
- **Confirm needs two**: the candidate is `confirmed` once two *different* eligible reviewers
  have confirmed it and at least one of the confirmers belongs to the organisation that owns
  the record. One confirmation, or several that are all from the submitting organisation
  (when that is not the record's organisation), leave it `awaiting_second_review`: a further
  confirmation from the record's organisation completes it. Such a confirmation is recorded,
  not refused, because refusing it would tell that reviewer what the first decision was.
- **Inconclusive** is recorded and changes nothing: `pending_review` stays pending,
  `awaiting_second_review` stays awaiting.
- `confirmed`, `rejected` and `redacted` (consent withdrawn) are final: no more decisions.

The status is always derived from the whole set of reviews (`status_from_reviews`), so the
order in which reviews arrive cannot change the outcome. A reviewer who has not decided sees
an open candidate only as `under_review` (`visible_status`): `awaiting_second_review` would
reveal that someone confirmed it. This module touches no database; the service stores the
outcome under a row lock so that two reviewers deciding at once are applied one after the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from vetting.refusal import PolicyRefused


class Decision(StrEnum):
    CONFIRM = "confirm"
    REJECT = "reject"
    INCONCLUSIVE = "inconclusive"


class Status(StrEnum):
    PENDING_REVIEW = "pending_review"
    AWAITING_SECOND_REVIEW = "awaiting_second_review"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    REDACTED = "redacted"


OPEN_STATUSES = frozenset({Status.PENDING_REVIEW, Status.AWAITING_SECOND_REVIEW})
FINAL_STATUSES = frozenset({Status.CONFIRMED, Status.REJECTED, Status.REDACTED})
# What a reviewer who has not decided yet sees instead of an open status.
UNDER_REVIEW = "under_review"
CONFIRMATIONS_REQUIRED = 2


class ReviewRefused(PolicyRefused):
    """The reviewer may not record this decision; `code` names the rule that refused.

    Codes: `not_yours` (neither organisation is the reviewer's: report "not found"),
    `redacted`, `decided`, `own_case`, `already_reviewed`.
    """


@dataclass(frozen=True)
class Parties:
    """Who is involved in a candidate: the case's organisation and submitter, the record's owner."""

    case_organisation_id: int
    case_submitted_by: int
    record_organisation_id: int | None  # None once the candidate is redacted


@dataclass(frozen=True)
class Reviewer:
    user_id: int
    organisation_id: int | None


@dataclass(frozen=True)
class PastReview:
    reviewer_id: int
    organisation_id: int
    decision: str


@dataclass(frozen=True)
class Outcome:
    """What a decision does to the candidate."""

    decision: Decision
    from_status: Status
    new_status: Status

    @property
    def changed(self) -> bool:
        return self.new_status is not self.from_status

    @property
    def confirmed_now(self) -> bool:
        """True for the decision that confirms the candidate: the moment to notify."""
        return self.changed and self.new_status is Status.CONFIRMED


def may_see(parties: Parties, organisation_id: int | None) -> bool:
    """True when a reviewer of `organisation_id` may see and review the candidate."""
    if organisation_id is None:
        return False
    return organisation_id in (parties.case_organisation_id, parties.record_organisation_id)


def decide(status: str, decision: str, *, parties: Parties, reviewer: Reviewer,
           past_reviews: Iterable[PastReview]) -> Outcome:
    """The outcome of `reviewer` recording `decision`, or ReviewRefused.

    `past_reviews` are every review recorded on the candidate so far; `status` is its
    stored status, which decides only whether it is still open.
    """
    status, decision = Status(status), Decision(decision)
    past = list(past_reviews)
    check_may_decide(status, parties=parties, reviewer=reviewer, past_reviews=past)
    assert reviewer.organisation_id is not None  # check_may_decide refuses reviewers of no organisation
    mine = PastReview(reviewer_id=reviewer.user_id, organisation_id=reviewer.organisation_id, decision=decision)
    return Outcome(decision, status, status_from_reviews([*past, mine], parties=parties))


def check_may_decide(status: str, *, parties: Parties, reviewer: Reviewer,
                     past_reviews: Iterable[PastReview]) -> None:
    """Raise ReviewRefused unless the reviewer may record a decision now.

    The order matters: an outsider learns nothing (not even that the candidate was
    decided), and a decided candidate is reported as decided before anything personal.
    """
    status = Status(status)
    if not may_see(parties, reviewer.organisation_id):
        raise ReviewRefused("There is no such candidate.", code="not_yours")
    if status is Status.REDACTED or parties.record_organisation_id is None:
        raise ReviewRefused("This candidate was withdrawn with the record's consent and cannot be reviewed.",
                            code="redacted")
    if status in FINAL_STATUSES:
        raise ReviewRefused(f"This candidate has already been {status.value}; no further decision is taken.",
                            code="decided")
    if reviewer.user_id == parties.case_submitted_by:
        raise ReviewRefused("You submitted this case, so two other reviewers must decide its candidates.",
                            code="own_case")
    if any(review.reviewer_id == reviewer.user_id for review in past_reviews):
        raise ReviewRefused("You have already recorded your decision on this candidate.",
                            code="already_reviewed")


def status_from_reviews(reviews: Iterable[PastReview], *, parties: Parties) -> Status:
    """The open or decided status that a set of reviews amounts to (see the module rule).

    Reviews by people who were never eligible (the submitter, an outsider) are ignored,
    so a review that slipped past the checks can neither confirm nor reject anything.
    """
    eligible = [review for review in reviews if _eligible(review, parties)]
    if any(review.decision == Decision.REJECT for review in eligible):
        return Status.REJECTED
    confirmers = {review.reviewer_id for review in eligible if review.decision == Decision.CONFIRM}
    from_record_owner = {review.reviewer_id for review in eligible if review.decision == Decision.CONFIRM
                         and review.organisation_id == parties.record_organisation_id}
    if len(confirmers) >= CONFIRMATIONS_REQUIRED and from_record_owner:
        return Status.CONFIRMED
    if confirmers:
        return Status.AWAITING_SECOND_REVIEW
    return Status.PENDING_REVIEW


def visible_status(status: str, *, has_reviewed: bool) -> str:
    """The status a reviewer may see: open statuses read `under_review` until they decide."""
    status = Status(status)
    if status in OPEN_STATUSES and not has_reviewed:
        return UNDER_REVIEW
    return status.value


def _eligible(review: PastReview, parties: Parties) -> bool:
    return review.reviewer_id != parties.case_submitted_by and may_see(parties, review.organisation_id)
