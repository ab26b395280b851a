"""Offline verification of an audit bundle (`reunite audit verify`).

Uses only the chain rules (chain.py), the public key and the bundle itself: no
database, no service settings, so an auditor can run it anywhere. It checks that

- every event's hash is recomputed from its fields and its prev_hash;
- seq goes up by exactly one and each prev_hash is the previous event's hash
  (a bundle that starts at seq 1 starts from chain.GENESIS_HASH);
- every checkpoint is signed by the bundle's key (or the trusted key given, which
  the bundle's key must equal) and names the hash of the event at its seq;
- the last event is covered by a signed checkpoint, so a cut-off tail shows.

What it cannot know: the header is unsigned, so a bundle that starts after seq 1
proves the events from its first one on, not that none came before; and a bundle
proves the trail up to its last checkpoint, not that nothing was appended later
(compare with a newer export for that).

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
from typing import Any

from service.audit.chain import GENESIS_HASH, HASHED_FIELDS, checkpoint_message, event_hash
from service.audit.signing import KeyFileError, key_id_of, load_public_key, signature_valid

BUNDLE_FORMAT = "reunite-audit-bundle/1"
EVENT_FIELDS = (*HASHED_FIELDS, "prev_hash", "hash")
CHECKPOINT_FIELDS = ("seq", "head_hash", "key_id", "signature")


class UnreadableBundle(ValueError):
    """The input is not a bundle this verifier can read (exit code 2)."""


@dataclass(frozen=True)
class Problem:
    seq: int | None  # None: about the bundle as a whole (its key), not one event
    message: str


@dataclass
class Report:
    key_id: str | None = None
    events: int = 0
    checkpoints: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.events > 0

    @property
    def ordered_problems(self) -> list[Problem]:
        """Problems about the whole bundle first, then by sequence number."""
        return sorted(self.problems, key=lambda problem: (problem.seq is not None, problem.seq or 0))


def verify_file(path: Path, *, trusted_key_pem: str | None = None) -> Report:
    try:
        with open(path, encoding="utf-8") as handle:
            return verify_bundle(handle, trusted_key_pem=trusted_key_pem)
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableBundle(f"cannot read {path}: {exc}") from exc


def verify_bundle(lines: Iterable[str], *, trusted_key_pem: str | None = None) -> Report:
    """Check a bundle given as its lines; UnreadableBundle if it is not a bundle at all."""
    records = _records(lines)
    header = next(records, None)
    if header is None or header.get("type") != "header" or header.get("format") != BUNDLE_FORMAT:
        raise UnreadableBundle(f"the first line is not a {BUNDLE_FORMAT} header")
    report = Report()
    public_key = _choose_key(header, trusted_key_pem, report)
    chain = _ChainWalk(report, declared_first=header.get("first_seq"))
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
    _check_tail(covered, header.get("last_seq"), report)
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


def _choose_key(header: dict[str, Any], trusted_key_pem: str | None, report: Report):
    """The key to check signatures with: the trusted one if given, which the bundle's must equal."""
    try:
        bundled = load_public_key(header.get("public_key_pem") or "")
    except KeyFileError:
        bundled = None
    try:
        trusted = load_public_key(trusted_key_pem) if trusted_key_pem is not None else None
    except KeyFileError as exc:
        raise UnreadableBundle("the trusted public key is not a readable Ed25519 key") from exc
    if trusted is None and bundled is None:
        raise UnreadableBundle("the bundle's public key is not a readable Ed25519 key")
    key = trusted or bundled
    report.key_id = key_id_of(key)
    if trusted is not None and (bundled is None or key_id_of(bundled) != report.key_id):
        report.problems.append(Problem(None, "the bundle's public key is not the trusted key"))
    elif header.get("key_id") != report.key_id:
        report.problems.append(Problem(None, "the header's key_id does not match its public key"))
    return key


class _ChainWalk:
    """Follows the events in order, checking each link and keeping each hash."""

    def __init__(self, report: Report, *, declared_first: Any):
        self.report = report
        self.declared_first = declared_first if _is_seq(declared_first) else None
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
            return self.hashes[position * 32:(position + 1) * 32].hex()
        return None

    def _check_position(self, event: dict[str, Any]) -> None:
        seq, expected = event["seq"], self._expected()
        if self.previous is None:
            self._check_start(event)
        elif seq != expected:
            self._problem(expected, f"expected seq {expected} here but found seq {seq}: "
                          "events were removed, reordered or inserted")
        elif event["prev_hash"] != self.previous["hash"]:
            self._problem(seq, f"prev_hash is not the hash of seq {seq - 1}: an event was replaced or inserted")

    def _check_start(self, event: dict[str, Any]) -> None:
        seq = event["seq"]
        if self.declared_first is not None and seq != self.declared_first:
            self._problem(self.declared_first, f"the header says the bundle starts at seq "
                          f"{self.declared_first}, but its first event is seq {seq}")
        if seq == 1 and event["prev_hash"] != GENESIS_HASH:
            self._problem(1, "the first event of the trail does not start from the genesis hash")

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
    if seq > report.last_seq:
        return seq  # a signed head beyond the last event: the tail check reports what is missing
    if seq < report.first_seq:
        report.problems.append(Problem(seq, "checkpoint before the bundle's first event"))
        return None
    if chain.hash_at(seq) != record["head_hash"]:
        report.problems.append(Problem(seq, f"the signed head is not the hash of seq {seq}: "
                                            "events up to it were changed, removed or inserted"))
        return None
    return seq


def _check_tail(covered: list[int], declared_last: Any, report: Report) -> None:
    """The bundle must reach as far as its signatures (and header) say, and end on a signed head."""
    last = report.last_seq
    signed_end = max(covered, default=0)
    header_end = declared_last if _is_seq(declared_last) else 0
    if max(signed_end, header_end) > last:
        source = f"a signed checkpoint covers seq {signed_end}" if signed_end > last else \
            f"its header says it ends at seq {header_end}"
        report.problems.append(Problem(last + 1, f"missing: the bundle stops at seq {last}, but {source}: "
                                                  "the tail was cut off"))
    elif last not in covered:
        report.problems.append(Problem(last, "the last event is not covered by a signed checkpoint: "
                                             "the tail may have been cut off"))


def _is_seq(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
