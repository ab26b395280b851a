"""`reunite serve` and `reunite admin create`: run the service and create operator accounts."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from sqlalchemy.exc import IntegrityError

from service.app import create_app
from service.audit.service import record_event
from service.auth.passwords import WeakPassword, totp_uri
from service.auth.service import create_user
from service.bootstrap import create_first_admin
from service.db import make_engine, make_session_factory, transaction
from service.migrate import upgrade
from service.settings import Settings
from vetting.roles import OPERATOR_ROLES

console = Console(soft_wrap=True)
admin_app = typer.Typer(no_args_is_help=True, help="Operator accounts (platform admins and auditors).")


def prepare(settings: Settings):
    """Migrate the database and return a session factory on it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    return engine, make_session_factory(engine)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the API on the configured database (SQLite in REUNITE_DATA_DIR by default)."""
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
    console.print(f"Reunite on http://{host}:{port} (data in {settings.data_dir.resolve()}); API docs at /docs")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@admin_app.command("create")
def create_operator(
    email: Annotated[str, typer.Option(help="The operator's email address.")],
    role: Annotated[str, typer.Option(help="platform_admin or auditor.")],
) -> None:
    """Create a platform admin or auditor; the password is read from standard input."""
    if role not in OPERATOR_ROLES:
        console.print(f"[red]error:[/red] --role must be one of {', '.join(sorted(OPERATOR_ROLES))}")
        raise typer.Exit(2)
    password = sys.stdin.readline().rstrip("\n")
    settings = Settings()
    engine, sessions = prepare(settings)
    try:
        with transaction(sessions) as session:
            user = create_user(session, email=email, password=password, roles={role})
            record_event(session, action="operator_created", target_type="user", target_id=user.id,
                         details={"role": role, "via": "cli"})
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
