"""Audit API: list the trail with filters, export it as a verifiable bundle or a CSV table.

Auditors only (READ_AUDIT, EXPORT_AUDIT). Reading the list is not itself
audited; every export is, before its first byte is sent (see export.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from service.audit import query
from service.audit.actions import AuditAction
from service.audit.export import ExportFormat, bundle_lines, csv_lines, start_export
from service.audit.models import AuditEvent
from service.audit.schemas import AuditEventOut, AuditEventPage
from service.audit.signing import load_signer
from service.deps import CurrentUser, DbId, DbOffset, DbSession, SettingsDep, permission
from service.refusal import Refused
from vetting.permissions import Action

router = APIRouter(tags=["audit"])

MEDIA_TYPES = {ExportFormat.JSONL: "application/x-ndjson", ExportFormat.CSV: "text/csv; charset=utf-8"}
TIME_HELP = "ISO 8601 date and time; without a time zone it is taken as UTC."


def event_filters(
    since: Annotated[datetime | None, Query(description=f"Events at or after this time. {TIME_HELP}")] = None,
    until: Annotated[datetime | None, Query(description=f"Events before this time. {TIME_HELP}")] = None,
    actor: Annotated[DbId | None, Query(description="Id of the user who acted.")] = None,
    organisation: Annotated[DbId | None, Query(description="Id of the organisation.")] = None,
    action: Annotated[AuditAction | None, Query(description="Action code, such as calibration.created.")] = None,
) -> query.EventFilters:
    since, until = _as_utc(since), _as_utc(until)
    if since is not None and until is not None and since >= until:
        raise Refused("The start time must be before the end time.")
    return query.EventFilters(since=since, until=until, actor=actor, organisation=organisation, action=action)


Filters = Annotated[query.EventFilters, Depends(event_filters)]


@router.get("/audit/events", response_model=AuditEventPage, **permission(Action.READ_AUDIT))
def list_events(
    session: DbSession,
    filters: Filters,
    after_seq: Annotated[DbOffset, Query(description="Cursor: the last seq of the previous page.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditEventPage:
    events = query.list_events(session, filters=filters, after_seq=after_seq, limit=limit)
    next_after_seq = events[-1].seq if len(events) == limit else None
    return AuditEventPage(events=[_event_out(event) for event in events], next_after_seq=next_after_seq)


@router.get("/audit/export", **permission(Action.EXPORT_AUDIT))
def export(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    user: CurrentUser,
    filters: Filters,
    export_format: Annotated[ExportFormat, Query(alias="format")] = ExportFormat.JSONL,
) -> StreamingResponse:
    """Stream the trail: `jsonl` is the verifiable bundle, `csv` a filtered table."""
    signer = load_signer(settings.audit_key_file)
    started = start_export(session, user=user, export_format=export_format, filters=filters, signer=signer)
    # The stream reads through its own short sessions: the request's is closed when the route returns.
    factory = request.app.state.session_factory
    if export_format is ExportFormat.JSONL:
        body = bundle_lines(factory, export=started, signer=signer)
    else:
        body = csv_lines(factory, export=started)
    headers = {
        "Content-Disposition": f'attachment; filename="{started.filename}"',
        "Cache-Control": "no-store",
    }
    return StreamingResponse(body, media_type=MEDIA_TYPES[export_format], headers=headers)


def _event_out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        seq=event.seq,
        at=event.at,
        actor_id=event.actor_id,
        organisation_id=event.organisation_id,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        details=json.loads(event.details),
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


def _as_utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
