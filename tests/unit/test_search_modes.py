"""The two search modes as a caseworker chooses them, and the words that go with each (pure code)."""

from __future__ import annotations

import pytest

from service.cases.modes import (
    MAX_LEADS,
    SearchChoice,
    SearchChoiceError,
    lead_label,
    parse_search_choice,
    searched_message,
)


@pytest.mark.parametrize(
    "mode, limit, expected",
    [
        (None, None, SearchChoice()),
        ("", "", SearchChoice()),
        ("alerting", "  ", SearchChoice()),
        ("investigative", "1", SearchChoice("investigative", 1)),
        (" Investigative ", f" {MAX_LEADS} ", SearchChoice("investigative", MAX_LEADS)),
        ("investigative", 7, SearchChoice("investigative", 7)),
    ],
)
def test_a_valid_choice_is_read(mode, limit, expected):
    assert parse_search_choice(mode, limit) == expected


@pytest.mark.parametrize(
    "mode, limit, words",
    [
        ("investigative", "0", "from 1 to 50; 0 is not"),
        ("investigative", "51", "from 1 to 50; 51 is not"),
        ("investigative", "-3", "from 1 to 50; -3 is not"),
        ("investigative", "ten", "whole number"),
        ("investigative", "1e3", "whole number"),
        ("investigative", True, "whole number"),
        ("investigative", None, "how many leads"),
        ("alerting", "5", "only for an investigative search"),
        (None, "5", "only for an investigative search"),
        ("top-n", None, "“alerting” or “investigative”"),
    ],
)
def test_a_bad_choice_is_refused_in_a_sentence(mode, limit, words):
    with pytest.raises(SearchChoiceError, match=words):
        parse_search_choice(mode, limit)


def test_leads_are_never_called_matches_and_the_message_follows_the_mode():
    assert lead_label(7, 25) == "Lead 7 of 25: an investigative lead, not a match"
    assert searched_message(1, "investigative") == (
        "Searched the gallery: 1 investigative lead is waiting for human review; none of them is a match until "
        "two reviewers confirm it."
    )
    assert "no record could be proposed as a lead" in searched_message(0, "investigative")
    assert searched_message(2, "alerting") == "Searched the gallery: 2 possible matches are waiting for human review."
    assert "match" not in searched_message(0, "investigative")
