"""Sign-in, tokens, refresh rotation, second factor, rate limits and immediate cut-off."""

import base64
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt
from sqlalchemy import select

from service.audit.models import AuditEvent
from service.auth import service as auth_service
from service.auth.service import BAD_CREDENTIALS
from service.auth.tokens import issue_access_token
from service.db import utcnow
from service.organisations.models import Organisation
from tests.support.service import PASSWORD, Account, make_organisation, make_user, sign_in, token_pair


@pytest.fixture
def caseworker(db):
    organisation = make_organisation(db)
    account = make_user(db, "caseworker", organisation=organisation)
    db.commit()
    return account


def actions(db) -> list[str]:
    db.expire_all()
    return [e.action for e in db.scalars(select(AuditEvent).order_by(AuditEvent.seq))]


def test_sign_in_gives_a_working_token_and_is_audited(client, db, caseworker):
    headers = sign_in(client, caseworker)
    me = client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["email"] == caseworker.email
    assert me.json()["roles"] == ["caseworker"]
    assert actions(db) == ["login"]


def test_wrong_password_is_refused_and_audited(client, db, caseworker):
    response = client.post("/api/v1/auth/token", data={"username": caseworker.email, "password": "wrong password!"})
    assert response.status_code == 401
    assert response.json()["detail"] == BAD_CREDENTIALS
    assert actions(db) == ["login_failed"]


def test_unknown_account_gets_the_same_answer(client, db):
    response = client.post("/api/v1/auth/token", data={"username": "nobody@example.org", "password": PASSWORD})
    assert response.status_code == 401
    assert response.json()["detail"] == BAD_CREDENTIALS


def test_operators_need_their_second_factor(client, db):
    admin = make_user(db, "platform_admin")
    db.commit()
    form = {"username": admin.email, "password": PASSWORD}
    assert client.post("/api/v1/auth/token", data=form).status_code == 401
    assert client.post("/api/v1/auth/token", data={**form, "otp": "000000"}).status_code == 401
    code = admin.otp()
    assert client.post("/api/v1/auth/token", data={**form, "otp": code}).status_code == 200
    replayed = client.post("/api/v1/auth/token", data={**form, "otp": code})
    assert replayed.status_code == 401 and replayed.json()["detail"] == BAD_CREDENTIALS
    assert client.post("/api/v1/auth/token", data={**form, "otp": admin.otp()}).status_code == 200  # a newer code


def test_of_two_sign_ins_with_one_code_at_once_one_is_refused(app, db):
    """The step is claimed by a conditional UPDATE, so racing requests cannot both use a code."""
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    admin = make_user(db, "platform_admin")
    db.commit()
    form = {"username": admin.email, "password": PASSWORD, "otp": admin.otp()}

    def attempt(_):
        with TestClient(app) as client:
            return client.post("/api/v1/auth/token", data=form).status_code

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(attempt, range(2))) == [200, 401]


def test_repeated_failures_are_rate_limited_per_account(client, db, caseworker, monkeypatch):
    now = utcnow()
    monkeypatch.setattr(auth_service, "login_clock", lambda: now)  # no time passes between the tries
    for _ in range(5):
        client.post("/api/v1/auth/token", data={"username": caseworker.email, "password": "wrong password!"})
    response = client.post(
        "/api/v1/auth/token", data={"username": caseworker.email, "password": PASSWORD, "otp": caseworker.otp()}
    )
    assert response.status_code == 429
    assert response.json()["detail"] == "Too many failed sign-ins for this account. Try again in 2 seconds."
    assert response.headers["Retry-After"] == "2"


def test_refresh_rotates_and_reuse_revokes_the_family(client, db, caseworker):
    first = token_pair(client, caseworker)
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    # The first refresh token was spent: presenting it again is treated as theft.
    reuse = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    # ... and the whole family is revoked, including the newest token.
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code == 401
    assert "refresh_token_reused" in actions(db)


def test_logout_ends_access_and_refresh_tokens_at_once(client, db, caseworker):
    pair = token_pair(client, caseworker)
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401


def test_a_refresh_token_revokes_its_sign_in_even_while_the_organisation_is_suspended(client, db, caseworker):
    pair = token_pair(client, caseworker)
    organisation = db.get(Organisation, caseworker.user.organisation_id)
    organisation.status = "suspended"  # no access token works now, so /auth/logout cannot be reached
    db.commit()
    assert client.post("/api/v1/auth/revoke", json={"refresh_token": pair["refresh_token"]}).status_code == 204
    assert client.post("/api/v1/auth/revoke", json={"refresh_token": "x" * 43}).status_code == 204  # told nothing
    organisation.status = "approved"
    db.commit()
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    assert actions(db).count("logout") == 1


def test_suspending_the_organisation_stops_tokens_on_the_next_request(client, db, caseworker):
    headers = sign_in(client, caseworker)
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    organisation = db.get(Organisation, caseworker.user.organisation_id)
    organisation.status = "suspended"
    db.commit()
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 403
    assert "suspended" in response.json()["detail"]


def test_expired_token_is_refused(client, settings, caseworker):
    token, _ = issue_access_token(
        secret=settings.signing_secret(), user_id=caseworker.user.id, token_version=0, lifetime=timedelta(seconds=-5)
    )
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_tampered_token_is_refused(client, caseworker):
    headers = sign_in(client, caseworker)
    token = headers["Authorization"].split()[1]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = str(int(claims["sub"]) + 1)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {header}.{forged}.{signature}"})
    assert response.status_code == 401


def test_unsigned_token_is_refused(client, caseworker):
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"sub": str(caseworker.user.id), "ver": 0, "typ": "access", "iat": 1, "exp": 4102444800, "jti": "x"}
    token = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_tokens_signed_with_another_algorithm_are_refused(client, settings, caseworker):
    claims = {"sub": str(caseworker.user.id), "ver": 0, "typ": "access", "iat": 1, "exp": 4102444800, "jti": "x"}
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for token in (
        jwt.encode(claims, pem, algorithm="RS256"),
        jwt.encode(claims, settings.signing_secret(), algorithm="HS512"),
    ):
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # The same claims with the pinned algorithm do work: the refusals above are about the algorithm.
    good = jwt.encode(claims, settings.signing_secret(), algorithm="HS256")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {good}"}).status_code == 200


def test_token_without_expiry_is_refused(client, settings, caseworker):
    claims = {"sub": str(caseworker.user.id), "ver": 0, "typ": "access", "iat": 1, "jti": "x"}
    token = jwt.encode(claims, settings.signing_secret(), algorithm="HS256")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_denylisted_email_cannot_sign_in(client, db):
    organisation = make_organisation(db)
    account = make_user(db, "caseworker", organisation=organisation, email="officer@met.police.uk")
    db.commit()
    response = client.post(
        "/api/v1/auth/token", data={"username": account.email, "password": PASSWORD, "otp": account.otp()}
    )
    assert response.status_code == 403
    assert "law-enforcement" in response.json()["detail"]


def test_repeated_failures_are_rate_limited_per_address(settings, db):
    from fastapi.testclient import TestClient

    from service.app import create_app

    strict = settings.model_copy(update={"login_failures_per_address": 3})
    organisation = make_organisation(db)
    accounts = [make_user(db, "caseworker", organisation=organisation) for _ in range(2)]
    db.commit()
    app = create_app(strict)
    with TestClient(app) as client:
        for index in range(3):  # failures spread over accounts: no single account reaches its limit
            account = accounts[index % 2]
            client.post("/api/v1/auth/token", data={"username": account.email, "password": "wrong password!"})
        response = client.post(
            "/api/v1/auth/token", data={"username": accounts[0].email, "password": PASSWORD, "otp": accounts[0].otp()}
        )
    app.state.engine.dispose()
    assert response.status_code == 429


def test_a_missing_or_wrong_code_gets_the_answer_of_a_wrong_password(client, db, caseworker):
    """Otherwise the answer would tell an attacker that the password they tried is right."""
    form = {"username": caseworker.email, "password": PASSWORD}
    answers = [
        client.post("/api/v1/auth/token", data=data)
        for data in ({**form, "password": "wrong password!"}, form, {**form, "otp": "000000"})
    ]
    assert [(a.status_code, a.json()["detail"]) for a in answers] == [(401, BAD_CREDENTIALS)] * 3


def test_refresh_token_reuse_ends_the_linked_access_token_at_once(client, db, caseworker):
    first = token_pair(client, caseworker)
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    headers = {"Authorization": f"Bearer {second['access_token']}"}
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 401
    assert client.get("/api/v1/me", headers=headers).status_code == 401


@pytest.mark.parametrize("status", ["suspended", "revoked"])
def test_an_unavailable_organisation_gets_no_new_tokens(client, db, caseworker, status):
    pair = token_pair(client, caseworker)
    db.get(Organisation, caseworker.user.organisation_id).status = status
    db.commit()
    form = {"username": caseworker.email, "password": PASSWORD, "otp": caseworker.otp()}
    signing_in = client.post("/api/v1/auth/token", data=form)
    assert signing_in.status_code == 403 and status in signing_in.json()["detail"]
    refreshing = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshing.status_code == 403 and status in refreshing.json()["detail"]


@pytest.mark.one_backend
def test_an_organisation_user_without_a_second_factor_sets_it_up_before_signing_in(client, db):
    organisation = make_organisation(db)
    user = auth_service.create_user(
        db,
        email="new@helping-hands.example.org",
        password=PASSWORD,
        roles={"reviewer"},
        organisation_id=organisation.id,
    )
    db.commit()
    form = {"username": user.email, "password": PASSWORD}
    refused = client.post("/api/v1/auth/token", data=form)
    assert refused.status_code == 403 and "/api/v1/auth/totp/enrol" in refused.json()["detail"]
    assert client.post("/api/v1/auth/totp/enrol", data={**form, "password": "wrong password!"}).json() == {
        "detail": BAD_CREDENTIALS
    }
    enrolled = client.post("/api/v1/auth/totp/enrol", data=form)
    assert enrolled.status_code == 200
    account = Account(user=user, email=user.email)
    account.user.totp_secret = enrolled.json()["secret"]
    assert enrolled.json()["otpauth_uri"].startswith("otpauth://totp/")
    # The key is shown once: a second enrolment (by someone who learnt the password, say) is refused.
    assert client.post("/api/v1/auth/totp/enrol", data=form).json() == {"detail": BAD_CREDENTIALS}
    assert client.post("/api/v1/auth/token", data=form).json() == {"detail": BAD_CREDENTIALS}
    assert client.post("/api/v1/auth/token", data={**form, "otp": account.otp()}).status_code == 200
    assert actions(db) == [
        "login_failed",
        "totp_enrol_failed",
        "totp_enrolled",
        "totp_enrol_failed",
        "login_failed",
        "login",
    ]


def test_a_forwarded_address_is_believed_only_from_a_trusted_proxy(settings, db):
    from fastapi.testclient import TestClient

    from service.app import create_app

    strict = settings.model_copy(update={"login_failures_per_address": 2, "trusted_proxies": ["10.0.0.0/8"]})
    organisation = make_organisation(db)
    account = make_user(db, "caseworker", organisation=organisation)
    db.commit()
    app = create_app(strict)
    wrong = {"username": "nobody@example.org", "password": "wrong password!"}

    def right():
        return {"username": account.email, "password": PASSWORD, "otp": account.otp()}

    with TestClient(app, client=("10.0.0.5", 50000)) as proxy, TestClient(app, client=("198.51.100.7", 1)) as direct:
        for _ in range(2):
            proxy.post("/api/v1/auth/token", data=wrong, headers={"X-Forwarded-For": "203.0.113.1"})
        # Behind the trusted proxy, one client's failures do not lock out the others.
        other = proxy.post("/api/v1/auth/token", data=right(), headers={"X-Forwarded-For": "203.0.113.2"})
        same = proxy.post("/api/v1/auth/token", data=right(), headers={"X-Forwarded-For": "203.0.113.1"})
        # A client that forges a new X-Forwarded-For on each try is still its own address.
        for forged in ("203.0.113.3", "203.0.113.4"):
            direct.post("/api/v1/auth/token", data=wrong, headers={"X-Forwarded-For": forged})
        forging = direct.post("/api/v1/auth/token", data=right(), headers={"X-Forwarded-For": "203.0.113.5"})
    app.state.engine.dispose()
    assert other.status_code == 200
    assert same.status_code == 429 and int(same.headers["Retry-After"]) > 0
    assert forging.status_code == 429


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("198.51.100.7", "203.0.113.1", "198.51.100.7"),  # not from a proxy: the header is the client's own
        ("10.0.0.5", "203.0.113.1", "203.0.113.1"),
        ("10.0.0.5", "6.6.6.6, 203.0.113.1", "203.0.113.1"),  # the client forged the left entry
        ("10.0.0.5", "203.0.113.1, 10.0.0.9", "203.0.113.1"),  # two trusted proxies in a row
        ("10.0.0.5", "not-an-address", "10.0.0.5"),
        ("10.0.0.5", None, "10.0.0.5"),
    ],
)
def test_forwarded_client(peer, forwarded, client):
    from service.auth.routes import forwarded_client

    assert forwarded_client(peer, forwarded, ["10.0.0.0/8"]) == client
