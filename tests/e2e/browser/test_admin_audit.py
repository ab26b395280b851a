"""Platform admins, an organisation admin and an auditor at work in a real browser.

Two different platform admins approve an application (the same one cannot approve twice)
and one suspends the organisation with a reason, after which its people see the status
page; an organisation admin adds a colleague, who can then sign in, and removes them; an
auditor searches the trail, downloads the verifiable bundle and the CSV table, checks the
bundle offline as `reunite audit verify` would, and has the chain verified on the page.
Screenshots: vetting, vetting-organisation, denylist, org-users, audit, audit-verified.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from service.audit.signing import load_signer
from service.audit.verify import verify_file
from tests.e2e.browser.conftest import enrol_and_sign_in, screenshot, sign_in
from tests.support.service import PASSWORD

pytestmark = [pytest.mark.browser]


def nav(page, name: str):
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def decide(page, decision: str, reason: str) -> None:
    page.get_by_role("radio", name=decision).check()
    page.get_by_label("Reason", exact=True).fill(reason)
    page.get_by_role("button", name="Record the decision").click()


def test_two_platform_admins_approve_then_one_suspends_with_a_reason(live, browser_context):
    name = live.unique("Hope Line")
    applicant = live.organisation(status="applied", name=name, website="https://hope-line.example.org")
    applicant_admin = live.user("org_admin", "caseworker", organisation_id=applicant)
    first_admin, second_admin = live.user("platform_admin"), live.user("platform_admin")

    first = browser_context().new_page()
    sign_in(first, first_admin)
    nav(first, "Vetting").click()
    expect(first.get_by_role("heading", level=1)).to_have_text("Vetting")
    expect(first.get_by_role("link", name=name)).to_be_visible()
    screenshot(first, "vetting")
    first.get_by_role("link", name=name).click()

    # Everything submitted, and the law-enforcement checks re-run now.
    for shown in (
        "https://hope-line.example.org",
        "contact@helping-hands.example.org",
        "Finding missing children",
        applicant_admin.email,
    ):
        expect(first.get_by_text(shown, exact=True).first).to_be_visible()
    checks = first.locator("table.checks")
    expect(checks.get_by_role("row")).to_have_count(6)  # header, 4 organisation checks, 1 user
    expect(checks.get_by_text("Failed")).to_have_count(0)

    decide(first, "Approve", "Registration and references checked.")
    expect(
        first.get_by_text("Your approval is recorded. A second, different platform admin must approve it too.")
    ).to_be_visible()
    expect(first.get_by_role("radio", name="Approve")).to_have_count(0)  # not twice by the same admin
    expect(first.get_by_text("Applied, being vetted")).to_be_visible()
    screenshot(first, "vetting-organisation")

    second = browser_context().new_page()
    sign_in(second, second_admin)
    second.goto("/admin/organisations")
    second.get_by_role("link", name=name).click()
    expect(second.get_by_text(f"Approved in this round by {first_admin.email}.")).to_be_visible()
    decide(second, "Approve", "Charity registry entry confirmed.")
    expect(second.get_by_text("The organisation is now approved.")).to_be_visible()

    # A suspension needs a reason; the browser asks for it, then it is kept in the history.
    second.get_by_role("radio", name="Suspend").check()
    second.get_by_role("button", name="Record the decision").click()
    assert second.get_by_label("Reason", exact=True).evaluate("field => field.validity.valueMissing")
    decide(second, "Suspend", "Complaint about data sharing under investigation.")
    expect(second.get_by_text("The organisation is now suspended.")).to_be_visible()
    expect(second.get_by_role("cell", name="Complaint about data sharing under investigation.")).to_be_visible()

    # Its people are stopped at once, with the reason in plain words.
    member = browser_context().new_page()
    sign_in(member, applicant_admin)
    expect(member.get_by_role("heading", level=1)).to_have_text("Your organisation is suspended")

    # The denylist, kept by the same admins.
    nav(second, "Denylist").click()
    second.get_by_label("Domain", exact=True).fill("harbour-police.example")
    second.get_by_label("Reason", exact=True).fill("Port police force.")
    second.get_by_role("button", name="Add to the denylist").click()
    expect(second.get_by_text("harbour-police.example and its subdomains are now refused.")).to_be_visible()
    expect(second.get_by_role("cell", name="harbour-police.example", exact=True)).to_be_visible()
    screenshot(second, "denylist")


def test_an_org_admin_adds_a_colleague_and_removes_them(live, browser_context):
    organisation = live.organisation(name=live.unique("Safe Harbour"))
    admin = live.user("org_admin", "reviewer", organisation_id=organisation)
    newcomer_email = f"{live.unique('newcomer')}@safe-harbour.example.org"

    page = browser_context().new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Remove …? They will be signed out at once."
    sign_in(page, admin)
    nav(page, "Users").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Users of")
    # Invitations come first (test_invitations.py); creating the account directly is folded away.
    page.get_by_text("Or create the account yourself, with a first password").click()
    direct = page.locator("details.add-directly")
    direct.get_by_label("Their email address").fill(newcomer_email)
    direct.get_by_label("First password").fill(PASSWORD)
    expect(direct.get_by_role("checkbox", name=re.compile("^Caseworker"))).to_be_disabled()  # not the admin's role
    direct.get_by_role("checkbox", name=re.compile("^Reviewer")).check()
    direct.get_by_role("button", name="Add user").click()
    expect(page.get_by_text(re.compile(r"^User \d+ was added and can sign in now."))).to_be_visible()
    row = page.get_by_role("row").filter(has_text=newcomer_email)
    expect(row).to_contain_text("Reviewer")
    expect(row).to_contain_text("Active")
    screenshot(page, "org-users")

    colleague = browser_context().new_page()
    enrol_and_sign_in(colleague, newcomer_email, PASSWORD)  # added by the admin: no second factor yet
    expect(nav(colleague, "Review queue")).to_be_visible()

    row.get_by_role("button", name=f"Remove {newcomer_email}").click()
    expect(page.get_by_text("The user was removed; they can no longer sign in.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text=newcomer_email)).to_contain_text("Removed")
    colleague.goto("/reviews")
    expect(colleague.get_by_role("heading", level=1)).to_have_text("Sign in")  # their session ended at once


def test_an_auditor_searches_downloads_and_sees_the_chain_verified(live, browser_context, tmp_path):
    organisation = live.organisation(name=live.unique("Bright Path"))
    live.user("caseworker", organisation_id=organisation)
    auditor = live.user("auditor")

    page = browser_context().new_page()
    sign_in(page, auditor)
    nav(page, "Audit trail").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit trail")

    # Search: the auditor's own sign-in, by action and user.
    page.get_by_label("Action (optional)", exact=True).select_option("login")
    page.get_by_label("User id (optional)", exact=True).fill(str(auditor.user.id))
    page.get_by_role("button", name="Search").click()
    rows = page.locator("table.audit-events tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("login")
    screenshot(page, "audit")

    # Downloads: the CSV of what was searched, and the whole verifiable bundle.
    with page.expect_download() as table_download:
        page.get_by_role("button", name="Download the table (CSV)").click()
    table = tmp_path / "table.csv"
    table_download.value.save_as(table)
    lines = table.read_text().strip().splitlines()
    assert lines[0].startswith("seq,at,actor_id") and len(lines) == 2 and ",login," in lines[1]
    with page.expect_download() as bundle_download:
        page.get_by_role("button", name="Download the bundle (JSON lines)").click()
    assert bundle_download.value.suggested_filename.endswith(".jsonl")
    bundle = tmp_path / "bundle.jsonl"
    bundle_download.value.save_as(bundle)
    report = verify_file(bundle, trusted_key_pem=load_signer(live.settings.audit_key_file).public_key_pem)
    assert report.ok and report.first_seq == 1, report.problems

    # The same check on the trail as it stands, in words.
    page.get_by_role("button", name="Verify the chain now").click()
    expect(page.get_by_role("heading", name="Chain verified")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^All \d+ events \(seq 1 to \d+\) hash correctly"))).to_be_visible()
    screenshot(page, "audit-verified")
