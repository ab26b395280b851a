"""Model card API: the model in use, its calibration, and its latest measured figures."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.calibration.card import model_card
from service.deps import DbSession, permission
from service.embedding.service import active_model
from vetting.permissions import Action

router = APIRouter(tags=["model"])


@router.get("/model", **permission(Action.READ_MODEL_CARD))
def get_model_card(session: DbSession) -> dict[str, Any]:
    """The active model, its calibration (threshold and bands) and its evaluation by age band and group."""
    model_id, model_version = active_model(session)
    return model_card(session, model_id=model_id, model_version=model_version)
