"""The audit trail on a real database: chaining, append-only rows, checkpoints, routes, exports."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from service.audit import query
from service.audit.actions import AuditAction
from service.audit.chain import GENESIS_HASH, checkpoint_message, event_hash
from service.audit.models import AuditCheckpoint, AuditEvent
from service.audit.service import event_fields, record_event
from service.audit.signing import load_signer, signature_valid
from service.cli import app as cli
from service.db import utcnow
from tests.support.pages import Person, text_of
from tests.support.service import make_organisation, make_user, sign_in

EVERY = 5


@pytest.fixture
def settings(settings):
    """Checkpoints every few events, so a short test sees several."""
    return settings.model_copy(update={"audit_checkpoint_every": EVERY})


@pytest.fixture
def auditor(db):
    account = make_user(db, "auditor")
    db.commit()
    return account


def record(app, count: int, **fields) -> None:
    """Append events through the app's own sessions (which take periodic checkpoints)."""
    with app.state.session_factory() as session:
        for _ in range(count):
            record_event(session, **{"action": AuditAction.RECORD_VIEWED, **fields})
            session.commit()


def chain(db) -> list[AuditEvent]:
    db.rollback()  # a fresh snapshot: the app committed since
    return list(db.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def checkpoints(db) -> list[AuditCheckpoint]:
    db.rollback()
    return list(db.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)))


def assert_valid_chain(events: list[AuditEvent]) -> None:
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    previous = GENESIS_HASH
    for event in events:
        assert event.prev_hash == previous
        assert event.hash == event_hash(previous, event_fields(event))
        previous = event.hash


def assert_checkpoints_every_n(db, settings, events: list[AuditEvent]) -> None:
    signer = load_signer(settings.audit_key_file)
    hashes = {event.seq: event.hash for event in events}
    taken = checkpoints(db)
    assert [c.seq for c in taken] == [seq for seq in hashes if seq % EVERY == 0]
    for checkpoint in taken:
        assert checkpoint.head_hash == hashes[checkpoint.seq]
        assert checkpoint.key_id == signer.key_id
        assert signature_valid(
            signer.public_key, checkpoint_message(checkpoint.seq, checkpoint.head_hash), checkpoint.signature
        )


def test_events_from_real_actions_chain_without_gaps_and_are_checkpointed(client, app, db, settings):
    organisation = make_organisation(db)
    caseworker = make_user(db, "caseworker", organisation=organisation)
    db.commit()
    sign_in(client, caseworker)
    client.post("/api/v1/auth/token", data={"username": caseworker.email, "password": "wrong password!"})
    record(
        app,
        9,
        actor_id=caseworker.user.id,
        organisation_id=organisation.id,
        target_type="record",
        target_id=42,
        details={"photos": 2},
    )
    events = chain(db)
    assert [e.action for e in events[:2]] == ["login", "login_failed"]
    assert len(events) == 11
    assert_valid_chain(events)
    assert_checkpoints_every_n(db, settings, events)
    assert settings.audit_key_file.stat().st_mode & 0o777 == 0o600


def test_audit_rows_cannot_be_updated_or_deleted(app, db):
    record(app, EVERY)  # the fifth event brings a checkpoint
    for statement in (
        "UPDATE audit_events SET action = 'nothing' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
        "UPDATE audit_checkpoints SET seq = 1",
        "DELETE FROM audit_checkpoints",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            db.execute(text(statement))
        db.rollback()
    assert [e.action for e in chain(db)] == ["record_viewed"] * EVERY
    assert len(checkpoints(db)) == 1


def test_only_auditors_reach_the_audit_routes(client, db, auditor):
    organisation = make_organisation(db)
    member = make_user(db, "org_admin", "caseworker", "reviewer", organisation=organisation)
    admin = make_user(db, "platform_admin")
    db.commit()
    refused = [sign_in(client, member), sign_in(client, admin)]
    allowed = sign_in(client, auditor)
    for path in ("/api/v1/audit/events", "/api/v1/audit/export?format=jsonl", "/api/v1/audit/export?format=csv"):
        assert client.get(path).status_code == 401
        for headers in refused:
            assert client.get(path, headers=headers).status_code == 403
        assert client.get(path, headers=allowed).status_code == 200


def test_filters_and_pages_in_the_list_and_the_csv_table(client, app, db, auditor, monkeypatch):
    monkeypatch.setattr(query, "EXPORT_BATCH", 1)  # the CSV export streams one row per batch
    headers = sign_in(client, auditor)  # seq 1: the auditor's login
    record(app, 3, actor_id=101, organisation_id=1, details={"count": 3})
    time.sleep(0.01)
    boundary = utcnow()
    time.sleep(0.01)
    record(app, 2, actor_id=102, organisation_id=2, action=AuditAction.CASE_SUBMITTED, target_type="case", target_id=9)

    def listed(**params) -> list[int]:
        response = client.get("/api/v1/audit/events", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [event["seq"] for event in response.json()["events"]]

    assert listed() == [1, 2, 3, 4, 5, 6]
    assert listed(actor=101) == [2, 3, 4]
    assert listed(organisation=2) == [5, 6]
    assert listed(action="case_submitted") == [5, 6]
    assert listed(since=boundary.isoformat()) == [5, 6]
    assert listed(until=boundary.isoformat()) == [1, 2, 3, 4]
    assert listed(since=boundary.isoformat(), actor=101) == []
    page = client.get("/api/v1/audit/events", params={"limit": 2, "after_seq": 2}, headers=headers).json()
    assert [e["seq"] for e in page["events"]] == [3, 4] and page["next_after_seq"] == 4
    event = page["events"][0]
    assert event["details"] == {"count": 3} and event["actor_id"] == 101 and len(event["hash"]) == 64
    assert client.get("/api/v1/audit/events", params={"limit": 1001}, headers=headers).status_code == 422
    assert (
        client.get(
            "/api/v1/audit/events",
            params={"since": boundary.isoformat(), "until": boundary.isoformat()},
            headers=headers,
        ).status_code
        == 422
    )

    response = client.get("/api/v1/audit/export", params={"format": "csv", "actor": 102}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["cache-control"] == "no-store"
    assert 'attachment; filename="reunite-audit-' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(row["seq"], row["action"], row["target_id"]) for row in rows] == [
        ("5", "case_submitted", "9"),
        ("6", "case_submitted", "9"),
    ]
    assert json.loads(rows[0]["details"]) == {}
    exported = chain(db)[-1]
    assert (exported.action, exported.actor_id) == ("audit_exported", auditor.user.id)
    assert json.loads(exported.details) == {"filters": ["actor"], "format": "csv"}


def test_auditors_filter_on_dotted_threshold_codes_and_are_told_of_unknown_ones(client, app, auditor):
    headers = sign_in(client, auditor)  # seq 1: the auditor's login
    record(app, 1, action=AuditAction.CALIBRATION_CREATED, target_type="calibration", target_id=3)
    record(app, 1, action=AuditAction.EVALUATION_PUBLISHED)
    record(app, 1, action=AuditAction.CALIBRATION_ACTIVATED, target_type="calibration", target_id=3)

    def listed(action: str):
        return client.get("/api/v1/audit/events", params={"action": action}, headers=headers)

    found = listed("calibration.created")
    assert found.status_code == 200, found.text
    assert [(e["seq"], e["action"]) for e in found.json()["events"]] == [(2, "calibration.created")]
    assert [e["seq"] for e in listed("evaluation.published").json()["events"]] == [3]
    table = client.get(
        "/api/v1/audit/export", params={"format": "csv", "action": "calibration.activated"}, headers=headers
    )
    assert [row["seq"] for row in csv.DictReader(io.StringIO(table.text))] == ["4"]
    for unknown in ("calibration.deleted", "LOGIN", "login;drop"):
        refused = listed(unknown)
        assert refused.status_code == 422, unknown
        assert refused.json()["detail"] == "Some fields are missing or invalid: action."
        assert "calibration.created" in refused.json()["errors"][0]["problem"]  # it lists the codes

    page = Person(app, auditor)
    menu = page.get("/audit").text
    assert all(f'<option value="{code}"' in menu for code in AuditAction)
    searched = page.get("/audit?action=calibration.created")
    assert '<option value="calibration.created" selected>' in searched.text
    assert searched.text.count("<code>calibration.created</code>") == 1
    assert "<code>evaluation.published</code>" not in searched.text
    refused_page = page.get("/audit?action=calibration.deleted", expect=422)
    assert "Action must be one of the action codes in the list" in text_of(refused_page)
    csv_table = page.post("/audit", "/audit/export", format="csv", action="calibration.created")
    assert [row["seq"] for row in csv.DictReader(io.StringIO(csv_table.text))] == ["2"]


def test_exported_bundle_verifies_offline_and_tampering_is_caught(
    client, app, db, settings, auditor, tmp_path, monkeypatch
):
    monkeypatch.setattr(query, "EXPORT_BATCH", 3)  # several batches of events and of checkpoints
    headers = sign_in(client, auditor)
    record(app, 6, actor_id=7, details={"reason": "otp_wrong"})
    before = len(chain(db))

    refused = client.get("/api/v1/audit/export", params={"format": "jsonl", "actor": 7}, headers=headers)
    assert refused.status_code == 422
    assert len(chain(db)) == before  # a refused export records nothing

    response = client.get("/api/v1/audit/export", params={"format": "jsonl"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"].endswith('.jsonl"')
    events = chain(db)
    assert [e.action for e in events].count("audit_exported") == 1
    last = events[-1].seq
    assert events[-1].action == "audit_exported" and last == before + 1

    lines = response.text.splitlines()
    header = json.loads(lines[0])
    assert header["first_seq"] == 1 and header["last_seq"] == last and header["key_id"]
    assert json.loads(lines[last])["seq"] == last
    assert {json.loads(line)["seq"] for line in lines[last + 1 :]} >= {EVERY, last}

    code, output = verify(tmp_path, lines, settings)
    assert code == 0 and f"OK {last} events" in output, output
    assert f"export header signs: seq 1 to {last}" in output, output

    changed = list(lines)
    tampered = json.loads(changed[3])  # seq 3, one of the recorded events
    tampered["details"] = {"reason": "bad_credentials"}
    changed[3] = json.dumps(tampered)
    code, output = verify(tmp_path, changed, settings)
    assert code == 1 and "FAILED at seq 3:" in output, output

    # Cut back to the periodic checkpoint at seq EVERY and make the header agree: its signature breaks.
    cut = json.loads(lines[0]) | {
        "last_seq": EVERY,
        "event_count": EVERY,
        "head_hash": json.loads(lines[EVERY])["hash"],
    }
    kept = [
        line
        for line in lines[EVERY + 1 :]
        if json.loads(line)["type"] == "checkpoint" and json.loads(line)["seq"] <= EVERY
    ]
    code, output = verify(tmp_path, [json.dumps(cut), *lines[1 : EVERY + 1], *kept], settings)
    assert code == 1 and "header's signature does not verify" in output, output

    code, output = verify(tmp_path, lines[:last] + lines[last + 1 :], settings)  # without the last event's line
    assert code == 1 and f"FAILED at seq {last}:" in output, output


def test_a_bundle_since_a_time_starts_there_and_verifies(client, app, db, settings, auditor, tmp_path):
    headers = sign_in(client, auditor)
    record(app, 3)
    time.sleep(0.01)
    boundary = utcnow()
    record(app, 3)
    response = client.get(
        "/api/v1/audit/export", params={"format": "jsonl", "since": boundary.isoformat()}, headers=headers
    )
    lines = response.text.splitlines()
    assert json.loads(lines[0])["first_seq"] == 5
    code, output = verify(tmp_path, lines, settings)
    assert code == 0 and "OK 4 events (seq 5 to 8)" in output, output
    assert "from seq 5, chained to base hash" in output, output


def verify(folder, lines: list[str], settings) -> tuple[int, str]:
    """Run `reunite audit verify` on the lines with the service's public key: (exit code, output)."""
    path = folder / "bundle.jsonl"
    path.write_text("\n".join(lines) + "\n")
    key = folder / "trusted.pem"
    key.write_text(load_signer(settings.audit_key_file).public_key_pem)
    result = CliRunner().invoke(cli, ["audit", "verify", str(path), "--public-key", str(key)])
    return result.exit_code, result.output


def test_concurrent_appends_keep_the_chain_gapless(app, db, settings):
    per_thread, failures = 12, []
    start = threading.Barrier(2)

    def append(actor_id: int) -> None:
        start.wait()
        try:
            for _ in range(per_thread):
                record(app, 1, actor_id=actor_id)
                time.sleep(0.005)  # as between two requests: lets the other thread take SQLite's lock
        except Exception as exc:  # surfaced below: an exception in a thread would otherwise vanish
            failures.append(exc)

    threads = [threading.Thread(target=append, args=(actor,)) for actor in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    events = chain(db)
    assert len(events) == 2 * per_thread
    assert sorted(e.actor_id for e in events) == [1] * per_thread + [2] * per_thread
    assert_valid_chain(events)
    assert_checkpoints_every_n(db, settings, events)
    assert db.scalar(select(func.count()).select_from(AuditCheckpoint)) == 2 * per_thread // EVERY
