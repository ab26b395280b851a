"""How the service hands work to the workers: the `Dispatcher` protocol, below every domain.

A leaf module (it imports neither Celery nor `service.worker`), so routes and domain
services can name the dispatcher without pulling the worker in. Implementations:
`service.worker.dispatch.CeleryDispatcher` (the API's, through the broker),
`service.worker.tasks.AppDispatcher` (from inside a worker) and
`service.worker.dispatch.RecordingDispatcher` (tests). Work is handed over only after
the transaction that made it has committed, with ids only; a lost message is not lost
work: the reaper re-queues rows left `queued` or stuck `processing`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

log = structlog.get_logger("reunite.dispatch")


class Dispatcher(Protocol):
    def record_photo(self, photo_id: int) -> None: ...

    def case(self, case_id: int) -> None: ...

    def search(self, case_id: int) -> None: ...

    def reembed(self, job_id: int) -> None: ...


def dispatch_after_commit(send: Callable[[int], None], row_id: int) -> None:
    """Hand committed work to the workers; if the broker is down, the reaper re-queues it later."""
    try:
        send(row_id)
    except Exception as error:  # the row is committed as queued: nothing is lost
        log.warning("dispatch_failed", row_id=row_id, error=type(error).__name__)
