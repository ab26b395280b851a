"""The law-enforcement exclusion: refused organisation types and denylisted domains.

Reunite serves non-governmental organisations only. An organisation whose type is
police, law enforcement, border or immigration enforcement, military or
intelligence (or a synonym) is refused at application. Email addresses and
websites whose domain is on the denylist (the shipped list plus what platform
admins add) are refused for organisations and users alike, on application, when a
user is added and at every sign-in.

Domain matching is by whole labels, after IDNA (UTS #46) normalisation: case is
ignored, internationalised names are compared in their ASCII form, and a listed
domain refuses itself and every subdomain (`met.police.uk` by `police.uk`), but
never a mere lookalike (`police-foundation-charity.org`, `notpolice.uk`). Names
of organisations are not checked: charities that support victims of crime or
families of missing people legitimately mention the police, and the attestation
and two platform admins' review cover what a name can hide.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
import ada_url
import idna

ORGANISATION_TYPES = {
    "ngo": "Non-governmental organisation",
    "charity": "Registered charity",
    "child_protection": "Child-protection organisation",
    "humanitarian": "Humanitarian organisation",
    "missing_persons_helpline": "Missing-persons helpline",
    "family_tracing": "Family-tracing service",
    "other_nonprofit": "Other non-profit organisation",
}

# Words that make an organisation type law enforcement, in several languages.
_REFUSED_TYPE_WORDS = (
    "police",
    "policing",
    "law enforcement",
    "law-enforcement",
    "enforcement",
    "border",
    "immigration",
    "customs",
    "military",
    "army",
    "navy",
    "air force",
    "armed forces",
    "defence",
    "defense",
    "intelligence",
    "security service",
    "secret service",
    "gendarmerie",
    "garda",
    "sheriff",
    "marshal",
    "constabulary",
    "prosecutor",
    "investigation bureau",
    "polizei",
    "policia",
    "polícia",
    "polizia",
    "politie",
    "politi",
    "polis",
    "carabinieri",
    "guardia civil",
    "militär",
    "militaire",
    "renseignement",
)


@dataclass(frozen=True)
class Refusal:
    """Why the exclusion refused something: a rule name and a sentence for people."""

    rule: str
    message: str


class Denylist:
    """Normalised law-enforcement domains; `refuses(domain)` matches by whole labels."""

    def __init__(self, domains: Iterable[str]):
        self._domains = frozenset(filter(None, (normalise_domain(d) for d in domains)))

    @classmethod
    def shipped(cls, extra: Iterable[str] = ()) -> Denylist:
        text = resources.files("vetting").joinpath("data/law_enforcement_domains.txt").read_text()
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        return cls([*lines, *extra])

    def __contains__(self, domain: str) -> bool:
        return self.refuses(domain)

    def __len__(self) -> int:
        return len(self._domains)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._domains))

    def refuses(self, domain: str) -> bool:
        labels = (normalise_domain(domain) or "").split(".")
        return any(".".join(labels[i:]) in self._domains for i in range(len(labels)))


def normalise_domain(domain: str) -> str | None:
    """Lower-case ASCII (punycode) form of a domain, or None if it is not one."""
    domain = domain.strip().rstrip(".")
    if not domain:
        return None
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except idna.IDNAError:
        return None


def check_org_type(org_type: str) -> Refusal | None:
    text = " ".join(re.split(r"[\s_]+", org_type.casefold()))
    if any(word in text for word in _REFUSED_TYPE_WORDS):
        return Refusal(
            "law_enforcement_type",
            "Reunite does not serve police, law-enforcement, border, immigration-enforcement, "
            "military or intelligence bodies.",
        )
    if org_type not in ORGANISATION_TYPES:
        return Refusal("unknown_type", f"Choose an organisation type from: {', '.join(ORGANISATION_TYPES)}.")
    return None


def check_email(email: str, denylist: Denylist) -> Refusal | None:
    _, _, domain = email.rpartition("@")
    return _check_domain(domain, denylist, "email_domain", "This email address")


WEBSITE_SCHEMES = ("http:", "https:")


def website_url(url: str) -> ada_url.URL | None:
    """The URL as a browser would parse it (WHATWG), `https://` assumed when there is no scheme; None if none."""
    for candidate in (url.strip(), f"https://{url.strip()}"):
        if ada_url.check_url(candidate):
            return ada_url.URL(candidate)
    return None


def check_website(url: str, denylist: Denylist) -> Refusal | None:
    """Check the host a browser would visit (`https://police.uk\\@ngo.org` visits police.uk); http(s) only."""
    parsed = website_url(url)
    host = parsed.hostname if parsed is not None else ""
    if host and denylist.refuses(host):  # first, so that the refusal names the law-enforcement rule
        return _check_domain(host, denylist, "website_domain", "This website")
    if parsed is not None and parsed.protocol not in WEBSITE_SCHEMES:
        return Refusal("website_scheme", "The website must be an address starting with https:// or http://.")
    if "." not in host.strip("."):  # one label (`https:///x` visits `x`) is no public website
        host = ""
    return _check_domain(host, denylist, "website_domain", "This website")


def _check_domain(domain: str, denylist: Denylist, rule: str, subject: str) -> Refusal | None:
    if normalise_domain(domain) is None:
        return Refusal(f"invalid_{rule}", f"{subject} does not have a valid domain.")
    if denylist.refuses(domain):
        return Refusal(
            rule, f"{subject} belongs to a law-enforcement, military or intelligence body; Reunite does not serve them."
        )
    return None
