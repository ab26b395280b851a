"""Structured logs with structlog: JSON lines in production, readable lines in development.

Log ids, counts, codes and timings only. Never log a photo, a vector, a name, a
request body or a query string: case details travel in those.
"""

from __future__ import annotations

import logging

import structlog

from service.settings import Settings


def configure_logging(settings: Settings) -> None:
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if settings.environment == "development"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=False,
    )
