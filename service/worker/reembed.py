"""One batch of a re-embedding job, run by a worker: the stored photos embedded with the target model.

`Reembedder.run_batch(job_id)` is what the `reunite.reembed_batch` task does:

1. Claim the job's next batch (service.embedding.service.claim_batch); no claim means
   another delivery holds it, or the job is over: do nothing.
2. Pick up to `batch_size` photos still without a target embedding; decrypt, decode and
   analyse each with no transaction open (the same detection and quality settings as
   the pipeline, the target model's vectors).
3. Write each photo in its own short transaction that first re-checks that the record
   is still searchable (locked FOR SHARE, as the pipeline does, so a withdrawal waits
   for us and then erases what we wrote) or the case still open, and that the photo
   has no target embedding yet (the photo row is locked, so two writers cannot both
   add one). Record photos get an `IndexChange` add for the target model's index;
   case photos' probe faces are stored but never indexed, as in the pipeline.
4. Release the claim with fresh counts and send the next batch. When no photo is left,
   save the target model's index snapshot (so searching processes load it instead of
   replaying the whole log at the first search) and try the switch-over.

A photo that cannot be embedded is remembered with a reason code (`ReembedFailure`)
and skipped by later batches; the job then ends `failed` without switching. Nothing
here logs or stores a face, a vector or a name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from matching.embedders import Embedder, ModelNotInstalled, UnknownEmbedder, get_embedder
from matching.faces import Face, FaceSettings, NoFaceFound, Purpose, analyse_image
from matching.images import InputRejected, decode_image
from service.cases.models import Case
from service.db import transaction, utcnow
from service.embedding.service import (
    COMPLETE,
    MORE,
    OPEN_CASE_STATUSES,
    SUPERSEDED,
    BatchClaim,
    PhotoToEmbed,
    claim_batch,
    fail_job,
    finish_if_done,
    photos_to_embed,
    record_failure,
    release_batch,
)
from service.photos.index_log import append_index_change
from service.photos.models import Embedding, Photo, PhotoStatus
from service.photos.service import image_limits
from service.photos.storage import PhotoUnavailable, PhotoVault
from service.settings import Settings
from service.photos.embeddings import embedding_row
from service.records.gallery import lock_searchable_records
from service.worker.replica import IndexReplica
from service.worker.runtime import TRANSIENT_ERRORS

log = structlog.get_logger("reunite.worker.reembed")

# Photos per batch: about ten seconds of work, so uploads queued behind a batch wait little.
DEFAULT_BATCH_SIZE = 16
NOT_RUNNING = "not_running"  # the job is over, or another delivery holds its batch

# Per-photo outcomes.
EMBEDDED = PhotoStatus.EMBEDDED
SKIPPED = "skipped"  # withdrawn, closed or erased meanwhile, or already embedded with the target


class Reembedder:
    """The batch step, given what it needs explicitly (tests build one directly)."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: sessionmaker[Session],
        vault: PhotoVault,
        replica: IndexReplica | None = None,
        send_next: Callable[[int], None] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        face_settings: FaceSettings | None = None,
    ):
        self.settings = settings
        self.sessions = sessions
        self.vault = vault
        self.replica = replica
        self.send_next = send_next  # None: the caller runs the next batch itself
        self.batch_size = batch_size
        self.face_settings = face_settings or settings.face_settings()
        # A batch is at most batch_size photos; a claim older than the task time limit is dead.
        self.lease = timedelta(minutes=settings.processing_timeout_minutes)

    def run_batch(self, job_id: int) -> str:
        """One batch, then the next one sent (or the switch-over); the outcome for logs and tests."""
        with transaction(self.sessions) as session:
            claim = claim_batch(session, job_id=job_id, now=utcnow(), lease=self.lease)
        if claim is None:
            return NOT_RUNNING
        try:
            outcome = self._batch(claim)
        except TRANSIENT_ERRORS:
            self._release(claim)  # let the retry claim it at once
            raise
        except Exception as error:
            log.error("reembed_batch_failed", job_id=job_id, error=type(error).__name__)
            self._release(claim)
            raise
        log.info("reembed_batch", job_id=job_id, outcome=outcome)
        if outcome == MORE and self.send_next is not None:
            self.send_next(job_id)
        return outcome

    def run_to_end(self, job_id: int, *, max_batches: int = 100_000) -> str:
        """Run batches here until the job ends (for tests and single-process use)."""
        outcome = MORE
        for _ in range(max_batches):
            outcome = self.run_batch(job_id)
            if outcome != MORE:
                return outcome
        return outcome

    # ----- steps --------------------------------------------------------------------------

    def _batch(self, claim: BatchClaim) -> str:
        try:
            embedder = get_embedder(claim.target_model_id)
            embedder.check_installed()
        except ModelNotInstalled as error:  # its weight files are missing or altered on this worker
            with transaction(self.sessions) as session:
                fail_job(
                    session,
                    claim=claim,
                    now=utcnow(),
                    message=f"{error} Nothing was switched; re-run the re-embedding after installing it.",
                )
            return "failed"
        except UnknownEmbedder:
            with transaction(self.sessions) as session:
                fail_job(
                    session,
                    claim=claim,
                    now=utcnow(),
                    message=f"The workers do not have the model {claim.target_model_id}; nothing was switched.",
                )
            return "failed"
        with transaction(self.sessions) as session:
            photos = photos_to_embed(session, claim=claim, now=utcnow(), limit=self.batch_size)
        if not photos:
            return self._finish(claim)
        for photo in photos:
            self.embed_photo(claim, photo, embedder)
        with transaction(self.sessions) as session:
            ours = release_batch(session, claim=claim, now=utcnow())
        return MORE if ours else SUPERSEDED

    def embed_photo(self, claim: BatchClaim, photo: PhotoToEmbed, embedder: Embedder) -> str:
        """Embed one stored photo with the target model and write it; a failure is remembered, not raised."""
        faces, reason = self._analyse(photo, embedder)
        if reason is None:
            try:
                return self._write(claim, photo, faces)
            except TRANSIENT_ERRORS:
                raise
            except Exception as error:
                log.error("reembed_photo_failed", job_id=claim.job_id, photo_id=photo.id, error=type(error).__name__)
                reason = "error"
        with transaction(self.sessions) as session:
            record_failure(session, job_id=claim.job_id, photo_id=photo.id, reason=reason)
        log.info("reembed_photo_refused", job_id=claim.job_id, photo_id=photo.id, reason=reason)
        return reason

    def _analyse(self, photo: PhotoToEmbed, embedder: Embedder) -> tuple[list[Face], str | None]:
        """The faces to store for the photo, or a reason code why there are none."""
        purpose: Purpose = "enrol" if photo.record_id is not None else "probe"
        try:
            image = decode_image(self.vault.open(photo.storage_key, photo.wrapped_key), image_limits(self.settings))
            faces = analyse_image(image, purpose, self.face_settings, embedder)
        except PhotoUnavailable:
            return [], "unreadable"  # erased meanwhile (then no longer due) or a damaged file
        except NoFaceFound:
            return [], "no_face"
        except InputRejected:
            return [], "rejected_input"
        except Exception as error:  # one bad photo never stops the job
            log.error("reembed_analysis_failed", photo_id=photo.id, error=type(error).__name__)
            return [], "error"
        if purpose == "enrol":
            # The gallery photo was enrolled with exactly one face (flagged or not); the same detector finds it again.
            return (faces, None) if len(faces) == 1 else ([], "faces_changed")
        # Case photos keep every detected face, numbered as the pipeline numbers them.
        return faces, None

    def _write(self, claim: BatchClaim, photo: PhotoToEmbed, faces: list[Face]) -> str:
        with transaction(self.sessions) as session:
            now = utcnow()
            if photo.record_id is not None:
                if not lock_searchable_records(session, [photo.record_id], now=now, require_approved=False):
                    return SKIPPED  # withdrawn or expired meanwhile: nothing may be written for it
            elif not _case_open(session, photo.case_id, now):
                return SKIPPED
            row = session.get(Photo, photo.id, with_for_update=True, populate_existing=True)
            if row is None or row.status != PhotoStatus.EMBEDDED:
                return SKIPPED
            done = session.scalar(
                select(func.count())
                .select_from(Embedding)
                .where(Embedding.photo_id == photo.id, Embedding.model_id == claim.target_model_id)
            )
            if done:
                return SKIPPED  # a repeated batch, or the pipeline embedded it with both models
            for number, face in enumerate(faces):
                embedding = embedding_row(photo.id, number, face)
                session.add(embedding)
                session.flush()
                if photo.record_id is not None:
                    append_index_change(session, op="add", embedding_id=embedding.id, model_id=face.model_id)
        return EMBEDDED

    def _finish(self, claim: BatchClaim) -> str:
        self._save_index(claim.target_model_id)
        with transaction(self.sessions) as session:
            outcome = finish_if_done(session, claim=claim, now=utcnow())
        if outcome == MORE:  # photos enrolled meanwhile by a worker that did not know of the job
            with transaction(self.sessions) as session:
                release_batch(session, claim=claim, now=utcnow())
        if outcome == COMPLETE:
            log.info("embedding_model_switched", job_id=claim.job_id, model_id=claim.target_model_id)
        return outcome

    def _save_index(self, model_id: str) -> None:
        """Catch the target's index up and save its snapshot; best effort (searches rebuild from the log)."""
        if self.replica is None:
            return
        try:
            session = self.sessions()
            try:
                self.replica.catch_up(session, model_id)
            finally:
                session.close()
            self.replica.save_snapshot(model_id)
        except Exception as error:
            log.warning("reembed_snapshot_skipped", model_id=model_id, error=type(error).__name__)

    def _release(self, claim: BatchClaim) -> None:
        try:
            with transaction(self.sessions) as session:
                release_batch(session, claim=claim, now=utcnow())
        except Exception:
            log.warning("reembed_claim_not_released", job_id=claim.job_id)  # the lease runs out instead


def _case_open(session: Session, case_id: int | None, now) -> bool:
    """The case is still open, its row locked FOR SHARE (a purge waits for us, then erases what we wrote)."""
    if case_id is None:
        return False
    case = session.get(Case, case_id, with_for_update={"read": True}, populate_existing=True)
    return (
        case is not None and case.status in OPEN_CASE_STATUSES and case.retention_until > now and case.purged_at is None
    )
