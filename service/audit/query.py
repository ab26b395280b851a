"""Reading the audit trail: filters, one page of events, and batches for exports.

Exports read in keyset batches (`seq > last ORDER BY seq LIMIT n`), each in its
own short transaction, rather than through one cursor held open for the whole
download: a slow client must not pin a database connection and transaction (on
SQLite, where the service's transactions start IMMEDIATE, it would hold the write
lock and stall every sign-in). Events never change and an export stops at a fixed
last seq, so the batches together are exactly the range as it was committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from service.audit.actions import AuditAction
from service.audit.models import AuditCheckpoint, AuditEvent

EXPORT_BATCH = 500


@dataclass(frozen=True)
class EventFilters:
    """Which events to read; every field is optional and they combine with AND."""

    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    actor: int | None = None
    organisation: int | None = None
    action: AuditAction | None = None

    def used(self) -> list[str]:
        """The names of the filters in use: what an audit event may say about them."""
        return [field.name for field in fields(self) if getattr(self, field.name) is not None]


def filtered(statement: Select, filters: EventFilters) -> Select:
    if filters.since is not None:
        statement = statement.where(AuditEvent.at >= filters.since)
    if filters.until is not None:
        statement = statement.where(AuditEvent.at < filters.until)
    if filters.actor is not None:
        statement = statement.where(AuditEvent.actor_id == filters.actor)
    if filters.organisation is not None:
        statement = statement.where(AuditEvent.organisation_id == filters.organisation)
    if filters.action is not None:
        statement = statement.where(AuditEvent.action == filters.action)
    return statement


def list_events(session: Session, *, filters: EventFilters, after_seq: int = 0, limit: int = 100) -> list[AuditEvent]:
    """One page of matching events in seq order, after the cursor `after_seq`."""
    statement = filtered(select(AuditEvent), filters).where(AuditEvent.seq > after_seq)
    return list(session.scalars(statement.order_by(AuditEvent.seq).limit(limit)))


def first_seq_since(session: Session, since: datetime | None) -> int:
    """The lowest seq recorded at or after `since` (1 without a time)."""
    if since is None:
        return 1
    return session.scalar(select(func.min(AuditEvent.seq)).where(AuditEvent.at >= since)) or 1


def event_batches(
    factory: sessionmaker[Session], *, filters: EventFilters, first_seq: int, last_seq: int
) -> Iterator[list[AuditEvent]]:
    """Matching events with first_seq <= seq <= last_seq, in seq order, a batch at a time."""
    statement = filtered(select(AuditEvent), filters).order_by(AuditEvent.seq).limit(EXPORT_BATCH)
    after = first_seq - 1
    while True:
        batch = _read(factory, statement.where(AuditEvent.seq > after, AuditEvent.seq <= last_seq))
        if not batch:
            return
        yield batch
        after = batch[-1].seq


def checkpoint_batches(
    factory: sessionmaker[Session], *, key_id: str, first_seq: int, last_seq: int
) -> Iterator[list[AuditCheckpoint]]:
    """Checkpoints signed by `key_id` over a seq in the range, in the order they were taken."""
    statement = (
        select(AuditCheckpoint)
        .where(AuditCheckpoint.key_id == key_id, AuditCheckpoint.seq.between(first_seq, last_seq))
        .order_by(AuditCheckpoint.id)
        .limit(EXPORT_BATCH)
    )
    after = 0
    while True:
        batch = _read(factory, statement.where(AuditCheckpoint.id > after))
        if not batch:
            return
        yield batch
        after = batch[-1].id


def _read(factory: sessionmaker[Session], statement: Select) -> list:
    """Run one read in its own short transaction, returning detached rows."""
    with factory() as session:  # closing ends the transaction and detaches the rows
        return list(session.scalars(statement))
