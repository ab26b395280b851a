"""The model card page: the model in use, its calibration, its measured figures and limits.

Open to everyone signed in: caseworkers and reviewers should know how far to trust a
candidate, and oversight bodies what the service claims. It shows the same figures as
`GET /api/v1/model` (service.calibration.card), in words and tables.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from service.calibration.card import model_card
from service.deps import DbSession
from service.embedding.service import active_model
from service.web.pages import page_router
from service.web.render import add_nav, render
from service.web.session import PageUser, page_permission
from vetting.permissions import Action

router = page_router(tags=["pages: model"])
add_nav(
    "Model card",
    "/model",
    Action.READ_MODEL_CARD,
    order=80,
    description="How well the face matcher works, and where it is weak.",
)


@router.get("/model", **page_permission(Action.READ_MODEL_CARD))
def card(request: Request, user: PageUser, session: DbSession) -> Response:
    model_id, model_version = active_model(session)
    figures = model_card(session, model_id=model_id, model_version=model_version)
    return render(request, "model/card.html", {"title": "Model card", "card": figures})
