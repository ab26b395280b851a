"""Seeding the demo sandbox through the service's own operations.

Two sample organisations, marked as demos in their names, registration numbers and
addresses, are approved at once (an audited `demo_seeded` event says so, where a real
organisation needs two platform admins). The first registers two consented records with
the sample photos, which the worker's pipeline enrols here; the second then submits a
case photo of the same man as the first record, searched here too, so the case already
has its candidate waiting for the two reviewers when the command ends.

The sample photos are of adults (the face_recognition package's test photos); nothing here
is a child's photo or name. Demo accounts are dated as established accounts, so that the
two-person rule (vetting.review), which wants one confirmer whose account is not new,
can be walked through today; a real account waits `review_new_account_days`.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.audit.actions import AuditAction
from service.audit.service import record_event
from service.auth.service import create_user
from service.cases.service import submit_case
from service.organisations.models import Organisation
from service.photos.storage import PhotoVault
from service.records.schemas import ConsentIn, LawfulBasis, NewRecord
from service.records.service import add_record_photo, create_record
from service.reviews.models import Candidate
from service.settings import Settings

DEMO_MARK = "DEMO"  # registration numbers start with it; names and addresses say "demo" too


@dataclass(frozen=True)
class DemoOrganisation:
    name: str
    registration_number: str
    domain: str


HOPE = DemoOrganisation("Demo sandbox: Hope Tracing", f"{DEMO_MARK}-1", "hope-tracing.demo.example.org")
FAMILY = DemoOrganisation("Demo sandbox: Family Links", f"{DEMO_MARK}-2", "family-links.demo.example.org")

# (organisation, local part, roles): the records' side and the case's side each get a reviewer.
ACCOUNTS = (
    (HOPE, "caseworker", {"caseworker"}),
    (HOPE, "reviewer", {"reviewer"}),
    (HOPE, "admin", {"org_admin"}),
    (FAMILY, "caseworker", {"caseworker"}),
    (FAMILY, "reviewer", {"reviewer"}),
)
# (case reference, pseudonymous label, photos) of the first organisation's records.
RECORDS = (("DEMO-R1", "Sample person 1", ("obama.jpg", "obama3.jpg")), ("DEMO-R2", "Sample person 2", ("biden.jpg",)))
CASE_PHOTO = "obama2.jpg"  # the man of DEMO-R1, in another photo


def missing_photos(folder: Path) -> list[str]:
    """The sample photos the sandbox needs that `folder` lacks (checked before anything is written)."""
    needed = [name for _, _, names in RECORDS for name in names] + [CASE_PHOTO]
    return [name for name in needed if not (folder / name).is_file()]


class DemoExists(RuntimeError):
    """A demo sandbox is already in this database."""


@dataclass(frozen=True)
class DemoAccount:
    organisation: str
    email: str
    password: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Sandbox:
    accounts: list[DemoAccount]
    record_ids: list[int]
    case_id: int
    candidates: int


def demo_exists(session: Session) -> bool:
    found = session.scalars(select(Organisation.id).where(Organisation.registration_number.like(f"{DEMO_MARK}-%")))
    return found.first() is not None


def seed_sandbox(sessions: sessionmaker[Session], *, settings: Settings, photos: Path, now: datetime) -> Sandbox:
    """Create the sandbox and search its case; raises DemoExists when one is already there."""
    with sessions() as session:
        if demo_exists(session):
            raise DemoExists("A demo sandbox is already in this database (organisations 'Demo sandbox: …').")
        organisations = {demo: _approved_organisation(session, demo, now=now) for demo in (HOPE, FAMILY)}
        accounts, users = _accounts(session, organisations, settings=settings, now=now)
        record_event(
            session,
            action=AuditAction.DEMO_SEEDED,
            target_type="organisation",
            details={
                "organisation_ids": [o.id for o in organisations.values()],
                "user_ids": [u.id for u in users.values()],
            },
        )
        session.commit()
        vault = PhotoVault(settings.photo_root, settings.photo_master_key())
        records, photo_ids = _records(session, vault, settings, users[(HOPE, "caseworker")], photos, now=now)
        case_submitter = users[(FAMILY, "caseworker")]
        session.commit()  # reading ids began a transaction: on SQLite it would hold the pipeline's write lock
        with _pipeline(sessions, vault, settings) as pipeline:
            for photo_id in photo_ids:  # enrolled first, as a gallery is before a case is searched
                pipeline.process_record_photo(photo_id)
            case_id = submit_case(
                session,
                vault=vault,
                settings=settings,
                actor=case_submitter,
                case_reference="DEMO-C1",
                purpose="Demo: searching for sample person 1",
                read_file=(photos / CASE_PHOTO).read_bytes,
                now=now,
                dispatch=None,
            ).id  # the pipeline below runs the search here
            session.commit()
            pipeline.process_case(case_id)
        found = len(session.scalars(select(Candidate.id).where(Candidate.case_id == case_id)).all())
    return Sandbox(accounts=accounts, record_ids=records, case_id=case_id, candidates=found)


def _approved_organisation(session: Session, demo: DemoOrganisation, *, now: datetime) -> Organisation:
    organisation = Organisation(
        name=demo.name,
        org_type="ngo",
        country="GB",
        registration_number=demo.registration_number,
        website=f"https://{demo.domain}",
        contact_email=f"contact@{demo.domain}",
        status="approved",
        attests_no_law_enforcement=True,
        purpose="Demonstrating Reunite with sample data only",
        approved_at=now,
        vetting_expires_at=now + timedelta(days=365),
    )
    session.add(organisation)
    session.flush()
    return organisation


def _accounts(session: Session, organisations: dict, *, settings: Settings, now: datetime):
    """Each account with a fresh password (shown once); its second factor is set up at first sign-in."""
    accounts, users = [], {}
    for demo, local, roles in ACCOUNTS:
        email, password = f"{local}@{demo.domain}", secrets.token_urlsafe(15)
        user = create_user(session, email=email, password=password, roles=roles, organisation_id=organisations[demo].id)
        user.created_at = now - timedelta(days=settings.review_new_account_days + 1)
        users[(demo, local)] = user
        accounts.append(DemoAccount(demo.name, email, password, tuple(sorted(roles))))
    session.flush()
    return accounts, users


def _records(session: Session, vault: PhotoVault, settings: Settings, caseworker, photos: Path, *, now: datetime):
    record_ids, photo_ids = [], []
    for reference, label, names in RECORDS:
        record = create_record(
            session,
            actor=caseworker,
            body=_new_record(reference, label, now=now),
            now=now,
            max_consent_days=settings.consent_max_days,
        )
        record_ids.append(record.id)
        for name in names:
            photo = add_record_photo(
                session,
                vault=vault,
                settings=settings,
                actor=caseworker,
                record_id=record.id,
                read_file=(photos / name).read_bytes,
                taken_at=None,
                now=now,
                dispatch=None,
            )  # _pipeline processes it
            photo_ids.append(photo.id)
    return record_ids, photo_ids


def _new_record(reference: str, label: str, *, now: datetime) -> NewRecord:
    consent = ConsentIn(
        guardian_name="Demo guardian (not a real person)",
        guardian_relationship="guardian",
        responsibility_verified_by="demo: nothing to verify",
        lawful_basis=LawfulBasis.CONSENT,
        purpose="Demonstrating Reunite with sample photos of adults",
        notice_version="demo",
        obtained_at=now - timedelta(days=1),
        expires_at=now + timedelta(days=90),
    )
    return NewRecord(
        case_reference=reference, label=label, age_years=12, missing_since=date(2026, 1, 1), consent=consent
    )


@contextmanager
def _pipeline(sessions, vault: PhotoVault, settings: Settings) -> Iterator:
    """The worker's pipeline, run here on a throwaway index replica (the database is the truth)."""
    from service.worker.pipeline import Pipeline
    from service.worker.replica import IndexReplica

    with tempfile.TemporaryDirectory(prefix="reunite-demo-index-") as folder:
        yield Pipeline(
            settings=settings,
            sessions=sessions,
            vault=vault,
            replica=IndexReplica(Path(folder), index_kind=settings.index_kind),
        )
