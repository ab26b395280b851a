"""The one shape of a policy refusal: a sentence for people and a code for programs."""


class PolicyRefused(Exception):
    """A rule of `vetting` refused something; `message` says why, `code` names the rule."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.message = message
        self.code = code
