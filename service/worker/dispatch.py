"""The dispatchers that send work through Celery, and the one tests read back.

The protocol they follow lives below the domains in `service.dispatch`;
domain operations call a dispatcher's methods only after their transaction has committed
(`service.effects.after_commit`).
`CeleryDispatcher` sends named tasks to the broker (`create_app` puts one on
`app.state.dispatcher`); `RecordingDispatcher` keeps what was sent, for tests that
drive the pipeline themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.settings import Settings
from service.worker.names import PROCESS_CASE, PROCESS_RECORD_PHOTO, REEMBED_BATCH, ROUTES, SEARCH_CASE

if TYPE_CHECKING:
    from celery import Celery


class CeleryDispatcher:
    """Sends named tasks (ids only) to their queues: through `app` inside a worker, else through an
    app made from `settings` on first use (the API need not import Celery to start)."""

    def __init__(self, settings: Settings, *, app: Celery | None = None):
        self._settings = settings
        self._app = app

    def record_photo(self, photo_id: int) -> None:
        self._send(PROCESS_RECORD_PHOTO, photo_id)

    def case(self, case_id: int) -> None:
        self._send(PROCESS_CASE, case_id)

    def search(self, case_id: int) -> None:
        self._send(SEARCH_CASE, case_id)

    def reembed(self, job_id: int) -> None:
        self._send(REEMBED_BATCH, job_id)

    def _send(self, task: str, row_id: int) -> None:
        if self._app is None:
            from service.worker.celery_app import make_celery

            self._app = make_celery(self._settings)
        self._app.send_task(task, args=[row_id], queue=ROUTES[task])


class RecordingDispatcher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def record_photo(self, photo_id: int) -> None:
        self.sent.append((PROCESS_RECORD_PHOTO, photo_id))

    def case(self, case_id: int) -> None:
        self.sent.append((PROCESS_CASE, case_id))

    def search(self, case_id: int) -> None:
        self.sent.append((SEARCH_CASE, case_id))

    def reembed(self, job_id: int) -> None:
        self.sent.append((REEMBED_BATCH, job_id))
