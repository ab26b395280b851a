"""Embedding rows and photo outcomes: how a found face and a processed photo are written.

The worker (service.worker.pipeline) and the re-embedder (service.worker.reembed) find
the faces; this module says how a face becomes an `Embedding` row (its box, quality and
vector, never an image) and how a photo's outcome is recorded.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.photos.models import Embedding, Photo

if TYPE_CHECKING:  # matching.faces loads the face models: only the worker imports it
    from matching.faces import Face


def vector_from_bytes(data: bytes) -> np.ndarray:
    """An embedding column value back to its float32 vector (little-endian on disk)."""
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def vector_to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def embedding_row(photo_id: int, face_index: int, face: Face) -> Embedding:
    """The row that stores one found face of a photo."""
    quality = {**asdict(face.quality), "jitters": face.jitters}
    return Embedding(
        photo_id=photo_id,
        face_index=face_index,
        box_top=face.box.top,
        box_right=face.box.right,
        box_bottom=face.box.bottom,
        box_left=face.box.left,
        quality=json.dumps(quality, sort_keys=True),
        vector=vector_to_bytes(face.embedding),
        model_id=face.model_id,
        model_version=face.model_version,
    )


def set_photo_outcome(
    photo: Photo, status: str, message: str | None, now: datetime, *, faces_found: int | None = None
) -> None:
    """Record what processing made of a photo: its status, a sentence for people, the faces found."""
    photo.status = status
    photo.status_message = message
    photo.processed_at = now
    if faces_found is not None:
        photo.faces_found = faces_found


def case_photo(session: Session, case_id: int) -> Photo | None:
    """The photo a case searches with (its first)."""
    return session.scalars(select(Photo).where(Photo.case_id == case_id).order_by(Photo.id).limit(1)).first()


def stored_faces(session: Session, photo_id: int, model_id: str) -> int:
    """How many faces of the photo are stored for `model_id`."""
    return (
        session.scalar(select(func.count()).where(Embedding.photo_id == photo_id, Embedding.model_id == model_id)) or 0
    )


def probe_faces(session: Session, photo_id: int, model_id: str) -> list:
    """A case photo's stored faces of `model_id` (id, vector, model), in face order."""
    return list(
        session.execute(
            select(Embedding.id, Embedding.vector, Embedding.model_id, Embedding.model_version)
            .where(Embedding.photo_id == photo_id, Embedding.model_id == model_id)
            .order_by(Embedding.face_index)
        ).all()
    )
