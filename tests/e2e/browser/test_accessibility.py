"""Every main page of every role, checked with axe-core in the real browser.

Pages that need data (a record, a case, a candidate) are checked where the flows
reach them: `screenshot()` checks every page it saves.

axe-core (bundled by axe-playwright-python) checks labels, names, contrast, landmarks,
heading order, ARIA use and more on the rendered page; any violation fails the test
with axe's own report of what and where.
"""

from __future__ import annotations

import pytest
from tests.e2e.browser.conftest import assert_accessible, sign_in

pytestmark = [pytest.mark.browser]

ANONYMOUS = ("/sign-in", "/apply")
BY_ROLES = {
    ("caseworker", "reviewer"): (
        "/",
        "/records",
        "/records/new",
        "/cases",
        "/cases/new",
        "/reviews",
        "/notifications",
        "/model",
    ),
    ("org_admin",): ("/organisation/users",),
    ("platform_admin",): ("/admin/organisations", "/admin/denylist"),
    ("auditor",): ("/audit",),
}


def check(page, url: str) -> None:
    page.goto(url)
    assert_accessible(page)


def test_pages_anyone_can_open(live, page):
    for path in ANONYMOUS:
        check(page, live.url + path)


@pytest.mark.parametrize("roles", list(BY_ROLES), ids=lambda roles: "+".join(roles))
def test_pages_of_each_role(live, page, roles):
    operator = roles[0] in ("platform_admin", "auditor")
    account = live.user(*roles, organisation_id=None if operator else live.organisation())
    sign_in(page, account)
    for path in BY_ROLES[roles]:
        check(page, live.url + path)
