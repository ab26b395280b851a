"""`reunite serve` and `reunite admin create`: run the service and create operator accounts.

`serve` is the embedded, one-command service: the API in this process plus a real
Celery worker (one process, with the periodic scheduler) as a child process on the
filesystem broker in the data folder, so photos are processed asynchronously while
the API keeps answering. The child is stopped when serve exits, and is told by the
kernel to stop if serve dies without cleaning up.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Annotated

import typer
from rich.console import Console

from service.audit.actions import AuditAction
from service.settings import Settings
from vetting.roles import OPERATOR_ROLES

console = Console(soft_wrap=True)
admin_app = typer.Typer(no_args_is_help=True, help="Operator accounts (platform admins and auditors).")


def prepare(settings: Settings):
    """Migrate the database and return a session factory on it."""
    from service.db import make_engine, make_session_factory
    from service.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    return engine, make_session_factory(engine)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[bool, typer.Option(help="Start a worker and the scheduler as a child process.")] = True,
) -> None:
    """Run the API and a worker on the configured database (SQLite in REUNITE_DATA_DIR by default)."""
    import uvicorn

    from service.app import create_app
    from service.bootstrap import create_first_admin

    settings = Settings()
    engine, sessions = prepare(settings)
    session = sessions()
    try:
        operator = create_first_admin(session, email=settings.bootstrap_admin_email, issuer=settings.totp_issuer)
    finally:
        session.close()
        engine.dispose()
    if operator is not None:
        console.print("[bold]First start: a platform admin was created. This is shown only once.[/bold]")
        console.print(f"  email:      {operator.email}")
        console.print(f"  password:   {operator.password}")
        console.print(f"  TOTP (add to an authenticator app): {operator.totp_uri}")
    console.print(
        f"Reunite on http://{host}:{port} (data in {settings.data_dir.resolve()}); "
        "API docs at /docs in development, /openapi.json always"
    )
    child = start_worker_process() if worker else None
    if child is not None:
        console.print(f"Worker started (pid {child.pid}), broker {settings.celery_broker_url}")
    # uvicorn shuts down on SIGTERM and then raises the signal again: make that an exit that
    # runs the `finally` below, rather than a kill that would orphan the worker.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1; REUNITE_TRUSTED_PROXIES decides.
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", proxy_headers=False)
    finally:
        if child is not None:
            stop_worker_process(child)


WORKER_STOP_SECONDS = 30
# One process, one thread per native library: the embedded service shares a laptop.
WORKER_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start_worker_process() -> subprocess.Popen:
    """`reunite worker --concurrency 1 --beat` as a child with the same settings (environment)."""
    command = [
        sys.executable,
        "-c",
        "from service.cli import app; app()",
        "worker",
        "--concurrency",
        "1",
        "--beat",
        "--loglevel",
        "warning",
    ]
    # Its own session: a Ctrl-C in the terminal reaches serve only, which then stops the
    # worker in order (warm shutdown: the task in hand is finished or given back).
    return subprocess.Popen(
        command, env={**os.environ, **WORKER_ENVIRONMENT}, start_new_session=True, preexec_fn=_stop_when_parent_dies
    )


def stop_worker_process(child: subprocess.Popen) -> None:
    """SIGTERM the worker (a warm shutdown), wait, then SIGKILL whatever is left of its group."""
    if child.poll() is None:
        # The main process only: it finishes the task in hand and stops its pool itself.
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=WORKER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(child, signal.SIGKILL)  # a pool or scheduler process that outlived it
    child.wait()


def _exit_on_signal(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:
        pass


def _stop_when_parent_dies() -> None:
    """Linux: the kernel sends SIGTERM to the worker if serve is killed outright."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@admin_app.command("create")
def create_operator(
    email: Annotated[str, typer.Option(help="The operator's email address.")],
    role: Annotated[str, typer.Option(help="platform_admin, auditor or platform_reviewer.")],
) -> None:
    """Create a platform admin, auditor or platform reviewer; the password is read from standard input."""
    from sqlalchemy.exc import IntegrityError

    from service.audit.service import record_event
    from service.auth.passwords import WeakPassword, totp_uri
    from service.auth.service import create_user
    from service.db import transaction

    if role not in OPERATOR_ROLES:
        console.print(f"[red]error:[/red] --role must be one of {', '.join(sorted(OPERATOR_ROLES))}")
        raise typer.Exit(2)
    password = sys.stdin.readline().rstrip("\n")
    settings = Settings()
    engine, sessions = prepare(settings)
    try:
        with transaction(sessions) as session:
            user = create_user(session, email=email, password=password, roles={role})
            record_event(
                session,
                action=AuditAction.OPERATOR_CREATED,
                target_type="user",
                target_id=user.id,
                details={"role": role, "via": "cli"},
            )
            assert user.totp_secret is not None  # create_user always enrols TOTP
            uri = totp_uri(user.totp_secret, email=user.email, issuer=settings.totp_issuer)
    except WeakPassword as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except IntegrityError as exc:
        console.print(f"[red]error:[/red] an account with the email {email} already exists")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    console.print(f"Created {role} {user.email}. Add this to an authenticator app (shown once):")
    console.print(uri)
