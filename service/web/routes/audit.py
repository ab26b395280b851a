"""Auditor pages: search the trail, export it, and verify its chain on the spot.

Thin over `service.audit`: the search is `query.list_events` with the API's filters
(since, until, actor, organisation, action), a page of events at a time; an export is
`export.start_export` then the same streamed bundle (JSON lines, verifiable) or CSV
table as `GET /api/v1/audit/export`; verifying runs `verify.verify_bundle`, the
check `reunite audit verify` makes, over a bundle of the whole current trail signed
at that moment, and says the result in words. Exports and verifications are POSTed
forms (they write an audit event, so they carry the CSRF token). Auditors change
nothing else: these pages only read, and record that they exported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Form, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from service.audit import query
from service.audit.actions import AuditAction
from service.audit.export import (
    ExportFormat,
    ExportRefused,
    bundle_lines,
    csv_lines,
    start_export,
    start_verification,
)
from service.audit.models import AuditEvent
from service.audit.signing import load_signer
from service.audit.verify import Report, UnreadableBundle, coverage_rows, verify_bundle
from service.deps import DB_INT_MAX, DbOffset, DbSession, SettingsDep
from service.web.pages import page_router
from service.web.render import add_nav, render
from service.web.session import PageUser, page_permission
from vetting.permissions import Action

router = page_router(tags=["pages: audit"])
add_nav("Audit trail", "/audit", Action.READ_AUDIT, order=70, description="Search, export and verify the audit trail.")

PAGE_SIZE = 50
MEDIA_TYPES = {ExportFormat.JSONL: "application/x-ndjson", ExportFormat.CSV: "text/csv; charset=utf-8"}
SHOWN_PROBLEMS = 10
ACTION_CHOICES = [(code, code) for code in sorted(AuditAction)]  # the Action menu: every code there is
FILTER_LABELS = {
    "since": "From",
    "until": "Until",
    "actor": "User id",
    "organisation": "Organisation id",
    "action": "Action",
}


@dataclass(frozen=True)
class FilterForm:
    """The search form as typed, and the filters it amounts to (or the sentence saying what is wrong)."""

    values: dict[str, str]
    filters: query.EventFilters | None
    problem: str | None

    @property
    def query_string(self) -> str:
        return urlencode({name: value for name, value in self.values.items() if value})


def read_filters(since: str, until: str, actor: str, organisation: str, action: str) -> FilterForm:
    """Parse the form's text fields into `EventFilters`; times without a zone are UTC."""
    values = {
        "since": since.strip(),
        "until": until.strip(),
        "actor": actor.strip(),
        "organisation": organisation.strip(),
        "action": action.strip().lower(),
    }
    try:
        filters = query.EventFilters(
            since=_time(values["since"], "From"),
            until=_time(values["until"], "Until"),
            actor=_id(values["actor"], "User id"),
            organisation=_id(values["organisation"], "Organisation id"),
            action=_action(values["action"]),
        )
    except ValueError as problem:
        return FilterForm(values, None, str(problem))
    if filters.since and filters.until and filters.since >= filters.until:
        return FilterForm(values, None, "The start time must be before the end time.")
    return FilterForm(values, filters, None)


def _time(text: str, label: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{label} is not a date and time, such as 2026-12-03T14:05.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _id(text: str, label: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= DB_INT_MAX:
        raise ValueError(f"{label} must be a whole number, such as 12.")
    return int(text)


def _action(text: str) -> AuditAction | None:
    if not text:
        return None
    try:
        return AuditAction(text)
    except ValueError:
        raise ValueError("Action must be one of the action codes in the list, such as review_recorded.") from None


# --- the search page -----------------------------------------------------------------------------


@router.get("/audit", **page_permission(Action.READ_AUDIT))
def events(
    request: Request,
    user: PageUser,
    session: DbSession,
    since: str = "",
    until: str = "",
    actor: str = "",
    organisation: str = "",
    action: str = "",
    after_seq: DbOffset = 0,
) -> Response:
    """One page of events matching the filters, in sequence order."""
    form = read_filters(since, until, actor, organisation, action)
    return _audit_page(request, session, form, after_seq=max(after_seq, 0))


def _audit_page(
    request: Request,
    session: Session,
    form: FilterForm,
    *,
    after_seq: int = 0,
    verification: dict | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    found: list[AuditEvent] = []
    if form.filters is not None:
        found = query.list_events(session, filters=form.filters, after_seq=after_seq, limit=PAGE_SIZE)
    next_after = found[-1].seq if len(found) == PAGE_SIZE else None
    return render(
        request,
        "audit/events.html",
        {
            "title": "Audit trail",
            "form": form,
            "events": found,
            "after_seq": after_seq,
            "next_after": next_after,
            "actions": ACTION_CHOICES,
            "error": error or form.problem,
            "verification": verification,
            "searched": any(form.values.values()) or after_seq > 0,
        },
        status_code=status_code if form.problem is None else 422,
    )


# --- export ---------------------------------------------------------------------------------------


@router.post("/audit/export", **page_permission(Action.EXPORT_AUDIT))
def export(
    request: Request,
    user: PageUser,
    session: DbSession,
    settings: SettingsDep,
    export_format: Annotated[str, Form(alias="format", max_length=10)] = "jsonl",
    since: Annotated[str, Form(max_length=40)] = "",
    until: Annotated[str, Form(max_length=40)] = "",
    actor: Annotated[str, Form(max_length=20)] = "",
    organisation: Annotated[str, Form(max_length=20)] = "",
    action: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Download the bundle (JSON lines, verifiable offline) or the filtered CSV table."""
    form = read_filters(since, until, actor, organisation, action)
    if form.filters is None:
        return _audit_page(request, session, form)
    try:
        chosen = ExportFormat(export_format)
    except ValueError:
        return _audit_page(request, session, form, error="Choose the bundle or the CSV table.", status_code=422)
    signer = load_signer(settings.audit_key_file)
    try:
        started = start_export(session, user=user, export_format=chosen, filters=form.filters, signer=signer)
    except ExportRefused as refused:
        session.rollback()
        return _audit_page(request, session, form, error=str(refused), status_code=422)
    factory = request.app.state.session_factory
    body = (
        bundle_lines(factory, export=started, signer=signer)
        if chosen is ExportFormat.JSONL
        else csv_lines(factory, export=started)
    )
    return StreamingResponse(
        body,
        media_type=MEDIA_TYPES[chosen],
        headers={"Content-Disposition": f'attachment; filename="{started.filename}"', "Cache-Control": "no-store"},
    )


# --- verification ---------------------------------------------------------------------------------


@router.post("/audit/verify", **page_permission(Action.EXPORT_AUDIT))
def verify(request: Request, user: PageUser, session: DbSession, settings: SettingsDep) -> Response:
    """Sign the head, read the whole trail as a bundle and check it as `reunite audit verify` does."""
    signer = load_signer(settings.audit_key_file)
    whole_trail = start_verification(session, user=user, signer=signer)
    lines = _text_lines(bundle_lines(request.app.state.session_factory, export=whole_trail, signer=signer))
    try:
        report = verify_bundle(lines, trusted_key_pem=signer.public_key_pem)
    except UnreadableBundle as unreadable:
        verification = {
            "ok": False,
            "headline": "The trail could not be read as a bundle.",
            "problems": [str(unreadable)],
        }
    else:
        verification = describe(report)
    form = read_filters("", "", "", "", "")
    return _audit_page(request, session, form, verification=verification)


def _text_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Bundle chunks (each some whole lines) as text lines, as the verifier reads a file."""
    for chunk in chunks:
        yield from chunk.decode("utf-8").splitlines()


def describe(report: Report) -> dict:
    """The verification's result in words: a headline and the problems found, first first."""
    if report.ok:
        return {
            "ok": True,
            "problems": [],
            "headline": f"All {report.events} events (seq {report.first_seq} to "
            f"{report.last_seq}) hash correctly from the first one, and "
            f"{report.checkpoints} signed checkpoints match them.",
            "key_id": report.key_id,
            "coverage": coverage_rows(report),
        }
    problems = report.ordered_problems
    first = problems[0]
    where = f"at event {first.seq}" if first.seq is not None else "for the whole trail"
    shown = [
        f"{'Event ' + str(p.seq) if p.seq is not None else 'Trail'}: {p.message}" for p in problems[:SHOWN_PROBLEMS]
    ]
    if len(problems) > SHOWN_PROBLEMS:
        shown.append(f"… and {len(problems) - SHOWN_PROBLEMS} more problems.")
    return {
        "ok": False,
        "headline": f"Verification failed {where}: {first.message}.",
        "problems": shown,
        "key_id": report.key_id,
    }
