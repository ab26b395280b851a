"""The hash chain of the audit trail, shared by the service and the offline verifier.

Each event's hash is SHA-256 over the previous event's hash and the event's
canonical JSON (sorted keys, no spaces, UTF-8), so changing, removing, inserting
or reordering any event changes every hash after it. Nothing here touches a
database: `reunite audit verify` uses the same functions on an exported bundle.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
HASHED_FIELDS = ("seq", "at", "actor_id", "organisation_id", "action", "target_type", "target_id", "details")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_time(moment: datetime) -> str:
    """One fixed text form for event times, so hashes do not depend on the backend."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """Hash of one event: its canonical fields chained to the previous hash."""
    body = canonical_json({name: fields[name] for name in HASHED_FIELDS})
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def checkpoint_message(seq: int, head_hash: str) -> bytes:
    """The bytes an Ed25519 checkpoint signs."""
    return f"reunite-audit-checkpoint\n{seq}\n{head_hash}".encode()


# What an export header's signature covers: the exact range of events in the bundle and the
# hashes at both of its ends, so no event can be cut from either end nor the header edited.
SIGNED_HEADER_FIELDS = (
    "format",
    "exported_at",
    "key_id",
    "filters",
    "first_seq",
    "last_seq",
    "event_count",
    "base_hash",
    "head_hash",
)


def header_message(header: dict[str, Any]) -> bytes:
    """The bytes an export header's Ed25519 signature signs (its signed fields, canonical JSON)."""
    body = canonical_json({name: header.get(name) for name in SIGNED_HEADER_FIELDS})
    return f"reunite-audit-export\n{body}".encode()
