"""Writing candidates: what a search or two-way matching proposes for two-person review.

A candidate pairs one probe face of a case with one record (through one of its photos'
faces). Each (probe face, record) pair is proposed once, however often a search runs
(INSERT ... ON CONFLICT DO NOTHING), and a probe face's candidates are ranked 1..n by
distance with no ties.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.reviews.models import Candidate
from vetting.review import Status as CandidateStatus


def candidate_row(
    *,
    case_id: int,
    record_id: int,
    probe_id: int,
    gallery_id: int,
    distance: float,
    rank: int,
    model_id: str,
    model_version: str,
    search_mode: str,
    now: datetime,
) -> dict:
    """A new candidate, waiting for review, as `insert_candidates` takes it."""
    return dict(
        case_id=case_id,
        record_id=record_id,
        probe_embedding_id=probe_id,
        gallery_embedding_id=gallery_id,
        distance=float(distance),
        rank=rank,
        model_id=model_id,
        model_version=model_version,
        search_mode=search_mode,
        status=CandidateStatus.PENDING_REVIEW,
        created_at=now,
    )


def insert_candidates(session: Session, rows: list[dict]) -> int:
    """Insert candidates, skipping any (probe face, record) pair that already has one."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Candidate)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["probe_embedding_id", "record_id"])
        .returning(Candidate.id)
    )
    return len(session.execute(statement).all())  # rows skipped as duplicates return nothing


def renumber_candidates(session: Session, probe_ids: set[int]) -> None:
    """Number each probe face's candidates 1..n by distance, so that no two share a rank.

    A search ranks its own candidates, but two-way matching adds records to faces that
    were searched before (and a search may add to a face two-way matching reached
    first), so a face's ranks are numbered again after every insert. Ties in distance go
    by record id, as `rank_candidates` orders them; withdrawn (redacted) candidates have
    no distance any more and keep their order after the others. On PostgreSQL the two
    writers cannot interleave here: a search holds its case row FOR UPDATE, and a new
    candidate's foreign key to that row waits for it.
    """
    if not probe_ids:
        return
    rows = session.execute(
        select(Candidate.id, Candidate.probe_embedding_id, Candidate.rank)
        .where(Candidate.probe_embedding_id.in_(probe_ids))
        .order_by(
            Candidate.probe_embedding_id,
            Candidate.distance.is_(None),
            Candidate.distance,
            Candidate.record_id,
            Candidate.rank,
            Candidate.id,
        )
    ).all()
    changes, position, face = [], 0, None
    for row in rows:
        position = position + 1 if row.probe_embedding_id == face else 1
        face = row.probe_embedding_id
        if row.rank != position:
            changes.append({"id": row.id, "rank": position})
    if changes:
        session.execute(update(Candidate), changes)


def ranked_ahead(session: Session, *, probe_id: int, record_id: int, distance: float) -> int:
    """How many of the probe face's candidates rank before a new one at `distance` for `record_id`.

    In the order `renumber_candidates` numbers them: closer first, ties by record id;
    withdrawn (redacted) candidates have no distance and rank after every other.
    """
    return (
        session.scalar(
            select(func.count(Candidate.id)).where(
                Candidate.probe_embedding_id == probe_id,
                Candidate.distance.is_not(None),
                Candidate.record_id != record_id,
                or_(
                    Candidate.distance < distance, and_(Candidate.distance == distance, Candidate.record_id < record_id)
                ),
            )
        )
        or 0
    )


def case_candidate_count(session: Session, case_id: int) -> int:
    """How many candidates the case has, of any status (what its search wrote)."""
    return session.scalar(select(func.count()).select_from(Candidate).where(Candidate.case_id == case_id)) or 0


def candidate_ids_of(session: Session, case_id: int | None, rows: list[dict]) -> list[int]:
    """The ids of the candidates a search proposed (`rows` as written; already there ones included)."""
    pairs = {(row["case_id"], row["probe_embedding_id"], row["record_id"]) for row in rows}
    if not pairs:
        return []
    case_ids = {case for case, _, _ in pairs} if case_id is None else {case_id}
    found = session.execute(
        select(Candidate.id, Candidate.case_id, Candidate.probe_embedding_id, Candidate.record_id).where(
            Candidate.case_id.in_(case_ids)
        )
    ).all()
    return sorted(row.id for row in found if (row.case_id, row.probe_embedding_id, row.record_id) in pairs)
