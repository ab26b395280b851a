"""Browser tests: the real app on a free local port, a real worker, headless Chromium driven by Playwright.

One live service per test module (fixture `live`): SQLite and the embedded
filesystem broker in a temporary data folder, `create_app` served by uvicorn in a
background thread of this process and, for tests that ask for `live_worker`, one
real `reunite worker` process that embeds and searches, exactly as `reunite serve`
runs them (started on first use, then kept for the module). A module's tests share
it and keep apart by making their own organisations and users (`live.organisation()`,
`live.user()`); modules get their own database, because matching is global: a
record enrolled by one test is searched against every open case, whoever made it.

Chromium is Debian's `/usr/bin/chromium` (Playwright cannot download browsers
here); without it every browser test is skipped. Each test gets a fresh browser
context (no cookies) at 1280x800; `browser_context` makes more for a second person.
A test fails if the page logs a Content-Security-Policy violation or an
uncaught script error, so inline script or style slipping into a template is caught.

`screenshot(page, "name")` checks the page with axe-core (`assert_accessible`) and,
when `REUNITE_SCREENSHOTS` names a folder (`make screenshots` sets docs/screenshots,
for the README), saves name.png there; only test data ever appears in them. A plain
test run writes nothing into the checkout.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn

from service.app import create_app
from service.db import make_engine, make_session_factory
from service.migrate import upgrade
from service.settings import Settings
from tests.support.service import TOTP_CLOCK, Account, make_organisation, make_user
from tests.support.workers import Workers, poll

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
SCREENSHOTS = Path(os.environ["REUNITE_SCREENSHOTS"]) if os.environ.get("REUNITE_SCREENSHOTS") else None
WAIT_MS = 90_000  # the longest a page may take to show a worker's result (2 shared cores)


def pytest_collection_modifyitems(config, items):
    """Skip every browser test, with the reason, where Chromium or Playwright is missing."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed in this environment"
    if missing:
        skip = pytest.mark.skip(reason=missing)
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)


# --- the live service ----------------------------------------------------------------------------


@dataclass
class Live:
    """The running service: its address, settings, worker, and helpers to arrange test data."""

    url: str
    settings: Settings
    workers: Workers
    session_factory: object
    _counter: list[int] = field(default_factory=lambda: [0])

    @contextmanager
    def db(self) -> Iterator:
        """A session on the live database; commits on success (it is not the app's session)."""
        session = self.session_factory()
        try:
            yield session
            session.commit()
        finally:
            session.close()

    def start_worker(self) -> None:
        """Start the one `reunite worker` process, unless it is already running."""
        if not any(process.poll() is None for process in self.workers.processes):
            self.workers.start()

    def unique(self, prefix: str) -> str:
        self._counter[0] += 1
        return f"{prefix}-{os.getpid()}-{self._counter[0]}"

    def organisation(self, *, status: str = "approved", name: str | None = None, **fields) -> int:
        """A new organisation (approved by default) with a unique name; its id."""
        with self.db() as session:
            return make_organisation(session, status=status, name=name or self.unique("Organisation"), **fields).id

    def user(self, *roles: str, organisation_id: int | None = None, email: str | None = None) -> Account:
        """A new active user with `roles` (operators get a TOTP secret: `account.otp()`)."""
        from service.organisations.models import Organisation

        with self.db() as session:
            organisation = session.get(Organisation, organisation_id) if organisation_id else None
            email = email or f"{self.unique('-'.join(roles) or 'user')}@helping-hands.example.org"
            account = make_user(session, *roles, organisation=organisation, email=email)
            session.flush()
            session.expunge(account.user)
        return account


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("live")
    database_url = f"sqlite:///{root / 'reunite.db'}"
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    settings = Settings(
        environment="test",
        secret_key="b" * 48,
        database_url=database_url,
        master_key=base64.b64encode(os.urandom(32)).decode(),
        data_dir=root / "data",
        audit_key_path=root / "audit-key.pem",
        # Every test signs in from 127.0.0.1; the per-address limit is tested in integration.
        login_failures_per_address=1000,
        applications_per_address=1000,
        applications_globally=1000,
    )
    workers = Workers(settings, None, root)  # the embedded filesystem broker in the data folder
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            workers.stop_all(warm=False)
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    arranging = make_engine(database_url, serialise_sqlite=False)
    try:
        yield Live(
            url=f"http://127.0.0.1:{server.config.port}",
            settings=settings,
            workers=workers,
            session_factory=make_session_factory(arranging),
        )
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        workers.stop_all(warm=False)
        arranging.dispose()
        app.state.engine.dispose()


@pytest.fixture
def live_worker(live) -> Live:
    """The live service with its worker process running (started on first use, kept for the module)."""
    live.start_worker()
    return live


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def browser_context(chromium, live):
    """A factory of fresh browser contexts (one per person), each watched for CSP violations and errors."""
    contexts, problems = [], []

    def make():
        context = chromium.new_context(base_url=live.url, viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
        context.set_default_timeout(15_000)
        context.on("page", lambda page: _watch(page, problems))
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
    assert not problems, "the pages reported problems:\n" + "\n".join(problems)


def _watch(page, problems: list[str]) -> None:
    def on_console(message):
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"{page.url}: script error: {error}"))


@pytest.fixture
def page(browser_context):
    """A page in a fresh context: nobody signed in."""
    return browser_context().new_page()


def sign_in(page, account: Account) -> None:
    """Sign in through the sign-in page (with the authenticator code when the account has one)."""
    sign_in_with(page, account.email, account.password, otp=account.otp())


def enrol_and_sign_in(page, email: str, password: str) -> None:
    """The first sign-in of an account without a second factor: it is shown its key once, then signs in with a code."""
    from playwright.sync_api import expect

    sign_in_with(page, email, password)
    expect(page.get_by_role("heading", level=1)).to_have_text("Add Reunite to your authenticator app")
    secret = page.locator("code.totp-secret").inner_text()
    sign_in_with(page, email, password, otp=TOTP_CLOCK.next_code(secret))


def sign_in_with(page, email: str, password: str, *, otp: str | None = None) -> None:
    page.goto("/sign-in")
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    if otp:
        page.get_by_label("Code from your authenticator app").fill(otp)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def register_record(page, *, case_reference: str, label: str, guardian: str = "Guardian Featherstonehaugh") -> int:
    """Register a record through the "Register a child" form, with a valid consent; its id."""
    now = datetime.now(UTC)
    page.goto("/records/new")
    fields = {
        "Case reference": case_reference,
        "Label": label,
        "Age in years (optional)": "9",
        "Missing since": (now.date() - timedelta(days=60)).isoformat(),
        "Guardian's name": guardian,
        "Relationship to the child": "mother",
        "How parental responsibility was checked": "birth certificate seen",
        "Purpose agreed with the guardian": "To search for my daughter and reunite our family",
        "Privacy notice version": "2026-1",
        "Consent given on": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "Consent ends on": (now + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M"),
    }
    for label_text, value in fields.items():
        page.get_by_label(label_text, exact=True).fill(value)
    page.get_by_label("Lawful basis", exact=True).select_option("consent")
    page.get_by_role("button", name="Register the child").click()
    page.wait_for_url(re.compile(r"/records/\d+$"))
    return int(page.url.rstrip("/").split("/")[-1].split("#")[0])


def assert_accessible(page) -> None:
    """axe-core finds no accessibility violation on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    assert results.response["passes"], "axe did not run"
    assert results.violations_count == 0, f"{page.url}\n{results.generate_report()}"


def screenshot(page, name: str, *, full_page: bool = True) -> Path | None:
    """Check the page with axe-core, then save <name>.png in $REUNITE_SCREENSHOTS if set (test data only)."""
    assert_accessible(page)
    if SCREENSHOTS is None:
        return None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path


def wait_for_text(page, text: str, *, timeout_ms: int = WAIT_MS) -> None:
    """Wait until `text` appears on the page (pages that poll reload themselves when work is done)."""
    page.get_by_text(text).first.wait_for(timeout=timeout_ms)


__all__ = [
    "Live",
    "assert_accessible",
    "poll",
    "register_record",
    "screenshot",
    "sign_in",
    "sign_in_with",
    "wait_for_text",
    "WAIT_MS",
]
