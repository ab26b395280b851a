"""The daily maintenance task: expiries, retention purges, index snapshots, broker tidying.

Each job commits its own work (the domain functions do) and runs even if an earlier
one failed, so a problem with, say, one organisation's expiry does not keep case
photos past their retention date; failures are logged and reported together at the end.
- `service.organisations.service.expire_due_organisations`: vetting past its date.
- `service.retention.expire_consents`: records whose consent expired are erased.
- `service.retention.purge_cases`: case photos and probe faces past retention are erased.
- `service.auth.service.prune_login_attempts`: sign-in, link and application attempts older
  than any limit counts (a day by default) are deleted: each holds an email and an address.
- index snapshots: the replica catches up and writes `<data_dir>/index/<model>.faiss`, so
  a worker that starts tomorrow replays one day of changes, not the whole log.
- the embedded (filesystem) broker keeps each delivered message in `processed/` (a
  rename there is what makes a delivery atomic between processes); files older than a
  day are deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth.service import prune_login_attempts
from service.db import utcnow
from service.organisations.service import expire_due_organisations
from service.photos.models import IndexChange
from service.retention import expire_consents, purge_cases
from service.settings import Settings
from service.worker.celery_app import broker_folders
from service.worker.runtime import WorkerRuntime

log = structlog.get_logger("reunite.worker.maintenance")

PROCESSED_MESSAGES_KEPT_SECONDS = 24 * 3600


class MaintenanceFailed(RuntimeError):
    """One or more maintenance jobs failed (the others still ran)."""


def run_maintenance(runtime: WorkerRuntime, *, now: datetime | None = None) -> dict[str, int]:
    """Run every job; counts of what each did. Raises MaintenanceFailed after all ran if any failed."""
    now = now or utcnow()
    vault = runtime.vault
    jobs: dict[str, Callable[[Session], int]] = {
        "organisations_expired": lambda session: len(expire_due_organisations(session, now=now)),
        "consents_expired": lambda session: len(expire_consents(session, vault=vault, now=now)),
        "cases_purged": lambda session: len(purge_cases(session, vault=vault, now=now)),
        "login_attempts_pruned": lambda session: prune_login_attempts(session, settings=runtime.settings, now=now),
        "index_snapshots": lambda session: snapshot_indexes(runtime, session),
    }
    done: dict[str, int] = {}
    failed = []
    for name, job in jobs.items():
        session = runtime.sessions()
        try:
            done[name] = job(session)
        except Exception as error:
            session.rollback()
            failed.append(name)
            log.error("maintenance_job_failed", job=name, error=type(error).__name__)
        finally:
            session.close()
    done["broker_files_pruned"] = prune_processed_messages(runtime.settings)
    log.info("maintenance", **done)
    if failed:
        raise MaintenanceFailed(f"maintenance jobs failed: {', '.join(failed)}")
    return done


def snapshot_indexes(runtime: WorkerRuntime, session: Session) -> int:
    """Catch every model's replica up and save its snapshot; how many were written."""
    model_ids = session.scalars(select(IndexChange.model_id).distinct()).all()
    session.rollback()
    for model_id in model_ids:
        runtime.replica.catch_up(session, model_id)
        runtime.replica.save_snapshot(model_id)
    return len(model_ids)


def prune_processed_messages(settings: Settings, *, older_than: float = PROCESSED_MESSAGES_KEPT_SECONDS) -> int:
    """Delete delivered messages of the filesystem broker older than `older_than` seconds."""
    folders = broker_folders(settings)
    if folders is None or not folders["processed_folder"].is_dir():
        return 0
    cutoff = time.time() - older_than
    pruned = 0
    for path in folders["processed_folder"].iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                pruned += 1
        except FileNotFoundError:  # another worker pruned it first
            continue
    return pruned
