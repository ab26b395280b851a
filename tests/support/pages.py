"""A person using the web pages without a browser: their own cookies, forms posted with the CSRF token.

Each `Person` signs in through the sign-in page on its own TestClient (on https, so the
Secure cookies are kept) and submits forms with the token read from the page, as a
browser would.
"""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from tests.support.service import Account

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Person:
    """One person's cookies: signs in through the page, posts forms with the page's CSRF token."""

    def __init__(self, app, account: Account):
        self.account = account
        self.http = TestClient(app, base_url="https://testserver", follow_redirects=False)
        answer = self.post(
            "/sign-in", "/sign-in", email=account.email, password=account.password, otp=account.otp() or "", next="/"
        )
        assert answer.status_code == 303, answer.text

    def get(self, path: str, expect: int = 200):
        answer = self.http.get(path)
        assert answer.status_code == expect, f"GET {path}: {answer.status_code} {answer.text[:500]}"
        return answer

    def token(self, page: str) -> str:
        found = CSRF.search(self.http.get(page).text)
        assert found, f"no form token on {page}"
        return found.group(1)

    def post(self, page: str, target: str, **fields):
        """Submit a form found on `page` to `target`, with that page's token."""
        return self.http.post(target, data={"csrf_token": self.token(page), **fields})


def text_of(answer) -> str:
    """The page's visible words, roughly: tags dropped, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", answer.text)).split())
