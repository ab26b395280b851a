"""`reunite demo`: a newcomer's first match in minutes, on the embedded defaults, with real dlib on real photos.

The command seeds the sandbox in an empty data folder; the accounts it prints sign in
(setting up their second factor), the case it searched has its candidate, and the two
reviewers it made can confirm it under the two-person rule. A second run, or a
production instance, is refused and changes nothing.
"""

from __future__ import annotations

import base64
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from service.app import create_app
from service.audit.models import AuditEvent
from service.cli import app as cli
from service.organisations.models import Organisation
from service.records.models import Record
from service.reviews.models import Candidate
from service.settings import Settings
from tests.support.service import first_sign_in

pytestmark = pytest.mark.faces
runner = CliRunner()
ACCOUNT_LINE = re.compile(r"^  (\S+@\S+)  password (\S+)  \(([^;]+); (.+)\)$", re.M)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("REUNITE_DATA_DIR", str(tmp_path / "data"))
    for name in ("REUNITE_DATABASE_URL", "REUNITE_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "data"


def test_the_demo_seeds_a_sandbox_whose_candidate_two_reviewers_confirm(data_dir, sdist_images):
    result = runner.invoke(cli, ["demo", "--photos", str(sdist_images)])
    assert result.exit_code == 0, result.output
    assert "Case 1 was searched: 1 candidate(s) await two reviews." in result.output
    accounts = {email: (password, roles) for email, password, roles, _ in ACCOUNT_LINE.findall(result.output)}
    assert len(accounts) == 5 and all(email.endswith(".demo.example.org") for email in accounts)

    application = create_app(Settings())
    with application.state.session_factory() as db:  # closed before the app writes (SQLite's one writer)
        assert db.scalars(select(Organisation.registration_number).order_by(Organisation.id)).all() == [
            "DEMO-1",
            "DEMO-2",
        ]
        [candidate] = db.scalars(select(Candidate)).all()
        assert (candidate.status, db.get(Record, candidate.record_id).case_reference) == ("pending_review", "DEMO-R1")
        assert db.scalar(select(func.count()).where(AuditEvent.action == "demo_seeded")) == 1
        candidate_id = candidate.id

    with TestClient(application) as client:
        for email in ("reviewer@hope-tracing.demo.example.org", "reviewer@family-links.demo.example.org"):
            headers = first_sign_in(client, email, accounts[email][0])
            answer = client.post(
                f"/api/v1/candidates/{candidate_id}/reviews",
                headers=headers,
                json={"decision": "confirm", "rationale": "Same man in both sample photos."},
            )
            assert answer.status_code in (200, 201), answer.text
        assert client.get(f"/api/v1/candidates/{candidate_id}", headers=headers).json()["status"] == "confirmed"
    application.state.engine.dispose()

    again = runner.invoke(cli, ["demo", "--photos", str(sdist_images)])
    assert again.exit_code == 2
    assert "already in this database (organisations 'Demo sandbox: …'). Nothing was changed" in again.output


def test_the_demo_refuses_a_production_instance_and_a_folder_without_the_photos(data_dir, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = runner.invoke(cli, ["demo", "--photos", str(empty)])
    assert missing.exit_code == 2 and "lacks the sample photos obama.jpg, obama3.jpg" in missing.output

    production = {
        "ENVIRONMENT": "production",
        "SECRET_KEY": "s" * 48,
        "MASTER_KEY": base64.b64encode(bytes(32)).decode(),
        "DATABASE_URL": f"sqlite:///{data_dir}/reunite.db",
    }
    for name, value in production.items():
        monkeypatch.setenv(f"REUNITE_{name}", value)
    refused = runner.invoke(cli, ["demo", "--photos", str(empty)])
    assert refused.exit_code == 2 and "runs only on a development instance" in refused.output
    assert not (data_dir / "reunite.db").exists()
