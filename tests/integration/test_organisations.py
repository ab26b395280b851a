"""Organisations through the API: applications, two-admin vetting, suspension, expiry, users, denylist.

Each test walks one story and checks the audit events it writes, exactly and in
order. Access tokens are minted directly (no password check, no login events)
except where signing in is the point, and users get a password hash computed once
(the `quick_hashing` fixture in tests/conftest.py): argon2 costs a large fraction of a second per hash on a busy
machine, and test_auth already covers hashing itself.
"""

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from service.audit.models import AuditEvent
from service.auth.models import User
from service.auth.tokens import issue_access_token
from service.db import utcnow
from service.organisations.models import DenylistDomain, Organisation, OrganisationDecision
from service.organisations.service import expire_due_organisations
from tests.support.pages import CSRF
from tests.support.service import PASSWORD, first_sign_in, make_organisation, make_user, sign_in, token_pair

API = "/api/v1"


def bearer(settings, account) -> dict[str, str]:
    """Authorization header for the account at its current token version, without signing in."""
    token, _ = issue_access_token(
        secret=settings.signing_secret(),
        user_id=account.user_id,
        token_version=account.token_version,
        lifetime=timedelta(minutes=5),
    )
    return {"Authorization": f"Bearer {token}"}


class Person:
    """An account's ids, kept as plain values so tests never reload expired ORM objects."""

    def __init__(self, account):
        self.user_id, self.token_version = account.user.id, account.user.token_version
        self.email = account.email


def people(db, *specs) -> list[Person]:
    """Create users from (roles, organisation) pairs in one commit."""
    accounts = [make_user(db, *roles, organisation=organisation) for roles, organisation in specs]
    db.commit()
    return [Person(account) for account in accounts]


def audit_mark(db) -> int:
    mark = db.scalar(select(func.coalesce(func.max(AuditEvent.seq), 0)))
    db.rollback()
    return mark


def events_since(db, mark: int) -> list[tuple[str, int | None, dict]]:
    db.expire_all()
    events = db.scalars(select(AuditEvent).where(AuditEvent.seq > mark).order_by(AuditEvent.seq)).all()
    found = [(e.action, e.actor_id, json.loads(e.details)) for e in events]
    db.rollback()
    return found


def password_sign_in(client, email: str) -> dict[str, str]:
    """Sign in through the API as a user created by the API: the first sign-in sets up the second factor."""
    return first_sign_in(client, email)


def application(**changes) -> dict:
    body = {
        "name": "Helping Hands",
        "org_type": "ngo",
        "country": "gb",
        "registration_number": "1234567",
        "website": "https://helping-hands.example.org",
        "contact_email": "contact@helping-hands.example.org",
        "admin_email": "Admin@Helping-Hands.example.org",
        "admin_password": PASSWORD,
        "attestation": {"no_law_enforcement": True, "purpose": "Reuniting families"},
    }
    return body | changes


def test_application_creates_an_applied_organisation_and_its_admin(client, db):
    response = client.post(f"{API}/organisations/applications", json=application())
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "applied"

    organisation = db.get(Organisation, created["id"])
    assert (organisation.country, organisation.attests_no_law_enforcement) == ("GB", True)
    admin = db.scalars(select(User).where(User.organisation_id == created["id"])).one()
    assert admin.email == "admin@helping-hands.example.org" and admin.roles == {"org_admin", "caseworker", "reviewer"}
    admin_id = admin.id
    db.rollback()
    assert events_since(db, 0) == [
        ("organisation_applied", admin_id, {"org_type": "ngo", "admin_user_id": admin_id}),
    ]

    # The applicant can sign in, but can do nothing until vetted.
    headers = password_sign_in(client, "admin@helping-hands.example.org")
    me = client.get(f"{API}/me", headers=headers)
    assert me.status_code == 403 and "still being vetted" in me.json()["detail"]

    # An address in use is not told apart: the answer is that of any application (see also
    # test_an_application_does_not_tell_whether_the_email_has_an_account).
    duplicate = client.post(
        f"{API}/organisations/applications", json=application(admin_email="ADMIN@helping-hands.example.org")
    )
    assert duplicate.status_code == 201 and duplicate.json()["status"] == "applied"


@pytest.mark.one_backend
def test_an_application_does_not_tell_whether_the_email_has_an_account(app, client, db):
    app.state.settings = app.state.settings.model_copy(update={"applications_per_address": 100})
    organisation = make_organisation(db)
    existing = make_user(db, "caseworker", organisation=organisation, email="taken@helping-hands.example.org")
    db.commit()
    mark = audit_mark(db)
    free = client.post(f"{API}/organisations/applications", json=application(admin_email="free@ngo.example.org"))
    taken = client.post(f"{API}/organisations/applications", json=application(admin_email=existing.email.upper()))
    assert (free.status_code, taken.status_code) == (201, 201)
    assert free.json().keys() == taken.json().keys() and free.json()["status"] == taken.json()["status"]
    assert taken.json()["id"] == free.json()["id"] + 1
    # The existing account is untouched; the operators vetting the second application see why it has no user.
    assert [event[2] for event in events_since(db, mark)][1] == {"org_type": "ngo", "admin_email_in_use": True}
    assert db.scalar(select(func.count()).select_from(User).where(User.organisation_id == taken.json()["id"])) == 0
    # A weak password gets the same refusal either way.
    weak = [
        client.post(
            f"{API}/organisations/applications", json=application(admin_email=email, admin_password="aaaaaaaaaaaa")
        ).json()
        for email in ("other@ngo.example.org", existing.email)
    ]
    assert weak[0] == weak[1] and weak[0]["rule"] == "weak_password"


@pytest.mark.one_backend
def test_applications_are_limited_per_address_and_overall(app, client, db):
    app.state.settings = app.state.settings.model_copy(
        update={"applications_per_address": 2, "applications_globally": 3, "application_window_minutes": 60}
    )
    sent = [
        client.post(f"{API}/organisations/applications", json=application(admin_email=f"a{n}@ngo.example.org"))
        for n in range(3)
    ]
    assert [response.status_code for response in sent] == [201, 201, 429]
    assert sent[2].json() == {"detail": "Too many applications from your network. Try again in 60 minutes."}
    assert 3540 < int(sent[2].headers["Retry-After"]) <= 3600
    # Another address gets one more in, then the limit for everyone together applies.
    from fastapi.testclient import TestClient

    with TestClient(app, client=("198.51.100.7", 1)) as elsewhere:
        more = [
            elsewhere.post(f"{API}/organisations/applications", json=application(admin_email=f"b{n}@ngo.example.org"))
            for n in range(2)
        ]
    assert [response.status_code for response in more] == [201, 429]
    assert "Too many applications to Reunite just now" in more[1].json()["detail"]
    # The page says so too, with the same Retry-After.
    with TestClient(app, base_url="https://testserver", client=("203.0.113.9", 1)) as browser:
        token = CSRF.search(browser.get("/apply").text).group(1)
        form = {
            **application(admin_email="c@ngo.example.org"),
            "admin_password_again": PASSWORD,
            "no_law_enforcement": "yes",
            "purpose": "Finding missing children",
            "csrf_token": token,
        }
        del form["attestation"]
        page = browser.post("/apply", data=form)
    assert page.status_code == 429 and "Too many applications to Reunite just now" in page.text
    assert 0 < int(page.headers["Retry-After"]) <= 3600
    assert db.scalar(select(func.count()).select_from(Organisation)) == 3


@pytest.mark.one_backend
def test_weak_passwords_are_refused_with_zxcvbn_feedback(app, client, db):
    app.state.settings = app.state.settings.model_copy(update={"applications_per_address": 100})
    for password in ("aaaaaaaaaaaa", "helpinghands2024", "Password1234!"):
        response = client.post(f"{API}/organisations/applications", json=application(admin_password=password))
        body = response.json()
        assert response.status_code == 422 and body["rule"] == "weak_password", (password, body)
        assert body["detail"].startswith("This password is too easy to guess.") and len(body["detail"]) > 40
    assert db.scalar(select(func.count()).select_from(User)) == 0


REFUSALS = [
    ({"org_type": "police"}, "law_enforcement_type", "org_type"),
    ({"org_type": "Border_Force"}, "law_enforcement_type", "org_type"),
    ({"org_type": "school"}, "unknown_type", "org_type"),
    ({"contact_email": "desk@met.police.uk"}, "email_domain", "contact_email"),
    ({"admin_email": "agent@FBI.gov"}, "email_domain", "admin_email"),
    ({"admin_email": "someone@bad..domain"}, "invalid_email_domain", "admin_email"),
    ({"website": "https://www.police.uk:443/about"}, "website_domain", "website"),
    ({"attestation": {"no_law_enforcement": False, "purpose": "x"}}, "attestation", "attestation"),
]


def test_each_refused_application_names_its_rule_and_is_audited(app, client, db):
    app.state.settings = app.state.settings.model_copy(update={"applications_per_address": 100})
    for changes, rule, _field in REFUSALS:
        response = client.post(f"{API}/organisations/applications", json=application(**changes))
        assert response.status_code == 422, (changes, response.text)
        body = response.json()
        assert body["rule"] == rule and body["detail"].endswith(".")

    missing = client.post(f"{API}/organisations/applications", json={"name": "Helping Hands"})
    assert missing.status_code == 422 and "org_type" in missing.json()["detail"]
    assert db.scalar(select(func.count()).select_from(Organisation)) == 0
    assert db.scalar(select(func.count()).select_from(User)) == 0
    db.rollback()
    # Rule and field codes only: nothing the applicant typed reaches the audit trail.
    assert events_since(db, 0) == [
        ("application_refused", None, {"rule": rule, "field": field}) for _changes, rule, field in REFUSALS
    ]


def test_two_different_admins_approve_and_the_same_admin_twice_is_refused(client, db, settings):
    organisation = make_organisation(db, status="applied")
    other = make_organisation(db, name="Other")
    organisation_id, other_id = organisation.id, other.id
    applicant, alice, bob, auditor, outsider = people(
        db,
        (("org_admin",), organisation),
        (("platform_admin",), None),
        (("platform_admin",), None),
        (("auditor",), None),
        (("caseworker",), other),
    )
    mark = audit_mark(db)
    url = f"{API}/organisations/{organisation_id}"

    first = client.post(
        f"{url}/decisions",
        json={"decision": "approve", "reason": "Registration checked"},
        headers=bearer(settings, alice),
    )
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "applied" and first.json()["pending_approvals"] == [alice.user_id]
    again = client.post(
        f"{url}/decisions", json={"decision": "approve", "reason": "Sure"}, headers=bearer(settings, alice)
    )
    assert again.status_code == 409 and "different platform admin" in again.json()["detail"]
    blank = client.post(
        f"{url}/decisions", json={"decision": "approve", "reason": "   "}, headers=bearer(settings, bob)
    )
    assert blank.status_code == 422 and "reason" in blank.json()["detail"]
    assert client.get(f"{API}/me", headers=bearer(settings, applicant)).status_code == 403

    second = client.post(
        f"{url}/decisions", json={"decision": "approve", "reason": "References checked"}, headers=bearer(settings, bob)
    )
    assert second.status_code == 200
    approved = second.json()
    assert approved["status"] == "approved" and approved["pending_approvals"] == []
    assert [(d["actor_id"], d["to_status"], d["reason"]) for d in approved["decisions"]] == [
        (alice.user_id, "applied", "Registration checked"),
        (bob.user_id, "approved", "References checked"),
    ]
    assert all(check["passed"] for check in approved["checks"])
    assert {check["check"] for check in approved["checks"]} == {
        "org_type",
        "contact_email",
        "website",
        "attestation",
        "user_email",
    }
    db.expire_all()
    stored = db.get(Organisation, organisation_id)
    assert stored.vetting_expires_at - stored.approved_at == timedelta(days=settings.vetting_period_days)
    db.rollback()
    assert client.get(f"{API}/me", headers=bearer(settings, applicant)).status_code == 200

    reject = client.post(
        f"{url}/decisions", json={"decision": "reject", "reason": "Late"}, headers=bearer(settings, alice)
    )
    assert reject.status_code == 409 and reject.json()["rule"] == "not_allowed"
    assert (
        client.post(
            f"{API}/organisations/999999/decisions",
            json={"decision": "reject", "reason": "x"},
            headers=bearer(settings, alice),
        ).status_code
        == 404
    )

    # Who sees what: the auditor sees decisions but not the checks; members see their own only.
    audited = client.get(url, headers=bearer(settings, auditor)).json()
    assert len(audited["decisions"]) == 2 and audited["checks"] is None
    own = client.get(url, headers=bearer(settings, applicant)).json()
    assert own["decisions"] is None and own["pending_approvals"] is None and own["checks"] is None
    assert client.get(url, headers=bearer(settings, outsider)).status_code == 404
    assert [o["id"] for o in client.get(f"{API}/organisations", headers=bearer(settings, outsider)).json()] == [
        other_id
    ]
    listed = client.get(f"{API}/organisations", params={"status": "approved"}, headers=bearer(settings, auditor))
    assert sorted(o["id"] for o in listed.json()) == sorted([organisation_id, other_id])
    assert (
        client.get(f"{API}/organisations", params={"status": "applied"}, headers=bearer(settings, alice)).json() == []
    )

    assert events_since(db, mark) == [
        (
            "organisation_decision",
            alice.user_id,
            {"decision": "approve", "from_status": "applied", "to_status": "applied"},
        ),
        (
            "organisation_decision",
            bob.user_id,
            {"decision": "approve", "from_status": "applied", "to_status": "approved"},
        ),
    ]


def test_suspension_is_immediate_reinstatement_restores_and_revocation_is_final(client, db, settings):
    organisation = make_organisation(db)
    organisation_id = organisation.id
    admin = make_user(db, "platform_admin")
    caseworker = make_user(db, "caseworker", organisation=organisation)
    db.commit()
    admin = Person(admin)
    headers = sign_in(client, caseworker)  # a real token, issued before the suspension
    mark = audit_mark(db)
    url = f"{API}/organisations/{organisation_id}"

    def act(step: str) -> int:
        response = client.post(f"{url}/{step}", json={"reason": f"Step {step}"}, headers=bearer(settings, admin))
        return response.status_code

    assert act("suspend") == 200
    cut_off = client.get(f"{API}/me", headers=headers)
    assert cut_off.status_code == 403 and "suspended" in cut_off.json()["detail"]
    assert act("suspend") == 409
    assert act("reinstate") == 200
    assert client.get(f"{API}/me", headers=headers).status_code == 200
    assert act("revoke") == 200
    assert client.get(f"{API}/me", headers=headers).status_code == 403
    for step in ("reinstate", "suspend", "revoke"):
        assert act(step) == 409
    final = client.post(
        f"{url}/decisions", json={"decision": "approve", "reason": "Again"}, headers=bearer(settings, admin)
    )
    assert final.status_code == 409 and final.json()["rule"] == "final"
    assert client.post(f"{url}/revoke", json={}, headers=bearer(settings, admin)).status_code == 422

    assert events_since(db, mark) == [
        (
            "organisation_decision",
            admin.user_id,
            {"decision": "suspend", "from_status": "approved", "to_status": "suspended"},
        ),
        (
            "organisation_decision",
            admin.user_id,
            {"decision": "reinstate", "from_status": "suspended", "to_status": "approved"},
        ),
        (
            "organisation_decision",
            admin.user_id,
            {"decision": "revoke", "from_status": "approved", "to_status": "revoked"},
        ),
    ]


def test_expiry_moves_overdue_organisations_and_re_vetting_approves_them_again(client, db, settings):
    now = utcnow()
    overdue = make_organisation(db, vetting_expires_at=now - timedelta(minutes=1))
    current = make_organisation(db, name="Current")
    suspended = make_organisation(db, name="Suspended", status="suspended", vetting_expires_at=now - timedelta(days=1))
    ids = overdue.id, current.id, suspended.id
    alice, bob = people(db, (("platform_admin",), None), (("platform_admin",), None))
    mark = audit_mark(db)

    assert expire_due_organisations(db, now=now) == [ids[0]]
    assert expire_due_organisations(db, now=now) == []
    db.expire_all()
    assert [db.get(Organisation, i).status for i in ids] == ["expired", "approved", "suspended"]
    decision = db.scalars(select(OrganisationDecision).where(OrganisationDecision.organisation_id == ids[0])).one()
    assert (decision.decision, decision.actor_id, decision.from_status, decision.to_status) == (
        "expire",
        None,
        "approved",
        "expired",
    )
    db.rollback()

    url = f"{API}/organisations/{ids[0]}/decisions"
    for admin, status in ((alice, "expired"), (bob, "approved")):
        response = client.post(url, json={"decision": "approve", "reason": "Renewed"}, headers=bearer(settings, admin))
        assert response.json()["status"] == status
    db.expire_all()
    renewed = db.get(Organisation, ids[0])
    assert renewed.vetting_expires_at > now + timedelta(days=settings.vetting_period_days - 1)
    db.rollback()
    assert events_since(db, mark) == [
        ("organisation_decision", None, {"decision": "expire", "from_status": "approved", "to_status": "expired"}),
        (
            "organisation_decision",
            alice.user_id,
            {"decision": "approve", "from_status": "expired", "to_status": "expired"},
        ),
        (
            "organisation_decision",
            bob.user_id,
            {"decision": "approve", "from_status": "expired", "to_status": "approved"},
        ),
    ]


def test_org_admin_adds_and_removes_users_within_their_roles_and_organisation(client, db, settings):
    organisation = make_organisation(db)
    other = make_organisation(db, name="Other")
    organisation_id = organisation.id
    admin, stranger, platform_admin = people(
        db, (("org_admin", "caseworker"), organisation), (("org_admin",), other), (("platform_admin",), None)
    )
    mark = audit_mark(db)
    users = f"{API}/organisations/{organisation_id}/users"
    as_admin = bearer(settings, admin)

    def add(email: str, roles: list[str], headers=as_admin):
        return client.post(users, json={"email": email, "password": PASSWORD, "roles": roles}, headers=headers)

    added = add("new.caseworker@helping-hands.example.org", ["caseworker"])
    assert added.status_code == 201, added.text
    new_id = added.json()["id"]
    assert added.json()["roles"] == ["caseworker"] and added.json()["status"] == "active"

    escalation = add("reviewer@helping-hands.example.org", ["caseworker", "reviewer"])
    assert escalation.status_code == 403 and "reviewer" in escalation.json()["detail"]
    assert add("operator@helping-hands.example.org", ["platform_admin"]).status_code == 403
    assert add("someone@helping-hands.example.org", ["superuser"]).status_code == 422
    police = add("officer@met.police.uk", ["caseworker"])
    assert police.status_code == 422 and police.json()["rule"] == "email_domain"
    # One of the organisation's own users (the admin lists them anyway) is named as such; an address
    # of another organisation gets a refusal that does not say an account exists, and is audited.
    own = add("NEW.caseworker@helping-hands.example.org", ["caseworker"])
    assert own.status_code == 409 and own.json()["rule"] == "already_member"
    elsewhere = add(stranger.email.upper(), ["caseworker"])
    assert elsewhere.status_code == 409 and elsewhere.json() == {
        "detail": "This email address cannot be used for a new account. Check the address with your colleague.",
        "rule": "email_unavailable",
    }
    # Another organisation's admin, and a platform admin, cannot touch this organisation's users.
    assert add("x@helping-hands.example.org", ["org_admin"], headers=bearer(settings, stranger)).status_code == 404
    assert client.get(users, headers=bearer(settings, stranger)).status_code == 404
    assert client.delete(f"{users}/{new_id}", headers=bearer(settings, stranger)).status_code == 404
    assert client.get(users, headers=bearer(settings, platform_admin)).status_code == 403
    assert (
        client.delete(f"{API}/organisations/{organisation_id}/users/{stranger.user_id}", headers=as_admin).status_code
        == 404
    )

    listed = client.get(users, headers=as_admin).json()
    assert [(u["id"], u["roles"]) for u in listed] == [
        (admin.user_id, ["caseworker", "org_admin"]),
        (new_id, ["caseworker"]),
    ]

    new_headers = password_sign_in(client, "new.caseworker@helping-hands.example.org")
    assert client.get(f"{API}/me", headers=new_headers).status_code == 200
    assert client.delete(f"{users}/{new_id}", headers=as_admin).status_code == 204
    assert client.get(f"{API}/me", headers=new_headers).status_code == 401  # the removed user's token died
    assert client.delete(f"{users}/{new_id}", headers=as_admin).status_code == 409
    last = client.delete(f"{users}/{admin.user_id}", headers=as_admin)
    assert last.status_code == 409 and "last org_admin" in last.json()["detail"]

    assert events_since(db, mark) == [
        ("user_added", admin.user_id, {"user_id": new_id, "roles": ["caseworker"]}),
        ("user_add_refused", admin.user_id, {"reason": "email_in_use"}),
        ("totp_enrolled", new_id, {}),
        ("login", new_id, {}),
        ("user_removed", admin.user_id, {"user_id": new_id, "roles": ["caseworker"]}),
    ]


def test_platform_admins_extend_the_denylist_and_it_bites_at_once(client, db, settings):
    organisation = make_organisation(db)
    sheriff = make_user(db, "caseworker", organisation=organisation, email="deputy@county.sheriff.example.com")
    db.commit()
    sheriff_id, organisation_id = sheriff.user.id, organisation.id
    sheriff_token = sign_in(client, sheriff)
    sheriff_refresh = token_pair(client, sheriff)["refresh_token"]
    admin, org_admin = people(db, (("platform_admin",), None), (("org_admin", "caseworker"), organisation))
    as_admin = bearer(settings, admin)
    domains = f"{API}/denylist/domains"
    mark = audit_mark(db)

    shipped = client.get(domains, headers=as_admin).json()
    assert {"domain": "police.uk", "source": "shipped", "reason": None, "added_by": None, "added_at": None} in shipped

    added = client.post(domains, json={"domain": "Sheriff.Example.COM.", "reason": "County sheriff"}, headers=as_admin)
    assert added.status_code == 201, added.text
    assert (added.json()["domain"], added.json()["source"]) == ("sheriff.example.com", "added")
    domain_id = db.scalar(select(DenylistDomain.id).where(DenylistDomain.domain == "sheriff.example.com"))
    db.rollback()

    def add(domain: str):
        return client.post(domains, json={"domain": domain, "reason": "Law enforcement"}, headers=as_admin)

    assert add("sheriff.example.com").status_code == 409
    assert add("met.police.uk").status_code == 409  # already covered by police.uk
    assert add("bad..domain").json()["rule"] == "invalid_domain"
    assert add("org").json()["rule"] == "top_level_domain"
    assert client.get(domains, headers=bearer(settings, org_admin)).status_code == 403

    # Its users' sessions end at once, they cannot sign in, and nobody can add them.
    assert client.get(f"{API}/me", headers=sheriff_token).status_code == 401
    refused = client.post(
        f"{API}/auth/token", data={"username": sheriff.email, "password": PASSWORD, "otp": sheriff.otp()}
    )
    assert refused.status_code == 403
    assert client.post(f"{API}/auth/refresh", json={"refresh_token": sheriff_refresh}).status_code == 401
    new_user = client.post(
        f"{API}/organisations/{organisation_id}/users",
        headers=bearer(settings, org_admin),
        json={"email": "chief@sheriff.example.com", "password": PASSWORD, "roles": ["caseworker"]},
    )
    assert new_user.status_code == 422 and new_user.json()["rule"] == "email_domain"
    # Platform admins see the organisation's checks re-run against the extended list.
    checks = client.get(f"{API}/organisations/{organisation_id}", headers=as_admin).json()["checks"]
    assert [(c["user_id"], c["rule"]) for c in checks if not c["passed"]] == [(sheriff_id, "email_domain")]

    assert client.delete(f"{domains}/police.uk", headers=as_admin).status_code == 409
    assert client.delete(f"{domains}/unknown.example.org", headers=as_admin).status_code == 404
    assert client.delete(f"{domains}/SHERIFF.example.com", headers=as_admin).status_code == 204
    assert all(entry["source"] == "shipped" for entry in client.get(domains, headers=as_admin).json())

    assert events_since(db, mark) == [
        ("denylist_domain_added", admin.user_id, {"domain_id": domain_id, "users_signed_out": 1}),
        ("login_failed", sheriff_id, {"reason": "denylisted_domain"}),
        ("denylist_domain_removed", admin.user_id, {"domain_id": domain_id}),
    ]


# --- webhook --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.org/x",
        "https://127.0.0.1/x",
        "https://10.0.0.5/x",
        "https://localhost/x",
        "https://intranet/x",
        "https://user:pw@hooks.example.org/x",
        "https://[::1]/x",
        "https://db.internal/x",
    ],
)
def test_webhook_refuses_non_public_or_plain_http_addresses(client, db, settings, url):
    organisation = make_organisation(db)
    admin = make_user(db, "org_admin", organisation=organisation)
    db.commit()
    response = client.put(
        f"{API}/organisations/{organisation.id}/webhook", json={"url": url}, headers=sign_in(client, admin)
    )
    assert response.status_code == 422, url
    assert response.json()["rule"] == "webhook_url"
    db.rollback()  # end any read snapshot, then forget loaded values: see what the API committed
    db.expire_all()
    assert db.get(Organisation, organisation.id).webhook_url is None


def test_webhook_is_set_with_a_secret_shown_once_and_removed(client, db, settings):
    organisation = make_organisation(db)
    admin = make_user(db, "org_admin", organisation=organisation)
    other = make_organisation(db, name="Elsewhere")
    db.commit()
    headers = sign_in(client, admin)
    answer = client.put(
        f"{API}/organisations/{organisation.id}/webhook",
        json={"url": "https://hooks.helping-hands.example.org/reunite"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    secret = answer.json()["secret"]
    assert len(secret) == 64
    db.rollback()  # end any read snapshot, then forget loaded values: see what the API committed
    db.expire_all()
    stored = db.get(Organisation, organisation.id)
    assert (stored.webhook_url, stored.webhook_secret) == ("https://hooks.helping-hands.example.org/reunite", secret)
    assert secret not in client.get(f"{API}/organisations/{organisation.id}", headers=headers).text
    # Another organisation's webhook is not yours to set.
    assert (
        client.put(
            f"{API}/organisations/{other.id}/webhook", json={"url": "https://x.example.org/h"}, headers=headers
        ).status_code
        == 404
    )
    assert client.delete(f"{API}/organisations/{organisation.id}/webhook", headers=headers).status_code == 204
    db.rollback()  # end any read snapshot, then forget loaded values: see what the API committed
    db.expire_all()
    assert db.get(Organisation, organisation.id).webhook_secret is None
    actions = [e.action for e in db.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    assert actions[-2:] == ["webhook_set", "webhook_removed"]
