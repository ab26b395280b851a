"""Quality flags of stored faces: the one place they are worked out, when they are shown.

Every embedding stores its face's quality figures (`Embedding.quality`, JSON of
`matching.faces.FaceQuality`); nothing stores a flag. The record page, the case
page, the review page and their API answers all call `face_quality` with the gates
in force (`Settings.quality_gates()`), so a changed gate applies to every photo at
once, old and new alike. A face is flagged, never refused, for its quality
(`matching.quality`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from matching.quality import Gates, known_figures, quality_flags
from service.photos.models import Embedding, Photo


class FaceQualityOut(BaseModel):
    """One face's quality figures and, worked out from them, its low-quality flag and reasons."""

    face_index: int = Field(description="The face's number in its photo, from 0.")
    quality: dict[str, float] = Field(description="box_px, sharpness, asymmetry, detection_score.")
    low_quality: bool = Field(
        description="True when the face is below a quality gate: it was still "
        "enrolled or searched, but matches may be missed or weaker."
    )
    quality_flags: list[str] = Field(description="Why, in plain words (empty when not low quality).")


def stored_figures(stored: str | None) -> dict[str, float]:
    """The known quality figures from an embedding's JSON; anything else is left out."""
    try:
        return known_figures(json.loads(stored or "{}"))
    except ValueError:
        return {}


def face_quality(stored: str | None, gates: Gates, *, face_index: int = 0) -> FaceQualityOut:
    """The figures of one stored face and its flags under `gates`."""
    figures = stored_figures(stored)
    flags = quality_flags(figures, gates)
    return FaceQualityOut(face_index=face_index, quality=figures, low_quality=bool(flags), quality_flags=flags)


def photo_faces(session: Session, photo_ids: Iterable[int], gates: Gates) -> dict[int, list[FaceQualityOut]]:
    """Each photo's faces in face order, once each (a face embedded by two models has one set of figures)."""
    photo_ids = list(photo_ids)
    if not photo_ids:
        return {}
    rows = session.execute(
        select(Embedding.photo_id, Embedding.face_index, Embedding.quality)
        .where(Embedding.photo_id.in_(photo_ids))
        .order_by(Embedding.photo_id, Embedding.face_index, Embedding.id)
    ).all()
    found: dict[int, list[FaceQualityOut]] = {photo_id: [] for photo_id in photo_ids}
    for row in rows:
        faces = found[row.photo_id]
        if not faces or faces[-1].face_index != row.face_index:
            faces.append(face_quality(row.quality, gates, face_index=row.face_index))
    return found


def case_faces(session: Session, case_id: int, gates: Gates) -> list[FaceQualityOut]:
    """The faces of a case's photo, every one searched, each with its flags (empty once purged)."""
    photo_id = session.scalar(select(Photo.id).where(Photo.case_id == case_id).order_by(Photo.id).limit(1))
    return [] if photo_id is None else photo_faces(session, [photo_id], gates)[photo_id]
