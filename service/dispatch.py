"""How the service hands work to the workers: the `Dispatcher` protocol, below every domain.

A leaf module (it imports neither Celery nor `service.worker`), so routes and domain
services can name the dispatcher without pulling the worker in. Implementations:
`service.worker.dispatch.CeleryDispatcher` (through the broker, from the API or inside a
worker) and `service.worker.dispatch.RecordingDispatcher` (tests). Domain operations hand work over
with ids only, after their transaction has committed (`service.effects.after_commit`); a
lost message is not lost work: the reaper re-queues rows left `queued` or stuck `processing`.
"""

from __future__ import annotations

from typing import Protocol


class Dispatcher(Protocol):
    def record_photo(self, photo_id: int) -> None: ...

    def case(self, case_id: int) -> None: ...

    def search(self, case_id: int) -> None: ...

    def reembed(self, job_id: int) -> None: ...
