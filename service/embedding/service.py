"""The active embedding model, re-embedding jobs and the switch-over between models.

Every search and every two-way match compares embeddings of the active model only
(`active_model`); embeddings of other models are kept beside them, never mixed. A
better model is adopted without downtime by a re-embedding job:

1. `start_reembed` (the `reunite match reembed --model ID` command) records a job for
   a registered model other than the active one, refusing while another job is in
   progress, with an audit event.
2. While the job is in progress, workers embed every new photo with the active model
   and with the target (`models_to_embed`), so nothing uploaded meanwhile is missing
   afterwards. The job's batches (service.worker.reembed) embed the stored
   originals of every searchable record photo and open case photo that has no
   target embedding yet; a photo already done is skipped, which makes batches
   resumable and a repeated one harmless.
3. When no photo is left, `finish_if_done` switches the active model in one
   transaction, with an audit event. Searches before that commit use the old model,
   searches after it the new one, whose index has been built all along from the
   `IndexChange` adds the job wrote. A photo that could not be embedded fails the job
   instead: the active model is never switched to a gallery with holes in it.

Locking (PostgreSQL; SQLite's one writer at a time gives the same order): the worker
that writes a new photo's embeddings reads the active model under a shared advisory
lock (`active_model_for_write`) and starts again if its embeddings do not include it;
the switch takes the lock exclusively before it counts the photos left. So either
the switch sees that photo (and embeds it in another batch first) or the worker sees
the new model: a photo whose worker read the model before the job began cannot slip
past the switch-over.

Batches are claimed like photos are (conditional UPDATE; `batches` is the claim's
token), so two deliveries of the same message never work at once; a claim older than
the lease is presumed dead and can be taken over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, exists, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from matching.calibration import DEFAULT_REVIEW_THRESHOLD
from matching.embedders import ModelNotInstalled, UnknownEmbedder, available_embedders, default_embedder, get_embedder
from service.audit.actions import AuditAction
from service.audit.service import record_event
from service.auth.models import User, UserStatus
from service.calibration.service import active_calibration
from service.cases.models import Case, CaseStatus
from service.embedding.models import ACTIVE_ROW_ID, ActiveEmbeddingModel, ReembedFailure, ReembedJob
from service.photos.models import Embedding, Photo, PhotoStatus
from service.records.gallery import consent_valid
from service.records.models import Consent, Record
from service.refusal import Refusal
from vetting.permissions import Action, allowed

IN_PROGRESS = ("queued", "running")
OPEN_CASE_STATUSES = (CaseStatus.PROCESSING, CaseStatus.SEARCHED)
# A different key from the audit chain's and the index log's.
MODEL_STATE_LOCK_KEY = 0x5255454D  # "RUEM"

# Outcomes of a batch's end.
MORE = "more"  # photos remain: send the next batch
COMPLETE = "complete"  # switched over
FAILED = "failed"  # some photos could not be embedded; nothing switched
SUPERSEDED = "superseded"  # the job or the claim stopped being ours

FAILED_MESSAGE = (
    "{count} photo(s) could not be embedded with the new model, so the active model was not "
    "changed. Run the re-embedding again to retry them; the photos already done are kept."
)
CANCELLED_MESSAGE = "Cancelled by an operator; the active model was not changed."


class ReembedRefused(Refusal):
    """A re-embedding cannot be started or changed; the message says why, `code` (the rule) which check."""

    def __init__(self, message: str, code: str):
        super().__init__(422, message, rule=code)

    @property
    def code(self) -> str:
        return self.rule or ""


@dataclass(frozen=True)
class BatchClaim:
    job_id: int
    token: int  # the job's `batches` after our claim
    target_model_id: str


@dataclass(frozen=True)
class PhotoToEmbed:
    id: int
    storage_key: str | None
    wrapped_key: bytes | None
    record_id: int | None
    case_id: int | None


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    failed: int

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed


# --- the active model ---------------------------------------------------------------------------


def active_model(session: Session) -> tuple[str, str]:
    """(model id, version) every search uses: the stored one, else the default model."""
    row = session.execute(
        select(ActiveEmbeddingModel.model_id, ActiveEmbeddingModel.model_version).where(
            ActiveEmbeddingModel.id == ACTIVE_ROW_ID
        )
    ).first()
    if row is None:
        embedder = default_embedder()
        return embedder.id, embedder.version
    return row.model_id, row.model_version


def models_to_embed(session: Session) -> tuple[str, ...]:
    """What a new photo is embedded with: the active model, then a re-embedding's target if one is in progress."""
    active = active_model(session)[0]
    target = session.scalar(
        select(ReembedJob.target_model_id)
        .where(ReembedJob.status.in_(IN_PROGRESS))
        .order_by(ReembedJob.id.desc())
        .limit(1)
    )
    return (active,) if target in (None, active) else (active, target)


def active_model_for_write(session: Session) -> str:
    """The active model id, read under the shared lock the switch-over waits for (held until commit)."""
    lock_model_state(session, exclusive=False)
    return active_model(session)[0]


def lock_model_state(session: Session, *, exclusive: bool) -> None:
    """Transaction-scoped advisory lock on the active model (PostgreSQL; SQLite needs none)."""
    if session.get_bind().dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        session.execute(text(f"SELECT {function}(:key)"), {"key": MODEL_STATE_LOCK_KEY})


# --- jobs -------------------------------------------------------------------------------------


def start_reembed(session: Session, *, target_model_id: str, actor: User, now: datetime) -> ReembedJob:
    """Record a re-embedding job to `target_model_id` (not committed; send its first batch after the commit)."""
    _check_operator(actor)
    try:
        embedder = get_embedder(target_model_id)
        version = embedder.version  # checks the weight files of a model that loads its own
    except ModelNotInstalled as error:
        raise ReembedRefused(str(error), "model_not_installed") from None
    except UnknownEmbedder:
        raise ReembedRefused(
            f"There is no embedding model {target_model_id!r}. Available models: {', '.join(available_embedders())}.",
            "unknown_model",
        ) from None
    if (
        embedder.provisional_threshold != DEFAULT_REVIEW_THRESHOLD
        and active_calibration(session, target_model_id) is None
    ):
        # The service's provisional threshold is dlib's; on another model's scale it would
        # decide what reviewers see without any measurement behind it.
        raise ReembedRefused(
            f"{target_model_id} has no calibration, and its distances are on another scale than the provisional "
            f"review threshold ({DEFAULT_REVIEW_THRESHOLD}). Calibrate it first on labelled photos: "
            f"reunite calibrate MANIFEST --model {target_model_id}",
            "not_calibrated",
        )
    lock_model_state(session, exclusive=True)  # one start at a time, and never across a switch-over
    active = active_model(session)[0]
    if target_model_id == active:
        raise ReembedRefused(
            f"{target_model_id} is already the active model; there is nothing to re-embed.", "already_active"
        )
    running = current_job(session)
    if running is not None:
        raise ReembedRefused(
            f"Re-embedding job {running.id} (to {running.target_model_id}) is {running.status}; "
            "wait for it to finish or cancel it first.",
            "job_in_progress",
        )
    job = ReembedJob(
        target_model_id=target_model_id,
        target_model_version=version,
        source_model_id=active,
        status="queued",
        created_at=now,
        heartbeat_at=now,
        started_by_id=actor.id,
    )
    session.add(job)
    session.flush()
    _store_progress(job, progress(session, job=job, now=now))
    record_event(
        session,
        action=AuditAction.REEMBED_STARTED,
        actor_id=actor.id,
        target_type="reembed_job",
        target_id=job.id,
        details={"target_model": target_model_id, "source_model": active, "photos": job.total},
    )
    return job


def cancel_reembed(session: Session, *, actor: User, now: datetime) -> ReembedJob:
    """Stop the job in progress (not committed). Embeddings it wrote are kept: a later job skips them."""
    _check_operator(actor)
    job = current_job(session, lock=True)
    if job is None:
        raise ReembedRefused("No re-embedding job is in progress.", "no_job")
    _end_job(job, "cancelled", CANCELLED_MESSAGE, now)
    job.finished_by_id = actor.id
    record_event(
        session,
        action=AuditAction.REEMBED_CANCELLED,
        actor_id=actor.id,
        target_type="reembed_job",
        target_id=job.id,
        details={"target_model": job.target_model_id, "done": job.done, "total": job.total},
    )
    return job


def current_job(session: Session, *, lock: bool = False) -> ReembedJob | None:
    """The job in progress (queued or running), if any."""
    query = select(ReembedJob).where(ReembedJob.status.in_(IN_PROGRESS)).order_by(ReembedJob.id.desc()).limit(1)
    if lock:
        query = query.with_for_update()
    return session.scalars(query.execution_options(populate_existing=True)).first()


def latest_job(session: Session) -> ReembedJob | None:
    return session.scalars(
        select(ReembedJob).order_by(ReembedJob.id.desc()).limit(1).execution_options(populate_existing=True)
    ).first()


def failure_reasons(session: Session, *, job_id: int) -> dict[str, int]:
    """How many photos failed for each reason (codes only)."""
    rows = session.execute(
        select(ReembedFailure.reason, func.count())
        .where(ReembedFailure.job_id == job_id)
        .group_by(ReembedFailure.reason)
    ).all()
    return {reason: count for reason, count in rows}


def stalled_jobs(session: Session, *, now: datetime, stalled_after: timedelta) -> list[int]:
    """Jobs in progress with no batch claimed or released for `stalled_after` (their message was lost).

    Their heartbeat is moved to now, so each is re-sent at most once per `stalled_after`;
    send their batch again after the commit (a duplicate message is harmless).
    """
    ids = list(
        session.scalars(
            select(ReembedJob.id)
            .where(ReembedJob.status.in_(IN_PROGRESS), ReembedJob.heartbeat_at < now - stalled_after)
            .with_for_update()
        ).all()
    )
    if ids:
        session.execute(
            update(ReembedJob)
            .where(ReembedJob.id.in_(ids))
            .values(heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


# --- batches ------------------------------------------------------------------------------------


def claim_batch(session: Session, *, job_id: int, now: datetime, lease: timedelta) -> BatchClaim | None:
    """Take the job's next batch (not committed); None if the job is over or another worker holds a batch."""
    row = session.execute(
        update(ReembedJob)
        .where(
            ReembedJob.id == job_id,
            ReembedJob.status.in_(IN_PROGRESS),
            or_(ReembedJob.batch_claimed_at.is_(None), ReembedJob.batch_claimed_at < now - lease),
        )
        .values(
            status="running",
            batches=ReembedJob.batches + 1,
            batch_claimed_at=now,
            heartbeat_at=now,
            started_at=func.coalesce(ReembedJob.started_at, now),
        )
        .returning(ReembedJob.batches, ReembedJob.target_model_id)
        .execution_options(synchronize_session=False)
    ).first()
    return None if row is None else BatchClaim(job_id=job_id, token=row.batches, target_model_id=row.target_model_id)


def release_batch(session: Session, *, claim: BatchClaim, now: datetime) -> bool:
    """Record progress and free the job for its next batch; False if the job or claim is no longer ours."""
    job = _claimed_job(session, claim)
    if job is None:
        return False
    _store_progress(job, progress(session, job=job, now=now))
    job.batch_claimed_at = None
    job.heartbeat_at = now
    return True


def photos_to_embed(session: Session, *, claim: BatchClaim, now: datetime, limit: int) -> list[PhotoToEmbed]:
    """The next photos without a target embedding that this job has not already failed on, oldest first."""
    rows = session.execute(
        _pending(claim.job_id, claim.target_model_id, now)
        .with_only_columns(Photo.id, Photo.storage_key, Photo.wrapped_key, Photo.record_id, Photo.case_id)
        .order_by(Photo.id)
        .limit(limit)
    ).all()
    return [
        PhotoToEmbed(
            id=r.id, storage_key=r.storage_key, wrapped_key=r.wrapped_key, record_id=r.record_id, case_id=r.case_id
        )
        for r in rows
    ]


def record_failure(session: Session, *, job_id: int, photo_id: int, reason: str) -> None:
    """Remember that this job could not embed the photo, so later batches skip it (idempotent)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(ReembedFailure)
        .values(job_id=job_id, photo_id=photo_id, reason=reason)
        .on_conflict_do_nothing(index_elements=["job_id", "photo_id"])
    )


def finish_if_done(session: Session, *, claim: BatchClaim, now: datetime) -> str:
    """Switch the active model if every photo is embedded (one transaction, audited); else say what is left."""
    lock_model_state(session, exclusive=True)  # waits for every worker writing a photo under the old model
    job = _claimed_job(session, claim)
    if job is None:
        return SUPERSEDED
    counts = progress(session, job=job, now=now)
    _store_progress(job, counts)
    if counts.remaining > 0:
        return MORE
    if counts.failed:
        _end_job(job, "failed", FAILED_MESSAGE.format(count=counts.failed), now)
        record_event(
            session,
            action=AuditAction.REEMBED_FAILED,
            target_type="reembed_job",
            target_id=job.id,
            details={"target_model": job.target_model_id, "done": counts.done, "failed": counts.failed},
        )
        return FAILED
    previous = active_model(session)[0]
    state = session.get(ActiveEmbeddingModel, ACTIVE_ROW_ID, with_for_update=True, populate_existing=True)
    if state is None:
        state = ActiveEmbeddingModel(id=ACTIVE_ROW_ID)
        session.add(state)
    state.model_id, state.model_version = job.target_model_id, job.target_model_version
    state.switched_at, state.job_id = now, job.id
    _end_job(job, "complete", None, now)
    record_event(
        session,
        action=AuditAction.EMBEDDING_MODEL_SWITCHED,
        target_type="reembed_job",
        target_id=job.id,
        details={"from_model": previous, "to_model": job.target_model_id, "photos": counts.done},
    )
    return COMPLETE


def fail_job(session: Session, *, claim: BatchClaim, message: str, now: datetime) -> bool:
    """End the job as failed for a reason that no batch can fix (for example, a model this worker lacks)."""
    job = _claimed_job(session, claim)
    if job is None:
        return False
    _end_job(job, "failed", message, now)
    record_event(
        session,
        action=AuditAction.REEMBED_FAILED,
        target_type="reembed_job",
        target_id=job.id,
        details={"target_model": job.target_model_id, "done": job.done, "failed": job.failed},
    )
    return True


def progress(session: Session, *, job: ReembedJob, now: datetime) -> Progress:
    """Counted afresh: photos to embed now, those with a target embedding, those that failed and are still due."""
    eligible = _eligible_photos(now).subquery()
    has_target = _has_embedding(job.target_model_id, eligible.c.id)
    total = session.scalar(select(func.count()).select_from(eligible))
    done = session.scalar(select(func.count()).select_from(eligible).where(has_target))
    failed = session.scalar(
        select(func.count())
        .select_from(eligible)
        .where(~has_target, exists().where(ReembedFailure.job_id == job.id, ReembedFailure.photo_id == eligible.c.id))
    )
    return Progress(total=total or 0, done=done or 0, failed=failed or 0)


# --- which photos -------------------------------------------------------------------------------


def _eligible_photos(now: datetime) -> Select:
    """Photos whose embeddings are in use: searchable record photos and open case photos.

    Records of organisations that are suspended for now are included (their records
    match again once reinstated); withdrawn and expired records are not.
    """
    record_usable = exists().where(Record.id == Photo.record_id, Consent.record_id == Record.id, *consent_valid(now))
    case_open = exists().where(
        Case.id == Photo.case_id,
        Case.status.in_(OPEN_CASE_STATUSES),
        Case.retention_until > now,
        Case.purged_at.is_(None),
    )
    return select(Photo.id).where(
        Photo.status == PhotoStatus.EMBEDDED,
        or_(and_(Photo.record_id.is_not(None), record_usable), and_(Photo.case_id.is_not(None), case_open)),
    )


def _has_embedding(model_id: str, photo_id_column):
    return exists().where(Embedding.photo_id == photo_id_column, Embedding.model_id == model_id)


def _pending(job_id: int, target_model_id: str, now: datetime) -> Select:
    failed = exists().where(ReembedFailure.job_id == job_id, ReembedFailure.photo_id == Photo.id)
    return _eligible_photos(now).where(~_has_embedding(target_model_id, Photo.id), ~failed)


# --- helpers ------------------------------------------------------------------------------------


def _claimed_job(session: Session, claim: BatchClaim) -> ReembedJob | None:
    job = session.get(ReembedJob, claim.job_id, with_for_update=True, populate_existing=True)
    if job is None or job.status != "running" or job.batches != claim.token:
        return None
    return job


def _store_progress(job: ReembedJob, counts: Progress) -> None:
    job.total, job.done, job.failed = counts.total, counts.done, counts.failed


def _end_job(job: ReembedJob, status: str, message: str | None, now: datetime) -> None:
    job.status = status
    job.message = message
    job.finished_at = now
    job.batch_claimed_at = None
    job.heartbeat_at = now


def _check_operator(actor: User) -> None:
    if actor.status != UserStatus.ACTIVE or not allowed(actor.roles, Action.MANAGE_MODELS):
        raise ReembedRefused("Only an active platform admin can start or cancel a re-embedding.", "not_allowed")
