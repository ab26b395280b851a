"""`create_app(settings)`: the FastAPI application, its API routers, web pages, health and metrics.

Nothing is read from the environment at import time: the settings object passed
in is the whole configuration, which is what lets the tests build an app per
database. The schema is built by Alembic before the app starts (`reunite serve`
does it); `/readyz` reports whether the database is reachable and current.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service import migrate
from service.audit.service import enable_checkpoints
from service.body_limit import BodySizeLimit
from service.db import make_engine, make_session_factory
from service.deps import ACTION_KEY, PUBLIC, PUBLIC_KEY
from service.logging import configure_logging
from service.photos.storage import PhotoVault
from service.problems import document_errors
from service.refusal import REFUSALS
from service.routers import api_routers, web_routers
from service.settings import Settings
from service.web.pages import refusal_handler
from service.web.render import STATIC_DIR
from service.web.security import DOCS_PATHS, WebSecurityMiddleware
from service.worker.dispatch import CeleryDispatcher

log = structlog.get_logger("reunite.http")


class UnmarkedRoute(RuntimeError):
    """A route was declared without a permission or an explicit PUBLIC mark."""


def create_app(settings: Settings) -> FastAPI:
    configure_logging(settings)
    engine = make_engine(settings.sqlalchemy_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        engine.dispose()

    # Swagger UI and ReDoc load their scripts from a CDN, unpinned, and need inline script, so they
    # are served only in development; /openapi.json stays everywhere for clients and tools.
    interactive_docs = settings.environment == "development"
    app = FastAPI(
        title="Reunite",
        version="1",
        lifespan=lifespan,
        docs_url="/docs" if interactive_docs else None,
        redoc_url="/redoc" if interactive_docs else None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.vault = PhotoVault(settings.photo_root, settings.photo_master_key())
    app.state.dispatcher = CeleryDispatcher(settings)
    enable_checkpoints(app.state.session_factory, settings)  # periodic signed audit checkpoints
    for router in api_routers():
        app.include_router(router, prefix="/api/v1")
    for router in web_routers():
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Before anything reads a body; inside the metrics middleware (added next), whose task group would
    # otherwise turn the 413 raised while a route reads the body into an exception group.
    app.add_middleware(BodySizeLimit, max_upload_bytes=settings.max_upload_bytes)
    _add_health(app)
    _add_metrics(app)
    _add_error_handlers(app)
    _check_every_route_is_marked(app)
    _publish_error_shapes(app)
    # outermost: headers and cookies on every answer (the docs pages, where served, go without the CSP)
    app.add_middleware(WebSecurityMiddleware, docs_paths=DOCS_PATHS if interactive_docs else ())
    return app


def _add_health(app: FastAPI) -> None:
    @app.get("/healthz", **PUBLIC, tags=["health"])
    def healthz() -> dict:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", **PUBLIC, tags=["health"])
    def readyz() -> JSONResponse:
        """The database answers and its schema is at the newest migration."""
        engine = app.state.engine
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            current = migrate.is_current(engine)
        except SQLAlchemyError:
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        if not current:
            return JSONResponse({"status": "unavailable", "database": "migrations pending"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})


def _add_metrics(app: FastAPI) -> None:
    registry = CollectorRegistry()
    requests = Counter("reunite_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("reunite_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry)
    app.state.metrics_registry = registry

    @app.middleware("http")
    async def observe(request: Request, call_next):
        request_id = uuid.uuid4().hex[:16]
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        template = route.path if route is not None else "unmatched"
        requests.labels(request.method, template, str(response.status_code)).inc()
        latency.labels(request.method, template).observe(elapsed)
        # Paths only, never bodies or query strings: they may carry case details.
        log.info(
            "request", method=request.method, route=template, status=response.status_code, ms=round(elapsed * 1000, 1)
        )
        response.headers["X-Request-ID"] = request_id
        structlog.contextvars.clear_contextvars()
        return response

    @app.get("/metrics", **PUBLIC, tags=["health"], include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _add_error_handlers(app: FastAPI) -> None:
    for refusal in REFUSALS:  # the one refusal handler, for the API and the pages (service.web.pages)
        app.add_exception_handler(refusal, refusal_handler)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
            problems.append({"field": where, "problem": error.get("msg", "invalid")})
        fields = ", ".join(dict.fromkeys(p["field"] or "request" for p in problems))  # each field once
        return JSONResponse(
            {"detail": f"Some fields are missing or invalid: {fields}.", "errors": problems}, status_code=422
        )


def _publish_error_shapes(app: FastAPI) -> None:
    """The OpenAPI schema documents the error bodies the handlers above actually send (service.problems)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate(), authenticated_mark=ACTION_KEY)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema


def api_routes(routes) -> Iterator[APIRoute]:
    """Every APIRoute, including those of included routers (which FastAPI keeps nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)


def _check_every_route_is_marked(app: FastAPI) -> None:
    for route in api_routes(app.routes):
        extra = route.openapi_extra or {}
        if ACTION_KEY not in extra and not extra.get(PUBLIC_KEY):
            raise UnmarkedRoute(f"{sorted(route.methods or ())} {route.path} has neither a permission nor PUBLIC")
