"""Writing audit events: one `record_event` used by every action, in the caller's transaction.

The event is added to the caller's session and commits or rolls back with the
action it records, so an action can never happen without its event, nor an event
exist for an action that failed. Appends are serialised (an advisory lock on
PostgreSQL; SQLite transactions are already exclusive) so sequence numbers are
gapless and each event chains to the one before it. The action is an `AuditAction`
(service/audit/actions.py): any other code is refused, so every event written is
one the auditors' filters can find.

Checkpoints: every `audit_checkpoint_every`-th event, record_event also signs the
new head (`write_checkpoint`) in the same transaction. It learns the interval and key from
`session.info[CHECKPOINT_POLICY]`, which `enable_checkpoints` puts on a session
factory (create_app does it for the API's factory; any other process that writes
events, such as a worker, should do the same). A session without a policy takes no
periodic checkpoints, which loses no event: every export signs the head anyway.
The policy rides on the factory rather than in a global so that two apps in one
process (as in the tests) each keep their own key and interval.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from service.audit.actions import AuditAction
from service.audit.chain import GENESIS_HASH, canonical_json, checkpoint_message, event_hash, format_time
from service.audit.models import AuditCheckpoint, AuditEvent
from service.audit.signing import AuditSigner, load_signer
from service.db import utcnow
from service.settings import Settings

# Details hold ids, counts, codes and statuses: never a face, a vector or a name.
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9_.:@/+-]{0,80}$")
_APPEND_LOCK_KEY = 0x5245554E  # "REUN"
CHECKPOINT_POLICY = "reunite.audit.checkpoint_policy"


@dataclass(frozen=True)
class CheckpointPolicy:
    """Sign the head after every `every`-th event; `signer` loads the key when first needed."""

    every: int
    signer: Callable[[], AuditSigner]


def enable_checkpoints(factory: sessionmaker[Session], settings: Settings) -> None:
    """Make every session from `factory` take periodic checkpoints with the service's key."""
    key_file = settings.audit_key_file
    policy = CheckpointPolicy(every=settings.audit_checkpoint_every, signer=lambda: load_signer(key_file))
    factory.configure(info={**factory.kw.get("info", {}), CHECKPOINT_POLICY: policy})


class UnsafeAuditDetails(ValueError):
    """Details that could carry personal content were passed to record_event."""


class UnknownAuditAction(ValueError):
    """record_event was given a code that is not an AuditAction, which no auditor's filter could find."""


def record_event(
    session: Session,
    *,
    action: AuditAction,
    actor_id: int | None = None,
    organisation_id: int | None = None,
    target_type: str | None = None,
    target_id: int | str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain inside the session's current transaction."""
    action = _known(action)
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
        "action": action.value,
        "target_type": target_type,
        "target_id": None if target_id is None else str(target_id),
        "details": details,
    }
    event = AuditEvent(
        seq=seq,
        at=at,
        actor_id=actor_id,
        organisation_id=organisation_id,
        action=action.value,
        target_type=target_type,
        target_id=fields["target_id"],
        details=canonical_json(details),
        prev_hash=prev_hash,
        hash=event_hash(prev_hash, fields),
    )
    session.add(event)
    session.flush()
    _checkpoint_if_due(session, seq)
    return event


def write_checkpoint(session: Session, *, signer: AuditSigner) -> AuditCheckpoint | None:
    """Sign the current head of the chain and store the checkpoint (None while the chain is empty)."""
    _lock_chain(session)  # the head cannot move while it is being signed
    head = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).first()
    if head is None:
        return None
    checkpoint = AuditCheckpoint(
        seq=head.seq,
        head_hash=head.hash,
        signed_at=utcnow(),
        key_id=signer.key_id,
        signature=signer.sign(checkpoint_message(head.seq, head.hash)),
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


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


def _checkpoint_if_due(session: Session, seq: int) -> None:
    policy: CheckpointPolicy | None = session.info.get(CHECKPOINT_POLICY)
    if policy is not None and seq % policy.every == 0:
        write_checkpoint(session, signer=policy.signer())


def _lock_chain(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY})


def _known(action: AuditAction | str) -> AuditAction:
    try:
        return AuditAction(action)
    except ValueError:
        raise UnknownAuditAction(f"{action!r} is not an AuditAction: add it to service/audit/actions.py") from None


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
