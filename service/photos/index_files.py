"""Where index replicas keep their snapshot files, and how an erasure discards them.

A snapshot (`<data_dir>/index/<model>.faiss`, written by service.worker.replica) holds
the vectors of the gallery as of its sequence number. After a consent withdrawal the
database and every replica's next search no longer hold the child's face, but a
snapshot written before would keep its vector on disk until the next one is written.
So the withdrawal deletes the snapshots once its erasure has committed; a replica that
starts later rebuilds from the log (which names embeddings, never vectors) and writes a
clean snapshot. A replica that was saving at that very moment is caught too: a replica
that applies a removal rewrites the snapshot file if one exists (service.worker.replica).
"""

from __future__ import annotations

from pathlib import Path

import structlog

log = structlog.get_logger("reunite.photos.index_files")

SNAPSHOT_SUFFIX = ".faiss"


def snapshot_path(index_dir: Path, model_id: str) -> Path:
    return index_dir / f"{model_id}{SNAPSHOT_SUFFIX}"


def discard_snapshots(index_dir: Path) -> int:
    """Delete every snapshot in `index_dir` (each may hold an erased vector); how many were deleted."""
    discarded = 0
    for path in sorted(index_dir.glob(f"*{SNAPSHOT_SUFFIX}")):
        try:
            path.unlink()
            discarded += 1
        except FileNotFoundError:  # another erasure deleted it first
            continue
        except OSError as error:
            log.warning("index_snapshot_not_deleted", file=path.name, error=type(error).__name__)
    return discarded
