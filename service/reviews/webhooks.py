"""Confirmed-match webhooks: a signed POST of ids only, sent after the review has committed, retried.

An organisation may set `webhook_url` and `webhook_secret`. When a match on one of its
records is confirmed, `deliver` POSTs a small JSON body (event, ids, time: never a
photo, a name or a label) with three headers:

    X-Reunite-Delivery:  <notification id>
    X-Reunite-Timestamp: <unix seconds>
    X-Reunite-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body, keyed by the secret>

The receiver recomputes the HMAC over the timestamp and the raw body and compares in
constant time; signing the timestamp lets it refuse replays of old deliveries. The
review never waits for this: the route schedules `deliver` to run after its response,
with a short timeout and no redirects. Every attempt resolves the host, checks every
address and connects only to those it checked (`webhook_address`: no loopback,
private, link-local, ... address, however spelt or resolved); a refused address is
the failure `forbidden_address`, retried like any other.

Nothing is lost: a failed attempt (no answer, a timeout, a redirect or any answer
other than 2xx) is tried again by `retry_due`, which a periodic worker task runs
every minute, after 1 minute, 5, 30, 2 hours and 12 hours. The sixth failure is
final (`failed` with no next attempt, and a `webhook_abandoned` audit event), as is
a sixth attempt whose sender died before recording its outcome. A delivery still
`pending` `STALE_PENDING_AFTER` after the confirmation (the process died before its
first attempt) is taken up the same way.

Receivers must de-duplicate, since an attempt whose answer was lost is made again:
every attempt for one notification carries the same delivery id (the header, equal
to the body's `notification_id`) and the same body, with a fresh timestamp and
signature. The body changes only if the record's consent is withdrawn in the
meantime (`record_id` becomes null, as everywhere once a record is erased).

Each attempt first claims the notification with a conditional UPDATE that counts the
attempt and leases the notification for `LEASE` (`webhook_next_attempt_at`), so two
workers never send the same attempt; the outcome is written only by the claim's
holder. No database transaction is held while the request is in flight, since on
SQLite that would hold the only write lock. Every attempt reads the organisation's
current URL and secret; a webhook removed in the meantime ends the delivery quietly
(status None, as for an organisation without one). `webhook_last_error` keeps a short
code (`timeout`, `refused`, `http_503`, ...), never what the receiver answered.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.audit.actions import AuditAction
from service.audit.service import record_event
from service.db import rows_changed, transaction, utcnow
from service.organisations.models import Organisation
from vetting.organisations import in_good_standing
from service.reviews.models import Candidate, Notification
from service.reviews.webhook_address import FORBIDDEN_ADDRESS, ForbiddenAddress, post_pinned

TIMEOUT_SECONDS = 5.0
DELIVERY_HEADER = "X-Reunite-Delivery"
SIGNATURE_HEADER = "X-Reunite-Signature"
TIMESTAMP_HEADER = "X-Reunite-Timestamp"
PENDING, SENT, FAILED = "pending", "sent", "failed"  # stored statuses; None means no webhook
NOT_IN_GOOD_STANDING = "organisation_not_approved"  # failure code: nothing is sent while suspended
ABANDONED, NO_WEBHOOK = "abandoned", "no_webhook"  # further outcomes of an attempt

# The wait after the 1st, 2nd, ... failed attempt; the attempt after the last wait is the last.
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=12))
MAX_ATTEMPTS = len(BACKOFF) + 1
LEASE = timedelta(minutes=5)  # an attempt unfinished after this long is presumed dead and retried
STALE_PENDING_AFTER = timedelta(minutes=5)  # a first attempt not made by then is made by the retries
RETRY_BATCH = 50
# A run stops starting attempts after this long (the rest wait for the next run), so that
# receivers that time out do not hold up the searches that share the worker's queue.
RETRY_RUN_SECONDS = 30.0

log = structlog.get_logger("reunite.webhooks")


@dataclass(frozen=True)
class _Claim:
    """One attempt this process holds: `attempt` is the token its outcome is written with."""

    notification_id: int
    organisation_id: int
    candidate_id: int
    attempt: int
    url: str
    secret: str
    body: bytes
    organisation_in_good_standing: bool  # a suspended, revoked or expired organisation is sent nothing


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The value of the signature header for `body` sent at `timestamp`."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def payload(notification: Notification, candidate: Candidate | None) -> bytes:
    """The JSON body: what happened and the ids to look it up with, nothing more."""
    return json.dumps(
        {
            "event": notification.kind,
            "notification_id": notification.id,
            "organisation_id": notification.organisation_id,
            "candidate_id": notification.candidate_id,
            "record_id": candidate.record_id if candidate is not None else None,
            "confirmed_at": notification.created_at.isoformat(),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def deliver(
    factory: sessionmaker[Session],
    notification_id: int,
    *,
    timeout: float = TIMEOUT_SECONDS,
    now: datetime | None = None,
    allow_loopback: bool = False,
) -> str | None:
    """The first attempt, right after the confirmation; returns its outcome (None: not this call's to make).

    `allow_loopback` is the setting `webhook_allow_loopback` (tests and local development only)."""
    clock = _clock(now)
    claim = _claim(factory, notification_id, due=_never_attempted(), now=clock())
    return _send(factory, claim, timeout=timeout, clock=clock, allow_loopback=allow_loopback)


def retry_due(
    factory: sessionmaker[Session],
    *,
    now: datetime | None = None,
    timeout: float = TIMEOUT_SECONDS,
    limit: int = RETRY_BATCH,
    run_seconds: float = RETRY_RUN_SECONDS,
    allow_loopback: bool = False,
) -> dict[str, int]:
    """Make the attempts that are due (see the module docstring); returns the count of each outcome."""
    clock, stop_at = _clock(now), time.monotonic() + run_seconds
    outcomes: Counter[str] = Counter()
    with transaction(factory) as session:
        outcomes[ABANDONED] += _abandon_exhausted(session, now=clock())
        due_ids = session.scalars(
            select(Notification.id).where(_due(clock())).order_by(Notification.id).limit(limit)
        ).all()
    for notification_id in due_ids:
        if time.monotonic() > stop_at:
            outcomes["deferred"] += 1
            continue
        claim = _claim(factory, notification_id, due=_due(clock()), now=clock())
        outcome = _send(factory, claim, timeout=timeout, clock=clock, allow_loopback=allow_loopback)
        outcomes[outcome or "skipped"] += 1
    outcomes = +outcomes  # without the zero counts
    if outcomes:
        log.info("webhook_retries", due=len(due_ids), **outcomes)
    return dict(outcomes)


def post_signed(
    url: str, *, secret: str, body: bytes, delivery_id: int, timeout: float, allow_loopback: bool = False
) -> str | None:
    """POST `body` signed with `secret` to the URL's checked addresses; None on a 2xx answer, else a
    short failure code (a redirect is one: the signed body goes only to the address configured)."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "reunite-webhook/1",
        DELIVERY_HEADER: str(delivery_id),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    try:
        status = post_pinned(url, body=body, headers=headers, timeout=timeout, allow_loopback=allow_loopback)
    except (ForbiddenAddress, OSError, ValueError, http.client.HTTPException) as error:
        return failure_code(error)
    return None if 200 <= status < 300 else f"http_{status}"


def failure_code(error: BaseException) -> str:
    """A short code for why a request failed, from its type alone (never its message)."""
    for kind, code in (
        (ForbiddenAddress, FORBIDDEN_ADDRESS),
        (TimeoutError, "timeout"),
        (ConnectionRefusedError, "refused"),
        (socket.gaierror, "dns"),
        (ssl.SSLError, "tls"),
        (ConnectionError, "connection"),
        (http.client.HTTPException, "bad_response"),
        (ValueError, "bad_url"),
    ):
        if isinstance(error, kind):
            return code
    return "unreachable"


# --- one attempt: claim, send without a transaction, record the outcome ------------------------


def _clock(now: datetime | None) -> Callable[[], datetime]:
    return (lambda: now) if now is not None else utcnow


def _never_attempted():
    return and_(Notification.webhook_status == PENDING, Notification.webhook_attempts == 0)


def _due(now: datetime):
    """A failed attempt whose wait is over, an attempt whose lease ran out, or a stale first attempt."""
    scheduled = and_(Notification.webhook_status.in_((PENDING, FAILED)), Notification.webhook_next_attempt_at <= now)
    stale = and_(
        Notification.webhook_status == PENDING,
        Notification.webhook_next_attempt_at.is_(None),
        Notification.created_at <= now - STALE_PENDING_AFTER,
    )
    return and_(or_(scheduled, stale), Notification.webhook_attempts < MAX_ATTEMPTS)


def _abandon_exhausted(session: Session, *, now: datetime) -> int:
    """Give up on deliveries whose last attempt's lease ran out with no outcome (its sender died)."""
    rows = session.execute(
        update(Notification)
        .where(
            Notification.webhook_status.in_((PENDING, FAILED)),
            Notification.webhook_next_attempt_at <= now,
            Notification.webhook_attempts >= MAX_ATTEMPTS,
        )
        .values(webhook_status=FAILED, webhook_next_attempt_at=None)
        .returning(
            Notification.id, Notification.organisation_id, Notification.candidate_id, Notification.webhook_attempts
        )
        .execution_options(synchronize_session=False)
    ).all()
    for notification_id, organisation_id, candidate_id, attempts in sorted(rows):
        _audit_abandoned(
            session,
            notification_id=notification_id,
            organisation_id=organisation_id,
            candidate_id=candidate_id,
            attempts=attempts,
        )
    return len(rows)


def _audit_abandoned(
    session: Session, *, notification_id: int, organisation_id: int, candidate_id: int, attempts: int
) -> None:
    record_event(
        session,
        action=AuditAction.WEBHOOK_ABANDONED,
        organisation_id=organisation_id,
        target_type="notification",
        target_id=notification_id,
        details={"notification_id": notification_id, "candidate_id": candidate_id, "attempts": attempts},
    )


def _claim(factory: sessionmaker[Session], notification_id: int, *, due, now: datetime) -> _Claim | str | None:
    """Count and lease the attempt if it is due and nobody else took it; NO_WEBHOOK ends the delivery."""
    with transaction(factory) as session:
        attempt = session.execute(
            update(Notification)
            .where(Notification.id == notification_id, due)
            .values(webhook_attempts=Notification.webhook_attempts + 1, webhook_next_attempt_at=now + LEASE)
            .returning(Notification.webhook_attempts)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        if attempt is None:
            return None
        notification = session.get_one(Notification, notification_id, populate_existing=True)
        organisation = session.get(Organisation, notification.organisation_id)
        if organisation is None or not organisation.webhook_url or not organisation.webhook_secret:
            notification.webhook_status = notification.webhook_next_attempt_at = None
            return NO_WEBHOOK
        body = payload(notification, session.get(Candidate, notification.candidate_id))
        return _Claim(
            notification_id=notification_id,
            organisation_id=notification.organisation_id,
            candidate_id=notification.candidate_id,
            attempt=attempt,
            url=organisation.webhook_url,
            secret=organisation.webhook_secret,
            body=body,
            organisation_in_good_standing=_in_good_standing(organisation, now),
        )


def _in_good_standing(organisation: Organisation, now: datetime) -> bool:
    return in_good_standing(organisation.status, organisation.vetting_expires_at, now)


def _send(
    factory: sessionmaker[Session],
    claim: _Claim | str | None,
    *,
    timeout: float,
    clock: Callable[[], datetime],
    allow_loopback: bool,
) -> str | None:
    if not isinstance(claim, _Claim):
        return claim
    if claim.organisation_in_good_standing:
        failure = post_signed(
            claim.url,
            secret=claim.secret,
            body=claim.body,
            delivery_id=claim.notification_id,
            timeout=timeout,
            allow_loopback=allow_loopback,
        )
    else:  # retried on the usual schedule: a reinstated organisation still gets it
        failure = NOT_IN_GOOD_STANDING
    outcome = _record_outcome(factory, claim, failure, now=clock())
    log.info(
        "webhook_attempt",
        notification_id=claim.notification_id,
        attempt=claim.attempt,
        outcome=outcome or "claim_lost",
        reason=failure,
    )
    return outcome


def _record_outcome(factory: sessionmaker[Session], claim: _Claim, failure: str | None, *, now: datetime) -> str | None:
    """Sent, failed with a next attempt, or abandoned; None if the lease ran out and another attempt began."""
    if failure is None:
        outcome, status, next_attempt_at = SENT, SENT, None
    elif claim.attempt < MAX_ATTEMPTS:
        outcome, status, next_attempt_at = FAILED, FAILED, now + BACKOFF[claim.attempt - 1]
    else:
        outcome, status, next_attempt_at = ABANDONED, FAILED, None
    with transaction(factory) as session:
        written = rows_changed(
            session.execute(
                update(Notification)
                .where(
                    Notification.id == claim.notification_id,
                    Notification.webhook_attempts == claim.attempt,
                    Notification.webhook_status.in_((PENDING, FAILED)),
                )
                .values(webhook_status=status, webhook_next_attempt_at=next_attempt_at, webhook_last_error=failure)
                .execution_options(synchronize_session=False)
            )
        )
        if not written:
            return None
        if outcome == ABANDONED:
            _audit_abandoned(
                session,
                notification_id=claim.notification_id,
                organisation_id=claim.organisation_id,
                candidate_id=claim.candidate_id,
                attempts=claim.attempt,
            )
    return outcome
