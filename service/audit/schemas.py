"""Response shapes of the audit API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEventOut(BaseModel):
    seq: int
    at: datetime
    actor_id: int | None
    organisation_id: int | None
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]  # ids, counts and codes only
    prev_hash: str
    hash: str


class AuditEventPage(BaseModel):
    events: list[AuditEventOut]
    next_after_seq: int | None  # pass as after_seq for the next page; null on the last page
