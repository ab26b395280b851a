"""After-commit effects (service.effects): run once committed, in order; dropped on rollback or close.

And the webhook delivery the review routes hand to record_review: queued behind the response.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
import structlog
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from service import deps
from service.db import make_engine, make_session_factory
from service.effects import after_commit


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'effects.db'}")
    factory = make_session_factory(engine)
    with factory() as session:
        session.execute(text("CREATE TABLE rows (id INTEGER PRIMARY KEY)"))
        session.commit()
    yield factory
    engine.dispose()


def committed_rows(factory) -> list[int]:
    """What another session (a worker) can read now."""
    with factory() as reader:
        return list(reader.scalars(text("SELECT id FROM rows ORDER BY id")))


def test_effects_run_after_the_commit_in_order_and_see_the_committed_rows(sessions):
    ran = []
    with sessions() as session:
        session.execute(text("INSERT INTO rows (id) VALUES (1)"))
        after_commit(session, lambda: ran.append(("first", committed_rows(sessions))))
        after_commit(session, partial(ran.append, ("second", None)))
        assert ran == []  # nothing before the commit
        session.commit()
        assert ran == [("first", [1]), ("second", None)]
        session.execute(text("INSERT INTO rows (id) VALUES (2)"))
        session.commit()
    assert len(ran) == 2  # each effect runs once, with the commit it was registered in


def test_effects_are_dropped_on_rollback_and_on_close(sessions):
    ran = []
    with sessions() as session:
        session.execute(text("INSERT INTO rows (id) VALUES (1)"))
        after_commit(session, partial(ran.append, "rolled back"))
        session.rollback()
        session.commit()  # a later commit does not run them either
        session.execute(text("INSERT INTO rows (id) VALUES (2)"))
        after_commit(session, partial(ran.append, "closed"))
        session.close()
        session.commit()  # the same session, reused after closing
    assert ran == [] and committed_rows(sessions) == []


def test_a_failing_effect_is_logged_and_does_not_undo_the_commit_or_stop_the_next(sessions):
    def broker_down(row_id: int) -> None:
        raise ConnectionError("broker unreachable")

    ran = []
    with sessions() as session, structlog.testing.capture_logs() as logs:
        session.execute(text("INSERT INTO rows (id) VALUES (7)"))
        after_commit(session, partial(broker_down, 7))
        after_commit(session, partial(ran.append, "next"))
        session.commit()  # does not raise
    assert ran == ["next"] and committed_rows(sessions) == [7]
    assert [(log["event"], log["ids"], log["error"]) for log in logs] == [
        ("after_commit_effect_failed", [7], "ConnectionError")
    ]
    assert "broker_down" in logs[0]["effect"]


def test_savepoints_neither_run_nor_take_effects_and_unhooked_sessions_are_refused(sessions):
    ran = []
    with sessions() as session:
        after_commit(session, partial(ran.append, "outer"))
        savepoint = session.begin_nested()
        with pytest.raises(RuntimeError, match="outermost transaction"):
            after_commit(session, partial(ran.append, "inner"))
        savepoint.commit()
        assert ran == []  # released, but the transaction has not committed
        session.commit()
    assert ran == ["outer"]
    plain = sessionmaker(bind=sessions.kw["bind"])()
    with pytest.raises(RuntimeError, match="make_session_factory"):
        after_commit(plain, lambda: None)
    plain.close()


def test_the_webhook_delivery_dependency_sends_after_the_response_even_for_a_page_redirect(monkeypatch):
    """What the API and the review page give record_review: a webhook queued behind the response."""
    delivered = []
    monkeypatch.setattr(
        deps.webhooks,
        "deliver",
        lambda factory, notification_id, *, allow_loopback: delivered.append(
            (factory, notification_id, allow_loopback)
        ),
    )
    app = FastAPI()
    app.state.session_factory = "factory"
    app.state.settings = SimpleNamespace(webhook_allow_loopback=False)

    @app.post("/decide")
    def decide(deliver_webhook: deps.WebhookDeliveryDep) -> RedirectResponse:
        deliver_webhook(42)
        assert delivered == []  # queued, not sent while the request is answered
        return RedirectResponse("/done", status_code=303)

    answer = TestClient(app).post("/decide", follow_redirects=False)
    assert answer.status_code == 303 and delivered == [("factory", 42, False)]
