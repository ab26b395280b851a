"""What one worker process holds for its whole life: database engine, vault, index replica.

A worker process builds one `WorkerRuntime` (lazily, on its first task, or eagerly
from `worker_process_init`) and keeps it: the face models and the index replica are
loaded once per process, never per task. The engine is created in the process that
uses it, never inherited through a fork, because a pooled connection shared by two
processes corrupts both.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

import service.models  # noqa: F401  (every table registered, so flushes resolve all foreign keys)
from service.audit.service import enable_checkpoints
from service.db import make_engine, make_session_factory
from service.logging import configure_logging
from service.photos.storage import PhotoVault
from service.settings import Settings

if TYPE_CHECKING:
    from service.worker.replica import IndexReplica

# Errors worth retrying: the database was unreachable, restarted, or chose this
# transaction as a deadlock victim. Bad input is never retried: it fails the same way.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


def limit_native_threads() -> None:
    """One BLAS and one FAISS thread per worker process.

    A worker runs one photo at a time per process and is scaled with processes (one
    per core); letting OpenBLAS or OpenMP start a thread per core inside each process
    would run cores x cores threads that fight over the same cores and make every photo
    slower. The environment variables reach libraries loaded later and child
    processes; threadpoolctl and faiss fix the libraries already loaded.
    """
    # OPENCV_FOR_THREADS_NUM: OpenCV's DNN (SFace, YuNet) would also start a thread per core.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENCV_FOR_THREADS_NUM"):
        os.environ.setdefault(variable, "1")
    from threadpoolctl import threadpool_limits

    from matching.index import set_search_threads

    threadpool_limits(limits=1)
    set_search_threads(1)
    # OpenCV is imported only by the models that need it; a worker of the default model never pays for it.
    if (cv2 := sys.modules.get("cv2")) is not None:
        cv2.setNumThreads(1)


@dataclass
class WorkerRuntime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    vault: PhotoVault
    replica: IndexReplica  # imported when a runtime is made: the API process never loads FAISS

    @classmethod
    def create(cls, settings: Settings) -> WorkerRuntime:
        from service.worker.replica import IndexReplica

        configure_logging(settings)
        engine = make_engine(settings.sqlalchemy_url)  # hides bound parameters in errors
        sessions = make_session_factory(engine)
        enable_checkpoints(sessions, settings)  # maintenance writes audit events
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            vault=PhotoVault(settings.photo_root, settings.photo_master_key()),
            replica=IndexReplica(settings.index_dir, index_kind=settings.index_kind),
        )

    def close(self) -> None:
        self.engine.dispose()
