"""Building blocks for service tests: databases per backend, organisations, users, sign-in."""

from __future__ import annotations

import os
import uuid
from functools import cache
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from service.auth.models import User
from service.auth.passwords import hash_password
from service.auth.service import create_user
from service.db import utcnow
from service.organisations.models import Organisation

PASSWORD = "correct horse battery staple"


@cache
def password_hash() -> str:
    """One real argon2 hash of PASSWORD, computed once per test run."""
    return hash_password(PASSWORD)


ADMIN_URL = os.environ.get("REUNITE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class PostgresDatabases:
    """Creates databases (optionally from a template) on the test server and drops them."""

    def __init__(self, admin_url: str = ADMIN_URL):
        self.admin_url = admin_url
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def url(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def create(self, template: str | None = None) -> str:
        name = f"reunite_test_{uuid.uuid4().hex[:12]}"
        clause = f" TEMPLATE {template}" if template else ""
        with self.engine.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}{clause}"))
        return name

    def drop(self, name: str) -> None:
        with self.engine.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def make_organisation(
    session: Session, *, status: str = "approved", name: str = "Helping Hands", **fields
) -> Organisation:
    now = utcnow()
    values = dict(
        name=name,
        org_type="ngo",
        country="GB",
        registration_number=uuid.uuid4().hex[:8],
        website="https://helping-hands.example.org",
        contact_email="contact@helping-hands.example.org",
        status=status,
        attests_no_law_enforcement=True,
        purpose="Finding missing children",
        approved_at=now if status == "approved" else None,
        vetting_expires_at=now + timedelta(days=365) if status == "approved" else None,
    )
    values.update(fields)
    organisation = Organisation(**values)
    session.add(organisation)
    session.flush()
    return organisation


class TotpClock:
    """The tests' clock for second-factor codes: each new code moves it on by one time step.

    The service checks codes against `service.auth.passwords.totp_clock`, which every test
    points here (tests/conftest.py), so a code is of the current step when it is checked,
    however long a busy machine takes between making and sending it; and each code is of
    a later step than any before, as the service accepts each step once.
    """

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def next_code(self, secret: str) -> str:
        totp = pyotp.TOTP(secret)
        self.now += timedelta(seconds=totp.interval)
        return totp.at(self.now)


TOTP_CLOCK = TotpClock()


@dataclass
class Account:
    user: User
    email: str
    password: str = PASSWORD
    # Kept here by make_user: reading it from `user` after a commit would open a read transaction
    # on the test's session, whose SQLite snapshot would then hide what the app writes next.
    totp_secret: str | None = None

    def otp(self) -> str | None:
        """A second-factor code the service has not seen before (see TotpClock)."""
        secret = self.totp_secret or self.user.totp_secret
        return TOTP_CLOCK.next_code(secret) if secret else None


# Accounts made by make_user are this old unless told otherwise: established, as the two-person
# rule wants one confirmer to be (vetting.review); tests of new accounts pass `created_at`.
ESTABLISHED_ACCOUNT_AGE = timedelta(days=400)


def make_user(
    session: Session,
    *roles: str,
    organisation: Organisation | None = None,
    email: str | None = None,
    created_at: datetime | None = None,
) -> Account:
    email = email or f"{'-'.join(roles) or 'user'}-{uuid.uuid4().hex[:6]}@helping-hands.example.org"
    user = create_user(
        session,
        email=email,
        password=PASSWORD,
        roles=set(roles),
        organisation_id=organisation.id if organisation else None,
        with_totp=True,
    )
    user.created_at = created_at or utcnow() - ESTABLISHED_ACCOUNT_AGE
    session.flush()
    return Account(user=user, email=email, totp_secret=user.totp_secret)


def token_pair(client, account: Account) -> dict:
    """The account's token response (signed in with its one-time code when it has TOTP)."""
    form = {"username": account.email, "password": account.password}
    if code := account.otp():
        form["otp"] = code
    response = client.post("/api/v1/auth/token", data=form)
    assert response.status_code == 200, response.text
    return response.json()


def enrol(client, email: str, password: str = PASSWORD) -> str:
    """Set up the second factor of an account that has none (first sign-in); its TOTP key."""
    response = client.post("/api/v1/auth/totp/enrol", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["secret"]


def first_sign_in(client, email: str, password: str = PASSWORD) -> dict[str, str]:
    """Authorization header for an account made through the API: it enrols its second factor, then signs in."""
    form = {"username": email, "password": password, "otp": TOTP_CLOCK.next_code(enrol(client, email, password))}
    response = client.post("/api/v1/auth/token", data=form)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def sign_in(client, account: Account) -> dict[str, str]:
    """Authorization header for the account (with its one-time code when it has TOTP)."""
    return {"Authorization": f"Bearer {token_pair(client, account)['access_token']}"}


def migrate_down_and_up(database_url: str, *, revision: str, table: str, column: str | None = None) -> None:
    """Downgrade to `revision`, then upgrade to head, on live data; with `column`, check it goes and comes back."""
    from alembic import command

    from service.db import make_engine
    from service.migrate import alembic_config

    engine, config = make_engine(database_url), alembic_config(database_url)
    try:
        for step, target, present in ((command.downgrade, revision, False), (command.upgrade, "head", True)):
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                step(config, target)
                if column is not None:
                    columns = {found["name"] for found in inspect(connection).get_columns(table)}
                    assert (column in columns) is present, f"{table}.{column} after {step.__name__} to {target}"
    finally:
        engine.dispose()
