"""`reunite worker` and `reunite beat`: the Celery worker and the periodic scheduler.

Both read the same `REUNITE_*` settings as the API, so they share its database and
broker: `REUNITE_BROKER_URL` (redis://..., amqp://... for RabbitMQ) in production, the
embedded filesystem broker in `REUNITE_DATA_DIR` by default. Run exactly one
scheduler per deployment (`reunite beat`, or one worker with `--beat`): it sends the
reaper every minute and the maintenance once a day.
"""

from __future__ import annotations

import os
import socket
from typing import Annotated

import typer

from service.settings import Settings

QUEUES = "embed,search"


def worker(
    queues: Annotated[str, typer.Option(help="Queues to consume: embed (face analysis), search, or both.")] = QUEUES,
    concurrency: Annotated[int, typer.Option(help="Worker processes (0 = one per core).")] = 0,
    beat: Annotated[bool, typer.Option(help="Also run the periodic scheduler (one per deployment).")] = False,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, or solo for one process.")] = "prefork",
    name: Annotated[str | None, typer.Option(help="Worker name (default: reunite-<pid>@<host>).")] = None,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run a Celery worker that embeds photos and searches the gallery."""
    from service.worker.celery_app import is_filesystem_broker, make_celery
    from service.worker.tasks import install_worker_hooks

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = make_celery(settings)
    install_worker_hooks(app)
    argv = [
        "worker",
        "--queues",
        queues,
        "--pool",
        pool,
        "--loglevel",
        loglevel,
        "--concurrency",
        str(concurrency or os.cpu_count() or 1),
        "--hostname",
        name or f"reunite-{os.getpid()}@{socket.gethostname()}",
    ]
    if beat:
        argv.append("--beat")
    if is_filesystem_broker(settings):
        # Start-up handshakes and heartbeats are broadcasts: nothing to gain on a folder of files.
        argv += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    app.worker_main(argv)


def beat(
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run the periodic scheduler alone (reaper every minute, maintenance daily)."""
    from service.worker.celery_app import make_celery

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    make_celery(settings).start(["beat", "--loglevel", loglevel])
