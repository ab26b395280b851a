"""The work behind the tasks: embed record photos, embed case photos, search the gallery.

Every step follows the same shape, which is what makes at-least-once delivery give
exactly-once effects:

1. Claim the row with a conditional UPDATE (`status='queued'` -> `processing`,
   `attempts + 1`) and commit. No row updated means another delivery has it: do
   nothing. The new `attempts` value is the claim's token.
2. Decrypt, decode and analyse with no transaction open (seconds of CPU; SQLite
   would be locked for everyone meanwhile, PostgreSQL would hold row locks).
3. Write the outcome in one short transaction that first re-checks the row is still
   ours (`processing` with our token: the reaper may have handed it to another
   worker) and that the record and its consent are still valid (a withdrawal may
   have committed meanwhile). If not, it writes nothing.

Locks in the write transactions: record rows are locked FOR SHARE before the photo
row and before the index log's advisory lock, the order a withdrawal takes them in
(record, then index log), so the two wait for each other instead of deadlocking.
Holding the record rows FOR SHARE until commit means a withdrawal's UPDATE of the
record waits for us and then sees (and erases or redacts) whatever we wrote; a
withdrawal that committed first is seen by our re-check, and we write nothing.

A case is handled in two tasks: `process_case` (queue `embed`) finds and stores the
probe faces, then asks for `search_case` (queue `search`), which catches the index
replica up and writes candidates. A re-run of `process_case` after a crash reuses
the probe faces already stored, so candidate keys stay the same and a repeated
search inserts nothing twice (unique probe face + record, INSERT ... ON CONFLICT DO
NOTHING).

Models: photos are embedded with the active model, and also with a re-embedding's
target while one is in progress; the write transaction re-reads the active model
under the lock the switch-over takes and starts the step again if it changed
meanwhile (service.embedding.service), MODEL_CHANGE_RETRIES times at most; then the row
goes back to the queue (REQUEUED) and the reaper's bound on attempts applies. Searches and two-way matching compare the
active model's embeddings only.

The pipeline orchestrates only: claims, decoding and face analysis, then domain
operations for what it writes and checks (service.records.gallery: what may be searched;
service.reviews.candidates: candidate rows; service.photos.embeddings: embedding rows and
photo outcomes; service.cases.service: case outcomes), and the audit events.

Status messages are plain sentences for a caseworker; nothing here writes a face,
a vector or a name into a message or a log.

Every search is audited (EU AI Act Art. 12), with ids, counts and model names only: a case
search writes `search_started` (case, photo and probe face ids, model, mode) when its faces
are read, and `search_finished` with the candidates in the transaction that writes them
(gallery size and index sequence searched, outcome, candidate ids); two-way matching writes
`two_way_search_finished` in the enrolment's transaction (start time, the photo and face,
how many open case faces were compared, the candidates).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.audit.actions import AuditAction
from matching.ages import years_between
from matching.embedders import Embedder, get_embedder
from matching.faces import Face, FaceSettings, NoFaceFound, TooManyFaces, analyse_image, embed_again
from matching.images import DecodedImage, InputRejected, decode_image
from matching.search import rank_candidates
from service.audit.service import record_event
from service.calibration.service import ReviewPolicy, review_policy
from service.cases.models import Case, CaseStatus
from service.cases.modes import ALERTING, SearchChoice, searched_message
from service.cases.service import open_case_faces, set_case_outcome
from service.db import transaction, utcnow
from service.embedding.service import active_model, active_model_for_write, models_to_embed
from service.organisations.models import Organisation
from service.photos.embeddings import (
    case_photo,
    embedding_row,
    probe_faces,
    set_photo_outcome,
    stored_faces,
    vector_from_bytes,
)
from service.photos.index_log import append_index_change
from service.photos.models import Embedding, Photo, PhotoStatus
from service.photos.service import image_limits
from service.photos.storage import PhotoUnavailable, PhotoVault
from service.records.gallery import (
    eligible_gallery_embeddings,
    gallery_photo_ages,
    lock_searchable_records,
    record_in_good_standing,
)
from service.records.models import Record
from service.reviews.candidates import (
    candidate_ids_of,
    candidate_row,
    case_candidate_count,
    insert_candidates,
    ranked_ahead,
    renumber_candidates,
)
from service.settings import Settings
from service.worker.replica import IndexReplica
from service.worker.runtime import TRANSIENT_ERRORS
from vetting.organisations import in_good_standing as standing_rule

log = structlog.get_logger("reunite.worker")

# Neighbours asked of the index per wanted record (as matching.search.search_gallery
# does), so that one record with many photos cannot crowd the others out.
OVERSAMPLE = 4

# Outcomes returned by the pipeline (task results are not stored; they show in logs and tests).
DUPLICATE = "duplicate"  # another delivery holds the row
SUPERSEDED = "superseded"  # the row stopped being ours while we worked
NOT_PENDING = "not_pending"  # nothing to search for this case
MODEL_CHANGED = "model_changed"  # the active model was switched while we embedded: embed again
REQUEUED = "requeued"  # the model kept changing: the row went back to the queue for a later attempt
# How many times one delivery embeds a photo again because the active model changed meanwhile.
MODEL_CHANGE_RETRIES = 3


@dataclass(frozen=True)
class Claim:
    row_id: int
    token: int  # the row's `attempts` after our claim


class Pipeline:
    """The processing steps, given what they need explicitly (tests build one directly)."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: sessionmaker[Session],
        vault: PhotoVault,
        replica: IndexReplica,
        face_settings: FaceSettings | None = None,
        send_search: Callable[[int], None] | None = None,
        threshold: float | None = None,
        policy: ReviewPolicy | None = None,
    ):
        self.settings = settings
        self.sessions = sessions
        self.vault = vault
        self.replica = replica
        self.face_settings = face_settings or settings.face_settings()
        # How process_case hands over to search_case; None searches at once in this process.
        self.send_search = send_search
        self.threshold = threshold  # None: the active calibration's, read at every search
        self.policy = policy  # a whole review policy to use instead of the calibration's (tests)

    # ----- record photos -----------------------------------------------------------------

    def process_record_photo(self, photo_id: int) -> str:
        """Embed a gallery photo (exactly one face, flagged or not), index it, match it against open cases."""
        claim = claim_row(self.sessions, Photo, photo_id)
        if claim is None:
            return DUPLICATE
        return self._guarded(Photo, claim, self._record_photo)

    def _record_photo(self, claim: Claim) -> str:
        return self._until_model_settles(Photo, claim, self._record_photo_once)

    def _record_photo_once(self, claim: Claim) -> str:
        with transaction(self.sessions) as session:
            photo = session.get_one(Photo, claim.row_id)
            storage_key, wrapped_key, record_id = photo.storage_key, photo.wrapped_key, photo.record_id
            embedders = _embedders(session)
        if record_id is None:
            return self._finish(Photo, claim, PhotoStatus.FAILED, "This photo does not belong to a record.")
        try:
            image = self._decode(storage_key, wrapped_key)
            faces = analyse_image(image, "enrol", self.face_settings, embedders[0])
        except PhotoUnavailable:
            return self._finish(Photo, claim, PhotoStatus.FAILED, UNREADABLE_PHOTO)
        except NoFaceFound:
            return self._finish(Photo, claim, PhotoStatus.NO_FACE, NO_FACE_ENROL, faces_found=0)
        except TooManyFaces:
            return self._finish(
                Photo,
                claim,
                PhotoStatus.SEVERAL_FACES,
                several_faces_message(f"more than {self.face_settings.max_faces}"),
            )
        except InputRejected as refusal:
            return self._finish(Photo, claim, PhotoStatus.REJECTED_INPUT, refusal.message)
        if len(faces) > 1:  # which one is the child? A person must choose, by cropping.
            return self._finish(
                Photo, claim, PhotoStatus.SEVERAL_FACES, several_faces_message(str(len(faces))), faces_found=len(faces)
            )
        # A small, blurry or turned face is enrolled all the same and flagged when shown
        # (service.photos.quality): flagged, it can still be found; refused, it never could.
        # While a re-embedding is in progress, also with its target model (see service.embedding).
        others = [embed_again(image, faces, embedder)[0] for embedder in embedders[1:]]
        return self._enrol(claim, record_id, faces[0], others)

    def _enrol(self, claim: Claim, record_id: int, face: Face, others: list[Face]) -> str:
        with transaction(self.sessions) as session:
            now = utcnow()
            record_ok = lock_searchable_records(session, [record_id], now=now, require_approved=False)
            photo = _ours(session, Photo, claim)
            if photo is None:
                return SUPERSEDED
            if not record_ok:
                set_photo_outcome(photo, PhotoStatus.FAILED, CONSENT_NOT_VALID, now)
                return PhotoStatus.FAILED
            if active_model_for_write(session) != face.model_id:
                return MODEL_CHANGED
            embedding = embedding_row(photo.id, 0, face)
            session.add(embedding)
            session.flush()
            # Takes the index log lock; the open cases are read after it (see _match_open_cases).
            append_index_change(session, op="add", embedding_id=embedding.id, model_id=face.model_id)
            for other in others:
                extra = embedding_row(photo.id, 0, other)
                session.add(extra)
                session.flush()
                append_index_change(session, op="add", embedding_id=extra.id, model_id=other.model_id)
            # Enrolled all the same; proposed to open cases only while its organisation is in good
            # standing (as a case search would find it). Hidden, not lost: later searches find it.
            matched = (
                self._match_open_cases(session, embedding, face.embedding, record_id, now)
                if record_in_good_standing(session, record_id, now)
                else 0
            )
            set_photo_outcome(photo, PhotoStatus.EMBEDDED, EMBEDDED, now, faces_found=1)
        log.info("record_photo_embedded", photo_id=claim.row_id, embedding_id=embedding.id, open_case_matches=matched)
        return PhotoStatus.EMBEDDED

    def _match_open_cases(
        self, session: Session, embedding: Embedding, vector: np.ndarray, record_id: int, now: datetime
    ) -> int:
        """Two-way matching: propose the new face to open cases' probe faces within the threshold.

        Read after taking the index log lock, while a case search reads the log under the
        shared lock: a probe face committed before this read is matched here, and a case
        searched after it waits for this commit and finds the new face in the index, so
        no pairing falls between the two.

        Alerting rules for every case, investigative ones too: a new record photo is
        proposed only within the review threshold for the two photos' age gap, as an
        alerting candidate. An investigative case's leads were the N closest records on
        the day it was searched; a later record only joins them if it is close enough to
        alert on, and only into a face's top-k (the alerting limit): a face that already has
        k closer candidates is not given another. The probe faces' ranks are numbered again
        so the new one takes its place (ties by record id, as a search ranks them).
        """
        rows = open_case_faces(session, model_id=embedding.model_id, record_id=record_id, now=now)
        if not rows:
            _two_way_search_finished(
                session, embedding=embedding, record_id=record_id, started=now, open_case_faces=0, candidate_ids=[]
            )
            return 0
        probes = np.stack([vector_from_bytes(row.vector) for row in rows])
        distances = np.linalg.norm(probes - vector, axis=1)
        policy = self._policy(session, embedding.model_id)
        gallery = gallery_photo_ages(session, [embedding.id])[embedding.id]
        top_k = policy.top_k or self.settings.review_top_k  # per probe face, as in an alerting search
        candidates = []
        for row, distance in zip(rows, distances.tolist()):
            gap = years_between(age_a=row.age_at_photo, taken_a=row.taken_at, age_b=gallery[0], taken_b=gallery[1])
            if distance > policy.threshold_for(gap):
                continue
            if ranked_ahead(session, probe_id=row.id, record_id=record_id, distance=distance) >= top_k:
                continue  # the face already has its top-k closer records, as its own search would keep
            candidates.append(
                candidate_row(
                    case_id=row.case_id,
                    record_id=record_id,
                    probe_id=row.id,
                    gallery_id=embedding.id,
                    distance=distance,
                    rank=0,
                    model_id=embedding.model_id,
                    model_version=embedding.model_version,
                    search_mode=ALERTING,
                    now=now,
                )
            )
        inserted = insert_candidates(session, candidates)
        renumber_candidates(session, {row["probe_embedding_id"] for row in candidates})
        _two_way_search_finished(
            session,
            embedding=embedding,
            record_id=record_id,
            started=now,
            open_case_faces=len(rows),
            candidate_ids=candidate_ids_of(session, None, candidates),
        )
        return inserted

    # ----- cases: find the probe faces ----------------------------------------------------

    def process_case(self, case_id: int) -> str:
        """Find and store the case photo's faces, then have the gallery searched."""
        claim = claim_row(self.sessions, Case, case_id)
        if claim is None:
            return DUPLICATE
        outcome = self._guarded(Case, claim, self._embed_case)
        if outcome != PhotoStatus.EMBEDDED:
            return outcome
        if self.send_search is None:
            return self.search_case(case_id)
        self.send_search(case_id)
        return PhotoStatus.EMBEDDED

    def _embed_case(self, claim: Claim) -> str:
        return self._until_model_settles(Case, claim, self._embed_case_once)

    def _embed_case_once(self, claim: Claim) -> str:
        with transaction(self.sessions) as session:
            photo = case_photo(session, claim.row_id)
            if photo is None:
                facts = None
            else:
                facts = (photo.id, photo.storage_key, photo.wrapped_key)
                embedders = _embedders(session)
                stored = stored_faces(session, photo.id, embedders[0].id)
        if facts is None:
            return self._finish(Case, claim, CaseStatus.FAILED, "This case has no photo to search.")
        if stored:
            return PhotoStatus.EMBEDDED  # an earlier attempt stored the faces: search them again
        photo_id, storage_key, wrapped_key = facts
        try:
            image = self._decode(storage_key, wrapped_key)
            faces = analyse_image(image, "probe", self.face_settings, embedders[0])
        except PhotoUnavailable:
            return self._finish(Case, claim, CaseStatus.FAILED, UNREADABLE_PHOTO)
        except NoFaceFound:
            return self._finish(Case, claim, CaseStatus.NO_FACE, NO_FACE_CASE, faces=0)
        except InputRejected as refusal:  # includes too many faces
            return self._finish(Case, claim, CaseStatus.REJECTED_INPUT, refusal.message)
        # Every detected face is searched, low-quality ones too (flagged when shown, never dropped).
        others = [embed_again(image, faces, embedder) for embedder in embedders[1:]]
        return self._store_probe_faces(claim, photo_id, faces, others)

    def _store_probe_faces(self, claim: Claim, photo_id: int, faces: list[Face], others: list[list[Face]]) -> str:
        with transaction(self.sessions) as session:
            now = utcnow()
            case = _ours(session, Case, claim)
            if case is None:
                return SUPERSEDED
            if active_model_for_write(session) != faces[0].model_id:
                return MODEL_CHANGED
            for faces_of_model in (faces, *others):
                for number, face in enumerate(faces_of_model):
                    # Probe faces are stored but never indexed: the gallery holds record photos only.
                    session.add(embedding_row(photo_id, number, face))
            photo = session.get_one(Photo, photo_id)
            set_photo_outcome(photo, PhotoStatus.EMBEDDED, None, now, faces_found=len(faces))
            case.faces = len(faces)
            case.status_message = "Faces found; searching the gallery."
        return PhotoStatus.EMBEDDED

    # ----- cases: search the gallery -----------------------------------------------------

    def search_case(self, case_id: int) -> str:
        """Search each stored probe face in the caught-up replica and write candidates."""
        with transaction(self.sessions) as session:
            case = session.get(Case, case_id)
            if case is None or case.status != CaseStatus.PROCESSING:
                return NOT_PENDING
            choice = SearchChoice(mode=case.search_mode, candidate_limit=case.candidate_limit)
            photo = case_photo(session, case_id)
            probe_photo = None if photo is None else (photo.age_at_photo, photo.taken_at)
            # Only the active model's faces: embeddings of different models are never compared.
            probes = [] if photo is None else probe_faces(session, photo.id, active_model(session)[0])
            if photo is not None and probes:
                record_event(
                    session,
                    action=AuditAction.SEARCH_STARTED,
                    organisation_id=case.organisation_id,
                    target_type="case",
                    target_id=case_id,
                    details=search_input(
                        case_id=case_id,
                        photo_id=photo.id,
                        probes=probes,
                        mode=choice.mode,
                        candidate_limit=choice.candidate_limit,
                    ),
                )
        if not probes:
            return NOT_PENDING  # not embedded yet (or purged): process_case owns it
        found = self._search_index(probes, choice)
        index = self.replica.index(probes[0].model_id)  # one model: the active one's faces only
        gallery = {"gallery_size": len(index), "gallery_sequence": index.sequence}
        return self._write_candidates(case_id, probes, found, choice, probe_photo, gallery)

    def _search_index(self, probes: list, choice: SearchChoice) -> list[tuple[np.ndarray, np.ndarray]]:
        for model_id in sorted({probe.model_id for probe in probes}):
            session = self.sessions()
            try:
                self.replica.catch_up(session, model_id)
            finally:
                session.close()
        results = []
        for probe in probes:
            index = self.replica.index(probe.model_id)
            vector = vector_from_bytes(probe.vector)
            if choice.investigative:
                results.append(self._neighbours_for_leads(index, vector, probe.model_id, choice.leads))
            else:
                distances, ids = index.search(vector, self.settings.review_top_k * OVERSAMPLE)
                results.append((distances[0], ids[0]))
        return results

    def _neighbours_for_leads(
        self, index, vector: np.ndarray, model_id: str, wanted: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Enough neighbours for `wanted` records that may be proposed, or the whole gallery.

        Starts at OVERSAMPLE neighbours per record and doubles while records with many
        photos, or records that may not be proposed (consent expired, organisation
        suspended: still in the index until the database says no), leave fewer than
        `wanted` records; `_write_candidates` checks eligibility again under its locks.
        """
        k = wanted * OVERSAMPLE
        while True:
            distances, ids = index.search(vector, k)
            found = [int(i) for i in ids[0] if i >= 0]
            if len(found) < k or k >= len(index):
                return distances[0], ids[0]  # the whole gallery is in the answer
            session = self.sessions()
            try:
                records = set(
                    eligible_gallery_embeddings(session, found, model_id=model_id, now=utcnow(), lock=False).values()
                )
            finally:
                session.close()
            if len(records) >= wanted:
                return distances[0], ids[0]
            k = min(k * 2, len(index))

    def _write_candidates(
        self,
        case_id: int,
        probes: list,
        found: list,
        choice: SearchChoice,
        probe_photo: tuple | None,
        gallery: dict[str, int],
    ) -> str:
        with transaction(self.sessions) as session:
            now = utcnow()
            case = session.get(Case, case_id, with_for_update=True, populate_existing=True)
            if case is None or case.status != CaseStatus.PROCESSING:
                if case is not None:  # the search that started still ends in the trail, without candidates
                    _search_finished(
                        session, case=case, probes=probes, gallery=gallery, outcome=SUPERSEDED, candidate_ids=[]
                    )
                return SUPERSEDED
            organisation = session.get(Organisation, case.organisation_id)
            if organisation is None or not standing_rule(organisation.status, organisation.vetting_expires_at, now):
                set_case_outcome(case, CaseStatus.FAILED, ORGANISATION_NOT_APPROVED, now)
                _search_finished(
                    session, case=case, probes=probes, gallery=gallery, outcome=CaseStatus.FAILED, candidate_ids=[]
                )
                return CaseStatus.FAILED
            rows = []
            policies = {model_id: self._policy(session, model_id) for model_id in {probe.model_id for probe in probes}}
            for probe, (distances, ids) in zip(probes, found):
                # The database has the last word after the index: only active records with
                # valid consent of approved organisations, locked until we commit.
                allowed = eligible_gallery_embeddings(
                    session, [int(i) for i in ids if i >= 0], model_id=probe.model_id, now=now
                )
                ranked = self._rank(session, distances, ids, allowed, policies[probe.model_id], choice, probe_photo)
                for candidate in ranked:
                    rows.append(
                        candidate_row(
                            case_id=case_id,
                            record_id=candidate.record_id,
                            probe_id=probe.id,
                            gallery_id=candidate.embedding_id,
                            distance=candidate.distance,
                            rank=candidate.rank,
                            model_id=probe.model_id,
                            model_version=probe.model_version,
                            search_mode=choice.mode,
                            now=now,
                        )
                    )
            inserted = insert_candidates(session, rows)
            # Two-way matching may have proposed records to these faces already.
            renumber_candidates(session, {probe.id for probe in probes})
            total = case_candidate_count(session, case_id)
            set_case_outcome(case, CaseStatus.SEARCHED, searched_message(total, case.search_mode), now)
            case.searched_at = now
            _search_finished(
                session,
                case=case,
                probes=probes,
                gallery=gallery,
                outcome=CaseStatus.SEARCHED,
                candidate_ids=candidate_ids_of(session, case_id, rows),
            )
        log.info("case_searched", case_id=case_id, faces=len(probes), candidates=total, new_candidates=inserted)
        return CaseStatus.SEARCHED

    def _rank(
        self,
        session: Session,
        distances: np.ndarray,
        ids: np.ndarray,
        allowed: dict[int, int],
        policy: ReviewPolicy,
        choice: SearchChoice,
        probe_photo: tuple | None,
    ) -> list:
        """One probe face's candidates, ranked 1..k: the N closest records, or those within the threshold.

        Investigative: no threshold (infinity), the case's number of leads. Alerting: the
        calibrated top-k within the review threshold for each gallery photo's age gap to
        the case photo (the index answer reaches the widest gap threshold); a photo beyond
        its own gap's threshold is left out before records are ranked, so the ranks stay
        1..k with no gaps.
        """
        if choice.investigative:
            return rank_candidates(distances, ids, record_of=allowed, threshold=math.inf, top_k=choice.leads)
        if policy.gap_thresholds:
            age, taken = probe_photo or (None, None)
            ages = gallery_photo_ages(session, list(allowed))
            distance_of = dict(zip(ids.tolist(), distances.tolist()))
            allowed = {
                embedding_id: record_id
                for embedding_id, record_id in allowed.items()
                if distance_of[embedding_id]
                <= policy.threshold_for(
                    years_between(age_a=age, taken_a=taken, age_b=ages[embedding_id][0], taken_b=ages[embedding_id][1])
                )
            }
        return rank_candidates(
            distances,
            ids,
            record_of=allowed,
            threshold=policy.widest_threshold,
            top_k=policy.top_k or self.settings.review_top_k,
        )

    # ----- shared steps ------------------------------------------------------------------

    def _policy(self, session: Session, model_id: str) -> ReviewPolicy:
        """The policy in force for `model_id`: one given to this pipeline, else the calibration's."""
        if self.policy is not None:
            return self.policy
        if self.threshold is not None:
            return ReviewPolicy(
                threshold=self.threshold, bands=(), top_k=None, calibration_id=None, calibration_version=None
            )
        return review_policy(session, model_id)

    def _decode(self, storage_key: str | None, wrapped_key: bytes | None) -> DecodedImage:
        return decode_image(self.vault.open(storage_key, wrapped_key), image_limits(self.settings))

    def _until_model_settles(self, model, claim: Claim, step: Callable[[Claim], str]) -> str:
        """Run an embedding step again while the active model keeps changing under it, a few times at most.

        Each run embeds with the models read at its start; a switch-over committed
        meanwhile makes the write refuse (MODEL_CHANGED). Past MODEL_CHANGE_RETRIES runs
        the row goes back to the queue (REQUEUED), where the reaper re-sends it and,
        after its own bound on attempts, gives up with a sentence: never a loop.
        """
        for _ in range(MODEL_CHANGE_RETRIES):
            outcome = step(claim)
            if outcome != MODEL_CHANGED:
                return outcome
        log.warning("model_kept_changing", table=model.__tablename__, row_id=claim.row_id, runs=MODEL_CHANGE_RETRIES)
        release_claim(self.sessions, model, claim)
        return REQUEUED

    def _guarded(self, model, claim: Claim, step: Callable[[Claim], str]) -> str:
        """Run a step; give the claim back on a transient error, record `failed` on a bug."""
        try:
            return step(claim)
        except TRANSIENT_ERRORS:
            release_claim(self.sessions, model, claim)
            raise
        except Exception as error:
            log.error("processing_failed", table=model.__tablename__, row_id=claim.row_id, error=type(error).__name__)
            try:
                self._finish(model, claim, CaseStatus.FAILED, UNEXPECTED_FAILURE)
            except Exception:  # the database may be what failed; the reaper retries then
                pass
            raise

    def _finish(self, model, claim: Claim, status: str, message: str | None, **counts) -> str:
        """Record a final outcome if the row is still ours."""
        with transaction(self.sessions) as session:
            row = _ours(session, model, claim)
            if row is None:
                return SUPERSEDED
            if model is Photo:
                set_photo_outcome(row, status, message, utcnow(), **counts)
            else:
                set_case_outcome(row, status, message, utcnow(), **counts)
        log.info("processed", table=model.__tablename__, row_id=claim.row_id, status=status)
        return status


# ----- claims ---------------------------------------------------------------------------


def claim_row(sessions: sessionmaker[Session], model, row_id: int, *, now: datetime | None = None) -> Claim | None:
    """Take a queued photo or case for processing; None if another delivery has it."""
    with transaction(sessions) as session:
        token = session.execute(
            update(model)
            .where(model.id == row_id, model.status == CaseStatus.QUEUED)
            .values(status=CaseStatus.PROCESSING, claimed_at=now or utcnow(), attempts=model.attempts + 1)
            .returning(model.attempts)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
    return None if token is None else Claim(row_id=row_id, token=token)


def release_claim(sessions: sessionmaker[Session], model, claim: Claim) -> None:
    """Put the row back in the queue so a retry can claim it; best effort (the reaper is the fallback).

    `claimed_at` becomes the time of release, which the reaper reads as "dispatched
    just now", so it leaves the retry a minute before re-sending the row itself.
    """
    try:
        with transaction(sessions) as session:
            session.execute(
                update(model)
                .where(model.id == claim.row_id, model.status == CaseStatus.PROCESSING, model.attempts == claim.token)
                .values(status=CaseStatus.QUEUED, claimed_at=utcnow())
                .execution_options(synchronize_session=False)
            )
    except Exception:
        log.warning("claim_not_released", table=model.__tablename__, row_id=claim.row_id)


def _ours(session: Session, model, claim: Claim):
    row = session.get(model, claim.row_id, with_for_update=True, populate_existing=True)
    if row is None or row.status != CaseStatus.PROCESSING or row.attempts != claim.token:
        return None
    return row


# ----- audit -----------------------------------------------------------------------------------


def search_input(*, case_id: int, photo_id: int, probes: list, mode: str, candidate_limit: int | None) -> dict:
    """What a case search is given, for the audit trail: ids and the model, never a vector."""
    return {
        "case_id": case_id,
        "photo_id": photo_id,
        "probe_embedding_ids": [probe.id for probe in probes],
        "model_id": probes[0].model_id,
        "model_version": probes[0].model_version,
        "search_mode": mode,
        "candidate_limit": candidate_limit,
    }


def _search_finished(
    session: Session, *, case: Case, probes: list, gallery: dict[str, int], outcome: str, candidate_ids: list[int]
) -> None:
    """The end of a case search (EU AI Act Art. 12): the gallery searched and the candidates produced."""
    record_event(
        session,
        action=AuditAction.SEARCH_FINISHED,
        organisation_id=case.organisation_id,
        target_type="case",
        target_id=case.id,
        details={
            "case_id": case.id,
            "probe_embedding_ids": [probe.id for probe in probes],
            "model_id": probes[0].model_id,
            "model_version": probes[0].model_version,
            **gallery,
            "outcome": outcome,
            "candidate_ids": candidate_ids,
        },
    )


def _two_way_search_finished(
    session: Session,
    *,
    embedding: Embedding,
    record_id: int,
    started: datetime,
    open_case_faces: int,
    candidate_ids: list[int],
) -> None:
    """Two-way matching's search (one transaction, so one event): the input, what it was compared with, the result."""
    organisation_id = session.scalar(select(Record.organisation_id).where(Record.id == record_id))
    record_event(
        session,
        action=AuditAction.TWO_WAY_SEARCH_FINISHED,
        organisation_id=organisation_id,
        target_type="record",
        target_id=record_id,
        details={
            "record_id": record_id,
            "photo_id": embedding.photo_id,
            "embedding_id": embedding.id,
            "model_id": embedding.model_id,
            "model_version": embedding.model_version,
            "started_at": started.isoformat(),
            "open_case_faces": open_case_faces,
            "candidate_ids": candidate_ids,
        },
    )


def _embedders(session: Session) -> list[Embedder]:
    """The active model's embedder, then a re-embedding's target while one is in progress."""
    return [get_embedder(model_id) for model_id in models_to_embed(session)]


# ----- words for caseworkers ------------------------------------------------------------------

EMBEDDED = "The face was added to the gallery and is now searchable."
UNREADABLE_PHOTO = "The stored photo could not be read. Please upload it again."
NO_FACE_ENROL = "No face was found in this photo. Please upload a photo in which the child's face is clearly visible."
NO_FACE_CASE = (
    "No face was found in this photo, so nothing was searched. Please send a photo where the face is clearly visible."
)
CONSENT_NOT_VALID = "The record's consent is no longer valid, so the photo was not added to the gallery."
ORGANISATION_NOT_APPROVED = "Your organisation is not approved at the moment, so this photo was not searched."
UNEXPECTED_FAILURE = "Processing failed unexpectedly. Please try again later; the failure has been logged."


def several_faces_message(count: str) -> str:
    return f"This photo shows {count} faces; upload a photo of the child alone or crop it."
