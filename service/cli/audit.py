"""`reunite audit verify BUNDLE`: check an exported audit bundle offline.

Needs only the bundle and the operator's public key (or its fingerprint), obtained
by another route than the bundle (`reunite audit public-key` prints both on the
server): no database and no service settings. A bundle is never verified against
only the key it carries. Exit codes: 0 verified, 1 the bundle fails verification,
2 the bundle or key cannot be read, or no trusted key was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.audit.verify import Report, UnreadableBundle, coverage_rows, verify_file

audit_app = typer.Typer(no_args_is_help=True, help="Verify exported audit trails.")
console = Console(soft_wrap=True, highlight=False)

VERIFIED, FAILED, UNREADABLE = 0, 1, 2
SHOWN_PROBLEMS = 10


@audit_app.callback()
def audit() -> None:
    """Verify exported audit trails."""  # a callback keeps `verify` a sub-command when used alone


@audit_app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help="A bundle from GET /api/v1/audit/export?format=jsonl.")],
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="PEM file of the operator's public key; the bundle must be signed with it."),
    ] = None,
    fingerprint: Annotated[
        str | None,
        typer.Option(
            "--fingerprint", help="The operator's key fingerprint (64 hex digits); the bundle's key must have it."
        ),
    ] = None,
) -> None:
    """Check the signed header, every hash, the chain and the checkpoint signatures against a trusted key."""
    try:
        trusted = public_key.read_text(encoding="ascii") if public_key else None
        report = verify_file(bundle, trusted_key_pem=trusted, trusted_fingerprint=fingerprint)
    except (OSError, UnicodeDecodeError, UnreadableBundle) as exc:
        console.print("[red]UNREADABLE[/red] ", end="")
        console.print(str(exc), markup=False)
        raise typer.Exit(UNREADABLE) from exc
    if report.ok:
        _print_ok(report)
        raise typer.Exit(VERIFIED)
    _print_failure(report)
    raise typer.Exit(FAILED)


@audit_app.command("public-key")
def public_key_command() -> None:
    """Print the service's audit public key (PEM) and its fingerprint, to publish for auditors."""
    from service.audit.signing import load_signer  # the service's settings: only this command needs them
    from service.settings import Settings

    signer = load_signer(Settings().audit_key_file)
    console.print(signer.public_key_pem, end="", markup=False)
    console.print(f"fingerprint {signer.key_id}", markup=False)


def _print_ok(report: Report) -> None:
    console.print(
        f"[green]OK[/green] {report.events} events (seq {report.first_seq} to {report.last_seq}), "
        f"the export header and {report.checkpoints} signed checkpoints verified"
    )
    for name, value in coverage_rows(report):
        console.print(f"  {name}: ", end="")
        console.print(value, markup=False)


def _print_failure(report: Report) -> None:
    problems = report.ordered_problems
    first = problems[0]
    where = f"at seq {first.seq}" if first.seq is not None else "for the bundle"
    console.print(f"[red]FAILED[/red] {where}: ", end="")
    console.print(first.message, markup=False)
    for problem in problems[1:SHOWN_PROBLEMS]:
        where = f"seq {problem.seq}" if problem.seq is not None else "bundle"
        console.print(f"  also {where}: {problem.message}", markup=False)
    if len(problems) > SHOWN_PROBLEMS:
        console.print(f"  ... and {len(problems) - SHOWN_PROBLEMS} more problems")
