"""Confirmed-match webhooks: a signed POST of ids only, sent after the review has committed.

An organisation may set `webhook_url` and `webhook_secret`. When a match on one of its
records is confirmed, `deliver` POSTs a small JSON body (event, ids, time: never a
photo, a name or a label) with two headers:

    X-Reunite-Timestamp: <unix seconds>
    X-Reunite-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body, keyed by the secret>

The receiver recomputes the HMAC over the timestamp and the raw body and compares in
constant time; signing the timestamp lets it refuse replays of old deliveries. The
review never waits for this: the route schedules `deliver` to run after its response,
with a short timeout and no redirects, and the result (`sent` or `failed`) goes to
`notification.webhook_status`. No database transaction is held while the request is
in flight, since on SQLite that would hold the only write lock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

import structlog
from sqlalchemy.orm import Session, sessionmaker

from service.db import transaction
from service.organisations.models import Organisation
from service.reviews.models import Candidate, Notification

TIMEOUT_SECONDS = 5.0
SIGNATURE_HEADER = "X-Reunite-Signature"
TIMESTAMP_HEADER = "X-Reunite-Timestamp"
SENT, FAILED = "sent", "failed"

log = structlog.get_logger("reunite.webhooks")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery: the signed body goes only to the address configured."""

    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The value of the signature header for `body` sent at `timestamp`."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def payload(notification: Notification, candidate: Candidate) -> bytes:
    """The JSON body: what happened and the ids to look it up with, nothing more."""
    return json.dumps({
        "event": notification.kind,
        "notification_id": notification.id,
        "organisation_id": notification.organisation_id,
        "candidate_id": notification.candidate_id,
        "record_id": candidate.record_id,
        "confirmed_at": notification.created_at.isoformat(),
    }, sort_keys=True, separators=(",", ":")).encode()


def deliver(factory: sessionmaker[Session], notification_id: int, *, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """Send the notification's webhook if its organisation has one; store and return sent/failed."""
    with transaction(factory) as session:
        target = _target(session, notification_id)
    if target is None:
        return None
    url, secret, body = target
    outcome = SENT if post_signed(url, secret=secret, body=body, timeout=timeout) else FAILED
    log.info("webhook_delivery", notification_id=notification_id, outcome=outcome)
    with transaction(factory) as session:
        notification = session.get(Notification, notification_id)
        if notification is not None:
            notification.webhook_status = outcome
    return outcome


def post_signed(url: str, *, secret: str, body: bytes, timeout: float) -> bool:
    """POST `body` signed with `secret`; True on a 2xx answer, False on anything else."""
    timestamp = int(time.time())
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "User-Agent": "reunite-webhook/1",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    })
    try:
        with _opener.open(request, timeout=timeout) as response:
            succeeded = 200 <= response.status < 300
            status = response.status
    except urllib.error.HTTPError as error:
        succeeded, status = False, error.code
    except (OSError, ValueError) as error:  # refused, unreachable, timed out, or not a usable URL
        log.warning("webhook_failed", reason=type(error).__name__)
        return False
    if not succeeded:
        log.warning("webhook_failed", status=status)
    return succeeded


def _target(session: Session, notification_id: int) -> tuple[str, str, bytes] | None:
    notification = session.get(Notification, notification_id)
    if notification is None:
        return None
    organisation = session.get(Organisation, notification.organisation_id)
    if organisation is None or not organisation.webhook_url or not organisation.webhook_secret:
        return None
    candidate = session.get(Candidate, notification.candidate_id)
    return organisation.webhook_url, organisation.webhook_secret, payload(notification, candidate)
