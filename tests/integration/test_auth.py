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
from service.auth.tokens import issue_access_token
from service.organisations.models import Organisation
from tests.support.service import PASSWORD, make_organisation, make_user, sign_in


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
    assert response.json()["detail"] == "The email or password is not right."
    assert actions(db) == ["login_failed"]


def test_unknown_account_gets_the_same_answer(client, db):
    response = client.post("/api/v1/auth/token", data={"username": "nobody@example.org", "password": PASSWORD})
    assert response.status_code == 401
    assert response.json()["detail"] == "The email or password is not right."


def test_operators_need_their_second_factor(client, db):
    admin = make_user(db, "platform_admin")
    db.commit()
    form = {"username": admin.email, "password": PASSWORD}
    assert client.post("/api/v1/auth/token", data=form).status_code == 401
    assert client.post("/api/v1/auth/token", data={**form, "otp": "000000"}).status_code == 401
    code = admin.otp()
    assert client.post("/api/v1/auth/token", data={**form, "otp": code}).status_code == 200
    replayed = client.post("/api/v1/auth/token", data={**form, "otp": code})
    assert replayed.status_code == 401 and "used already" in replayed.json()["detail"]
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


def test_repeated_failures_are_rate_limited_per_account(client, db, caseworker):
    for _ in range(5):
        client.post("/api/v1/auth/token", data={"username": caseworker.email, "password": "wrong password!"})
    response = client.post("/api/v1/auth/token", data={"username": caseworker.email, "password": PASSWORD})
    assert response.status_code == 429
    assert "Try again" in response.json()["detail"]


def test_refresh_rotates_and_reuse_revokes_the_family(client, db, caseworker):
    first = client.post("/api/v1/auth/token", data={"username": caseworker.email, "password": PASSWORD}).json()
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
    pair = client.post("/api/v1/auth/token", data={"username": caseworker.email, "password": PASSWORD}).json()
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401


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
    token, _ = issue_access_token(secret=settings.signing_secret(), user_id=caseworker.user.id,
                                  token_version=0, lifetime=timedelta(seconds=-5))
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
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
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
    response = client.post("/api/v1/auth/token", data={"username": account.email, "password": PASSWORD})
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
        response = client.post("/api/v1/auth/token", data={"username": accounts[0].email, "password": PASSWORD})
    app.state.engine.dispose()
    assert response.status_code == 429
