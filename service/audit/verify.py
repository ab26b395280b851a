"""Offline verification of an audit bundle (`reunite audit verify`).

Uses only the chain rules (chain.py), a trusted public key and the bundle itself:
no database, no service settings, so an auditor can run it anywhere.

The trusted key is required: the operator's public key (PEM) or its fingerprint
(the key id, SHA-256 of the raw public key), obtained by another route. The key
embedded in a bundle proves nothing on its own: whoever rewrote the bundle could
re-sign it with a key of their own and embed that. It checks that

- the header's signature verifies: it covers the bundle's range (first and last
  seq, event count), the hash the first event chains from (`base_hash`), the last
  event's hash (`head_hash`) and the export time, so a cut at either end, or an
  edited header, shows;
- every event's hash is recomputed from its fields and its prev_hash;
- seq goes up by exactly one and each prev_hash is the previous event's hash,
  from the signed base hash (the genesis hash for a bundle from seq 1) to the
  signed head hash;
- every checkpoint is signed by the trusted key and names the hash of the event
  at its seq.

What the signatures cover is reported (`Report.coverage`): the signed range, the
last checkpoint, and which events come after it and so are covered only by the
export header's signature. What no bundle can prove: that nothing came before a
bundle starting after seq 1 (it is chained to a signed base hash, not to genesis)
nor that nothing was appended after its export (compare with a newer export).

Problems are reported with the sequence number where they are found; the first
(lowest) one is what went wrong first. Events are kept only as their hashes, 32
bytes each, so large bundles verify in little memory.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from service.audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    SIGNED_HEADER_FIELDS,
    checkpoint_message,
    event_hash,
    header_message,
)
from service.audit.signing import KeyFileError, key_id_of, load_public_key, signature_valid

BUNDLE_FORMAT = "reunite-audit-bundle/2"
OLD_FORMATS = ("reunite-audit-bundle/1",)  # unsigned headers: cannot be trusted, so not verified
EVENT_FIELDS = (*HASHED_FIELDS, "prev_hash", "hash")
CHECKPOINT_FIELDS = ("seq", "head_hash", "key_id", "signature")


class UnreadableBundle(ValueError):
    """The input is not a bundle this verifier can read (exit code 2)."""


class TrustedKeyRequired(UnreadableBundle):
    """Neither a trusted public key nor a fingerprint was given: nothing to verify against."""


TRUSTED_KEY_REQUIRED = (
    "Give the operator's public key (--public-key FILE) or its fingerprint (--fingerprint HEX), obtained by "
    "another route than the bundle: the key inside a bundle proves nothing, since whoever changed the bundle "
    "could have re-signed it with a key of their own."
)


@dataclass(frozen=True)
class Problem:
    seq: int | None  # None: about the bundle as a whole (its key), not one event
    message: str


@dataclass(frozen=True)
class Coverage:
    """What the signatures of a verified bundle cover."""

    first_seq: int  # the signed range, both ends included
    last_seq: int
    exported_at: str  # the signed export time: nothing after it can be covered
    base_hash: str  # what the first event chains from (genesis for seq 1)
    last_checkpoint: int | None  # the highest checkpointed seq, if any
    header_only: tuple[int, int] | None  # events after the last checkpoint: only the header signs them

    @property
    def from_genesis(self) -> bool:
        return self.first_seq == 1 and self.base_hash == GENESIS_HASH


@dataclass
class Report:
    key_id: str | None = None
    trusted_by: str = ""  # "public key" or "fingerprint": what the key was checked against
    events: int = 0
    checkpoints: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    coverage: Coverage | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.events > 0

    @property
    def span(self) -> tuple[int, int]:
        """(first, last) seq of the events read: asked only once the bundle has some."""
        if self.first_seq is None or self.last_seq is None:
            raise ValueError("The bundle holds no events.")
        return self.first_seq, self.last_seq

    @property
    def ordered_problems(self) -> list[Problem]:
        """Problems about the whole bundle first, then by sequence number."""
        return sorted(self.problems, key=lambda problem: (problem.seq is not None, problem.seq or 0))


def verify_file(path: Path, *, trusted_key_pem: str | None = None, trusted_fingerprint: str | None = None) -> Report:
    try:
        with open(path, encoding="utf-8") as handle:
            return verify_bundle(handle, trusted_key_pem=trusted_key_pem, trusted_fingerprint=trusted_fingerprint)
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableBundle(f"cannot read {path}: {exc}") from exc


def verify_bundle(
    lines: Iterable[str], *, trusted_key_pem: str | None = None, trusted_fingerprint: str | None = None
) -> Report:
    """Check a bundle against a trusted key or fingerprint; UnreadableBundle if it cannot be checked at all."""
    if trusted_key_pem is None and trusted_fingerprint is None:
        raise TrustedKeyRequired(TRUSTED_KEY_REQUIRED)
    records = _records(lines)
    header = next(records, None)
    if header is None or header.get("type") != "header":
        raise UnreadableBundle(f"the first line is not a {BUNDLE_FORMAT} header")
    if header.get("format") in OLD_FORMATS:
        raise UnreadableBundle(
            f"{header['format']} bundles have an unsigned header and cannot be trusted; export the trail again"
        )
    if header.get("format") != BUNDLE_FORMAT:
        raise UnreadableBundle(f"the first line is not a {BUNDLE_FORMAT} header")
    report = Report()
    public_key = _choose_key(header, trusted_key_pem, trusted_fingerprint, report)
    header_signed = _check_header_signature(header, public_key, report)
    chain = _ChainWalk(report, declared_first=header.get("first_seq"), base_hash=header.get("base_hash"))
    checkpoints: list[dict[str, Any]] = []
    for record in records:
        if record.get("type") == "event":
            chain.add(record)
        elif record.get("type") == "checkpoint":
            checkpoints.append(record)
        else:
            report.problems.append(Problem(None, f"a line of unknown type {record.get('type')!r}"))
    if report.events == 0:
        report.problems.append(Problem(None, "the bundle holds no events"))
        return report
    covered = [seq for record in checkpoints if (seq := _check_checkpoint(record, public_key, chain, report))]
    report.checkpoints = len(covered)
    _check_ends(header, covered, chain, report)
    if header_signed and report.ok:
        report.coverage = _coverage(header, covered, report)
    return report


def _records(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UnreadableBundle(f"line {number} is not JSON") from exc
        if not isinstance(record, dict):
            raise UnreadableBundle(f"line {number} is not a JSON object")
        yield record


def normalise_fingerprint(text: str) -> str:
    """A fingerprint as 64 lower-case hex digits (colons, spaces and a `sha256:` prefix are dropped)."""
    value = text.strip().lower().removeprefix("sha256:").replace(":", "").replace(" ", "")
    if not _is_hash(value):
        raise UnreadableBundle("the fingerprint must be the key id: 64 hexadecimal digits (SHA-256)")
    return value


def _choose_key(header: dict[str, Any], trusted_key_pem: str | None, trusted_fingerprint: str | None, report: Report):
    """The trusted key: the one given, or the bundle's if it has the pinned fingerprint."""
    try:
        bundled = load_public_key(header.get("public_key_pem") or "")
    except KeyFileError:
        bundled = None
    if trusted_key_pem is not None:
        try:
            key = load_public_key(trusted_key_pem)
        except KeyFileError as exc:
            raise UnreadableBundle("the trusted public key is not a readable Ed25519 key") from exc
        report.trusted_by = "public key"
        expected = key_id_of(key)
    else:
        expected = normalise_fingerprint(trusted_fingerprint or "")
        if bundled is None:
            raise UnreadableBundle("the bundle's public key is not a readable Ed25519 key")
        key, report.trusted_by = bundled, "fingerprint"
    if trusted_fingerprint is not None and normalise_fingerprint(trusted_fingerprint) != expected:
        raise UnreadableBundle("the trusted public key does not have the fingerprint given")
    report.key_id = expected
    if bundled is None or key_id_of(bundled) != expected:
        report.problems.append(
            Problem(
                None,
                f"the bundle was signed with another key than the trusted one "
                f"({expected[:16]}…): it was re-signed or comes from another service",
            )
        )
    elif header.get("key_id") != expected:
        report.problems.append(Problem(None, "the header's key_id does not match its public key"))
    return key


def _check_header_signature(header: dict[str, Any], public_key, report: Report) -> bool:
    """Whether the export header is signed by the trusted key (its range, end hashes and time)."""
    missing = [name for name in SIGNED_HEADER_FIELDS if name not in header]
    if missing or not isinstance(header.get("signature"), str):
        report.problems.append(
            Problem(None, f"the export header is not signed or lacks {', '.join(missing) or 'its signature'}")
        )
        return False
    if not signature_valid(public_key, header_message(header), header["signature"]):
        report.problems.append(
            Problem(
                None,
                "the export header's signature does not verify: the header "
                "(its range, end hashes or time) was edited or signed by another key",
            )
        )
        return False
    return True


class _ChainWalk:
    """Follows the events in order, checking each link and keeping each hash."""

    def __init__(self, report: Report, *, declared_first: Any, base_hash: Any):
        self.report = report
        self.declared_first = declared_first if _is_seq(declared_first) else None
        self.base_hash = base_hash if _is_hash(base_hash) else None
        self.seqs = array("q")
        self.hashes = bytearray()
        self.previous: dict[str, Any] | None = None

    def add(self, event: dict[str, Any]) -> None:
        missing = [name for name in EVENT_FIELDS if name not in event]
        if missing or not _is_seq(event.get("seq")) or not _is_hash(event.get("hash")):
            self._problem(self._expected(), f"malformed event: {', '.join(missing) or 'seq or hash'} unreadable")
            return
        self._check_position(event)
        if event_hash(event["prev_hash"], event) != event["hash"]:
            self._problem(event["seq"], "the hash does not match the event's fields: the event was changed")
        self._keep(event)

    def hash_at(self, seq: int) -> str | None:
        position = seq - (self.report.first_seq or 0)
        if 0 <= position < len(self.seqs) and self.seqs[position] == seq:
            return self.hashes[position * 32 : (position + 1) * 32].hex()
        return None

    def _check_position(self, event: dict[str, Any]) -> None:
        seq, expected = event["seq"], self._expected()
        if self.previous is None:
            self._check_start(event)
        elif seq != expected:
            self._problem(
                expected,
                f"expected seq {expected} here but found seq {seq}: events were removed, reordered or inserted",
            )
        elif event["prev_hash"] != self.previous["hash"]:
            self._problem(seq, f"prev_hash is not the hash of seq {seq - 1}: an event was replaced or inserted")

    def _check_start(self, event: dict[str, Any]) -> None:
        seq = event["seq"]
        if self.declared_first is not None and seq != self.declared_first:
            self._problem(
                self.declared_first,
                f"the header says the bundle starts at seq {self.declared_first}, but its first event is seq {seq}",
            )
        if seq == 1 and event["prev_hash"] != GENESIS_HASH:
            self._problem(1, "the first event of the trail does not start from the genesis hash")
        elif event["prev_hash"] != self.base_hash:
            self._problem(
                seq,
                "the first event does not chain from the base hash the header signs: "
                "events before it were cut or it was replaced",
            )

    def _keep(self, event: dict[str, Any]) -> None:
        report = self.report
        if report.first_seq is None:
            report.first_seq = event["seq"]
        report.last_seq = event["seq"]
        report.events += 1
        self.seqs.append(event["seq"])
        self.hashes += bytes.fromhex(event["hash"])
        self.previous = event

    def _expected(self) -> int:
        return self.previous["seq"] + 1 if self.previous else (self.declared_first or 1)

    def _problem(self, seq: int, message: str) -> None:
        self.report.problems.append(Problem(seq, message))


def _check_checkpoint(record: dict[str, Any], public_key, chain: _ChainWalk, report: Report) -> int | None:
    """The seq a valid checkpoint covers, or None after recording what is wrong with it."""
    seq = record.get("seq")
    if any(name not in record for name in CHECKPOINT_FIELDS) or not _is_seq(seq):
        report.problems.append(Problem(seq if _is_seq(seq) else None, "malformed checkpoint"))
        return None
    if record["key_id"] != report.key_id:
        report.problems.append(Problem(seq, "checkpoint signed by another key than the bundle's"))
        return None
    if not signature_valid(public_key, checkpoint_message(seq, record["head_hash"]), record["signature"]):
        report.problems.append(Problem(seq, "checkpoint signature does not verify: forged or altered checkpoint"))
        return None
    first, last = report.span
    if seq > last:
        return seq  # a signed head beyond the last event: the tail check reports what is missing
    if seq < first:
        report.problems.append(Problem(seq, "checkpoint before the bundle's first event"))
        return None
    if chain.hash_at(seq) != record["head_hash"]:
        report.problems.append(
            Problem(
                seq, f"the signed head is not the hash of seq {seq}: events up to it were changed, removed or inserted"
            )
        )
        return None
    return seq


def _check_ends(header: dict[str, Any], covered: list[int], chain: _ChainWalk, report: Report) -> None:
    """The bundle must reach as far as its signatures say, and end on the head hash the header signs."""
    _, last = report.span
    signed_end = max(covered, default=0)
    header_end = header["last_seq"] if _is_seq(header.get("last_seq")) else 0
    if max(signed_end, header_end) > last:
        source = (
            f"a signed checkpoint covers seq {signed_end}"
            if signed_end > last
            else f"its signed header says it ends at seq {header_end}"
        )
        report.problems.append(
            Problem(last + 1, f"missing: the bundle stops at seq {last}, but {source}: the tail was cut off")
        )
    elif header_end != last or chain.hash_at(last) != header.get("head_hash"):
        report.problems.append(
            Problem(
                last,
                f"the last event (seq {last}) is not the head the export header signs: the tail was cut off or changed",
            )
        )
    elif header.get("event_count") != report.events:
        report.problems.append(
            Problem(
                None, f"the bundle holds {report.events} events but its signed header says {header.get('event_count')}"
            )
        )


def _coverage(header: dict[str, Any], covered: list[int], report: Report) -> Coverage:
    first, last = report.span
    last_checkpoint = max(covered, default=None)
    after = (last_checkpoint or first - 1) + 1
    return Coverage(
        first_seq=first,
        last_seq=last,
        exported_at=header["exported_at"],
        base_hash=header["base_hash"],
        last_checkpoint=last_checkpoint,
        header_only=(after, last) if after <= last else None,
    )


def coverage_rows(report: Report) -> list[tuple[str, str]]:
    """What the signatures cover, in words: the rows `verify` prints."""
    coverage = report.coverage
    if coverage is None:
        return [("coverage", "none established: the bundle did not verify")]
    rows = [
        ("trusted key", f"{report.key_id} (checked against the {report.trusted_by} given)"),
        (
            "export header signs",
            f"seq {coverage.first_seq} to {coverage.last_seq} ({report.events} events), "
            f"the hashes at both ends, exported at {coverage.exported_at}",
        ),
        (
            "chain",
            "from the first event of the trail (genesis)"
            if coverage.from_genesis
            else f"from seq {coverage.first_seq}, chained to base hash {coverage.base_hash}: "
            "earlier events are not in this bundle and are not proven",
        ),
        ("checkpoints", f"the last at seq {coverage.last_checkpoint}" if coverage.last_checkpoint else "none"),
    ]
    if coverage.header_only:
        first, last = coverage.header_only
        rows.append(
            ("after the last checkpoint", f"seq {first} to {last}: covered only by the export header's signature")
        )
    else:
        rows.append(("after the last checkpoint", "no events: every event is also under a checkpoint"))
    rows.append(("not covered", "anything recorded after the export time: compare with a newer export"))
    return rows


def _is_seq(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
