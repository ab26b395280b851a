"""The offline verifier on bundles built in memory: what tampering it catches, and what passes."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from service.audit.chain import GENESIS_HASH, HASHED_FIELDS, checkpoint_message, event_hash, header_message
from service.audit.signing import AuditSigner, key_id_of, load_public_key, load_signer
from service.audit.verify import BUNDLE_FORMAT, TrustedKeyRequired, UnreadableBundle, verify_bundle
from service.cli.audit import audit_app

COUNT = 10
CHECKPOINT_EVERY = 4  # checkpoints at 4, 8 and (the export's) 10


@dataclass
class Bundle:
    signer: AuditSigner
    header: dict
    events: list[dict] = field(default_factory=list)
    checkpoints: list[dict] = field(default_factory=list)
    trusted: str = ""  # the operator's public key as an auditor holds it (even after a forger swaps `signer`)

    def lines(self) -> list[str]:
        return [json.dumps(record) + "\n" for record in (self.header, *self.events, *self.checkpoints)]

    def sign_header(self, signer: AuditSigner | None = None) -> None:
        """Sign the header over the current events, as the service's export does."""
        signer = signer or self.signer
        self.header.update(
            first_seq=self.events[0]["seq"],
            last_seq=self.events[-1]["seq"],
            event_count=len(self.events),
            base_hash=self.events[0]["prev_hash"],
            head_hash=self.events[-1]["hash"],
            key_id=signer.key_id,
            public_key_pem=signer.public_key_pem,
        )
        self.header["signature"] = signer.sign(header_message(self.header))

    def event(self, seq: int) -> dict:
        return next(event for event in self.events if event["seq"] == seq)

    def rechain(self, start: int = 0) -> None:
        """Recompute hashes from position `start` on, as a forger who can write the file would."""
        previous = self.events[start - 1]["hash"] if start else GENESIS_HASH
        for event in self.events[start:]:
            event["prev_hash"] = previous
            event["hash"] = previous = event_hash(previous, event)

    def sign(self, seq: int, signer: AuditSigner | None = None) -> dict:
        signer = signer or self.signer
        head = self.event(seq)["hash"]
        return {
            "type": "checkpoint",
            "seq": seq,
            "head_hash": head,
            "signed_at": "2026-11-27T10:01:00.000000Z",
            "key_id": signer.key_id,
            "signature": signer.sign(checkpoint_message(seq, head)),
        }


def make_bundle(count: int = COUNT) -> Bundle:
    signer = AuditSigner(Ed25519PrivateKey.generate())
    header = {
        "type": "header",
        "format": BUNDLE_FORMAT,
        "exported_at": "2026-11-27T10:02:00.000000Z",
        "public_key_pem": signer.public_key_pem,
        "key_id": signer.key_id,
        "filters": {},
        "first_seq": 1,
        "last_seq": count,
    }
    bundle = Bundle(signer=signer, header=header, trusted=signer.public_key_pem)
    for seq in range(1, count + 1):
        bundle.events.append(
            {
                "type": "event",
                "seq": seq,
                "at": f"2026-11-27T10:00:{seq:02d}.000000Z",
                "actor_id": 7,
                "organisation_id": 3 if seq % 2 else None,
                "action": "login",
                "target_type": "case",
                "target_id": str(100 + seq),
                "details": {"count": seq, "reason": "otp_wrong"},
            }
        )
    bundle.rechain()
    bundle.checkpoints = [bundle.sign(seq) for seq in range(CHECKPOINT_EVERY, count + 1, CHECKPOINT_EVERY)]
    bundle.checkpoints.append(bundle.sign(count))
    bundle.sign_header()
    return bundle


def verify(bundle: Bundle, **options):
    """Verify as an auditor does: against the operator's key obtained by another route."""
    if "trusted_fingerprint" not in options:
        options.setdefault("trusted_key_pem", bundle.trusted)
    return verify_bundle(bundle.lines(), **options)


def first_problem(bundle: Bundle, **options):
    report = verify(bundle, **options)
    assert not report.ok
    return report.ordered_problems[0]


@pytest.fixture
def bundle() -> Bundle:
    return make_bundle()


def test_an_untouched_bundle_verifies_against_the_trusted_key_or_its_fingerprint(bundle):
    report = verify(bundle)
    assert report.ok, report.problems
    assert (report.events, report.checkpoints, report.first_seq, report.last_seq) == (COUNT, 3, 1, COUNT)
    assert report.trusted_by == "public key"
    pinned = verify(bundle, trusted_fingerprint=bundle.signer.key_id.upper())
    assert pinned.ok and pinned.trusted_by == "fingerprint"


def test_the_bundles_own_key_alone_is_refused(bundle):
    with pytest.raises(TrustedKeyRequired, match="--public-key FILE"):
        verify_bundle(bundle.lines())


def test_the_report_says_what_the_signatures_cover(bundle):
    bundle.checkpoints.pop()  # the last checkpoint at 8: 9 and 10 are signed only by the export header
    coverage = verify(bundle).coverage
    assert (coverage.first_seq, coverage.last_seq, coverage.last_checkpoint) == (1, COUNT, 8)
    assert coverage.header_only == (9, COUNT)
    assert coverage.from_genesis and coverage.exported_at == bundle.header["exported_at"]


CHANGES = {
    "seq": 50,
    "at": "2026-11-27T09:00:00.000000Z",
    "actor_id": 8,
    "organisation_id": 99,
    "action": "logout",
    "target_type": "record",
    "target_id": "999",
    "details": {"count": 6, "reason": "otp_wrong"},
}


@pytest.mark.parametrize("name", HASHED_FIELDS)
def test_a_changed_field_is_caught_at_its_event(bundle, name):
    bundle.event(5)[name] = CHANGES[name]
    assert first_problem(bundle).seq == 5


def test_a_changed_event_rehashed_breaks_the_next_link(bundle):
    bundle.event(5)["actor_id"] = 8
    bundle.event(5)["hash"] = event_hash(bundle.event(5)["prev_hash"], bundle.event(5))
    problem = first_problem(bundle)
    assert problem.seq == 6  # seq 5 is self-consistent now, but 6 still links to its old hash
    assert "prev_hash is not the hash of seq 5" in problem.message


def test_a_fully_rechained_rewrite_is_caught_by_the_signed_checkpoint(bundle):
    bundle.event(5)["actor_id"] = 8
    bundle.rechain(4)
    problem = first_problem(bundle)
    assert problem.seq == 8
    assert "signed head" in problem.message


def test_a_removed_event_is_caught(bundle):
    bundle.events.remove(bundle.event(5))
    problem = first_problem(bundle)
    assert problem.seq == 5
    assert "expected seq 5" in problem.message


def test_two_swapped_events_are_caught(bundle):
    bundle.events[4], bundle.events[5] = bundle.events[5], bundle.events[4]
    assert first_problem(bundle).seq == 5


def test_an_inserted_event_is_caught(bundle):
    forged = {**copy.deepcopy(bundle.event(5)), "seq": 6, "action": "export", "prev_hash": bundle.event(5)["hash"]}
    forged["hash"] = event_hash(forged["prev_hash"], forged)
    bundle.events.insert(5, forged)
    assert first_problem(bundle).seq == 7  # the real seq 6 now follows a seq 6


def test_an_inserted_and_renumbered_event_is_caught(bundle):
    forged = {**copy.deepcopy(bundle.event(5)), "action": "export"}
    bundle.events.insert(5, forged)
    for seq, event in enumerate(bundle.events, start=1):
        event["seq"] = seq
    bundle.rechain(5)
    assert first_problem(bundle).seq == 8


def test_a_truncated_tail_is_caught_by_the_checkpoint_beyond_it(bundle):
    del bundle.events[-2:]
    problem = first_problem(bundle)
    assert problem.seq == COUNT - 1
    assert "missing" in problem.message


@pytest.mark.parametrize("cut", [1, 2])
def test_a_tail_cut_back_to_a_checkpoint_with_an_edited_header_is_caught(bundle, cut):
    """Attack: drop the last events and their checkpoint, and make the (formerly unsigned) header agree."""
    del bundle.events[-cut:]  # cut=2 ends on seq 8, itself under a valid periodic checkpoint
    bundle.checkpoints = [c for c in bundle.checkpoints if c["seq"] <= COUNT - cut]
    bundle.header.update(last_seq=COUNT - cut, event_count=COUNT - cut, head_hash=bundle.events[-1]["hash"])
    problem = first_problem(bundle)
    assert problem.seq is None
    assert "header's signature does not verify" in problem.message


def test_a_tail_cut_keeping_the_header_is_caught(bundle):
    del bundle.events[-2:]
    bundle.checkpoints = [c for c in bundle.checkpoints if c["seq"] <= COUNT - 2]
    problem = first_problem(bundle)
    assert problem.seq == COUNT - 1
    assert "signed header says it ends at seq 10" in problem.message


@pytest.mark.parametrize("edit_header", [False, True])
def test_a_cut_head_is_caught(bundle, edit_header):
    """Attack: drop the first events (and the checkpoint among them) and say the bundle starts later."""
    bundle.events = bundle.events[5:]
    bundle.checkpoints = bundle.checkpoints[1:]
    if edit_header:
        bundle.header.update(first_seq=6, event_count=COUNT - 5, base_hash=bundle.events[0]["prev_hash"])
    report = verify(bundle)
    assert not report.ok
    messages = [problem.message for problem in report.problems]
    if edit_header:
        assert any("header's signature does not verify" in message for message in messages)
    else:
        assert any("header says the bundle starts at seq 1" in message for message in messages)


def test_a_forged_checkpoint_signature_is_caught(bundle):
    checkpoint = bundle.checkpoints[1]
    checkpoint["signature"] = ("00" if checkpoint["signature"][:2] != "00" else "11") + checkpoint["signature"][2:]
    problem = first_problem(bundle)
    assert problem.seq == 8
    assert "signature" in problem.message


def test_a_checkpoint_over_another_head_is_caught(bundle):
    bundle.checkpoints[1]["head_hash"] = bundle.event(7)["hash"]
    assert first_problem(bundle).seq == 8


def test_a_bundle_resigned_with_another_key_fails_against_the_trusted_key(bundle):
    trusted = bundle.signer.public_key_pem
    impostor = AuditSigner(Ed25519PrivateKey.generate())
    bundle.event(5)["actor_id"] = 8
    bundle.rechain(4)
    bundle.signer = impostor
    bundle.header.update(public_key_pem=impostor.public_key_pem, key_id=impostor.key_id)
    bundle.checkpoints = [bundle.sign(c["seq"]) for c in bundle.checkpoints]
    bundle.sign_header(impostor)
    assert verify(bundle, trusted_key_pem=impostor.public_key_pem).ok  # self-consistent under its own key
    for trusted_by in ({"trusted_key_pem": trusted}, {"trusted_fingerprint": key_id_of(load_public_key(trusted))}):
        problem = first_problem(bundle, **trusted_by)
        assert problem.seq is None
        assert "signed with another key than the trusted one" in problem.message
    with pytest.raises(TrustedKeyRequired):
        verify_bundle(bundle.lines())  # the embedded (swapped) key is never enough


def test_checkpoints_by_another_key_are_refused(bundle):
    bundle.checkpoints[-1] = bundle.sign(COUNT, AuditSigner(Ed25519PrivateKey.generate()))
    assert first_problem(bundle).seq == COUNT


def test_a_bundle_exported_from_a_later_seq_verifies_and_says_so(bundle):
    bundle.events = bundle.events[3:]
    bundle.checkpoints = bundle.checkpoints[1:]
    bundle.sign_header()  # as an export with `since` signs it: from seq 4, chained to the hash of seq 3
    report = verify(bundle)
    assert report.ok, report.problems
    assert report.first_seq == 4
    assert not report.coverage.from_genesis and report.coverage.base_hash == bundle.events[0]["prev_hash"]


def test_an_old_unsigned_bundle_is_not_verified(bundle):
    bundle.header["format"] = "reunite-audit-bundle/1"
    with pytest.raises(UnreadableBundle, match="unsigned header"):
        verify(bundle)


def test_the_first_event_must_start_from_genesis(bundle):
    bundle.events[0]["prev_hash"] = "1" * 64
    bundle.rechain(1)
    assert first_problem(bundle).seq == 1


def test_unreadable_input_is_reported_as_such(bundle):
    with pytest.raises(UnreadableBundle):
        verify_bundle(["not json\n"], trusted_key_pem=bundle.trusted)
    with pytest.raises(UnreadableBundle):
        verify_bundle(bundle.lines()[1:], trusted_key_pem=bundle.trusted)  # no header
    with pytest.raises(UnreadableBundle):
        verify_bundle(bundle.lines(), trusted_key_pem="not a key")
    with pytest.raises(UnreadableBundle, match="64 hexadecimal"):
        verify_bundle(bundle.lines(), trusted_fingerprint="abc")


def test_cli_exit_codes(tmp_path, bundle):
    runner = CliRunner()
    path = tmp_path / "bundle.jsonl"
    key = tmp_path / "key.pem"
    key.write_text(bundle.signer.public_key_pem)
    path.write_text("".join(bundle.lines()))
    ok = runner.invoke(audit_app, ["verify", str(path), "--public-key", str(key)])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output and f"{COUNT} events" in ok.output
    assert "export header signs: seq 1 to 10" in ok.output
    assert "after the last checkpoint: no events" in ok.output
    pinned = runner.invoke(audit_app, ["verify", str(path), "--fingerprint", bundle.signer.key_id])
    assert pinned.exit_code == 0, pinned.output
    alone = runner.invoke(audit_app, ["verify", str(path)])
    assert alone.exit_code == 2 and "--public-key FILE" in alone.output
    bundle.event(3)["details"] = {"count": 4}
    path.write_text("".join(bundle.lines()))
    bundle.event(3)["details"] = {"count": 4}
    path.write_text("".join(bundle.lines()))
    failed = runner.invoke(audit_app, ["verify", str(path), "--public-key", str(key)])
    assert failed.exit_code == 1
    assert "FAILED at seq 3" in failed.output
    path.write_text("{broken")
    assert runner.invoke(audit_app, ["verify", str(path), "--public-key", str(key)]).exit_code == 2
    assert runner.invoke(audit_app, ["verify", str(tmp_path / "absent.jsonl"), "--public-key", str(key)]).exit_code == 2


def test_the_signing_key_is_created_once_privately(tmp_path):
    path = tmp_path / "keys" / "audit.pem"
    signer = load_signer(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_signer(path) is signer
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert signer.key_id == hashlib.sha256(raw).hexdigest()


def test_the_verifier_imports_no_database_code():
    code = "import sys, service.audit.verify; print(any(m.startswith('sqlalchemy') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_public_key_command_prints_the_key_and_fingerprint_to_publish(tmp_path, monkeypatch):
    monkeypatch.setenv("REUNITE_ENVIRONMENT", "development")
    monkeypatch.setenv("REUNITE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REUNITE_AUDIT_KEY_PATH", str(tmp_path / "audit.pem"))
    printed = CliRunner().invoke(audit_app, ["public-key"])
    assert printed.exit_code == 0, printed.output
    signer = load_signer(tmp_path / "audit.pem")
    assert signer.public_key_pem in printed.output and f"fingerprint {signer.key_id}" in printed.output
