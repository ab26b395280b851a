"""Two reviewers confirm a match in a real browser, on real faces found by a real worker.

Organisation "Hope Line" owns a record with a photo; organisation "Safe Harbour" submits a
case photo of the same person. Both are arranged through the HTTP API of the live service
(its routes dispatch to the running worker; W1's caseworker test does the same through the
pages), and the worker's search makes the candidate. Then, in the browser: Safe Harbour's
reviewer (not the submitter) opens the queue and the side-by-side page, checks the photos
and their face boxes, and confirms with a rationale; Hope Line's reviewer sees the candidate
still "under review", with nobody's decision, and confirms by keyboard; Hope Line is notified
and Safe Harbour is not. Screenshots: review-queue, review-candidate (and on a tablet), notifications.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from service.audit.models import AuditEvent
from service.auth.tokens import issue_access_token
from tests.e2e.browser.conftest import WAIT_MS, poll, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.worker_process, pytest.mark.faces]

LABEL = "Child H-3"  # the record's pseudonymous label: never on a review page
FIRST_RATIONALE = "Same eyebrows, ears and smile lines; the hairline matches the older photo."
SECOND_RATIONALE = "Nose and chin shape agree, and the dates fit the report we hold."
FINISHED = {"searched", "no_face", "rejected_input", "failed"}


class Api:
    """The live service's HTTP API as one person (a minted access token: argon2 is not under test here)."""

    def __init__(self, live, account):
        token, _ = issue_access_token(
            secret=live.settings.signing_secret(),
            user_id=account.user.id,
            token_version=account.user.token_version,
            lifetime=timedelta(minutes=30),
        )
        self.http = httpx.Client(
            base_url=f"{live.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def call(self, method: str, path: str, expect: int, **kwargs) -> dict:
        answer = self.http.request(method, path, **kwargs)
        assert answer.status_code == expect, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()


def record_with_photo(api: Api, photo, *, reference: str, live) -> int:
    """A consented record whose photo the worker has embedded; the record's id."""
    now = datetime.now(UTC)
    record_id = api.call(
        "POST",
        "/records",
        201,
        json={
            "case_reference": reference,
            "label": LABEL,
            "age_years": 9,
            "missing_since": (now.date() - timedelta(days=90)).isoformat(),
            "consent": {
                "guardian_name": "Guardian Pemberton",
                "guardian_relationship": "father",
                "responsibility_verified_by": "birth certificate seen",
                "lawful_basis": "consent",
                "purpose": "Finding the child and reuniting the family",
                "notice_version": "2026-1",
                "obtained_at": (now - timedelta(days=1)).isoformat(),
                "expires_at": (now + timedelta(days=365)).isoformat(),
            },
        },
    )["id"]
    photo_id = api.call(
        "POST",
        f"/records/{record_id}/photos",
        202,
        files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
        data={"taken_at": (now.date() - timedelta(days=400)).isoformat()},
    )["photo_id"]
    shown = poll(
        lambda: api.call("GET", f"/records/{record_id}/photos/{photo_id}", 200),
        until=lambda state: state["status"] not in ("queued", "processing"),
        what="the record photo to be embedded",
        seconds=WAIT_MS / 1000,
        every=0.5,
        explain=live.workers.log_tails,
    )
    assert shown["status"] == "embedded", shown
    return record_id


def searched_case(api: Api, photo, *, reference: str, live) -> dict:
    case_id = api.call(
        "POST",
        "/cases",
        202,
        data={"case_reference": reference, "purpose": "Child at our shelter"},
        files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
    )["id"]
    case = poll(
        lambda: api.call("GET", f"/cases/{case_id}", 200),
        until=lambda state: state["status"] in FINISHED,
        what="the case to be searched",
        seconds=WAIT_MS / 1000,
        every=0.5,
        explain=live.workers.log_tails,
    )
    assert case["status"] == "searched", case
    return case


def check_face_boxes(page) -> None:
    """Both photos loaded, shown at the same size, each with its face box where the service says."""
    frames = page.locator("[data-face-frame]")
    expect(frames).to_have_count(2)
    sizes = []
    for index in range(2):
        frame = frames.nth(index)
        image = frame.locator("img")
        expect(image).to_be_visible()
        page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=image.element_handle())
        box = frame.locator(".face-box")
        expect(box).to_be_visible()
        numbers = {
            name: float(frame.get_attribute(f"data-{name}"))
            for name in ("width", "height", "box-top", "box-right", "box-bottom", "box-left")
        }
        outer, drawn = frame.bounding_box(), box.bounding_box()
        scale = min(outer["width"] / numbers["width"], outer["height"] / numbers["height"])
        left = outer["x"] + (outer["width"] - numbers["width"] * scale) / 2 + numbers["box-left"] * scale
        top = outer["y"] + (outer["height"] - numbers["height"] * scale) / 2 + numbers["box-top"] * scale
        assert abs(drawn["x"] - left) < 4 and abs(drawn["y"] - top) < 4, (drawn, left, top)
        assert abs(drawn["width"] - (numbers["box-right"] - numbers["box-left"]) * scale) < 8
        assert abs(drawn["height"] - (numbers["box-bottom"] - numbers["box-top"]) * scale) < 8
        sizes.append((round(outer["width"]), round(outer["height"])))
    assert sizes[0] == sizes[1], sizes


def test_two_reviewers_confirm_a_real_match_without_seeing_each_other(live_worker, browser_context, sdist_images):
    live = live_worker
    hope, harbour = (
        live.organisation(name=live.unique("Hope Line")),
        live.organisation(name=live.unique("Safe Harbour")),
    )
    hope_caseworker = live.user("caseworker", organisation_id=hope)
    hope_reviewer = live.user("reviewer", organisation_id=hope)
    harbour_caseworker = live.user("caseworker", organisation_id=harbour)
    harbour_reviewer = live.user("reviewer", organisation_id=harbour)

    record_reference, case_reference = live.unique("HL-REC"), live.unique("SH-CASE")
    record_id = record_with_photo(
        Api(live, hope_caseworker), sdist_images / "obama.jpg", reference=record_reference, live=live
    )
    case = searched_case(
        Api(live, harbour_caseworker), sdist_images / "obama2.jpg", reference=case_reference, live=live
    )
    [candidate] = case["candidates"]
    assert (candidate["record_id"], candidate["rank"]) == (record_id, 1)
    candidate_id = candidate["id"]
    candidate_path = f"/reviews/candidates/{candidate_id}"

    # Safe Harbour's reviewer: the queue, oldest first, with counts.
    first = browser_context().new_page()
    sign_in(first, harbour_reviewer)
    first.get_by_role("navigation", name="Main").get_by_role("link", name="Review queue").click()
    expect(first.get_by_role("heading", level=1)).to_have_text("Candidates to review")
    expect(first.get_by_text("1 candidate is waiting for your decision.")).to_be_visible()
    expect(first.get_by_role("cell", name="Submitted the case")).to_be_visible()
    screenshot(first, "review-queue")

    # The side-by-side page: both photos at the same size with their face boxes, the facts, the notice.
    first.get_by_role("link", name=f"Review candidate {candidate_id}").click()
    expect(first.get_by_role("heading", level=1)).to_have_text(f"Candidate match {candidate_id}")
    expect(first.get_by_role("img", name="Case photo")).to_be_visible()
    expect(first.get_by_role("img", name="Record photo")).to_be_visible()
    check_face_boxes(first)
    expect(first.get_by_role("heading", name=re.compile("what the model can and cannot tell you"))).to_be_visible()
    expect(first.locator(".model-notice p")).not_to_be_empty()
    expect(first.get_by_text("Under review", exact=True)).to_be_visible()
    expect(first.get_by_text(case_reference)).to_be_visible()  # their own case's reference...
    assert record_reference not in first.content()  # ...but not the other organisation's record reference
    assert LABEL not in first.content()
    facts = first.locator(".candidate-facts")
    expect(facts).to_contain_text("Rank")
    expect(facts).to_contain_text("Distance band")
    record_facts = first.locator(".face-side").nth(1)
    expect(record_facts).to_contain_text("Taken on")
    expect(record_facts).to_contain_text("Face size")
    screenshot(first, "review-candidate")
    photo = first.request.get(f"{candidate_path}/photos/probe")
    assert photo.status == 200 and photo.headers["cache-control"] == "no-store"

    # A decision needs a rationale: the browser asks for it before anything is sent.
    first.get_by_role("radio", name=re.compile("^Confirm")).check()
    first.get_by_role("button", name="Record my decision").click()
    assert first.get_by_label("Your reasons").evaluate("field => !field.validity.valid")
    first.get_by_label("Your reasons").fill(FIRST_RATIONALE)
    first.get_by_role("button", name="Record my decision").click()
    expect(first.get_by_text("Your decision (confirm) was recorded.")).to_be_visible()
    expect(first.get_by_text("Waiting for a second reviewer")).to_be_visible()
    expect(first.get_by_text(FIRST_RATIONALE)).to_be_visible()

    # Hope Line's reviewer: it is still "under review" for them, with no trace of the first decision.
    second = browser_context().new_page()
    sign_in(second, hope_reviewer)
    second.goto("/reviews")
    expect(second.get_by_role("cell", name="Owns the record")).to_be_visible()
    expect(second.get_by_role("cell", name="One other reviewer has decided")).to_be_visible()
    second.get_by_role("link", name=f"Review candidate {candidate_id}").click()
    check_face_boxes(second)
    second.set_viewport_size({"width": 768, "height": 1024})  # a tablet: still side by side, boxes redrawn
    check_face_boxes(second)
    screenshot(second, "review-candidate-tablet")
    expect(second.get_by_text("Under review", exact=True)).to_be_visible()
    content = second.content()
    for hidden in (FIRST_RATIONALE, "Waiting for a second reviewer", "You recorded", case_reference, LABEL):
        assert hidden not in content, hidden
    expect(second.get_by_text(record_reference)).to_be_visible()  # their own record's reference

    # Decided with the keyboard alone.
    second.get_by_role("radio", name=re.compile("^Confirm")).focus()
    second.keyboard.press("Space")
    second.keyboard.press("Tab")  # through the other choices' group to the reasons
    second.get_by_label("Your reasons").focus()
    second.keyboard.type(SECOND_RATIONALE)
    second.get_by_role("button", name="Record my decision").focus()
    second.keyboard.press("Enter")
    expect(second.get_by_text("Your decision (confirm) was recorded.")).to_be_visible()
    expect(second.get_by_text("Confirmed by two reviewers")).to_be_visible()
    assert FIRST_RATIONALE not in second.content()

    # Hope Line, which owns the record, is notified; Safe Harbour is not.
    notified = browser_context().new_page()
    sign_in(notified, hope_caseworker)
    notified.get_by_role("navigation", name="Main").get_by_role("link", name="Notifications").click()
    expect(notified.get_by_role("heading", name=f"Match confirmed for record {record_reference}")).to_be_visible()
    screenshot(notified, "notifications")
    notified.get_by_role("button", name="Mark as read").click()
    expect(notified.get_by_text("The notification is marked as read.")).to_be_visible()
    first.goto("/notifications")
    expect(first.get_by_text("There are no notifications.", exact=False)).to_be_visible()

    # Every photo the reviewers saw was an audited view.
    with live.db() as session:
        views = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "photo_viewed", AuditEvent.target_id == str(candidate_id))
        )
        reviews = session.scalars(
            select(AuditEvent.details).where(
                AuditEvent.action == "review_recorded", AuditEvent.target_id == str(candidate_id)
            )
        ).all()
    assert views >= 5  # two photos per page load of each reviewer, and the header check above
    assert len(reviews) == 2
