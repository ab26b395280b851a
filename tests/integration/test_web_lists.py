"""The caseworker's lists page through long results, keeping the search across pages."""

from __future__ import annotations

import re

import pytest

from service.web.routes.records import PAGE_SIZE
from tests.support.gallery import make_case, make_record
from tests.support.pages import Person
from tests.support.service import make_organisation, make_user


@pytest.mark.parametrize("things", ["records", "cases"])
def test_long_lists_are_paged_newest_first(app, db, things):
    organisation = make_organisation(db)
    caseworker = make_user(db, "caseworker", organisation=organisation)
    make = make_record if things == "records" else make_case
    for _ in range(PAGE_SIZE + 1):
        make(db, organisation_id=organisation.id, user_id=caseworker.user.id)
    db.commit()
    person = Person(app, caseworker)

    first = person.get(f"/{things}").text
    assert "Page 1 of 2" in first and f'href="/{things}?page=2">Older {things}' in first
    assert f"Newer {things}" not in first
    second = person.get(f"/{things}?page=2").text
    assert f'href="/{things}?page=1">Newer {things}' in second and f"Older {things}" not in second
    assert len(re.findall(r"<tr>", second)) == 1 + 1  # the header row and the one left over


def test_the_case_reference_searched_for_stays_across_pages(app, db):
    """Several searches may be made for one case (new photos); their list pages like any other."""
    organisation = make_organisation(db)
    caseworker = make_user(db, "caseworker", organisation=organisation)
    for _ in range(PAGE_SIZE + 1):
        make_case(db, organisation_id=organisation.id, user_id=caseworker.user.id).case_reference = "A/B 7"
    make_case(db, organisation_id=organisation.id, user_id=caseworker.user.id)
    db.commit()
    first = Person(app, caseworker).get("/cases?case_reference=A%2FB+7").text
    assert 'href="/cases?page=2&amp;case_reference=A/B%207">Older cases' in first
