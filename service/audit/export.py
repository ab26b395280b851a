"""Exporting the audit trail: the verifiable JSON-lines bundle and the CSV table.

An export first records its own `audit_exported` event, signs a checkpoint over
that new head and commits; only then does it stream, from committed rows up to
that event. So every bundle ends with the export's event, covered by a signature.

What a bundle can prove. The chain links each event to the one before it, and a
link can only be checked with every event's full fields. A bundle that left events
out (by actor, organisation, action, or an end time) could not be verified across
its gaps, and the hashes of the missing events alone would prove nothing, since
they cannot be recomputed. So the JSON-lines bundle is always a contiguous run of
the chain: from seq 1 (or from the first event at or after `since`) to the
export's own, checkpointed event; other filters are refused for it. A bundle from
seq 1 proves the whole trail up to its last checkpoint; one starting later proves
everything from its first event on, chained to the previous hash that event
declares. Filtered views are for reading: the CSV table (and /audit/events) take
every filter, and any row in them can be checked against a full bundle.

Bundle (`reunite-audit-bundle/2`), one JSON object per line, canonical JSON:
  {"type": "header", "format", "exported_at", "public_key_pem", "key_id", "filters",
   "first_seq", "last_seq", "event_count", "base_hash", "head_hash", "signature"}
  {"type": "event", seq, at, actor_id, organisation_id, action, target_type,
   target_id, details, prev_hash, hash}            ... in seq order
  {"type": "checkpoint", seq, head_hash, signed_at, key_id, signature}
                                                   ... every checkpoint in the range

The header is signed with the same Ed25519 key (chain.header_message): its range
(first and last seq, count), the hash the first event chains from (`base_hash`,
the genesis hash for a bundle from seq 1), the last event's hash (`head_hash`) and
the export time. So cutting events from either end, or editing the header to hide
it, breaks a signature; the public key in the header is only a convenience, and
the verifier checks everything against a key (or fingerprint) it trusts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.audit.actions import AuditAction
from service.audit.chain import canonical_json, format_time, header_message
from service.audit.models import AuditCheckpoint, AuditEvent
from service.audit.query import EventFilters, checkpoint_batches, event_batches, first_seq_since
from service.audit.service import event_fields, record_event, write_checkpoint
from service.audit.signing import AuditSigner
from service.audit.verify import BUNDLE_FORMAT
from service.auth.models import User
from service.refusal import Refused

CSV_COLUMNS = (
    "seq",
    "at",
    "actor_id",
    "organisation_id",
    "action",
    "target_type",
    "target_id",
    "details",
    "prev_hash",
    "hash",
)
# Cells a spreadsheet would run as a formula (CSV injection); such text gets a leading quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


class ExportRefused(Refused, ValueError):
    """The export cannot be made as asked (a filter a verifiable bundle cannot honour)."""


@dataclass(frozen=True)
class Export:
    """A committed export: its format, filters, and the seq range it streams."""

    format: ExportFormat
    filters: EventFilters
    first_seq: int
    last_seq: int
    exported_at: datetime
    base_hash: str  # the prev_hash of the first event streamed
    head_hash: str  # the hash of the last event streamed

    @property
    def filename(self) -> str:
        return f"reunite-audit-{self.exported_at.strftime('%Y%m%dT%H%M%SZ')}.{self.format.value}"


def start_export(
    session: Session, *, user: User, export_format: ExportFormat, filters: EventFilters, signer: AuditSigner
) -> Export:
    """Record the export, sign the new head, commit; return what to stream."""
    check_bundle_filters(export_format, filters)
    event = record_event(
        session,
        action=AuditAction.AUDIT_EXPORTED,
        actor_id=user.id,
        organisation_id=user.organisation_id,
        details={"format": export_format.value, "filters": filters.used()},
    )
    first_seq = first_seq_since(session, filters.since) if export_format is ExportFormat.JSONL else 1
    return _sign_and_commit(
        session, signer=signer, head=event, export_format=export_format, filters=filters, first_seq=first_seq
    )


def start_verification(session: Session, *, user: User, signer: AuditSigner) -> Export:
    """Record the verification, sign the new head and commit: the whole trail, as a bundle, ends there."""
    event = record_event(
        session, action=AuditAction.AUDIT_VERIFIED, actor_id=user.id, organisation_id=user.organisation_id
    )
    return _sign_and_commit(
        session, signer=signer, head=event, export_format=ExportFormat.JSONL, filters=EventFilters(), first_seq=1
    )


def _sign_and_commit(
    session: Session,
    *,
    signer: AuditSigner,
    head: AuditEvent,
    export_format: ExportFormat,
    filters: EventFilters,
    first_seq: int,
) -> Export:
    """Sign the new head and commit; the export streams events first_seq..head."""
    checkpoint_head(session, signer=signer, head=head)
    # first_seq is at most the head's, so that event exists.
    base_hash = session.execute(select(AuditEvent.prev_hash).where(AuditEvent.seq == first_seq)).scalar_one()
    session.commit()
    return Export(
        format=export_format,
        filters=filters,
        first_seq=first_seq,
        last_seq=head.seq,
        exported_at=head.at,
        base_hash=base_hash,
        head_hash=head.hash,
    )


def check_bundle_filters(export_format: ExportFormat, filters: EventFilters) -> None:
    if export_format is not ExportFormat.JSONL:
        return
    refused = [name for name in filters.used() if name != "since"]
    if refused:
        raise ExportRefused(
            f"A verifiable bundle cannot leave events out, so it takes no {', '.join(refused)} filter; "
            "use format=csv for a filtered table."
        )


def checkpoint_head(session: Session, *, signer: AuditSigner, head: AuditEvent) -> None:
    """Make sure `head` is signed by `signer` (record_event may have just done it)."""
    signed = session.scalar(
        select(AuditCheckpoint.id).where(AuditCheckpoint.seq == head.seq, AuditCheckpoint.key_id == signer.key_id)
    )
    if signed is None:
        write_checkpoint(session, signer=signer)


def bundle_lines(factory: sessionmaker[Session], *, export: Export, signer: AuditSigner) -> Iterator[bytes]:
    """The JSON-lines bundle, one batch of lines per chunk."""
    yield _line(bundle_header(export, signer))
    for events in event_batches(factory, filters=EventFilters(), first_seq=export.first_seq, last_seq=export.last_seq):
        yield b"".join(_line(event_line(event)) for event in events)
    for checkpoints in checkpoint_batches(
        factory, key_id=signer.key_id, first_seq=export.first_seq, last_seq=export.last_seq
    ):
        yield b"".join(_line(checkpoint_line(checkpoint)) for checkpoint in checkpoints)


def bundle_header(export: Export, signer: AuditSigner) -> dict:
    """The header line, signed over the bundle's exact range and the hashes at its two ends."""
    since = export.filters.since
    header = {
        "type": "header",
        "format": BUNDLE_FORMAT,
        "exported_at": format_time(export.exported_at),
        "public_key_pem": signer.public_key_pem,
        "key_id": signer.key_id,
        "filters": {} if since is None else {"since": format_time(since)},
        "first_seq": export.first_seq,
        "last_seq": export.last_seq,
        "event_count": export.last_seq - export.first_seq + 1,
        "base_hash": export.base_hash,
        "head_hash": export.head_hash,
    }
    return {**header, "signature": signer.sign(header_message(header))}


def event_line(event: AuditEvent) -> dict:
    return {"type": "event", **event_fields(event), "prev_hash": event.prev_hash, "hash": event.hash}


def checkpoint_line(checkpoint: AuditCheckpoint) -> dict:
    return {
        "type": "checkpoint",
        "seq": checkpoint.seq,
        "head_hash": checkpoint.head_hash,
        "signed_at": format_time(checkpoint.signed_at),
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
    }


def csv_lines(factory: sessionmaker[Session], *, export: Export) -> Iterator[bytes]:
    """The matching events as a CSV table with a header row, one batch of rows per chunk."""
    yield _csv_rows([CSV_COLUMNS])
    for events in event_batches(factory, filters=export.filters, first_seq=1, last_seq=export.last_seq):
        yield _csv_rows(csv_row(event) for event in events)


def csv_row(event: AuditEvent) -> list:
    fields = event_fields(event)
    values = {**fields, "details": canonical_json(fields["details"]), "prev_hash": event.prev_hash, "hash": event.hash}
    return [_spreadsheet_safe(values[column]) for column in CSV_COLUMNS]


def _spreadsheet_safe(value):
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv_rows(rows) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _line(value: dict) -> bytes:
    return canonical_json(value).encode("utf-8") + b"\n"
