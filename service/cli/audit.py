"""`reunite audit verify BUNDLE`: check an exported audit bundle offline.

Needs only the bundle (and, better, the operator's public key obtained by another
route): no database and no service settings. Exit codes: 0 verified, 1 the
bundle fails verification, 2 the bundle or key cannot be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from service.audit.verify import Report, UnreadableBundle, verify_file

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
    public_key: Annotated[Path | None, typer.Option(
        "--public-key", help="PEM file of the trusted public key; the bundle's own key must equal it.")] = None,
) -> None:
    """Recompute every hash, check the chain and the checkpoint signatures."""
    try:
        trusted = public_key.read_text(encoding="ascii") if public_key else None
        report = verify_file(bundle, trusted_key_pem=trusted)
    except (OSError, UnicodeDecodeError, UnreadableBundle) as exc:
        console.print("[red]UNREADABLE[/red] ", end="")
        console.print(str(exc), markup=False)
        raise typer.Exit(UNREADABLE) from exc
    if report.ok:
        _print_ok(report, trusted_key=trusted is not None)
        raise typer.Exit(VERIFIED)
    _print_failure(report)
    raise typer.Exit(FAILED)


def _print_ok(report: Report, *, trusted_key: bool) -> None:
    console.print(f"[green]OK[/green] {report.events} events (seq {report.first_seq} to {report.last_seq}), "
                  f"{report.checkpoints} signed checkpoints verified")
    table = Table(show_header=False, box=None)
    table.add_row("key id", f"{report.key_id} ({'trusted key given' if trusted_key else 'key from the bundle'})")
    start = "from the first event (genesis)" if report.first_seq == 1 else \
        f"from seq {report.first_seq}: earlier events are not in this bundle"
    table.add_row("chain", start)
    console.print(table)
    if not trusted_key:
        console.print("Pass --public-key with the operator's published key to rule out a re-signed bundle.")


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
