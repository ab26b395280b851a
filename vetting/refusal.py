"""The one shape of a policy refusal: a sentence for people, a code for programs, and a status.

`status` is the HTTP status the service answers the refusal with (service.refusal's
one handler maps it); a subclass sets its default and any per-code exceptions in
`statuses`, so the service layer need not translate policy refusals by hand.
"""

from typing import ClassVar


class PolicyRefused(Exception):
    """A rule of `vetting` refused something; `message` says why, `code` names the rule."""

    status: int = 422
    statuses: ClassVar[dict[str, int]] = {}

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = self.statuses.get(code, type(self).status)
