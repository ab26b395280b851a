"""The two-person rule for candidate matches: who may review one, and what each decision does.

A candidate is proposed by the machine and concluded only by people:

- **Who may review**: a reviewer of the organisation that submitted the case or of the one
  that owns the record (`may_see`); a platform reviewer (operator staff, of no organisation)
  only when one organisation both submitted the case and owns the record, since nobody else
  could then confirm it independently. Anyone else is told the candidate does not exist.
- **Never the submitter**: the person who submitted the case cannot review its candidates.
- **Once each**: a reviewer records one decision per candidate, whatever it was.
- **Reject ends it**: any eligible `reject` makes the candidate `rejected`.
- **Confirm needs two**: the candidate is `confirmed` once two *different* eligible reviewers
  have confirmed it and at least one of the confirmers belongs to the organisation that owns
  the record. One confirmation, or several that are all from the submitting organisation
  (when that is not the record's organisation), leave it `awaiting_second_review`: a further
  confirmation from the record's organisation completes it. Such a confirmation is recorded,
  not refused, because refusing it would tell that reviewer what the first decision was.
- **Confirm needs someone independent**: two accounts are not two people. Among the
  confirmers there must also be one who is *independent and established*: a platform reviewer
  or a reviewer of another organisation than the case's submitting one, whose account was at
  least `new_account_days` old when they confirmed. So two accounts created within those days,
  or created by the submitting organisation's own admin action (every account of that
  organisation is, or is its applicant: all of them count as such), cannot together confirm;
  an organisation that submitted the case and owns the record needs a platform reviewer.
  Until then the candidate stays `awaiting_second_review` and a further confirmation by an
  independent, established reviewer completes it. The age is taken at the time of each
  review (the clock is the caller's `now`), so the outcome never changes afterwards.
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
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar

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
# An account younger than this when it confirms is not an independent, established confirmer.
DEFAULT_NEW_ACCOUNT_DAYS = 30


class ReviewRefused(PolicyRefused):
    """The reviewer may not record this decision; `code` names the rule that refused.

    Codes: `not_yours` (neither organisation is the reviewer's: report "not found"),
    `redacted`, `decided`, `own_case`, `already_reviewed`.
    """

    status = 409
    statuses: ClassVar[dict[str, int]] = {"not_yours": 404, "own_case": 403}


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
    account_created_at: datetime | None = None  # unknown: never counts as established
    platform: bool = False  # a platform reviewer: operator staff, of no organisation


@dataclass(frozen=True)
class PastReview:
    reviewer_id: int
    organisation_id: int | None  # None for a platform reviewer
    decision: str
    account_created_at: datetime | None = None
    reviewed_at: datetime | None = None
    platform: bool = False


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


def may_see(parties: Parties, organisation_id: int | None, *, platform: bool = False) -> bool:
    """True when a reviewer of `organisation_id` (or a platform reviewer) may see and review the candidate."""
    if platform:
        return needs_platform_reviewer(parties)
    if organisation_id is None:
        return False
    return organisation_id in (parties.case_organisation_id, parties.record_organisation_id)


def needs_platform_reviewer(parties: Parties) -> bool:
    """One organisation submitted the case and owns the record: only a platform reviewer is independent."""
    return parties.record_organisation_id is not None and parties.case_organisation_id == parties.record_organisation_id


def decide(
    status: str,
    decision: str,
    *,
    parties: Parties,
    reviewer: Reviewer,
    past_reviews: Iterable[PastReview],
    now: datetime,
    new_account_days: int = DEFAULT_NEW_ACCOUNT_DAYS,
) -> Outcome:
    """The outcome of `reviewer` recording `decision` at `now`, or ReviewRefused.

    `past_reviews` are every review recorded on the candidate so far; `status` is its
    stored status, which decides only whether it is still open.
    """
    status, decision = Status(status), Decision(decision)
    past = list(past_reviews)
    check_may_decide(status, parties=parties, reviewer=reviewer, past_reviews=past)
    mine = PastReview(
        reviewer_id=reviewer.user_id,
        organisation_id=reviewer.organisation_id,
        decision=decision,
        account_created_at=reviewer.account_created_at,
        reviewed_at=now,
        platform=reviewer.platform,
    )
    return Outcome(
        decision, status, status_from_reviews([*past, mine], parties=parties, new_account_days=new_account_days)
    )


def check_may_decide(status: str, *, parties: Parties, reviewer: Reviewer, past_reviews: Iterable[PastReview]) -> None:
    """Raise ReviewRefused unless the reviewer may record a decision now.

    The order matters: an outsider learns nothing (not even that the candidate was
    decided), and a decided candidate is reported as decided before anything personal.
    """
    status = Status(status)
    if not may_see(parties, reviewer.organisation_id, platform=reviewer.platform):
        raise ReviewRefused("There is no such candidate.", code="not_yours")
    if status is Status.REDACTED or parties.record_organisation_id is None:
        raise ReviewRefused(
            "This candidate was withdrawn with the record's consent and cannot be reviewed.", code="redacted"
        )
    if status in FINAL_STATUSES:
        raise ReviewRefused(
            f"This candidate has already been {status.value}; no further decision is taken.", code="decided"
        )
    if reviewer.user_id == parties.case_submitted_by:
        raise ReviewRefused(
            "You submitted this case, so two other reviewers must decide its candidates.", code="own_case"
        )
    if any(review.reviewer_id == reviewer.user_id for review in past_reviews):
        raise ReviewRefused("You have already recorded your decision on this candidate.", code="already_reviewed")


def status_from_reviews(
    reviews: Iterable[PastReview], *, parties: Parties, new_account_days: int = DEFAULT_NEW_ACCOUNT_DAYS
) -> Status:
    """The open or decided status that a set of reviews amounts to (see the module rule).

    Reviews by people who were never eligible (the submitter, an outsider) are ignored,
    so a review that slipped past the checks can neither confirm nor reject anything.
    """
    eligible = [review for review in reviews if _eligible(review, parties)]
    if any(review.decision == Decision.REJECT for review in eligible):
        return Status.REJECTED
    confirmations = [review for review in eligible if review.decision == Decision.CONFIRM]
    confirmers = {review.reviewer_id for review in confirmations}
    from_record_owner = any(review.organisation_id == parties.record_organisation_id for review in confirmations)
    independent = any(
        is_independent(review, parties=parties, new_account_days=new_account_days) for review in confirmations
    )
    if len(confirmers) >= CONFIRMATIONS_REQUIRED and from_record_owner and independent:
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


def is_independent(review: PastReview, *, parties: Parties, new_account_days: int) -> bool:
    """A platform reviewer or another organisation's than the submitting one, with an established account.

    Established: the account was at least `new_account_days` old when the review was made
    (unknown dates never count).
    """
    outside = review.platform or (
        review.organisation_id is not None and review.organisation_id != parties.case_organisation_id
    )
    if not outside or review.account_created_at is None or review.reviewed_at is None:
        return False
    return review.reviewed_at - review.account_created_at >= timedelta(days=new_account_days)


def _eligible(review: PastReview, parties: Parties) -> bool:
    return review.reviewer_id != parties.case_submitted_by and may_see(
        parties, review.organisation_id, platform=review.platform
    )
