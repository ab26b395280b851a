"""Confirmed-match webhooks are retried until sent or given up on, and never sent twice at once.

Matches are confirmed through the real two-person review (service.reviews.service), and
webhooks go to real HTTP servers on 127.0.0.1 (a thread each, on a free port) that fail
as scripted. Time is driven by passing `now=` to `deliver` and `retry_due`, never by
sleeping; the signature's timestamp is real time, as a receiver would check it. The
receivers listen on loopback, so these tests allow it (`allow_loopback`, the setting
webhook_allow_loopback); test_webhook_addresses.py proves it is refused otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial

import pytest
import structlog
from sqlalchemy import select

from service.audit.models import AuditEvent
from service.auth.models import User
from service.cases.models import Case
from service.db import utcnow
from service.organisations.models import Organisation
from service.organisations.service import remove_webhook
from service.reviews import service as reviews_service
from service.reviews import webhooks
from service.reviews.models import Candidate, Notification
from service.reviews.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from service.worker.celery_app import RETRY_WEBHOOKS, ROUTES, SEARCH_QUEUE, make_celery
from service.worker.tasks import process_state
from tests.support.gallery import make_record
from tests.support.service import make_organisation, make_user, migrate_down_and_up
from tests.support.webhooks import RECEIVER_NOTE, Receiver

LABEL = "Pseudonym-Wren"
GUARDIAN = "Guardian Applethwaite"
SECRET = "first-secret-0a1b2c3d"
TIMEOUT = 0.5
MINUTE = timedelta(minutes=1)
LEASE_END = timedelta(minutes=5)
PROBE_FACES = itertools.count(1)  # one candidate per probe face and record
# The test receivers are on 127.0.0.1, which only the (default-off) loopback setting reaches.
deliver = partial(webhooks.deliver, allow_loopback=True)
retry_due = partial(webhooks.retry_due, allow_loopback=True)
post_signed = partial(webhooks.post_signed, allow_loopback=True)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/reunite"  # nothing listens there any more


# --- a confirmed match ------------------------------------------------------------------------


@dataclass
class World:
    keepers: int  # owns the record and receives the webhook
    keepers_admin: int
    reviewers: tuple[int, int]
    case_id: int
    record_id: int


@pytest.fixture
def world(db) -> World:
    finders, keepers = make_organisation(db, name="Finders"), make_organisation(db, name="Keepers")
    submitter = make_user(db, "caseworker", organisation=finders).user
    reviewers = (
        make_user(db, "reviewer", organisation=finders).user,
        make_user(db, "reviewer", organisation=keepers).user,
    )
    admin = make_user(db, "org_admin", organisation=keepers).user
    record = make_record(
        db,
        organisation_id=keepers.id,
        user_id=admin.id,
        case_reference="REC-K-1",
        label=LABEL,
        guardian_name=GUARDIAN,
        date_of_birth=date(2016, 5, 1),
        missing_since=date(2024, 2, 1),
    )
    case = Case(
        organisation_id=finders.id,
        submitted_by=submitter.id,
        case_reference="CASE-F-1",
        purpose="Search for a missing child",
        status="searched",
        faces=1,
        attempts=1,
        retention_until=utcnow() + timedelta(days=30),
    )
    db.add(case)
    db.commit()
    return World(
        keepers=keepers.id,
        keepers_admin=admin.id,
        reviewers=(reviewers[0].id, reviewers[1].id),
        case_id=case.id,
        record_id=record.id,
    )


def point_webhook(db, world: World, url: str | None, secret: str | None = SECRET) -> None:
    """What the organisation admin's PUT does (that route refuses 127.0.0.1, rightly)."""
    organisation = db.get(Organisation, world.keepers)
    organisation.webhook_url, organisation.webhook_secret = url, secret
    db.commit()


def confirm_match(db, world: World) -> int:
    """Two reviewers confirm a new candidate; returns the notification's id, its webhook pending."""
    candidate = Candidate(
        case_id=world.case_id,
        record_id=world.record_id,
        probe_embedding_id=next(PROBE_FACES),
        gallery_embedding_id=1,
        distance=0.31,
        rank=1,
        model_id="dlib_resnet_v1",
        model_version="0.3.0+test",
    )
    db.add(candidate)
    db.commit()
    for reviewer_id in world.reviewers:
        reviewer = db.get(User, reviewer_id)
        recorded = reviews_service.record_review(
            db,
            reviewer=reviewer,
            candidate_id=candidate.id,
            decision="confirm",
            rationale="Same ear shape and the same scar on the chin.",
            deliver_webhook=None,
        )  # the tests below make the attempts
    assert recorded.candidate_status == "confirmed"
    assert recorded.notification.webhook_status == "pending"
    return recorded.notification.id


def state(db, notification_id: int) -> tuple:
    db.expire_all()
    n = db.get(Notification, notification_id)
    found = (n.webhook_status, n.webhook_attempts, n.webhook_next_attempt_at, n.webhook_last_error)
    db.rollback()
    return found


def created_at(db, notification_id: int):
    found = db.get(Notification, notification_id).created_at
    db.rollback()
    return found


def confirmed_long_ago(db, notification_id: int) -> None:
    db.execute(
        Notification.__table__.update()
        .where(Notification.id == notification_id)
        .values(created_at=utcnow() - timedelta(minutes=6))
    )
    db.commit()


def audit_events(db, action: str) -> list[tuple]:
    db.expire_all()
    found = [
        (e.actor_id, e.organisation_id, e.target_type, e.target_id, json.loads(e.details))
        for e in db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))
    ]
    db.rollback()
    return found


def assert_signed_deliveries(received, notification_id: int, secrets: list[str]) -> None:
    """Every attempt: the same delivery id and body, a fresh timestamp and a valid signature."""
    assert len(received) == len(secrets)
    bodies = {body for _, body in received}
    assert len(bodies) == 1
    assert json.loads(bodies.pop())["notification_id"] == notification_id
    for (headers, body), secret in zip(received, secrets):
        assert headers[DELIVERY_HEADER] == str(notification_id)
        timestamp = headers[TIMESTAMP_HEADER]
        assert abs(int(timestamp) - time.time()) < 60
        expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert headers[SIGNATURE_HEADER] == f"sha256={expected}"


# --- retries ------------------------------------------------------------------------------------


def test_failed_attempts_are_retried_on_schedule_until_sent_with_one_delivery_id(app, db, world):
    sessions = app.state.session_factory
    with Receiver([503, "hang", 204]) as receiver:
        point_webhook(db, world, receiver.url)
        notification = confirm_match(db, world)
        t0 = utcnow()
        assert deliver(sessions, notification, now=t0, timeout=TIMEOUT) == "failed"
        assert state(db, notification) == ("failed", 1, t0 + MINUTE, "http_503")

        assert retry_due(sessions, now=t0 + MINUTE - timedelta(seconds=1), timeout=TIMEOUT) == {}
        assert len(receiver.received) == 1  # not before its time
        t1 = t0 + MINUTE
        assert retry_due(sessions, now=t1, timeout=TIMEOUT) == {"failed": 1}
        assert state(db, notification) == ("failed", 2, t1 + 5 * MINUTE, "timeout")

        assert retry_due(sessions, now=t1 + 5 * MINUTE - timedelta(seconds=1), timeout=TIMEOUT) == {}
        assert retry_due(sessions, now=t1 + 5 * MINUTE, timeout=TIMEOUT) == {"sent": 1}
        assert state(db, notification) == ("sent", 3, None, None)
        # Sent is final: nothing more, however late.
        assert retry_due(sessions, now=t1 + timedelta(days=30), timeout=TIMEOUT) == {}
    assert_signed_deliveries(receiver.received, notification, [SECRET] * 3)
    assert json.loads(receiver.received[0][1])["record_id"] == world.record_id


def test_a_suspended_organisation_is_sent_nothing_until_it_is_reinstated(app, db, world):
    sessions = app.state.session_factory
    with Receiver([204]) as receiver:
        point_webhook(db, world, receiver.url)
        notification = confirm_match(db, world)
        db.get(Organisation, world.keepers).status = "suspended"
        db.commit()
        t0 = utcnow()
        assert deliver(sessions, notification, now=t0, timeout=TIMEOUT) == "failed"
        assert state(db, notification) == ("failed", 1, t0 + MINUTE, webhooks.NOT_IN_GOOD_STANDING)
        assert receiver.received == []

        db.get(Organisation, world.keepers).status = "approved"
        db.commit()
        assert retry_due(sessions, now=t0 + MINUTE, timeout=TIMEOUT) == {"sent": 1}
    assert_signed_deliveries(receiver.received, notification, [SECRET])


def test_it_gives_up_after_the_last_backoff_with_an_audit_event_and_keeps_nothing_private(app, db, world):
    sessions = app.state.session_factory
    waits = [timedelta(minutes=m) for m in (1, 5, 30, 120, 720)]
    with structlog.testing.capture_logs() as logs, Receiver([503] * 10) as receiver:
        point_webhook(db, world, receiver.url)
        notification = confirm_match(db, world)
        t0 = utcnow()
        assert deliver(sessions, notification, now=t0, timeout=TIMEOUT) == "failed"
        due = t0
        for attempt, wait in enumerate(waits, start=2):
            due += wait
            assert retry_due(sessions, now=due - timedelta(seconds=1), timeout=TIMEOUT) == {}
            assert len(receiver.received) == attempt - 1
            expected = "abandoned" if attempt == len(waits) + 1 else "failed"
            assert retry_due(sessions, now=due, timeout=TIMEOUT) == {expected: 1}
            assert len(receiver.received) == attempt
        assert state(db, notification) == ("failed", 6, None, "http_503")
        assert retry_due(sessions, now=due + timedelta(days=90), timeout=TIMEOUT) == {}
    assert len(receiver.received) == 6

    candidate_id = db.scalar(select(Notification.candidate_id).where(Notification.id == notification))
    db.rollback()
    assert audit_events(db, "webhook_abandoned") == [
        (
            None,
            world.keepers,
            "notification",
            str(notification),
            {"notification_id": notification, "candidate_id": candidate_id, "attempts": 6},
        )
    ]
    attempts = [entry for entry in logs if entry["event"] == "webhook_attempt"]
    assert [(e["attempt"], e["outcome"], e["reason"]) for e in attempts] == [
        (n, "failed", "http_503") for n in range(1, 6)
    ] + [(6, "abandoned", "http_503")]
    body = receiver.received[0][1].decode()
    db.expire_all()
    audit_text = " ".join(e.details for e in db.scalars(select(AuditEvent)))
    db.rollback()
    for private in (SECRET, LABEL, GUARDIAN, RECEIVER_NOTE, body, receiver.url):
        assert private not in repr(logs)
        assert private not in audit_text


def test_a_pending_delivery_left_by_a_dead_process_is_taken_up_after_the_grace_period(app, db, world):
    sessions = app.state.session_factory
    with Receiver() as receiver:
        point_webhook(db, world, receiver.url)
        notification = confirm_match(db, world)  # ... and the process dies before `deliver` runs
        confirmed = created_at(db, notification)
        assert retry_due(sessions, now=confirmed + 4 * MINUTE, timeout=TIMEOUT) == {}
        assert state(db, notification)[:2] == ("pending", 0)
        assert retry_due(sessions, now=confirmed + 5 * MINUTE, timeout=TIMEOUT) == {"sent": 1}
        assert state(db, notification) == ("sent", 1, None, None)
        # The first attempt, had it run late, finds the delivery no longer its own.
        assert deliver(sessions, notification, timeout=TIMEOUT) is None
    assert_signed_deliveries(receiver.received, notification, [SECRET])


def test_an_attempt_whose_sender_died_is_retried_after_its_lease_and_the_late_outcome_is_ignored(app, db, world):
    sessions = app.state.session_factory
    with Receiver() as receiver:
        point_webhook(db, world, receiver.url)
        notification = confirm_match(db, world)
        t0 = utcnow()
        # A sender claims the first attempt, then dies (or stalls) before recording anything.
        stalled = webhooks._claim(sessions, notification, due=webhooks._never_attempted(), now=t0)
        assert stalled.attempt == 1
        assert state(db, notification) == ("pending", 1, t0 + 5 * MINUTE, None)
        assert retry_due(sessions, now=t0 + 4 * MINUTE, timeout=TIMEOUT) == {}
        # After the lease another sender takes it: the stalled one's outcome, arriving now, is not written.
        t1 = t0 + 5 * MINUTE
        second = webhooks._claim(sessions, notification, due=webhooks._due(t1), now=t1)
        assert second.attempt == 2
        assert webhooks._record_outcome(sessions, stalled, "timeout", now=t1) is None
        assert webhooks._record_outcome(sessions, stalled, None, now=t1) is None
        assert state(db, notification) == ("pending", 2, t1 + 5 * MINUTE, None)
        # The second stalls as well; the periodic run makes the third attempt once its lease is over.
        assert retry_due(sessions, now=t1 + 5 * MINUTE, timeout=TIMEOUT) == {"sent": 1}
        assert webhooks._record_outcome(sessions, second, "timeout", now=t1 + 6 * MINUTE) is None
        assert state(db, notification) == ("sent", 3, None, None)
    assert_signed_deliveries(receiver.received, notification, [SECRET])


def test_a_last_attempt_whose_sender_died_is_given_up_on_once_its_lease_is_over(app, db, world):
    sessions = app.state.session_factory
    with Receiver() as receiver:
        point_webhook(db, world, receiver.url)
        notification = confirm_match(db, world)
        t0 = utcnow()
        # Six senders in turn, each dying after its claim; each next one comes when the lease is over.
        claims = [webhooks._claim(sessions, notification, due=webhooks._never_attempted(), now=t0)]
        claims += [
            webhooks._claim(sessions, notification, due=webhooks._due(t0 + n * LEASE_END), now=t0 + n * LEASE_END)
            for n in range(1, 6)
        ]
        assert [claim.attempt for claim in claims] == [1, 2, 3, 4, 5, 6]
        assert retry_due(sessions, now=t0 + 6 * LEASE_END - timedelta(seconds=1), timeout=TIMEOUT) == {}
        assert retry_due(sessions, now=t0 + 6 * LEASE_END, timeout=TIMEOUT) == {"abandoned": 1}
        assert retry_due(sessions, now=t0 + timedelta(days=9), timeout=TIMEOUT) == {}
    assert receiver.received == []
    assert state(db, notification) == ("failed", 6, None, None)
    assert [details["attempts"] for *_, details in audit_events(db, "webhook_abandoned")] == [6]


def test_concurrent_runs_send_one_attempt_once(app, db, world):
    sessions = app.state.session_factory
    with Receiver(delay=0.3) as receiver:  # slow enough for every run to overlap the first POST
        point_webhook(db, world, receiver.url)
        notification = confirm_match(db, world)
        confirmed_long_ago(db, notification)  # so the periodic runs find it due as well
        start, outcomes = threading.Barrier(4), []

        def retry_run():  # a periodic run in another worker
            start.wait()
            outcomes.extend(name for name, count in retry_due(sessions, timeout=5.0).items() for _ in range(count))

        def first_attempt():  # the API process's own attempt, very late
            start.wait()
            outcomes.append(deliver(sessions, notification, timeout=5.0) or "not_claimed")

        threads = [threading.Thread(target=retry_run) for _ in range(3)] + [threading.Thread(target=first_attempt)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert len(receiver.received) == 1
    assert state(db, notification) == ("sent", 1, None, None)
    assert outcomes.count("sent") == 1
    assert set(outcomes) <= {"sent", "skipped", "not_claimed"}


# --- the webhook changed or removed meanwhile ---------------------------------------------------


def test_retries_use_the_current_address_and_secret_and_stop_quietly_once_it_is_removed(app, db, world):
    sessions = app.state.session_factory
    point_webhook(db, world, closed_port_url())
    moved = confirm_match(db, world)
    removed = confirm_match(db, world)
    t0 = utcnow()
    assert deliver(sessions, moved, now=t0, timeout=TIMEOUT) == "failed"
    assert deliver(sessions, removed, now=t0, timeout=TIMEOUT) == "failed"
    assert state(db, moved) == ("failed", 1, t0 + MINUTE, "refused")

    with Receiver() as receiver:
        point_webhook(db, world, receiver.url, "second-secret-9z8y7x")
        assert retry_due(sessions, now=t0 + MINUTE, timeout=TIMEOUT, limit=1) == {"sent": 1}
        assert state(db, moved) == ("sent", 2, None, None)
        assert_signed_deliveries(receiver.received, moved, ["second-secret-9z8y7x"])

        admin = db.get(User, world.keepers_admin)
        remove_webhook(db, organisation_id=world.keepers, actor=admin)
        assert retry_due(sessions, now=t0 + MINUTE, timeout=TIMEOUT) == {"no_webhook": 1}
        assert state(db, removed) == (None, 2, None, "refused")
        assert retry_due(sessions, now=t0 + timedelta(days=1), timeout=TIMEOUT) == {}
    assert len(receiver.received) == 1
    assert audit_events(db, "webhook_abandoned") == []


def test_a_webhook_removed_before_the_first_attempt_ends_the_delivery(app, db, world):
    with Receiver() as receiver:
        point_webhook(db, world, receiver.url)
        notification = confirm_match(db, world)
        point_webhook(db, world, None, None)
        assert deliver(app.state.session_factory, notification, timeout=TIMEOUT) == "no_webhook"
    assert state(db, notification) == (None, 1, None, None)
    assert receiver.received == []


# --- failure codes, the worker task, the migration ----------------------------------------------


def test_failure_codes_name_the_kind_of_failure_only():
    assert post_signed(closed_port_url(), secret=SECRET, body=b"{}", delivery_id=1, timeout=TIMEOUT) == "refused"
    assert post_signed("gopher://nowhere/", secret=SECRET, body=b"{}", delivery_id=1, timeout=TIMEOUT) == "bad_url"
    with Receiver([302, 410, "hang"]) as receiver:
        for expected in ("http_302", "http_410", "timeout", None):
            assert post_signed(receiver.url, secret=SECRET, body=b"{}", delivery_id=1, timeout=TIMEOUT) == expected


def test_the_worker_runs_the_retries_every_minute_on_the_search_queue(app, db, world, settings):
    celery = make_celery(settings.model_copy(update={"webhook_allow_loopback": True}))
    try:
        assert ROUTES[RETRY_WEBHOOKS] == SEARCH_QUEUE
        schedule = [entry for entry in celery.conf.beat_schedule.values() if entry["task"] == RETRY_WEBHOOKS]
        assert [entry["schedule"] for entry in schedule] == [60.0]
        with Receiver() as receiver:
            point_webhook(db, world, receiver.url)
            notification = confirm_match(db, world)
            confirmed_long_ago(db, notification)  # and the API process died before its first attempt
            assert celery.tasks[RETRY_WEBHOOKS]() == {"sent": 1}
        assert state(db, notification)[:2] == ("sent", 1)
        assert len(receiver.received) == 1
    finally:
        process_state(celery).runtime.close()


def test_the_migration_schedules_deliveries_that_failed_before_it(app, db, world, database_url):
    point_webhook(db, world, closed_port_url())
    never_retried, sent = confirm_match(db, world), confirm_match(db, world)
    for notification, status in ((never_retried, "failed"), (sent, "sent")):  # as deliveries ended before 0007
        db.get(Notification, notification).webhook_status = status
    db.commit()
    migrate_down_and_up(database_url, revision="0006", table="notifications", column="webhook_attempts")
    assert state(db, never_retried) == ("failed", 1, created_at(db, never_retried), None)
    assert state(db, sent) == ("sent", 0, None, None)
    with Receiver() as receiver:
        point_webhook(db, world, receiver.url)
        assert retry_due(app.state.session_factory, timeout=TIMEOUT) == {"sent": 1}
    assert_signed_deliveries(receiver.received, never_retried, [SECRET])
