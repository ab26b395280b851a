"""A caseworker's whole job in a real browser, with a real worker on real faces.

Register a child with consent, upload a photo (previewed before upload) and watch
it processed; submit a case photo of the same person and watch the case page
refresh itself until the search is done with one candidate awaiting review; search
again in investigative mode, having seen what each mode costs in review, and find
the record as a lead with the years between the photos; then withdraw consent and
see what was erased. Each main page is screenshotted for the README by
`make screenshots`.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from service.audit.models import AuditEvent
from tests.e2e.browser.conftest import WAIT_MS, register_record, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.worker_process, pytest.mark.faces]

GUARDIAN = "Guardian Featherstonehaugh"


def test_a_caseworker_registers_a_child_and_a_case_photo_finds_the_record(live_worker, page, sdist_images):
    live = live_worker
    organisation = live.organisation(name="Hope Line")
    caseworker = live.user("caseworker", organisation_id=organisation)

    page.goto("/sign-in")
    screenshot(page, "sign-in")
    sign_in(page, caseworker)
    expect(page.get_by_role("heading", level=1)).to_have_text("What would you like to do?")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Records").click()
    expect(page.get_by_text("Your organisation has no records yet.")).to_be_visible()

    # A new record with every consent field; the form explains each one.
    page.get_by_role("link", name="Register a child").click()
    expect(page.get_by_label("Label", exact=True)).to_have_accessible_description(re.compile("Never the child's name"))
    expect(page.get_by_label("Guardian's name", exact=True)).to_have_accessible_description(
        re.compile("person who gave consent")
    )
    screenshot(page, "record-new")
    record_id = register_record(page, case_reference="HL-2026-014", label="Child A-14", guardian=GUARDIAN)
    expect(page.get_by_text("The record is registered.")).to_be_visible()
    expect(page.get_by_text(GUARDIAN)).to_be_visible()  # the audited detail view shows who consented

    # The photo is previewed in the browser before anything is sent.
    page.get_by_label("Photo of the child", exact=True).set_input_files(sdist_images / "obama.jpg")
    page.get_by_label(re.compile("^Date the photo was taken")).fill("2019-06-01")
    preview = page.locator("#f-file-preview img")
    expect(preview).to_be_visible()
    expect(preview).to_have_attribute("src", re.compile(r"^blob:"))
    page.get_by_role("button", name="Upload the photo").click()
    expect(page.get_by_text("The photo was uploaded.")).to_be_visible()

    # The page follows the worker and reloads itself when the photo is processed.
    photo = page.locator("li[id^=photo-]")
    expect(photo.locator(".status")).to_have_text("Ready", timeout=WAIT_MS)
    expect(page.get_by_role("status").filter(has_text="being processed")).to_have_count(0)
    thumbnail = page.get_by_role("img", name="Photo 1 of this record")
    expect(thumbnail).to_be_visible()
    assert thumbnail.evaluate("image => image.complete && image.naturalWidth > 0")
    screenshot(page, "record")
    page.set_viewport_size({"width": 820, "height": 1180})  # a tablet held upright: one column
    screenshot(page, "record-tablet")
    page.set_viewport_size({"width": 1280, "height": 800})

    # Search by case reference finds the record.
    page.goto("/records")
    page.get_by_label("Find by case reference").fill("HL-2026-014")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="HL-2026-014")).to_be_visible()
    screenshot(page, "records")

    # A case photo of the same person, with its purpose, previewed before submission.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Cases").click()
    page.get_by_role("link", name="Search with a photo").click()
    page.get_by_label("Photo to search with", exact=True).set_input_files(sdist_images / "obama2.jpg")
    expect(page.locator("#f-file-preview img")).to_have_attribute("src", re.compile(r"^blob:"))
    page.get_by_label("Case reference", exact=True).fill("HL-CASE-7")
    page.get_by_label("Why you are searching", exact=True).fill(
        "A child matching a missing-child report arrived at our shelter this morning."
    )
    screenshot(page, "case-new")
    page.get_by_role("button", name="Start the search").click()
    expect(page.get_by_text("The photo was received.")).to_be_visible()

    # The case page refreshes its status until searched, then counts what awaits review.
    expect(page.locator("#awaiting-count")).to_have_text("1", timeout=WAIT_MS)
    expect(page.get_by_text("possible match awaits review by two people")).to_be_visible()
    expect(page.get_by_role("cell", name="Waiting for two reviewers")).to_be_visible()
    screenshot(page, "case")
    case_url = page.url

    # Investigative: the form says what each mode costs in review before anything is sent.
    page.goto("/cases/new")
    expect(page.get_by_role("radio", name=re.compile("^Alerting"))).to_be_checked()  # the default
    expect(
        page.get_by_text(re.compile(r"alerting searches of the last 90 days proposed 1 candidate per case"))
    ).to_be_visible()
    expect(
        page.get_by_text(re.compile(r"review queue now: 1 open candidate, needing at least 2 more reviews"))
    ).to_be_visible()
    page.get_by_label("Photo to search with", exact=True).set_input_files(sdist_images / "obama2.jpg")
    page.get_by_label("Case reference", exact=True).fill("HL-CASE-8")
    page.get_by_label("Why you are searching", exact=True).fill(
        "The alerting search left one candidate; we want the closest records as leads too."
    )
    page.get_by_label(re.compile("^Date the photo was taken")).fill("2025-03-02")
    page.get_by_role("radio", name=re.compile("^Investigative")).check()
    page.get_by_label(re.compile("^Number of leads per face")).fill("5")
    screenshot(page, "case-mode")
    page.get_by_role("button", name="Start the search").click()
    expect(page.locator("#awaiting-count")).to_have_text("1", timeout=WAIT_MS)  # min(5, one record)
    expect(page.get_by_text("investigative lead awaits review by two people")).to_be_visible()
    expect(page.get_by_role("cell", name="Lead 1 of 1: an investigative lead, not a match")).to_be_visible()
    expect(page.get_by_role("cell", name="5.8")).to_be_visible()  # years between the two photos' dates
    screenshot(page, "case-leads")

    # Withdrawal says what it will erase, asks for confirmation, then reports what it erased.
    page.goto(f"/records/{record_id}")
    page.get_by_role("link", name="Withdraw consent…").click()
    expect(page.get_by_text("1 photo of this record, and the face measurements made from it.")).to_be_visible()
    screenshot(page, "withdraw-consent")
    page.get_by_role("button", name="Withdraw consent and erase the photos").click()
    expect(page.get_by_text("Tick the box to confirm")).to_be_visible()  # nothing happens unconfirmed
    page.get_by_label("The child's guardian has asked to withdraw consent").check()
    page.get_by_role("button", name="Withdraw consent and erase the photos").click()
    expect(
        page.get_by_text(
            "Consent withdrawn. Erased: 1 photo, 1 face measurement; 2 possible matches hidden from reviewers."
        )
    ).to_be_visible()
    expect(page.get_by_text("Photo 1: erased")).to_be_visible()
    page.goto(case_url)
    expect(page.get_by_role("cell", name=re.compile("^Withdrawn: the family withdrew consent"))).to_be_visible()
    expect(page.locator("#awaiting-count")).to_have_text("0")

    # Every photo shown came through the audited endpoint; no event carries the guardian's name.
    with live.db() as session:
        viewed = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "photo_viewed", AuditEvent.actor_id == caseworker.user.id)
        )
        details = session.scalars(select(AuditEvent.details).where(AuditEvent.actor_id == caseworker.user.id)).all()
    assert viewed >= 1
    assert not any(GUARDIAN in str(detail) for detail in details)
