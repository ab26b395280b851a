"""Real Celery worker processes for tests: a Redis database per run, `reunite worker`, polling.

Shared by tests/integration/test_worker_process.py and tests/e2e/test_match_flow.py.
Work reaches the workers exactly as the API sends it (ids only, through the broker), and
outcomes are read back from the database or the API: there is no result backend.

Redis: one database number per test run (REUNITE_TEST_REDIS_DB, else one picked at
random when this module is imported, so every module of the run uses the same one),
flushed when a module's fixture first asks for it. Queue names are fixed by the service, so two
test runs on the same Redis database would take each other's messages.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from service.settings import Settings

WAIT_SECONDS = 120  # generous: the machine's two cores are shared with other test runs
REDIS_DB = int(os.environ.get("REUNITE_TEST_REDIS_DB") or random.randrange(1, 16))
# What `reunite serve` gives its worker child: one BLAS/OpenMP thread per process.
ONE_THREAD_EACH = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

State = TypeVar("State")


def redis_database() -> Iterator[str]:
    """A flushed Redis database for this run's brokers (skips when Redis is not running).

    A generator for a session fixture: `yield from redis_database()`.
    """
    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    try:
        redis.Redis.from_url(url).flushdb()
    except redis.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    yield url
    redis.Redis.from_url(url).flushdb()


class Workers:
    """Starts `reunite worker` processes with the test's settings and stops them all.

    `broker_url=None` runs them on the embedded default, kombu's filesystem transport in
    the settings' data folder, as `reunite serve` does.
    """

    def __init__(self, settings: Settings, broker_url: str | None, logs: Path):
        self.settings, self.broker_url, self.logs = settings, broker_url, logs
        self.processes: list[subprocess.Popen] = []

    def environment(self) -> dict[str, str]:
        s = self.settings
        environment = {
            **os.environ,
            **ONE_THREAD_EACH,
            "REUNITE_ENVIRONMENT": "test",
            "REUNITE_SECRET_KEY": s.secret_key.get_secret_value(),
            "REUNITE_DATABASE_URL": s.database_url,
            "REUNITE_MASTER_KEY": s.master_key.get_secret_value(),
            "REUNITE_DATA_DIR": str(s.data_dir),
            "REUNITE_AUDIT_KEY_PATH": str(s.audit_key_file),
        }
        environment.pop("REUNITE_BROKER_URL", None)
        if self.broker_url is not None:
            environment["REUNITE_BROKER_URL"] = self.broker_url
        return environment

    def start(self, concurrency: int = 1) -> subprocess.Popen:
        number = len(self.processes)
        log = open(self.log_path(number), "wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from service.cli import app; app()",
                "worker",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "info",
                "--name",
                f"test-{os.getpid()}-{number}@{socket.gethostname()}",
            ],
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the child holds its own copy of the descriptor
        self.processes.append(process)
        return process

    def log_path(self, number: int) -> Path:
        return self.logs / f"worker-{number}.log"

    def log_tails(self, lines: int = 15) -> str:
        """The end of every worker's log, to explain a timeout."""
        tails = []
        for number, process in enumerate(self.processes):
            path = self.log_path(number)
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            state = "running" if process.poll() is None else f"exited with {process.returncode}"
            tails.append(f"--- worker {number} ({state}), last lines of {path}:\n" + "\n".join(text))
        return "\n".join(tails)

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the worker and its pool processes at once, as a crash would."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)

    def stop_all(self, *, warm: bool = True) -> None:
        """Stop every worker: a warm shutdown first (the task in hand is finished), or at once.

        A warm shutdown of an idle worker still takes seconds (the pool is joined and the
        broker connection drained); tests whose workers are idle at the end skip it.
        """
        for process in self.processes:
            if warm and process.poll() is None:
                process.terminate()  # warm shutdown
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            self.kill(process)


def poll(
    fetch: Callable[[], State],
    *,
    until: Callable[[State], bool],
    what: str,
    seconds: float = WAIT_SECONDS,
    every: float = 0.1,
    explain: Callable[[], str] | None = None,
) -> State:
    """Call `fetch` until `until(state)` holds and return that state; on timeout fail with the last state."""
    deadline = time.monotonic() + seconds
    while True:
        state = fetch()
        if until(state):
            return state
        if time.monotonic() >= deadline:
            context = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}; last state: {state!r}{context}")
        time.sleep(every)


def wait_for(check, *, what: str, seconds: float = WAIT_SECONDS, every: float = 0.1):
    """Wait until `check()` returns something truthy, and return it."""
    return poll(check, until=bool, what=what, seconds=seconds, every=every)
