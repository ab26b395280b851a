"""This process's replica of the gallery index: a snapshot plus the `IndexChange` log.

The database is the truth; the FAISS index is a cache every searching process keeps
for itself. A replica holds one `VectorIndex` per model id (embeddings of different
models are never compared). On first use it loads the latest snapshot from
`<data_dir>/index/<model>.faiss` if there is one, then `catch_up` applies every
change after the index's `sequence`, in order: an `add` loads the embedding's vector
from the database (an embedding erased since is skipped: its `remove` follows later
in the log), a `remove` drops the id. Searches call `catch_up` first, so a removal
committed before a search starts is applied before that search runs, in every
process. Appends are serialised (service.photos.index_log), so sequence order is
commit order and a replica never skips a change that commits late.

Snapshots are written atomically (`VectorIndex.save`) after every `snapshot_every`
changes a replica applies, and by the daily maintenance task; they only shorten
start-up, since a replica without one rebuilds from the whole log. A replica that
applies a removal rewrites an existing snapshot at once, so an erased face's vector
does not stay on disk (see service.photos.index_files; withdrawal deletes them too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any
from pathlib import Path

import numpy as np
import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from matching.embedders import UnknownEmbedder, get_embedder
from matching.index import IndexFileError, VectorIndex
from service.photos.index_files import snapshot_path
from service.photos.index_log import read_lock
from service.photos.embeddings import vector_from_bytes, vector_to_bytes  # noqa: F401  (re-exported)
from service.photos.models import Embedding, IndexChange

log = structlog.get_logger("reunite.worker.replica")

EMBEDDING_DIM = 128  # of a model id no embedder is registered under (an old or foreign log entry)
CHANGES_PER_READ = 5_000
DEFAULT_SNAPSHOT_EVERY = 1_000


class IndexReplica:
    def __init__(
        self,
        snapshot_dir: Path,
        *,
        index_kind: str = "flat",
        index_options: dict | None = None,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    ):
        self.snapshot_dir = Path(snapshot_dir)
        self.index_kind = index_kind
        self.index_options = index_options or {}
        self.snapshot_every = snapshot_every
        self._indexes: dict[str, VectorIndex] = {}
        self._unsaved: dict[str, int] = {}  # changes applied since the last load or save
        self._checked: set[str] = set()  # models whose loaded index was checked against the log

    def snapshot_path(self, model_id: str) -> Path:
        return snapshot_path(self.snapshot_dir, model_id)

    def index(self, model_id: str) -> VectorIndex:
        """The index for `model_id` as last caught up (call `catch_up` before searching it)."""
        if model_id not in self._indexes:
            self._indexes[model_id] = self._load_snapshot(model_id)
            self._unsaved[model_id] = 0
        return self._indexes[model_id]

    def catch_up(self, session: Session, model_id: str) -> int:
        """Apply every committed change after the index's sequence; how many were applied.

        Runs in the session's transaction and ends it, so the shared lock it takes on
        PostgreSQL (waiting for appends that are committing) is held only while reading.
        """
        index = self.index(model_id)
        try:
            read_lock(session)
            if model_id not in self._checked:
                index = self._check_against_database(session, model_id)
            applied = removed = 0
            while True:
                changes = session.execute(
                    select(IndexChange.seq, IndexChange.op, IndexChange.embedding_id)
                    .where(IndexChange.model_id == model_id, IndexChange.seq > index.sequence)
                    .order_by(IndexChange.seq)
                    .limit(CHANGES_PER_READ)
                ).all()
                if not changes:
                    break
                removed += _apply(session, index, changes)
                applied += len(changes)
        finally:
            session.rollback()  # read only: ends the transaction and releases the lock
        self._unsaved[model_id] += applied
        stale_file = removed > 0 and self.snapshot_path(model_id).exists()  # it may hold an erased vector
        if stale_file or self._unsaved[model_id] >= self.snapshot_every:
            self.save_snapshot(model_id)
        return applied

    def _check_against_database(self, session: Session, model_id: str) -> VectorIndex:
        """Once per loaded index: a snapshot ahead of the log is from elsewhere; start afresh."""
        index = self._indexes[model_id]
        if index.sequence > _last_sequence(session, model_id):
            # Restored from a backup older than the snapshot, or another database's file.
            log.warning("index_snapshot_ahead_of_database", model_id=model_id, snapshot_sequence=index.sequence)
            index = self._indexes[model_id] = self._new_index(model_id)
        self._checked.add(model_id)
        return index

    def save_snapshot(self, model_id: str) -> Path:
        """Write the index atomically where the next process to start will load it."""
        path = self.snapshot_path(model_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.index(model_id).save(path)
        self._unsaved[model_id] = 0
        return path

    def model_ids(self) -> list[str]:
        return sorted(self._indexes)

    def _new_index(self, model_id: str) -> VectorIndex:
        dim = dimension(model_id)
        options = dict(self.index_options)
        if self.index_kind == "pq-refine":
            options.setdefault("pq_m", math.gcd(dim, 64))  # sub-vectors must divide the dimension
        return VectorIndex(dim=dim, kind=self.index_kind, **options)

    def _load_snapshot(self, model_id: str) -> VectorIndex:
        path = self.snapshot_path(model_id)
        try:
            index = VectorIndex.load(path)
        except FileNotFoundError:
            return self._new_index(model_id)
        except IndexFileError:
            # A damaged snapshot costs only time: the log rebuilds the same index.
            log.warning("index_snapshot_unreadable", model_id=model_id)
            return self._new_index(model_id)
        if index.dim != dimension(model_id) or index.kind != self.index_kind:
            # Another model's size, or the index kind was changed in the settings: rebuild from the log.
            return self._new_index(model_id)
        return index


def dimension(model_id: str) -> int:
    """Vector length of the model's embeddings (each model has its own index)."""
    try:
        return get_embedder(model_id).dimension
    except UnknownEmbedder:
        return EMBEDDING_DIM


def _last_sequence(session: Session, model_id: str) -> int:
    last = session.scalar(select(func.max(IndexChange.seq)).where(IndexChange.model_id == model_id))
    return int(last or 0)


def _apply(session: Session, index: VectorIndex, changes: Sequence[Any]) -> int:
    """Apply changes in log order, batching consecutive adds (one vector query per run); how many removed."""
    run: list[tuple[int, int]] = []  # (seq, embedding_id) of consecutive adds
    removed = 0
    for seq, op, embedding_id in changes:
        if op == "add":
            run.append((seq, embedding_id))
            continue
        _add_run(session, index, run)
        run = []
        index.remove([embedding_id], sequence=seq)
        removed += 1
    _add_run(session, index, run)
    return removed


def _add_run(session: Session, index: VectorIndex, run: list[tuple[int, int]]) -> None:
    if not run:
        return
    wanted = [embedding_id for _, embedding_id in run if embedding_id not in index]
    vectors = dict(_vectors(session, set(wanted)))
    ids = [embedding_id for embedding_id in dict.fromkeys(wanted) if embedding_id in vectors]
    matrix = np.stack([vectors[i] for i in ids]) if ids else np.empty((0, index.dim), dtype=np.float32)
    index.add(np.asarray(ids, dtype=np.int64), matrix, sequence=run[-1][0])


def _vectors(session: Session, ids: set[int]) -> Iterable[tuple[int, np.ndarray]]:
    if not ids:
        return []
    rows = session.execute(select(Embedding.id, Embedding.vector).where(Embedding.id.in_(ids))).all()
    return [(row.id, vector_from_bytes(row.vector)) for row in rows]
