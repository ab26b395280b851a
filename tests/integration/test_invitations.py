"""Invitations: an org_admin invites a colleague, who chooses their own password (API, service and pages).

Every story runs on SQLite and PostgreSQL. Besides what each answer says, the tests
look in the database and the audit trail: the token is kept only as its SHA-256 and
neither the token nor the invited address ever reaches an audit event.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.audit.models import AuditEvent
from service.auth.models import LoginAttempt, User
from service.auth.tokens import issue_access_token
from service.db import utcnow
from service.invitations import service as invitations
from service.invitations.models import Invitation
from service.organisations.models import DenylistDomain, Organisation
from service.refusal import Forbidden, NotFound
from tests.support.pages import CSRF, Person, text_of
from tests.support.service import TOTP_CLOCK, make_organisation, make_user

API = "/api/v1"
NEW_PASSWORD = "a lantern by the quiet harbour"  # not the tests' shared PASSWORD: hashed for real
INVALID = "This invitation link is not valid"


# --- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def world(db) -> dict:
    keepers, others = make_organisation(db, name="Keepers"), make_organisation(db, name="Others")
    accounts = {
        "admin": make_user(db, "org_admin", "reviewer", organisation=keepers),
        "reviewer": make_user(db, "reviewer", organisation=keepers),
        "other_admin": make_user(db, "org_admin", "reviewer", "caseworker", organisation=others),
    }
    db.commit()
    world = {
        "keepers": keepers.id,
        "others": others.id,
        "accounts": accounts,
        "ids": {name: (a.user.id, a.user.token_version) for name, a in accounts.items()},
    }
    db.rollback()
    return world


def bearer(settings, world, name: str) -> dict[str, str]:
    user_id, version = world["ids"][name]
    token, _ = issue_access_token(
        secret=settings.signing_secret(), user_id=user_id, token_version=version, lifetime=timedelta(minutes=5)
    )
    return {"Authorization": f"Bearer {token}"}


def invite(
    client,
    settings,
    world,
    *,
    email="new.colleague@keepers.example.org",
    roles=("reviewer",),
    who="admin",
    organisation=None,
):
    return client.post(
        f"{API}/organisations/{organisation or world['keepers']}/invitations",
        json={"email": email, "roles": list(roles)},
        headers=bearer(settings, world, who),
    )


def token_of(answer) -> str:
    path = urlsplit(answer.json()["accept_url"]).path
    assert path.startswith("/invitations/")
    return path.removeprefix("/invitations/")


def accept(client, token: str, password: str = NEW_PASSWORD):
    return client.post(f"{API}/invitations/accept", json={"token": token, "password": password})


def audit_mark(db) -> int:
    mark = db.scalar(select(func.coalesce(func.max(AuditEvent.seq), 0)))
    db.rollback()
    return mark


def events_since(db, mark: int) -> list[tuple[str, int | None, dict]]:
    db.expire_all()
    found = [
        (e.action, e.actor_id, json.loads(e.details))
        for e in db.scalars(select(AuditEvent).where(AuditEvent.seq > mark).order_by(AuditEvent.seq))
    ]
    db.rollback()
    return found


def all_audit_text(db) -> str:
    db.expire_all()
    text = "\n".join(f"{e.action} {e.target_type} {e.target_id} {e.details}" for e in db.scalars(select(AuditEvent)))
    db.rollback()
    return text


def count(db, model, *where) -> int:
    db.expire_all()
    found = db.scalar(select(func.count()).select_from(model).where(*where))
    db.rollback()
    return found


def invitation_row(db, invitation_id: int) -> Invitation:
    db.rollback()
    row = db.get(Invitation, invitation_id, populate_existing=True)
    db.expunge(row)
    db.rollback()
    return row


# --- the whole path through the API ---------------------------------------------------------------


def test_invite_accept_and_sign_in_without_the_admin_knowing_the_password(client, settings, world, db):
    mark = audit_mark(db)
    made = invite(client, settings, world, email="New.Colleague@Keepers.example.org")
    assert made.status_code == 201, made.text
    body = made.json()
    token = token_of(made)
    assert body["email"] == "new.colleague@keepers.example.org" and body["roles"] == ["reviewer"]
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    listed = client.get(f"{API}/organisations/{world['keepers']}/invitations", headers=bearer(settings, world, "admin"))
    assert [(i["id"], i["state"]) for i in listed.json()] == [(body["id"], "pending")]
    assert "accept_url" not in listed.json()[0] and token not in listed.text  # shown once only

    accepted = accept(client, token)
    assert accepted.status_code == 201, accepted.text
    user_id = accepted.json()["user_id"]
    db.expire_all()
    user = db.get(User, user_id)
    assert (user.email, user.organisation_id, user.roles) == (
        "new.colleague@keepers.example.org",
        world["keepers"],
        frozenset({"reviewer"}),
    )
    assert user.password_hash.startswith("$argon2") and NEW_PASSWORD not in user.password_hash
    secret = user.totp_secret  # every role needs a second factor: the acceptance page shows this key
    db.rollback()
    signed_in = client.post(
        f"{API}/auth/token",
        data={
            "username": "new.colleague@keepers.example.org",
            "password": NEW_PASSWORD,
            "otp": TOTP_CLOCK.next_code(secret),
        },
    )
    assert signed_in.status_code == 200, signed_in.text

    row = invitation_row(db, body["id"])
    assert row.accepted_user_id == user_id and row.accepted_at is not None
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in " ".join(str(getattr(row, column)) for column in Invitation.__table__.columns.keys())  # noqa: SIM118 (names, not Column objects)
    admin_id = world["ids"]["admin"][0]
    assert events_since(db, mark) == [
        ("user_invited", admin_id, {"invitation_id": body["id"], "roles": ["reviewer"], "days": 7}),
        ("invitation_accepted", user_id, {"invitation_id": body["id"], "user_id": user_id, "roles": ["reviewer"]}),
        ("login", user_id, {}),
    ]
    trail = all_audit_text(db)
    assert token not in trail and row.token_hash not in trail and "new.colleague" not in trail


def test_a_link_works_once(client, settings, world, db):
    token = token_of(invite(client, settings, world))
    assert accept(client, token).status_code == 201
    mark = audit_mark(db)
    again = accept(client, token, password="another long password here")
    assert again.status_code == 404 and again.json()["detail"].startswith(INVALID)
    assert count(db, User, User.email == "new.colleague@keepers.example.org") == 1
    assert [(action, details["reason"]) for action, _, details in events_since(db, mark)] == [
        ("invitation_accept_failed", "accepted")
    ]


def test_unknown_expired_revoked_and_used_links_get_the_same_refusal(client, settings, world, db, app):
    # Expired: made eight days ago with the default seven-day validity.
    with app.state.session_factory() as session:
        admin = session.get(User, world["ids"]["admin"][0])
        expired, expired_token = invitations.invite_user(
            session,
            organisation_id=world["keepers"],
            actor=admin,
            email="late@keepers.example.org",
            roles=["reviewer"],
            settings=settings,
            now=utcnow() - timedelta(days=8),
        )
        expired_id = expired.id
    revoked = invite(client, settings, world, email="withdrawn@keepers.example.org")
    revoked_answer = client.post(
        f"{API}/organisations/{world['keepers']}/invitations/{revoked.json()['id']}/revoke",
        headers=bearer(settings, world, "admin"),
    )
    assert revoked_answer.status_code == 200 and revoked_answer.json()["state"] == "revoked"
    again = client.post(
        f"{API}/organisations/{world['keepers']}/invitations/{revoked.json()['id']}/revoke",
        headers=bearer(settings, world, "admin"),
    )
    assert again.status_code == 409 and "already been withdrawn" in again.json()["detail"]
    used_token = token_of(invite(client, settings, world, email="used@keepers.example.org"))
    assert accept(client, used_token).status_code == 201

    mark = audit_mark(db)
    answers = [accept(client, token) for token in ("x" * 43, expired_token, token_of(revoked), used_token)]
    assert {(a.status_code, a.json()["detail"]) for a in answers} == {(404, answers[0].json()["detail"])}
    assert [details["reason"] for _, _, details in events_since(db, mark)] == [
        "unknown",
        "expired",
        "revoked",
        "accepted",
    ]
    assert count(db, User, User.email.in_(["late@keepers.example.org", "withdrawn@keepers.example.org"])) == 0
    assert invitation_row(db, expired_id).accepted_at is None
    listed = client.get(f"{API}/organisations/{world['keepers']}/invitations", headers=bearer(settings, world, "admin"))
    assert sorted(i["state"] for i in listed.json()) == ["accepted", "expired", "revoked"]


def test_a_weak_password_is_refused_and_the_link_still_works(client, settings, world):
    token = token_of(invite(client, settings, world))
    weak = accept(client, token, password="short")
    assert weak.status_code == 422 and weak.json() == {
        "detail": "Passwords must have at least 12 characters.",
        "rule": "weak_password",
    }
    assert accept(client, token).status_code == 201


# --- the rules of adding a user ---------------------------------------------------------------------


def test_roles_must_be_organisation_roles_the_admin_holds(client, settings, world, db):
    not_held = invite(client, settings, world, roles=("caseworker",))
    assert not_held.status_code == 403 and "caseworker" in not_held.json()["detail"]
    operator = invite(client, settings, world, roles=("platform_admin",))
    assert operator.status_code == 403 and operator.json()["rule"] == "operator_role"
    unknown = invite(client, settings, world, roles=("superuser",))
    assert unknown.status_code == 422 and unknown.json()["rule"] == "unknown_role"
    assert count(db, Invitation) == 0


def test_law_enforcement_addresses_are_refused_at_invitation_and_at_acceptance(client, settings, world, db):
    police = invite(client, settings, world, email="officer@met.police.uk")
    assert police.status_code == 422 and police.json()["rule"]
    assert count(db, Invitation) == 0

    token = token_of(invite(client, settings, world, email="someone@harbour-watch.example"))
    db.add(DenylistDomain(domain="harbour-watch.example", reason="Port police force.", added_at=utcnow()))
    db.commit()
    mark = audit_mark(db)
    refused = accept(client, token)
    assert refused.status_code == 422 and refused.json()["rule"] == police.json()["rule"]
    assert count(db, User, User.email == "someone@harbour-watch.example") == 0
    assert [(a, d["reason"]) for a, _, d in events_since(db, mark)] == [
        ("invitation_accept_failed", "denylisted_domain")
    ]


def test_an_address_of_another_organisation_is_not_told_apart(client, settings, world, db):
    # Inviting an address that has an account looks like any invitation; its link then fails
    # with the plain refusal (the admin could open it), and the event says why for the operators.
    own = invite(client, settings, world, email=world["accounts"]["reviewer"].email)
    assert own.status_code == 409 and own.json()["rule"] == "already_member"  # listed to the admin anyway
    taken = invite(client, settings, world, email=world["accounts"]["other_admin"].email.upper())
    free = invite(client, settings, world)
    assert (taken.status_code, free.status_code) == (201, 201)
    assert taken.json().keys() == free.json().keys()
    mark = audit_mark(db)
    refused = accept(client, token_of(taken))
    assert refused.status_code == 404 and INVALID in refused.json()["detail"]
    assert [(a, d["reason"]) for a, _, d in events_since(db, mark)] == [("invitation_accept_failed", "email_in_use")]
    twice = invite(client, settings, world)
    assert twice.status_code == 409 and "withdraw it first" in twice.json()["detail"]
    assert count(db, Invitation) == 2


def test_only_the_organisations_admin_may_invite_list_or_withdraw(client, settings, world, db, app):
    made = invite(client, settings, world).json()
    keepers = world["keepers"]
    assert invite(client, settings, world, who="reviewer").status_code == 403
    assert (
        client.get(
            f"{API}/organisations/{keepers}/invitations", headers=bearer(settings, world, "reviewer")
        ).status_code
        == 403
    )
    # Another organisation's admin: the organisation and its invitations do not exist for them.
    assert invite(client, settings, world, who="other_admin", organisation=keepers).status_code == 404
    assert (
        client.get(
            f"{API}/organisations/{keepers}/invitations", headers=bearer(settings, world, "other_admin")
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"{API}/organisations/{world['others']}/invitations/{made['id']}/revoke",
            headers=bearer(settings, world, "other_admin"),
        ).status_code
        == 404
    )
    assert invitation_row(db, made["id"]).revoked_at is None
    # The service applies the same rules when called without HTTP.
    with app.state.session_factory() as session:
        reviewer = session.get(User, world["ids"]["reviewer"][0])
        with pytest.raises(Forbidden):
            invitations.invite_user(
                session,
                organisation_id=keepers,
                actor=reviewer,
                email="x@keepers.example.org",
                roles=["reviewer"],
                settings=settings,
                now=utcnow(),
            )
        other = session.get(User, world["ids"]["other_admin"][0])
        with pytest.raises(NotFound):
            invitations.list_invitations(session, organisation_id=keepers, actor=other)
    assert count(db, Invitation) == 1


def test_a_suspended_organisations_invitation_cannot_be_accepted(client, settings, world, db):
    token = token_of(invite(client, settings, world))
    db.get(Organisation, world["keepers"]).status = "suspended"
    db.commit()
    mark = audit_mark(db)
    refused = accept(client, token)
    assert refused.status_code == 403 and "cannot take on new users" in refused.json()["detail"]
    assert count(db, User, User.email == "new.colleague@keepers.example.org") == 0
    assert [d["reason"] for _, _, d in events_since(db, mark)] == ["organisation_unavailable"]


def test_guessing_links_is_held_to_the_sign_in_limit_per_address(client, settings, world, db, app):
    app.state.settings = settings.model_copy(update={"login_failures_per_address": 3})
    token = token_of(invite(client, settings, world))
    for attempt in range(3):
        assert accept(client, f"guess-{attempt}-" + "y" * 40).status_code == 404
    limited = accept(client, token)  # even the right link waits now
    assert limited.status_code == 429 and "Too many failed attempts" in limited.json()["detail"]
    assert count(db, LoginAttempt, LoginAttempt.succeeded.is_(False)) == 3
    assert count(db, User, User.email == "new.colleague@keepers.example.org") == 0


# --- the pages ------------------------------------------------------------------------------------


def visitor(app) -> TestClient:
    """Someone with no account, in their own browser."""
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def link_on(page_text: str) -> str:
    found = re.search(r'id="invite-link" type="text" readonly value="([^"]+)"', page_text)
    assert found, "no invitation link on the page"
    return urlsplit(found.group(1)).path


def test_an_admin_invites_on_the_page_and_the_colleague_sets_a_password(app, world, db):
    admin = Person(app, world["accounts"]["admin"])
    page = "/organisation/users"
    assert "Invite a colleague" in admin.get(page).text

    refused = admin.post(page, "/organisation/invitations", email="new@keepers.example.org", roles="caseworker")
    assert refused.status_code == 403 and "you do not hold: caseworker" in text_of(refused)
    police = admin.post(page, "/organisation/invitations", email="someone@met.police.uk", roles="reviewer")
    assert police.status_code == 422 and "law-enforcement" in text_of(police)
    empty = admin.post(page, "/organisation/invitations", email="new@keepers.example.org")
    assert empty.status_code == 422 and "Tick at least one role" in text_of(empty)
    assert count(db, Invitation) == 0

    made = admin.post(page, "/organisation/invitations", email="new@keepers.example.org", roles="reviewer")
    assert made.status_code == 200 and "This is the only time the link is shown" in text_of(made)
    path = link_on(made.text)
    listing = admin.get(page).text
    assert 'data-invitation-email="new@keepers.example.org"' in listing and path not in listing

    guest = visitor(app)
    opened = guest.get(path)
    assert opened.status_code == 200
    words = text_of(opened)
    assert "Join Keepers on Reunite" in words and "Reviewer : compares candidate matches" in words
    assert "at least 12 characters" in words and opened.headers["cache-control"] == "no-store"
    csrf = CSRF.search(opened.text).group(1)
    mismatch = guest.post(path, data={"csrf_token": csrf, "password": NEW_PASSWORD, "password_again": "other"})
    assert mismatch.status_code == 422 and "not the same" in text_of(mismatch)
    no_token = guest.post(path, data={"password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    assert no_token.status_code == 403
    assert count(db, User, User.email == "new@keepers.example.org") == 0

    done = guest.post(path, data={"csrf_token": csrf, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    assert done.status_code == 200 and "Your account is ready" in text_of(done)  # with its authenticator key
    used = guest.get(path)
    assert used.status_code == 404 and INVALID in text_of(used)

    db.expire_all()
    newcomer = db.scalars(select(User).where(User.email == "new@keepers.example.org")).one()
    db.expunge(newcomer)
    db.rollback()
    colleague = Person(
        app, type(world["accounts"]["admin"])(user=newcomer, email=newcomer.email, password=NEW_PASSWORD)
    )
    assert "Review queue" in colleague.get("/reviews").text
    assert 'data-invitation-email="new@keepers.example.org"' not in admin.get(page).text


def test_an_admin_withdraws_an_invitation_on_the_page(app, world, db):
    admin = Person(app, world["accounts"]["admin"])
    page = "/organisation/users"
    path = link_on(
        admin.post(page, "/organisation/invitations", email="new@keepers.example.org", roles="reviewer").text
    )
    invitation_id = db.scalar(select(Invitation.id))
    db.rollback()
    outsider = Person(app, world["accounts"]["other_admin"])
    assert outsider.post(page, f"/organisation/invitations/{invitation_id}/revoke").status_code == 404
    withdrawn = admin.post(page, f"/organisation/invitations/{invitation_id}/revoke")
    assert withdrawn.status_code == 303
    assert invitation_row(db, invitation_id).revoked_at is not None
    assert 'data-invitation-email="new@keepers.example.org"' not in admin.get(page).text
    gone = visitor(app).get(path)
    assert gone.status_code == 404 and INVALID in text_of(gone)
    again = admin.post(page, f"/organisation/invitations/{invitation_id}/revoke")
    assert again.status_code == 409 and "already been withdrawn" in text_of(again)


def test_a_role_that_needs_a_second_factor_is_shown_its_authenticator_key_once(app, world, db):
    admin = Person(app, world["accounts"]["admin"])
    path = link_on(
        admin.post(
            "/organisation/users", "/organisation/invitations", email="new@keepers.example.org", roles="reviewer"
        ).text
    )
    guest = visitor(app)
    csrf = CSRF.search(guest.get(path).text).group(1)
    done = guest.post(path, data={"csrf_token": csrf, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    assert done.status_code == 200 and "Add Reunite to your authenticator app" in text_of(done)
    db.expire_all()
    secret = db.scalar(select(User.totp_secret).where(User.email == "new@keepers.example.org"))
    db.rollback()
    assert secret and secret in done.text and "otpauth://totp/" in done.text
