"""The Celery tasks: thin wrappers that take ids and hand them to the pipeline.

Tasks receive row ids only, never objects or photos: the database holds the state,
so any worker can pick up any message and a message carries nothing personal.
`reembed_batch` (queue `embed`) runs one batch of a re-embedding job and sends the
next (service.worker.reembed); the reaper also re-sends a job whose message was lost.

Each worker process owns one `WorkerRuntime` and one `Pipeline`, created on first use
in that process (never inherited through a fork). `install_worker_hooks` makes a
worker load the face models once in its main process, before the pool forks (the
children share the model memory), and open its database engine and warm its index
replica in each pool process (`worker_process_init`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from celery.signals import worker_init, worker_process_init

from service.worker.dispatch import CeleryDispatcher

from service.worker.names import (
    MAINTENANCE,
    PROCESS_CASE,
    PROCESS_RECORD_PHOTO,
    REAP,
    REEMBED_BATCH,
    RETRY_WEBHOOKS,
    SEARCH_CASE,
)
from service.worker.runtime import TRANSIENT_ERRORS, WorkerRuntime, limit_native_threads

if TYPE_CHECKING:
    from service.worker.celery_app import ReuniteCelery  # which imports this module to register the tasks
    from service.worker.pipeline import Pipeline  # imported when first needed: it loads dlib

log = structlog.get_logger("reunite.worker")

# How a task retries on a transient error (the database was unreachable): backing off, five times at most.
RETRY_POLICY: dict[str, Any] = dict(retry_backoff=2, retry_backoff_max=300, retry_jitter=True, max_retries=5)


@dataclass
class _ProcessState:
    pid: int
    runtime: WorkerRuntime
    pipeline: Pipeline


def process_state(app: ReuniteCelery) -> _ProcessState:
    """This process's runtime and pipeline for `app`, created on first use."""
    state: _ProcessState | None = app.process_state
    if state is None or state.pid != os.getpid():
        from service.worker.pipeline import Pipeline

        runtime = WorkerRuntime.create(app.reunite_settings)
        pipeline = Pipeline(
            settings=runtime.settings,
            sessions=runtime.sessions,
            vault=runtime.vault,
            replica=runtime.replica,
            send_search=_dispatcher(app).search,
        )
        state = _ProcessState(pid=os.getpid(), runtime=runtime, pipeline=pipeline)
        app.process_state = state
    return state


def _dispatcher(app: ReuniteCelery) -> CeleryDispatcher:
    return CeleryDispatcher(app.reunite_settings, app=app)


def register_tasks(app: ReuniteCelery) -> None:
    # Not shared: a shared task would also be bound to every other app made in this process
    # (tests make one per database), and calls by name could reach another app's database.
    retrying: dict[str, Any] = dict(autoretry_for=TRANSIENT_ERRORS, shared=False, **RETRY_POLICY)

    @app.task(name=PROCESS_RECORD_PHOTO, **retrying)
    def process_record_photo(photo_id: int) -> str:
        return process_state(app).pipeline.process_record_photo(photo_id)

    @app.task(name=PROCESS_CASE, **retrying)
    def process_case(case_id: int) -> str:
        return process_state(app).pipeline.process_case(case_id)

    @app.task(name=SEARCH_CASE, **retrying)
    def search_case(case_id: int) -> str:
        return process_state(app).pipeline.search_case(case_id)

    @app.task(name=REEMBED_BATCH, **retrying)
    def reembed_batch(job_id: int) -> str:
        from service.worker.reembed import Reembedder

        runtime = process_state(app).runtime
        return Reembedder(
            settings=runtime.settings,
            sessions=runtime.sessions,
            vault=runtime.vault,
            replica=runtime.replica,
            send_next=_dispatcher(app).reembed,
        ).run_batch(job_id)

    @app.task(name=REAP, shared=False)
    def reap() -> dict:
        # Not retried: the next run comes within a minute anyway.
        from service.db import transaction, utcnow
        from service.embedding.service import stalled_jobs
        from service.worker.reaper import reap as reap_rows

        state = process_state(app)
        timeout = timedelta(minutes=state.runtime.settings.processing_timeout_minutes)
        counts = reap_rows(state.runtime.sessions, dispatcher=_dispatcher(app), processing_timeout=timeout).counts()
        with transaction(state.runtime.sessions) as session:
            stalled = stalled_jobs(session, now=utcnow(), stalled_after=timeout)
        for job_id in stalled:  # a re-embedding whose message was lost resumes where it stopped
            _dispatcher(app).reembed(job_id)
        return {**counts, "reembed_jobs_sent": len(stalled)}

    @app.task(name=RETRY_WEBHOOKS, shared=False)
    def retry_webhooks() -> dict:
        # Not retried: each delivery keeps its own schedule in the database, and the next run is a minute away.
        from service.reviews.webhooks import retry_due

        runtime = process_state(app).runtime
        return retry_due(runtime.sessions, allow_loopback=runtime.settings.webhook_allow_loopback)

    @app.task(name=MAINTENANCE, shared=False)
    def maintenance() -> dict:
        # Each job catches its own errors (see run_maintenance); tomorrow's run retries.
        from service.worker.maintenance import run_maintenance

        return run_maintenance(process_state(app).runtime)


def _check_model_installed(model_id: str) -> None:
    """Say at start-up, not at the first photo, that the active model's weight files are missing or altered."""
    from matching.embedders import ModelNotInstalled, UnknownEmbedder, get_embedder

    try:
        get_embedder(model_id).check_installed()
    except ModelNotInstalled as error:
        log.error("active_model_not_installed", model_id=model_id, problem=error.problem)
    except UnknownEmbedder:
        log.error("active_model_unknown", model_id=model_id)


def install_worker_hooks(app: ReuniteCelery) -> None:
    """Load models once per worker and set each pool process up (call before starting a worker)."""

    @worker_init.connect(weak=False)
    def load_models(**_) -> None:
        limit_native_threads()
        import matching.faces  # noqa: F401  (loads the dlib models; forked children share them)

    @worker_process_init.connect(weak=False)
    def prepare_process(**_) -> None:
        limit_native_threads()  # per process: OpenMP settings are not inherited through fork reliably
        state = process_state(app)
        try:
            from service.embedding.service import active_model

            session = state.runtime.sessions()
            try:
                model_id = active_model(session)[0]
                state.runtime.replica.catch_up(session, model_id)
            finally:
                session.close()
            _check_model_installed(model_id)
        except TRANSIENT_ERRORS:
            log.warning("index_warmup_skipped")  # the first search catches up instead
