"""The two-person rule counts people, not accounts (vetting.review), through the API.

An organisation that submitted the case and owns the record cannot confirm it with two of its
own accounts: a platform reviewer (operator staff) must confirm too. Accounts created within
`review_new_account_days` cannot together confirm: an established reviewer of an organisation
other than the submitting one must be among the confirmers. Reuses the review tests' world:
A submits cases, B owns the record; every account there is established (tests/support).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from alembic import command
from sqlalchemy import inspect

from service.db import make_engine, utcnow
from service.migrate import alembic_config
from service.organisations.models import Organisation
from tests.integration.test_reviews import (  # noqa: F401  (world and as_user are fixtures)
    API,
    add_candidate,
    add_case,
    as_user,
    bearer,
    queue_ids,
    review,
    world,
)
from tests.support.pages import Person, text_of
from tests.support.service import make_user


def statuses(client, headers, candidate: int, *reviewers: tuple[str, dict]) -> list[str]:
    return [review(client, who, candidate, "confirm").json().get("candidate_status") for _, who in reviewers]


@pytest.mark.one_backend
def test_an_organisation_cannot_confirm_its_own_case_against_its_own_record(
    app, client, db, settings, world, as_user, sdist_images
):
    add_case(app, db, world, "own", organisation="B", submitter="b_caseworker", image=sdist_images / "obama2.jpg")
    own = add_candidate(db, world, "own")
    across = add_candidate(db, world, "main")
    platform = make_user(db, "platform_reviewer").user
    db.commit()
    independent = bearer(db, settings, platform.id)

    assert queue_ids(client, independent) == [own]  # only what needs them; never A's case against B's record
    assert client.get(f"{API}/candidates/{across}", headers=independent).status_code == 404
    # Two accounts of B (the admin could make as many as it likes) are not enough ...
    assert review(client, as_user("b1"), own, "confirm").json()["candidate_status"] == "awaiting_second_review"
    assert review(client, as_user("b2"), own, "confirm").json()["candidate_status"] == "awaiting_second_review"
    # ... the platform reviewer, seeing nothing of the case's reference, completes it.
    seen = client.get(f"{API}/candidates/{own}", headers=independent).json()
    assert (seen["can_decide"], seen["probe"]["case_reference"], seen["record"]["case_reference"]) == (True, None, None)
    confirmed = review(client, independent, own, "confirm")
    assert (confirmed.status_code, confirmed.json()["candidate_status"]) == (201, "confirmed"), confirmed.text


@pytest.mark.one_backend
def test_two_new_accounts_cannot_confirm_together(app, client, db, settings, world, as_user):
    candidate = add_candidate(db, world, "main")
    keepers = db.get(Organisation, world.orgs["B"])
    new_b = make_user(db, "reviewer", organisation=keepers, created_at=utcnow() - timedelta(days=3)).user
    db.commit()
    # A's established reviewer (of the submitting organisation) and a three-day-old account of B.
    assert review(client, as_user("a1"), candidate, "confirm").json()["candidate_status"] == "awaiting_second_review"
    second = review(client, bearer(db, settings, new_b.id), candidate, "confirm")
    assert second.json()["candidate_status"] == "awaiting_second_review", second.text
    # An established reviewer of B completes it.
    assert review(client, as_user("b1"), candidate, "confirm").json()["candidate_status"] == "confirmed"


@pytest.mark.one_backend
def test_the_new_account_period_is_a_setting(app, client, db, settings, world, as_user):
    app.state.settings = settings.model_copy(update={"review_new_account_days": 2})
    candidate = add_candidate(db, world, "main")
    keepers = db.get(Organisation, world.orgs["B"])
    new_b = make_user(db, "reviewer", organisation=keepers, created_at=utcnow() - timedelta(days=3)).user
    db.commit()
    assert review(client, as_user("a1"), candidate, "confirm").status_code == 201
    assert (
        review(client, bearer(db, settings, new_b.id), candidate, "confirm").json()["candidate_status"] == "confirmed"
    )


def _migrate(database_url: str, step, target: str) -> bool:
    """Run one Alembic step; whether reviews.reviewer_organisation_id is then nullable."""
    engine, config = make_engine(database_url), alembic_config(database_url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            step(config, target)
            columns = {column["name"]: column for column in inspect(connection).get_columns("reviews")}
            return columns["reviewer_organisation_id"]["nullable"]
    finally:
        engine.dispose()


def test_the_migration_lets_a_review_have_no_organisation_and_goes_back(database_url):
    assert _migrate(database_url, command.downgrade, "0010") is False
    assert _migrate(database_url, command.upgrade, "head") is True


@pytest.mark.one_backend
def test_a_platform_reviewer_uses_the_review_pages(app, db, world, sdist_images):
    add_case(app, db, world, "own", organisation="B", submitter="b_caseworker", image=sdist_images / "obama2.jpg")
    own = add_candidate(db, world, "own")
    account = make_user(db, "platform_reviewer")
    db.commit()
    person = Person(app, account)
    assert f"/reviews/candidates/{own}" in person.get("/reviews").text
    assert "Independent review" in text_of(person.get("/reviews"))
    page = person.get(f"/reviews/candidates/{own}")
    assert "Record my decision" in text_of(page)
