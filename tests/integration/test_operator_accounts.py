"""The first platform admin at first start, and `reunite admin create`."""

import pyotp
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from service.audit.models import AuditEvent
from service.auth.models import User
from service.bootstrap import create_first_admin
from service.cli import app as cli
from tests.support.service import sign_in, Account

runner = CliRunner()


@pytest.fixture
def environment(monkeypatch, database_url, tmp_path):
    monkeypatch.setenv("REUNITE_DATABASE_URL", database_url)
    monkeypatch.setenv("REUNITE_DATA_DIR", str(tmp_path / "data"))


def test_first_start_creates_one_admin_who_can_sign_in(client, db):
    created = create_first_admin(db, email="admin@reunite.local", issuer="Reunite")
    assert created is not None and len(created.password) >= 20
    assert created.totp_uri.startswith("otpauth://totp/")
    assert create_first_admin(db, email="other@reunite.local", issuer="Reunite") is None
    user = db.scalars(select(User).where(User.email == "admin@reunite.local")).one()
    assert user.roles == {"platform_admin"}
    headers = sign_in(client, Account(user=user, email=user.email, password=created.password))
    assert client.get("/api/v1/me", headers=headers).json()["roles"] == ["platform_admin"]
    secret = pyotp.parse_uri(created.totp_uri).secret
    assert secret == user.totp_secret


def test_admin_create_reads_the_password_from_stdin(environment, db):
    result = runner.invoke(
        cli,
        ["admin", "create", "--email", "Auditor@Oversight.example.org", "--role", "auditor"],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert "otpauth://totp/" in result.output
    assert "a long enough password" not in result.output
    user = db.scalars(select(User).where(User.email == "auditor@oversight.example.org")).one()
    assert user.roles == {"auditor"} and user.organisation_id is None
    events = db.scalars(select(AuditEvent.action)).all()
    assert events == ["operator_created"]


@pytest.mark.parametrize(
    ("arguments", "password", "message"),
    [
        (["--role", "caseworker"], "a long enough password", "--role must be one of"),
        (["--role", "auditor"], "short", "at least 12"),
    ],
)
def test_admin_create_refuses_bad_input(environment, db, arguments, password, message):
    result = runner.invoke(
        cli, ["admin", "create", "--email", "x@oversight.example.org", *arguments], input=password + "\n"
    )
    assert result.exit_code == 2
    assert message in result.output
    assert db.scalars(select(User)).all() == []


def test_admin_create_refuses_a_duplicate(environment, db):
    arguments = ["admin", "create", "--email", "x@oversight.example.org", "--role", "auditor"]
    assert runner.invoke(cli, arguments, input="a long enough password\n").exit_code == 0
    again = runner.invoke(cli, arguments, input="a long enough password\n")
    assert again.exit_code == 2
    assert "already exists" in again.output
