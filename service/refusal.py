"""`Refusal`: the one exception every service function raises to refuse a request.

A refusal carries what the answer needs: the HTTP `status`, a `message` a person
can act on, an optional `rule` (a short machine code such as `not_yours`) and any
`headers` (Retry-After). One exception handler (`service.app`) answers it: the
`Problem` shape of service/problems.py for the API, the error page for web pages
(service/web/pages.py). The pure packages keep their own `vetting.refusal.PolicyRefused`
(vetting must not import service); it carries a status and code too, and the same
handler answers it. `REFUSALS` is the pair, for the few pages that catch a refusal
to re-render their form with its sentence.
"""

from __future__ import annotations

from collections.abc import Mapping

from vetting.refusal import PolicyRefused


class Refusal(Exception):
    """A request refused with `status`, a sentence, and optionally a rule code and headers."""

    status = 400

    def __init__(
        self, status: int | None, message: str, *, rule: str | None = None, headers: Mapping[str, str] | None = None
    ):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.message = message
        self.rule = rule
        self.headers = dict(headers) if headers else None

    @property
    def retry_after(self) -> int | None:
        """Seconds until a refused caller may try again (429), if the refusal says."""
        return int(self.headers["Retry-After"]) if self.headers and "Retry-After" in self.headers else None


class _Fixed(Refusal):
    """A refusal whose status is its class's."""

    def __init__(self, message: str, *, rule: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(None, message, rule=rule, headers=headers)


class Refused(_Fixed):
    """A rule refused the request."""

    status = 422


class Forbidden(_Fixed):
    status = 403


class NotFound(_Fixed):
    """Not found, or not the caller's to see (the two are never told apart)."""

    status = 404


class Conflict(_Fixed):
    """The object's state does not allow this now."""

    status = 409


class TooMany(Refusal):
    """Too many requests: answered with 429 and a Retry-After of `retry_after` seconds."""

    status = 429

    def __init__(self, message: str, *, retry_after: int, rule: str | None = None):
        super().__init__(None, message, rule=rule, headers=retry_after_header(retry_after))


def retry_after_header(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


REFUSALS: tuple[type[Refusal], type[PolicyRefused]] = (Refusal, PolicyRefused)


def problem(refusal: Refusal | PolicyRefused) -> tuple[int, dict[str, str], dict[str, str] | None]:
    """(status, Problem body, headers) of a refusal: `{"detail": sentence}` plus `rule` when one refused."""
    if isinstance(refusal, PolicyRefused):
        return refusal.status, {"detail": refusal.message, "rule": refusal.code}, None
    body = {"detail": refusal.message} | ({"rule": refusal.rule} if refusal.rule else {})
    return refusal.status, body, refusal.headers
