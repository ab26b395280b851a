"""How a case searches the gallery: NIST's two modes, and the words that go with each.

- `alerting` (the default, and everything before this existed): the records within the
  calibrated review threshold, at most the calibrated top-k per face. A candidate is a
  possible match.
- `investigative`: the `candidate_limit` (1 to 50) closest records per face, with no
  threshold. Most of them are not the child: each is a lead for two people to look at,
  never a match, and is always shown with its rank ("lead 7 of 25") and distance band.

Both go to the same two-person review; nothing is concluded by the machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.refusal import Refused

ALERTING = "alerting"
INVESTIGATIVE = "investigative"
SEARCH_MODES = (ALERTING, INVESTIGATIVE)
MAX_LEADS = 50
REVIEWS_PER_CANDIDATE = 2  # the two-person rule: every candidate needs two reviews to be confirmed
# A distance band of its own for a candidate farther than the review threshold (only an
# investigative search proposes those): never a "weak match".
BEYOND_THRESHOLD = "beyond_threshold"


class SearchChoiceError(Refused, ValueError):
    """A search mode or number of leads that cannot be used; the message says why in plain words."""


@dataclass(frozen=True)
class SearchChoice:
    mode: str = ALERTING
    candidate_limit: int | None = None  # set exactly when mode is investigative

    @property
    def investigative(self) -> bool:
        return self.mode == INVESTIGATIVE

    @property
    def leads(self) -> int:
        """How many records an investigative search proposes for each face."""
        if self.candidate_limit is None:
            raise ValueError("Only an investigative search has a number of leads.")
        return self.candidate_limit


def parse_search_choice(mode: str | None, candidate_limit: str | int | None) -> SearchChoice:
    """The caseworker's choice from form or API text; SearchChoiceError with a sentence otherwise."""
    mode = (mode or ALERTING).strip().lower() or ALERTING
    if mode not in SEARCH_MODES:
        raise SearchChoiceError("The search mode must be “alerting” or “investigative”.")
    limit = _whole_number(candidate_limit)
    if mode == ALERTING:
        if limit is not None:
            raise SearchChoiceError(
                "A number of leads is only for an investigative search; an alerting search "
                "proposes the records within the review threshold."
            )
        return SearchChoice()
    if limit is None:
        raise SearchChoiceError(
            f"Say how many leads an investigative search should propose for each face, from 1 to {MAX_LEADS}."
        )
    if not 1 <= limit <= MAX_LEADS:
        raise SearchChoiceError(f"The number of leads must be from 1 to {MAX_LEADS}; {limit} is not.")
    return SearchChoice(mode=INVESTIGATIVE, candidate_limit=limit)


def _whole_number(value: str | int | None) -> int | None:
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise SearchChoiceError(f"The number of leads must be a whole number from 1 to {MAX_LEADS}.") from None


def lead_label(rank: int, of: int) -> str:
    """What an investigative candidate is, in words: its place in the list, and not a match."""
    return f"Lead {rank} of {of}: an investigative lead, not a match"


def searched_message(candidates: int, mode: str) -> str:
    """The case's status message once the gallery has been searched."""
    if mode == INVESTIGATIVE:
        if candidates == 0:
            return "Searched the gallery: no record could be proposed as a lead."
        noun = "investigative lead is" if candidates == 1 else "investigative leads are"
        return (
            f"Searched the gallery: {candidates} {noun} waiting for human review; none of them is a match "
            f"until two reviewers confirm it."
        )
    if candidates == 0:
        return "Searched the gallery: no record was close enough to propose for review."
    noun = "possible match is" if candidates == 1 else "possible matches are"
    return f"Searched the gallery: {candidates} {noun} waiting for human review."
