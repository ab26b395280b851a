"""Appending to the `IndexChange` log: the only way index replicas learn of additions and removals.

Every replica applies the rows with `seq` greater than the last one it applied. That
is only safe if rows become visible in `seq` order. On PostgreSQL a sequence value is
handed out when the row is inserted, not when its transaction commits, so without
care a transaction could commit seq 11 while another still holds seq 10 uncommitted;
a replica reading at that moment would move past 10 and never apply it (a withdrawal
that would never leave that replica). `append_index_change` therefore takes a
transaction-scoped advisory lock before inserting: appends are serialised, each holds
the lock until its transaction ends, so seq order is commit order. SQLite needs no
lock: the service opens every transaction with BEGIN IMMEDIATE, which already admits
one writer at a time.

Readers (`read_lock`) take the same key in shared mode before reading the log, which
makes a search wait for an enrolment or withdrawal that is committing at that moment
rather than race it (two-way matching relies on this; see service.worker.pipeline).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from service.photos.models import IndexChange

# A different key from the audit chain's, so index appends never wait on audit events.
INDEX_LOG_LOCK_KEY = 0x52555849  # "RUXI"

Op = Literal["add", "remove"]


def append_index_change(session: Session, *, op: Op, embedding_id: int, model_id: str) -> IndexChange:
    """Add one change to the log in the caller's transaction (not committed)."""
    if op not in ("add", "remove"):
        raise ValueError(f"op must be 'add' or 'remove', got {op!r}")
    lock_for_append(session)
    change = IndexChange(op=op, embedding_id=embedding_id, model_id=model_id)
    session.add(change)
    session.flush()
    return change


def lock_for_append(session: Session) -> None:
    """Hold the append lock until the caller's transaction ends (PostgreSQL only)."""
    if _is_postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": INDEX_LOG_LOCK_KEY})


def read_lock(session: Session) -> None:
    """Wait for appends in flight to commit before reading the log (PostgreSQL only)."""
    if _is_postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": INDEX_LOG_LOCK_KEY})


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
