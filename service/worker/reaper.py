"""The reaper: no submission is lost when a worker dies or a broker message goes missing.

Tasks are acknowledged late, but a worker killed mid-task (or a message lost by a
broker without persistence) can still leave a row behind. Every minute the reaper:

- puts photos and cases stuck in `processing` longer than
  `processing_timeout_minutes` back to `queued` and sends them again (the worker
  that held them is presumed dead; if it is merely slow, its final write sees that
  the row is no longer its own and writes nothing);
- sends again rows still `queued` a minute after they were last sent (a lost message;
  a duplicate delivery is harmless, the claim lets only one through);
- gives up on rows that have been claimed `MAX_ATTEMPTS` times: they become `failed`
  with a sentence for the caseworker.

For a `queued` row, `claimed_at` holds when it was last sent by the reaper or given
back by a worker (a queued row has no claim, so the column is free), so a row waiting
in a long queue is re-sent once a minute, not on every pass. Only record photos are
dispatched here: a case photo is processed as part of its case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import and_, func, or_, update
from sqlalchemy.orm import Session, sessionmaker

from service.cases.models import Case, CaseStatus
from service.db import transaction, utcnow
from service.photos.models import Photo
from service.dispatch import Dispatcher

log = structlog.get_logger("reunite.worker.reaper")

MAX_ATTEMPTS = 3
LOST_MESSAGE_AFTER = timedelta(minutes=1)
GAVE_UP = (
    f"This photo could not be processed after {MAX_ATTEMPTS} attempts. Please send it again; "
    "the failure has been logged."
)


@dataclass
class ReapReport:
    photos_sent: list[int] = field(default_factory=list)
    cases_sent: list[int] = field(default_factory=list)
    photos_failed: list[int] = field(default_factory=list)
    cases_failed: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {name: len(ids) for name, ids in vars(self).items()}


def reap(
    sessions: sessionmaker[Session],
    *,
    dispatcher: Dispatcher,
    processing_timeout: timedelta,
    now: datetime | None = None,
) -> ReapReport:
    """Re-queue, re-send or fail abandoned rows; messages are sent after the commit."""
    now = now or utcnow()
    report = ReapReport()
    with transaction(sessions) as session:
        report.photos_failed, report.photos_sent = _reap_table(session, Photo, now, processing_timeout)
        report.cases_failed, report.cases_sent = _reap_table(session, Case, now, processing_timeout)
    for photo_id in report.photos_sent:
        dispatcher.record_photo(photo_id)
    for case_id in report.cases_sent:
        dispatcher.case(case_id)
    if any(report.counts().values()):
        log.info("reaped", **report.counts())
    return report


def _reap_table(session: Session, model, now: datetime, timeout: timedelta) -> tuple[list[int], list[int]]:
    stuck = and_(model.status == CaseStatus.PROCESSING, model.claimed_at < now - timeout)
    last_sent = func.coalesce(model.claimed_at, model.created_at)
    lost = and_(model.status == CaseStatus.QUEUED, last_sent < now - LOST_MESSAGE_AFTER)
    scope = [model.record_id.is_not(None)] if model is Photo else []
    # Failing first: the rows given up on are then no longer stuck or lost.
    failed = _ids(
        session,
        update(model)
        .where(*scope, or_(stuck, lost), model.attempts >= MAX_ATTEMPTS)
        .values(status=CaseStatus.FAILED, status_message=GAVE_UP, claimed_at=None)
        .returning(model.id),
    )
    requeued = _ids(
        session,
        update(model)
        .where(*scope, or_(stuck, lost))
        .values(status=CaseStatus.QUEUED, claimed_at=now)
        .returning(model.id),
    )
    return failed, requeued


def _ids(session: Session, statement) -> list[int]:
    rows = session.execute(statement.execution_options(synchronize_session=False))
    return sorted(row[0] for row in rows)
