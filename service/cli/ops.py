"""`reunite migrate` and `reunite api`: the production pieces that `serve` bundles for a laptop.

Heavy imports (the web framework, the database layer) happen inside the commands so
that every `reunite` command starts quickly.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from service.settings import Settings

console = Console(soft_wrap=True)


def migrate() -> None:
    """Bring the database schema to the newest migration (run once per deployment)."""
    from service.db import make_engine
    from service.migrate import upgrade

    settings = Settings()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    console.print("Database schema is current.")


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="API processes.")] = 1,
) -> None:
    """Serve the API only: no migrations, no bundled worker (production: see docker-compose.yml)."""
    import uvicorn

    if workers > 1:
        uvicorn.run(
            "service.cli.ops:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )
    else:
        uvicorn.run(app_from_environment(), host=host, port=port, log_level="warning")


def app_from_environment():
    from service.app import create_app

    return create_app(Settings())
