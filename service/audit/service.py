"""Writing audit events: one `record_event` used by every action, in the caller's transaction.

The event is added to the caller's session and commits or rolls back with the
action it records, so an action can never happen without its event, nor an event
exist for an action that failed. Appends are serialised (an advisory lock on
PostgreSQL; SQLite transactions are already exclusive) so sequence numbers are
gapless and each event chains to the one before it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from service.audit.chain import GENESIS_HASH, canonical_json, event_hash, format_time
from service.audit.models import AuditEvent
from service.db import utcnow

# Details hold ids, counts, codes and statuses: never a face, a vector or a name.
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9_.:@/+-]{0,80}$")
_APPEND_LOCK_KEY = 0x5245554E  # "REUN"


class UnsafeAuditDetails(ValueError):
    """Details that could carry personal content were passed to record_event."""


def record_event(
    session: Session,
    *,
    action: str,
    actor_id: int | None = None,
    organisation_id: int | None = None,
    target_type: str | None = None,
    target_id: int | str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain inside the session's current transaction."""
    details = details or {}
    _check_details(details)
    _lock_chain(session)
    head = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).first()
    seq = head.seq + 1 if head else 1
    prev_hash = head.hash if head else GENESIS_HASH
    at = utcnow()
    fields = {
        "seq": seq,
        "at": format_time(at),
        "actor_id": actor_id,
        "organisation_id": organisation_id,
        "action": action,
        "target_type": target_type,
        "target_id": None if target_id is None else str(target_id),
        "details": details,
    }
    event = AuditEvent(
        seq=seq,
        at=at,
        actor_id=actor_id,
        organisation_id=organisation_id,
        action=action,
        target_type=target_type,
        target_id=fields["target_id"],
        details=canonical_json(details),
        prev_hash=prev_hash,
        hash=event_hash(prev_hash, fields),
    )
    session.add(event)
    session.flush()
    return event


def event_fields(event: AuditEvent) -> dict[str, Any]:
    """The hashed fields of a stored event, as the chain and exports see them."""
    return {
        "seq": event.seq,
        "at": format_time(event.at),
        "actor_id": event.actor_id,
        "organisation_id": event.organisation_id,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "details": json.loads(event.details),
    }


def _lock_chain(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY})


def _check_details(details: dict[str, Any]) -> None:
    for key, value in details.items():
        if not _SAFE_TEXT.match(key):
            raise UnsafeAuditDetails(f"audit detail key {key!r} is not a plain identifier")
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str) and not _SAFE_TEXT.match(item):
                raise UnsafeAuditDetails(f"audit detail {key!r} must be an id, a count or a code")
            if not isinstance(item, (str, int, float, bool, type(None))):
                raise UnsafeAuditDetails(f"audit detail {key!r} has an unsupported type")
