"""The law-enforcement exclusion: refused organisation types, denylisted domains, emails, websites."""

import pytest

from vetting.exclusion import (
    ORGANISATION_TYPES,
    Denylist,
    check_email,
    check_org_type,
    check_website,
    normalise_domain,
)

SHIPPED = Denylist.shipped()


@pytest.mark.parametrize("org_type", sorted(ORGANISATION_TYPES))
def test_every_offered_type_is_accepted(org_type):
    assert check_org_type(org_type) is None


@pytest.mark.parametrize(
    "org_type",
    [
        "police",
        "Police",
        "POLICE_SERVICE",
        "law enforcement",
        "law_enforcement",
        "Border Force",
        "immigration_enforcement",
        "customs",
        "military",
        "armed_forces",
        "army",
        "defence",
        "intelligence",
        "secret service",
        "gendarmerie",
        "sheriff",
        "constabulary",
        "Polizei",
        "policia",
        "polícia",
        "carabinieri",
    ],
)
def test_law_enforcement_types_and_synonyms_are_refused(org_type):
    assert check_org_type(org_type).rule == "law_enforcement_type"


@pytest.mark.parametrize("org_type", ["school", "", "NGO", "church"])
def test_types_outside_the_list_are_refused_as_unknown(org_type):
    assert check_org_type(org_type).rule == "unknown_type"


@pytest.mark.parametrize(
    "domain",
    [
        "police.uk",  # exact
        "met.police.uk",  # subdomain
        "a.b.met.police.uk",  # deep subdomain
        "MET.Police.UK",  # mixed case
        "met.police.uk.",  # trailing dot (fully qualified)
        "army.mil",
        "mil",  # the whole .mil top-level domain
        "ＰＯＬＩＺＥＩ.ＤＥ",  # full-width Unicode folds to polizei.de
        "www.bundespolizei.de",
        "nzdf.mil.nz",  # a second-level military domain
        "scotland.police.scot",  # a police service outside police.uk
    ],
)
def test_denylisted_domains_and_subdomains_are_refused(domain):
    assert SHIPPED.refuses(domain)
    assert domain in SHIPPED


@pytest.mark.parametrize(
    "domain",
    [
        "police-foundation-charity.org",
        "notpolice.uk",
        "police.uk.example.org",
        "police.org",
        "mil.example.org",
        "helping-hands.example.org",
        "polizei.de.example.net",
    ],
)
def test_lookalikes_pass(domain):
    assert not SHIPPED.refuses(domain)


def test_internationalised_domains_match_in_unicode_and_punycode_forms():
    listed = Denylist(["bücher-polizei.example"])
    punycode = normalise_domain("bücher-polizei.example")
    assert punycode.startswith("xn--") and punycode.endswith(".example")
    assert listed.refuses("bücher-polizei.example")
    assert listed.refuses(punycode)
    assert listed.refuses("Wache.BÜCHER-polizei.example")
    assert Denylist([punycode]).refuses("bücher-polizei.example")
    assert not listed.refuses("bucher-polizei.example")


@pytest.mark.parametrize("domain", ["", ".", "exa mple.org", "-bad-.org", "a..b", "xn--polizei-.de", "a" * 64 + ".org"])
def test_invalid_domains_do_not_normalise(domain):
    assert normalise_domain(domain) is None
    assert not SHIPPED.refuses(domain)


def test_denylist_lists_its_normalised_domains():
    assert list(Denylist(["B.example", "a.example.", "not a domain"])) == ["a.example", "b.example"]
    assert "police.uk" in list(SHIPPED) and len(SHIPPED) == len(list(SHIPPED))


@pytest.mark.parametrize(
    ("email", "rule"),
    [
        ("officer@met.police.uk", "email_domain"),
        ("Officer@MET.POLICE.UK", "email_domain"),
        ("someone@army.mil", "email_domain"),
        ("agent@fbi.gov", "email_domain"),
        ("someone@helping-hands.example.org", None),
        ("someone@notpolice.uk", None),
        ("someone@", "invalid_email_domain"),
        ("someone@exa mple.org", "invalid_email_domain"),
    ],
)
def test_emails_are_checked_by_their_domain(email, rule):
    refusal = check_email(email, SHIPPED)
    assert (refusal.rule if refusal else None) == rule


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("https://www.police.uk", "website_domain"),
        ("https://www.police.uk:8443/about?x=1#top", "website_domain"),
        ("http://POLICE.UK./", "website_domain"),
        ("police.uk/about", "website_domain"),
        ("ftp://user:secret@fbi.gov/files", "website_domain"),
        ("https://wache.polizei.de", "website_domain"),
        ("https://helping-hands.example.org/police-liaison", None),
        ("https://police-foundation-charity.org:443/", None),
        ("helping-hands.example.org", None),
        ("https:///no-host", "invalid_website_domain"),
        ("https://[::1]/", "invalid_website_domain"),
    ],
)
def test_websites_are_checked_by_their_host(url, rule):
    refusal = check_website(url, SHIPPED)
    assert (refusal.rule if refusal else None) == rule


def test_admins_extend_the_shipped_list():
    extended = Denylist.shipped(["Sheriff.Example.COM"])
    assert extended.refuses("deputy.sheriff.example.com")
    assert len(extended) == len(SHIPPED) + 1
    assert check_email("x@deputy.sheriff.example.com", extended).rule == "email_domain"


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        # A browser reads the backslash as a slash: the host is police.uk, not ngo.example.org.
        ("https://police.uk\\@ngo.example.org", "website_domain"),
        ("https://www.police.uk\\@ngo.example.org/about", "website_domain"),
        ("https://ngo.example.org@police.uk/", "website_domain"),
        ("https://POLICE%2euk/", "website_domain"),
        ("javascript:alert(document.cookie)", "website_scheme"),
        ("JavaScript://ngo.example.org/%0aalert(1)", "website_scheme"),
        ("data:text/html,<script>alert(1)</script>", "website_scheme"),
        ("ftp://ngo.example.org/", "website_scheme"),
        ("http://ngo.example.org\\@", None),
        ("https://ngo.example.org:8443/about", None),
    ],
)
def test_websites_are_parsed_as_a_browser_parses_them(url, rule):
    refusal = check_website(url, SHIPPED)
    assert (refusal.rule if refusal else None) == rule
