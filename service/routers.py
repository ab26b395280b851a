"""The routers create_app mounts: the API (one per domain, under /api/v1) and the web pages (at /)."""

from fastapi import APIRouter


def api_routers() -> list[APIRouter]:
    from service.auth.routes import router as auth
    from service.organisations.routes import router as organisations
    from service.audit.routes import router as audit
    from service.reviews.routes import router as reviews
    from service.records.routes import router as records
    from service.cases.routes import router as cases
    from service.calibration.routes import router as model
    from service.invitations.routes import router as invitations

    return [auth, organisations, audit, reviews, records, cases, model, invitations]


def web_routers() -> list[APIRouter]:
    """The page routers, one per area (see service/web/routes)."""
    from service.web.routes import page_routers

    return page_routers()
