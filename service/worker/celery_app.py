"""The Celery application: broker, queues, routing, delivery guarantees and the schedule.

`make_celery(settings)` builds the app for both sides: the API (which only sends
tasks, through `service.worker.dispatch.CeleryDispatcher`) and the workers. Building
it loads no face model; a worker process loads those once (see service.worker.tasks).

Broker: `settings.celery_broker_url`. The embedded default `filesystem://` needs no
server: kombu's filesystem transport keeps messages as files under
`<data_dir>/broker`, one folder shared by every process (a message is taken by
renaming it into `processed/`, which only one process can do). Production sets
`REUNITE_BROKER_URL=redis://...`; `amqp://...` (RabbitMQ) works by the URL alone. There
is no result backend: the database holds every outcome.

Queues:
- `embed`: `process_record_photo`, `process_case` and `reembed_batch` (a batch of a
  re-embedding job) — decoding and dlib detection and embedding, CPU-bound (about half
  a second a photo); scaled with processes per core.
- `search`: `search_case` (needs the index replica, milliseconds of work), the reaper,
  the webhook retries and the daily maintenance. Kept apart so searches and the reaper
  are not stuck behind a backlog of uploads, and so only processes that search hold a
  replica.
  One worker may consume both queues (the embedded `reunite serve` does).

Delivery: acks late, prefetch 1 and reject-on-worker-lost, so a message is
acknowledged only after its work is done and a crashed worker's message goes back to
the broker; the claim in service.worker.pipeline makes a second delivery harmless.
Transient errors (database unreachable, deadlock victim) are retried with exponential
backoff, five times at most; bad input is never retried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from celery.schedules import crontab
from kombu import Exchange, Queue

from service.settings import Settings
from service.worker.names import (  # noqa: F401  (names re-exported for callers of this module)
    EMBED_QUEUE,
    MAINTENANCE,
    REAP,
    RETRY_WEBHOOKS,
    ROUTES,
    SEARCH_CASE,
    SEARCH_QUEUE,
)

REAP_EVERY_SECONDS = 60.0


def is_filesystem_broker(settings: Settings) -> bool:
    return settings.celery_broker_url.startswith("filesystem://")


def broker_folders(settings: Settings) -> dict[str, Path] | None:
    """The filesystem transport's folders, or None for a server broker."""
    if not is_filesystem_broker(settings):
        return None
    root = (settings.data_dir / "broker").resolve()
    return {
        # Producers write where consumers read: one queue folder for every process.
        "data_folder_in": root / "queue",
        "data_folder_out": root / "queue",
        "processed_folder": root / "processed",
        "control_folder": root / "control",
    }


class ReuniteCelery(Celery):
    """The app, carrying the settings it was made from: its tasks build their worker's runtime from them.

    `process_state` is that runtime and pipeline, made on first use in each worker process
    (service.worker.tasks.process_state).
    """

    def __init__(self, settings: Settings):
        super().__init__("reunite", set_as_current=False)
        self.reunite_settings = settings
        self.process_state: Any = None


def make_celery(settings: Settings) -> ReuniteCelery:
    app = ReuniteCelery(settings)
    app.conf.update(_configuration(settings))
    from service.worker.tasks import register_tasks

    register_tasks(app)
    return app


def _configuration(settings: Settings) -> dict:
    timeout_seconds = settings.processing_timeout_minutes * 60
    config = dict(
        broker_url=settings.celery_broker_url,
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A connection lost mid-task means the message will be delivered again: stop rather than race it.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # A task running past the reaper's timeout is killed: its row is re-queued anyway.
        task_time_limit=timeout_seconds,
        # The pool child loads the database engine and warms the index in worker_process_init.
        worker_proc_alive_timeout=60.0,
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name) for name in (EMBED_QUEUE, SEARCH_QUEUE)
        ],
        task_default_queue=EMBED_QUEUE,
        task_routes={name: {"queue": queue, "routing_key": queue} for name, queue in ROUTES.items()},
        beat_schedule={
            "reap": {
                "task": REAP,
                "schedule": REAP_EVERY_SECONDS,
                "options": {"queue": SEARCH_QUEUE, "expires": 2 * REAP_EVERY_SECONDS},
            },
            # Apart from the reaper: a run waits on receivers, and must not hold re-sends back.
            "retry-webhooks": {
                "task": RETRY_WEBHOOKS,
                "schedule": REAP_EVERY_SECONDS,
                "options": {"queue": SEARCH_QUEUE, "expires": 2 * REAP_EVERY_SECONDS},
            },
            "maintenance": {
                "task": MAINTENANCE,
                "schedule": crontab(hour=3, minute=15),
                "options": {"queue": SEARCH_QUEUE, "expires": 6 * 3600},
            },
        },
        # The service's structured log lines go to stdout; Celery passes them on at this level.
        worker_redirect_stdouts_level="INFO",
        beat_schedule_filename=str((settings.data_dir / "celerybeat-schedule").resolve()),
        timezone="UTC",
    )
    folders = broker_folders(settings)
    if folders is not None:
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            **{name: str(path) for name, path in folders.items()},
            "store_processed": True,  # a rename into processed/ is the atomic take (see module doc)
            "polling_interval": 0.5,
        }
        # No broadcast on a folder of files: remote control and events stay off.
        config["worker_enable_remote_control"] = False
        config["worker_send_task_events"] = False
    else:
        # Redis redelivers an unacknowledged message after this long; keep it above the time limit.
        config["broker_transport_options"] = {"visibility_timeout": max(3600, 2 * timeout_seconds)}
    return config
