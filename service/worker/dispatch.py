"""How the API hands work to the workers, without importing Celery into request code.

`create_app` puts a dispatcher on `app.state.dispatcher`; routes pass its methods to the
domain operations (`add_record_photo`, `submit_case`), which call them with ids only and
only after their transaction has committed (`service.effects.after_commit`).
`CeleryDispatcher` sends named tasks to the broker; `RecordingDispatcher` keeps what was
sent, for tests that drive the pipeline themselves. A lost message is not lost work: the reaper
re-queues rows left `queued` or stuck `processing`.
"""

from __future__ import annotations

from typing import Protocol

from service.settings import Settings

PROCESS_RECORD_PHOTO = "reunite.process_record_photo"
PROCESS_CASE = "reunite.process_case"
EMBED_QUEUE = "embed"


class Dispatcher(Protocol):
    def record_photo(self, photo_id: int) -> None: ...

    def case(self, case_id: int) -> None: ...


class CeleryDispatcher:
    def __init__(self, settings: Settings):
        self._settings = settings
        self._app = None

    def record_photo(self, photo_id: int) -> None:
        self._send(PROCESS_RECORD_PHOTO, photo_id)

    def case(self, case_id: int) -> None:
        self._send(PROCESS_CASE, case_id)

    def _send(self, task: str, row_id: int) -> None:
        if self._app is None:
            from service.worker.celery_app import make_celery

            self._app = make_celery(self._settings)
        self._app.send_task(task, args=[row_id], queue=EMBED_QUEUE)


class RecordingDispatcher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def record_photo(self, photo_id: int) -> None:
        self.sent.append((PROCESS_RECORD_PHOTO, photo_id))

    def case(self, case_id: int) -> None:
        self.sent.append((PROCESS_CASE, case_id))
