"""An organisation admin invites a colleague, who opens the link in their own browser and joins.

The admin makes the invitation on the users page and copies the link with the copy
button (read back from the clipboard); a second browser context, with nobody signed
in, opens it, chooses a password, signs in and reaches the review queue. The link
then no longer works, and the admin no longer sees the invitation waiting.
Screenshots: org-invite, invitation-accept.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.browser.conftest import screenshot, sign_in, sign_in_with
from tests.support.service import TOTP_CLOCK

pytestmark = [pytest.mark.browser]

NEW_PASSWORD = "a lantern by the quiet harbour"


def test_an_org_admin_invites_a_colleague_who_sets_a_password_and_signs_in(live, browser_context):
    organisation = live.organisation(name=live.unique("Safe Harbour"))
    admin = live.user("org_admin", "reviewer", organisation_id=organisation)
    colleague_email = f"{live.unique('colleague')}@safe-harbour.example.org"

    admin_context = browser_context()
    admin_context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    page = admin_context.new_page()
    sign_in(page, admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    invite_form = page.locator("form[action='/organisation/invitations']")
    invite_form.get_by_label("Colleague's email address").fill(colleague_email)
    expect(invite_form.get_by_role("checkbox", name=re.compile("^Caseworker"))).to_be_disabled()
    invite_form.get_by_role("checkbox", name=re.compile("^Reviewer")).check()
    invite_form.get_by_role("button", name="Make the invitation link").click()

    expect(page.get_by_role("heading", name="Invitation ready: pass this link on")).to_be_visible()
    link = page.get_by_label("Invitation link").input_value()
    assert re.fullmatch(re.escape(live.url) + r"/invitations/[A-Za-z0-9_-]{43}", link), link
    page.get_by_role("button", name="Copy the link").click()
    expect(page.get_by_text("Link copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == link
    waiting = page.locator("table.pending-invitations").get_by_role("row").filter(has_text=colleague_email)
    expect(waiting).to_contain_text("Reviewer")
    screenshot(page, "org-invite")

    # The colleague, in their own browser with nobody signed in.
    guest = browser_context().new_page()
    guest.goto(link)
    expect(guest.get_by_role("heading", level=1)).to_contain_text("on Reunite")
    expect(guest.get_by_text(colleague_email)).to_be_visible()
    expect(guest.locator("ul.invitation-roles")).to_contain_text("Reviewer")
    guest.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    guest.get_by_label("The same password again").fill(NEW_PASSWORD)
    screenshot(guest, "invitation-accept")
    guest.get_by_label("The same password again").fill("not the same at all")
    guest.get_by_role("button", name="Create my account").click()
    expect(guest.get_by_text("The two passwords are not the same.").first).to_be_visible()
    guest.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    guest.get_by_label("The same password again").fill(NEW_PASSWORD)
    guest.get_by_role("button", name="Create my account").click()
    expect(guest.get_by_role("heading", level=1)).to_have_text("Add Reunite to your authenticator app")
    expect(guest.get_by_text("Your account is ready.")).to_be_visible()
    secret = guest.locator("code.totp-secret").inner_text()
    sign_in_with(guest, colleague_email, NEW_PASSWORD, otp=TOTP_CLOCK.next_code(secret))
    expect(guest.get_by_role("navigation", name="Main").get_by_role("link", name="Review queue")).to_be_visible()

    # Used once: the link is dead, and the admin sees a user instead of a waiting invitation.
    stranger = browser_context().new_page()
    stranger.goto(link)
    expect(stranger.get_by_text(re.compile("^This invitation link is not valid"))).to_be_visible()
    page.reload()
    expect(page.locator("table.pending-invitations")).to_have_count(0)
    expect(page.get_by_role("row").filter(has_text=colleague_email)).to_contain_text("Active")
