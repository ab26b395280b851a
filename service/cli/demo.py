"""`reunite demo`: a sandbox to see a match in minutes, on a development instance only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(soft_wrap=True, highlight=False)
errors = Console(stderr=True, soft_wrap=True, highlight=False)


def demo(
    photos: Annotated[
        Path | None,
        typer.Option(
            help="Folder with the sample photos (obama.jpg, obama2.jpg, obama3.jpg, biden.jpg).",
            show_default="face_recognition 1.3.0's test photos, fetched from PyPI into ~/.cache/reunite",
        ),
    ] = None,
) -> None:
    """Seed a demo sandbox (two sample organisations, accounts, records and a searched case); print the accounts."""
    from service.cli.serve import prepare
    from service.db import utcnow
    from service.demo.samples import SamplesUnavailable, sample_faces
    from service.demo.service import DemoExists, missing_photos, seed_sandbox
    from service.settings import Settings

    try:
        settings = Settings()
    except ValueError as error:  # pydantic's ValidationError is one
        raise _fail(f"the service settings are not valid: {error}") from None
    if settings.environment != "development":
        raise _fail(
            "the demo creates sample organisations and accounts, so it runs only on a development "
            "instance (REUNITE_ENVIRONMENT=development)"
        )
    try:
        folder = photos or sample_faces()
    except SamplesUnavailable as error:
        raise _fail(f"{error}; give --photos FOLDER instead") from None
    if missing := missing_photos(folder):
        raise _fail(f"{folder} lacks the sample photos {', '.join(missing)}; nothing was changed")
    engine, sessions = prepare(settings)
    try:
        sandbox = seed_sandbox(sessions, settings=settings, photos=folder, now=utcnow())
    except DemoExists as error:
        raise _fail(f"{error} Nothing was changed; start from an empty data folder for a new one") from None
    finally:
        engine.dispose()
    _show(sandbox)


def _show(sandbox) -> None:
    console.print("[bold]Demo sandbox created[/bold] (sample organisations and photos of adults; no real case).")
    console.print("Accounts (the passwords are shown only now):")
    for account in sandbox.accounts:
        console.print(
            f"  {account.email}  password {account.password}  ({', '.join(account.roles)}; {account.organisation})"
        )
    console.print(
        f"Case {sandbox.case_id} was searched: {sandbox.candidates} candidate(s) await two reviews. "
        "Each account sets up its authenticator app at its first sign-in. Sign in as each of the "
        "two reviewers in turn and open Reviews to confirm or reject the candidate; the Family "
        "Links caseworker follows the case under Cases."
    )


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)
