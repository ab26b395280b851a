"""What people are refused in the browser, and how it is said: in plain words, changing nothing.

A wrong password; a missing second factor for an operator; an application from a
law-enforcement body (a denylisted email domain) while a charity's application
is received and explained; a user of a suspended, expired or revoked organisation,
who is shown what that means instead of any record; a file that is not a photo.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from service.auth.service import BAD_CREDENTIALS
from tests.e2e.browser.conftest import enrol_and_sign_in, register_record, screenshot, sign_in, sign_in_with
from tests.support.service import PASSWORD

pytestmark = [pytest.mark.browser]


def test_a_wrong_password_is_refused_in_plain_words(live, page):
    caseworker = live.user("caseworker", organisation_id=live.organisation())
    sign_in_with(page, caseworker.email, "not the right password")
    expect(page.get_by_role("alert")).to_contain_text(BAD_CREDENTIALS)
    expect(page).to_have_url(re.compile(r"/sign-in$"))
    assert not any(cookie["name"] == "reunite_access" for cookie in page.context.cookies())
    page.goto("/records")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/records$"))
    expect(page.get_by_role("status")).to_have_text("Please sign in to continue.")


def test_signing_in_works_with_the_keyboard_alone(live, page):
    caseworker = live.user("caseworker", organisation_id=live.organisation())
    page.goto("/sign-in")
    expect(page.get_by_label("Email address", exact=True)).to_be_focused()  # ready to type
    page.keyboard.type(caseworker.email)
    page.keyboard.press("Tab")
    page.keyboard.type(caseworker.password)
    page.keyboard.press("Tab")
    page.keyboard.type(caseworker.otp())
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("What would you like to do?")
    page.keyboard.press("Tab")  # the first stop on every page skips the navigation
    expect(page.get_by_role("link", name="Skip to the main content")).to_be_focused()


def test_an_operator_needs_the_code_from_the_authenticator_app(live, page):
    admin = live.user("platform_admin")
    page.goto("/sign-in")
    page.get_by_label("Email address", exact=True).fill(admin.email)
    page.get_by_label("Password", exact=True).fill(admin.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text(BAD_CREDENTIALS)  # not "the password was right"
    sign_in(page, admin)  # now with the code
    expect(page.get_by_role("heading", level=1)).to_have_text("What would you like to do?")


def test_a_law_enforcement_application_is_refused_and_a_charitys_is_received(live, page):
    page.goto("/apply")
    domain = f"{live.unique('safe-harbour')}.example.org"
    _fill_application(
        page,
        name="Metropolitan Missing Persons Unit",
        admin_email="inspector@met.police.uk",
        website="https://www.met.police.uk",
    )
    page.get_by_role("button", name="Send the application").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "belongs to a law-enforcement, military or intelligence body; Reunite does not serve them."
    )
    expect(page.get_by_label("Organisation name", exact=True)).to_have_value("Metropolitan Missing Persons Unit")
    screenshot(page, "apply-refused")

    page.goto("/apply")
    _fill_application(page, name="Safe Harbour", admin_email=f"director@{domain}", website=f"https://{domain}")
    page.get_by_label("We will not use Reunite for, or share access with").uncheck()
    page.get_by_role("button", name="Send the application").click()
    expect(page.get_by_role("alert")).to_contain_text("Every organisation must attest")

    page.get_by_label("Choose a password", exact=True).fill(PASSWORD)
    page.get_by_label("Type the password again", exact=True).fill(PASSWORD)
    page.get_by_label("We will not use Reunite for, or share access with").check()
    screenshot(page, "apply")
    page.get_by_role("button", name="Send the application").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("What happens next")
    expect(page.get_by_role("status")).to_have_text("Your application has been received.")
    screenshot(page, "apply-next")

    # Until two platform admins approve it, signing in shows that it is being vetted, and nothing else.
    enrol_and_sign_in(page, f"director@{domain}", PASSWORD)
    expect(page.get_by_role("heading", level=1)).to_have_text("Your organisation is being vetted")
    screenshot(page, "organisation-pending")


def _fill_application(page, *, name: str, admin_email: str, website: str) -> None:
    page.get_by_label("Organisation name", exact=True).fill(name)
    page.get_by_label("Type of organisation", exact=True).select_option("missing_persons_helpline")
    page.get_by_label("Country", exact=True).fill("GB")
    page.get_by_label("Registration number", exact=True).fill("1234567")
    page.get_by_label("Website", exact=True).fill(website)
    page.get_by_label("Organisation's contact email", exact=True).fill(
        admin_email.replace("director", "office").replace("inspector", "office")
    )
    page.get_by_label("Your email address", exact=True).fill(admin_email)
    page.get_by_label("Choose a password", exact=True).fill(PASSWORD)
    page.get_by_label("Type the password again", exact=True).fill(PASSWORD)
    page.get_by_label("How your organisation will use Reunite", exact=True).fill(
        "We run a helpline for families of missing children and search shelters for them."
    )
    page.get_by_label("We will not use Reunite for, or share access with").check()


@pytest.mark.parametrize(
    ("status", "heading"),
    [
        ("suspended", "Your organisation is suspended"),
        ("expired", "Your organisation's vetting has expired"),
        ("revoked", "Your organisation's access has been revoked"),
    ],
)
def test_a_user_of_an_organisation_that_cannot_work_sees_why(live, page, status, heading):
    organisation = live.organisation(status=status, name=f"Harbour Trust ({status})")
    caseworker = live.user("caseworker", organisation_id=organisation)
    sign_in(page, caseworker)
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    expect(page.get_by_text(f"Harbour Trust ({status})")).to_be_visible()
    if status == "suspended":
        screenshot(page, "organisation-suspended")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Records")).to_have_count(0)
    page.goto("/records")  # no session was started: it gets no tokens while the organisation cannot work
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/records$"))


def test_a_file_that_is_not_a_photo_is_refused_in_plain_words(live, page, tmp_path):
    caseworker = live.user("caseworker", organisation_id=live.organisation())
    not_a_photo = tmp_path / "consent-form.jpg"
    not_a_photo.write_text("Scanned consent form: see the paper file.")
    sign_in(page, caseworker)
    register_record(page, case_reference="HT-2026-3", label="Child C-3")

    page.get_by_label("Photo of the child", exact=True).set_input_files(not_a_photo)
    page.get_by_role("button", name="Upload the photo").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "This file is not a photo we can read. Please send a JPEG, PNG or WebP photo."
    )
    expect(page.get_by_text("No photos yet.")).to_be_visible()  # nothing was stored
    screenshot(page, "upload-refused")

    page.goto("/cases/new")
    page.get_by_label("Photo to search with", exact=True).set_input_files(not_a_photo)
    page.get_by_label("Case reference", exact=True).fill("HT-CASE-1")
    page.get_by_label("Why you are searching", exact=True).fill("A child arrived at our shelter.")
    page.get_by_role("button", name="Start the search").click()
    expect(page.get_by_role("alert")).to_contain_text("This file is not a photo we can read.")
    expect(page.get_by_label("Case reference", exact=True)).to_have_value("HT-CASE-1")
    page.goto("/cases")
    expect(page.get_by_text("Your organisation has not searched with a photo yet.")).to_be_visible()
