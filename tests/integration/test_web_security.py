"""The web pages' safety properties, without a browser: CSRF, cookies, headers, sign-in and sign-out.

The client talks https (TestClient on https://testserver) so that the Secure
cookies are sent back, as a browser would. Forms are posted with the token read
from the page. Route-wide checks (every page refuses anonymous users, no template
has inline script or style) cover every page module, whoever wrote it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import api_routes, create_app
from service.auth.models import LoginAttempt, RefreshToken
from service.db import utcnow
from service.deps import ACTION_KEY
from service.organisations.models import Organisation
from service.web.pages import PageRoute
from service.web.render import TEMPLATES_DIR, safe_next
from service.web.session import ACCESS_COOKIE, REFRESH_COOKIE
from service.worker.dispatch import RecordingDispatcher
from tests.support.service import make_organisation, make_user

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def browser(app):
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        yield client


@pytest.fixture
def caseworker(db):
    organisation = make_organisation(db)
    account = make_user(db, "caseworker", organisation=organisation)
    db.commit()
    return account


def token_of(client: TestClient, path: str = "/sign-in") -> str:
    return CSRF.search(client.get(path).text).group(1)


def sign_in(client: TestClient, account, *, next_page: str = "/"):
    answer = client.post(
        "/sign-in",
        data={
            "email": account.email,
            "password": account.password,
            "otp": account.otp() or "",
            "next": next_page,
            "csrf_token": token_of(client),
        },
    )
    assert answer.status_code == 303, answer.text
    return answer


def set_cookies(answer) -> dict[str, str]:
    """Each Set-Cookie header of an answer, by cookie name."""
    return {header.split("=", 1)[0]: header for header in answer.headers.get_list("set-cookie")}


# --- CSRF --------------------------------------------------------------------------------------------


def test_a_form_without_the_sessions_token_is_refused_and_changes_nothing(browser, caseworker, db):
    token_of(browser)  # the browser has a CSRF cookie
    form = {"email": caseworker.email, "password": caseworker.password}
    for token in (
        None,
        "",
        "not-the-token",
        CSRF.search(TestClient(browser.app, base_url="https://testserver").get("/sign-in").text).group(1),
    ):
        answer = browser.post("/sign-in", data=form | ({"csrf_token": token} if token is not None else {}))
        assert answer.status_code == 403
        assert "This form was out of date or came from another site, so nothing was done." in answer.text
    assert db.scalar(select(func.count()).select_from(LoginAttempt)) == 0  # sign-in was never attempted
    assert ACCESS_COOKIE not in set_cookies(answer)


def test_a_script_may_send_the_token_in_a_header(browser, caseworker):
    token = token_of(browser)
    answer = browser.post(
        "/sign-in",
        headers={"X-CSRF-Token": token},
        data={"email": caseworker.email, "password": caseworker.password, "otp": caseworker.otp()},
    )
    assert answer.status_code == 303


def test_signing_in_gives_a_new_csrf_secret(browser, caseworker):
    before = token_of(browser)
    sign_in(browser, caseworker)
    after = CSRF.search(browser.get("/records").text).group(1)
    assert after != before
    answer = browser.post("/sign-out", data={"csrf_token": before})
    assert answer.status_code == 403  # a token from before sign-in is worthless


# --- cookies -------------------------------------------------------------------------------------------


def test_session_cookies_are_httponly_strict_and_secure_outside_development(browser, caseworker):
    cookies = set_cookies(sign_in(browser, caseworker))
    assert {ACCESS_COOKIE, REFRESH_COOKIE, "reunite_csrf"} <= set(cookies)
    for header in cookies.values():
        flags = {flag.strip().lower() for flag in header.split(";")[1:]}
        assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags, header


def test_in_local_development_cookies_work_over_plain_http(settings):
    app = create_app(settings.model_copy(update={"environment": "development"}))
    app.state.dispatcher = RecordingDispatcher()
    try:
        with TestClient(app) as client:
            header = client.get("/sign-in").headers["set-cookie"]
    finally:
        app.state.engine.dispose()
    assert "httponly" in header.lower() and "samesite=strict" in header.lower()
    assert "secure" not in header.lower()


# --- headers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/sign-in", "/apply", "/static/app.css", "/records"])
def test_every_page_has_a_strict_content_security_policy(browser, path):
    headers = browser.get(path).headers
    policy = headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["default-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self'" and directives["img-src"] == "'self' blob: data:"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    expected_cache = "no-cache" if path.startswith("/static/") else "no-store"
    assert headers["cache-control"] == expected_cache


def test_no_template_has_inline_script_style_or_event_handlers():
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\sstyle\s*=|<style\b|\son[a-z]+\s*=|javascript:", re.I)
    offenders = [
        f"{path.relative_to(TEMPLATES_DIR)}: {match.group(0)!r}"
        for path in sorted(Path(TEMPLATES_DIR).rglob("*.html"))
        for match in inline.finditer(path.read_text())
    ]
    assert offenders == []


# --- who may see what ----------------------------------------------------------------------------------------


def page_paths(app) -> list[str]:
    """Every GET page that needs a permission, with 1 for each path parameter (page routers have no prefix)."""
    return [
        re.sub(r"\{[^}]+\}", "1", route.path)
        for route in api_routes(app.routes)
        if isinstance(route, PageRoute) and "GET" in route.methods and ACTION_KEY in (route.openapi_extra or {})
    ]


def test_every_page_sends_anonymous_visitors_to_sign_in(app, browser):
    paths = page_paths(app)
    assert {"/records", "/records/new", "/records/1", "/cases", "/cases/new", "/cases/1"} <= set(paths)
    for path in paths:
        answer = browser.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/sign-in?next=/"), path


def test_an_unmarked_page_stops_the_app_from_starting(settings, monkeypatch):
    from service import app as app_module
    from service.web.pages import page_router

    unmarked = page_router()
    unmarked.add_api_route("/forgotten", lambda: "open to anyone", methods=["GET"])
    monkeypatch.setattr(app_module, "web_routers", lambda: [unmarked])
    with pytest.raises(app_module.UnmarkedRoute, match="/forgotten"):
        create_app(settings)


def test_a_role_without_the_permission_is_told_so(browser, db):
    reviewer = make_user(db, "reviewer", organisation=make_organisation(db))
    db.commit()
    sign_in(browser, reviewer)
    answer = browser.get("/records/new")
    assert answer.status_code == 403
    assert "Your role does not allow this page." in answer.text


def test_the_api_does_not_accept_the_page_session(browser, caseworker):
    sign_in(browser, caseworker)
    assert browser.get("/records").status_code == 200
    assert browser.get("/api/v1/me").status_code == 401  # bearer only: cookies never authorise the API


def test_after_sign_in_the_browser_only_goes_to_a_page_of_this_site(browser, caseworker):
    assert sign_in(browser, caseworker, next_page="//evil.example/records").headers["location"] == "/"
    for target, expected in [
        ("/records?x=1", "/records?x=1"),
        ("https://evil.example", "/"),
        ("/\\evil", "/"),
        ("", "/"),
        (None, "/"),
    ]:
        assert safe_next(target) == expected


# --- the session follows the account ----------------------------------------------------------------------------


def test_sign_out_ends_the_session_even_for_a_copied_cookie(browser, caseworker):
    sign_in(browser, caseworker)
    copied = dict(browser.cookies)
    answer = browser.post("/sign-out", data={"csrf_token": CSRF.search(browser.get("/records").text).group(1)})
    assert answer.headers["location"] == "/sign-in"
    assert {ACCESS_COOKIE, REFRESH_COOKIE} <= set(set_cookies(answer))  # deleted in the browser
    with TestClient(browser.app, base_url="https://testserver", follow_redirects=False, cookies=copied) as thief:
        assert thief.get("/records").headers["location"] == "/sign-in?next=/records"


def test_sign_out_with_the_organisation_suspended_still_ends_the_refresh_token(browser, caseworker, db):
    sign_in(browser, caseworker)
    token = CSRF.search(browser.get("/records").text).group(1)
    refresh = browser.cookies[REFRESH_COOKIE]
    organisation = db.get(Organisation, caseworker.user.organisation_id)
    organisation.status = "suspended"
    db.commit()
    browser.cookies.delete(ACCESS_COOKIE)  # expired meanwhile: only the refresh token is left
    assert browser.post("/sign-out", data={"csrf_token": token}).headers["location"] == "/sign-in"

    organisation.status = "approved"  # reinstated: a copy of the refresh token must not sign anyone in
    db.commit()
    with TestClient(browser.app, base_url="https://testserver", follow_redirects=False) as thief:
        thief.cookies.set(REFRESH_COOKIE, refresh)
        assert thief.get("/records").headers["location"] == "/sign-in?next=/records"


def test_a_suspension_takes_effect_on_the_next_page(browser, caseworker, db):
    sign_in(browser, caseworker)
    assert browser.get("/records").status_code == 200
    organisation = db.get(Organisation, caseworker.user.organisation_id)
    organisation.status = "suspended"
    db.commit()
    answer = browser.get("/records")
    assert answer.status_code == 403
    assert "Your organisation is suspended" in answer.text
    assert 'href="/records"' not in answer.text  # no way in while suspended


def test_an_expired_access_token_is_renewed_once_from_the_refresh_cookie(browser, caseworker, db):
    sign_in(browser, caseworker)
    spent_refresh = browser.cookies[REFRESH_COOKIE]

    def visit(access: str, refresh: str):
        with TestClient(
            browser.app,
            base_url="https://testserver",
            follow_redirects=False,
            cookies={ACCESS_COOKIE: access, REFRESH_COOKIE: refresh},
        ) as client:
            return client.get("/records")

    answer = visit("expired-or-damaged", spent_refresh)
    assert answer.status_code == 200
    renewed = set_cookies(answer)
    new_refresh = renewed[REFRESH_COOKIE].split(";")[0].split("=", 1)[1]
    assert ACCESS_COOKIE in renewed and new_refresh != spent_refresh
    assert (
        db.scalar(select(func.count()).select_from(RefreshToken).where(RefreshToken.user_id == caseworker.user.id)) == 2
    )
    # Replaying the spent refresh token (a stolen copy) ends the whole sign-in ...
    assert visit("expired", spent_refresh).headers["location"] == "/sign-in?next=/records"
    # ... so the rightful browser, once its access token has expired, must sign in again too.
    assert visit("expired-again", new_refresh).headers["location"] == "/sign-in?next=/records"


def test_photos_are_never_cached_and_their_views_are_audited(browser, caseworker, db, sdist_images):
    from service.audit.models import AuditEvent

    sign_in(browser, caseworker)
    token = CSRF.search(browser.get("/records/new").text).group(1)
    created = browser.post("/records/new", data=record_form(token, case_reference="WS-1"))
    assert created.status_code == 303, created.text
    record_path = created.headers["location"]
    uploaded = browser.post(
        f"{record_path}/photos",
        data={"csrf_token": token},
        files={"file": ("photo.jpg", (sdist_images / "obama.jpg").read_bytes(), "image/jpeg")},
    )
    assert uploaded.status_code == 303, uploaded.text
    page = browser.get(record_path).text
    image_path = re.search(r'src="(/records/\d+/photos/\d+/image\?size=thumbnail)"', page).group(1)
    image = browser.get(image_path)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.headers["cache-control"] == "no-store"
    assert image.headers["x-content-type-options"] == "nosniff"
    viewed = db.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "photo_viewed"))
    assert viewed == 1
    assert browser.app.state.dispatcher.sent == [("reunite.process_record_photo", 1)]


# --- forms keep the API's rules ----------------------------------------------------------------------------------


def record_form(token: str, **changes) -> dict[str, str]:
    """A valid "Register a child" form, dated around today."""
    today = utcnow().date()
    return {
        "csrf_token": token,
        "case_reference": "TZ-1",
        "label": "Child T-1",
        "age_years": "7",
        "missing_since": (today - timedelta(days=40)).isoformat(),
        "guardian_name": "Guardian Quill",
        "guardian_relationship": "father",
        "responsibility_verified_by": "birth certificate seen",
        "lawful_basis": "consent",
        "purpose": "Find the child",
        "notice_version": "1",
        "obtained_at": f"{today - timedelta(days=2)}T09:00",
        "expires_at": f"{today + timedelta(days=300)}T09:00",
        "utc_offset": "+05:30",
    } | changes


def test_consent_times_are_read_in_the_chosen_time_zone(browser, caseworker, db):
    from service.records.models import Record

    sign_in(browser, caseworker)
    token = CSRF.search(browser.get("/records/new").text).group(1)
    assert browser.post("/records/new", data=record_form(token)).status_code == 303
    record = db.scalars(select(Record).where(Record.case_reference == "TZ-1")).one()
    given = utcnow().date() - timedelta(days=2)
    assert record.consent.obtained_at.isoformat() == f"{given}T03:30:00+00:00"


def test_a_refused_record_shows_the_services_sentence_and_creates_nothing(browser, caseworker, db):
    from service.records.models import Record

    sign_in(browser, caseworker)
    token = CSRF.search(browser.get("/records/new").text).group(1)
    expires_at = f"{utcnow().date() + timedelta(days=800)}T09:00"
    too_long = browser.post("/records/new", data=record_form(token, expires_at=expires_at))
    assert too_long.status_code == 422
    assert "Consent may last at most 730 days from when it was given" in too_long.text
    assert 'value="TZ-1"' in too_long.text  # what was typed is kept
    missing = browser.post("/records/new", data=record_form(token, label="", missing_since=""))
    assert missing.status_code == 422
    assert "Check these fields: Label, Missing since." in missing.text
    assert db.scalar(select(func.count()).select_from(Record)) == 0


@pytest.mark.one_backend
def test_a_suspended_organisations_user_is_told_why_and_gets_no_session(browser, caseworker, db):
    db.get(Organisation, caseworker.user.organisation_id).status = "suspended"
    db.commit()
    answer = browser.post(
        "/sign-in",
        data={
            "email": caseworker.email,
            "password": caseworker.password,
            "otp": caseworker.otp(),
            "csrf_token": token_of(browser),
        },
    )
    assert answer.status_code == 403 and "Your organisation is suspended" in answer.text
    assert ACCESS_COOKIE not in set_cookies(answer) and REFRESH_COOKIE not in set_cookies(answer)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(RefreshToken)) == 0
