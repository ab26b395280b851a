"""Arranging gallery state directly in the database: records with consent, photos, cases.

The worker tests drive the pipeline themselves, so they build rows here rather than
through the HTTP API; photos are sealed with the app's real vault.
"""

from __future__ import annotations

import io
import uuid
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.cases.models import Case
from service.db import utcnow
from service.organisations.models import Organisation
from service.photos.models import Photo
from service.photos.service import CheckedImage, check_upload, store_photo
from service.photos.storage import PhotoVault
from service.records.models import Consent, Record
from service.reviews.models import Candidate
from service.settings import Settings
from tests.support.service import make_organisation, make_user


class World:
    """One organisation with a caseworker, and helpers to add photos and cases and read outcomes.

    `pipeline` (made on first use, as it loads the face models) runs the worker's steps
    in the test process, with its own index replica under `tmp_path`.
    """

    def __init__(self, app, db, tmp_path):
        self.app, self.db, self.tmp_path = app, db, tmp_path
        self.settings, self.vault = app.state.settings, app.state.vault
        self.organisation = make_organisation(db)
        self.user = make_user(db, "caseworker", organisation=self.organisation).user
        db.commit()
        self._pipeline = None
        self.index_dir = tmp_path / "index"

    @property
    def pipeline(self):
        if self._pipeline is None:
            from service.worker.pipeline import Pipeline
            from service.worker.replica import IndexReplica

            self._pipeline = Pipeline(
                settings=self.settings,
                sessions=self.app.state.session_factory,
                vault=self.vault,
                replica=IndexReplica(self.index_dir),
            )
        return self._pipeline

    def withdraw(self, record_id: int):
        """Withdraw the record's consent as its caseworker does (erasure included)."""
        from service.records.service import withdraw_consent

        return withdraw_consent(
            self.db, vault=self.vault, index_dir=self.index_dir, actor=self.user, record_id=record_id, now=utcnow()
        )

    def record_photo(self, data: bytes, *, organisation: Organisation | None = None, record=None) -> Photo:
        organisation = organisation or self.organisation
        record = record or make_record(self.db, organisation_id=organisation.id, user_id=self.user.id)
        photo = add_photo(
            self.db,
            vault=self.vault,
            settings=self.settings,
            data=data,
            organisation_id=organisation.id,
            user_id=self.user.id,
            record_id=record.id,
        )
        self.db.commit()
        return photo

    def enrol(self, data: bytes, **where) -> Photo:
        photo = self.record_photo(data, **where)
        assert self.pipeline.process_record_photo(photo.id) == "embedded"
        return self.reload(photo)

    def case(self, data: bytes) -> Case:
        case = make_case(self.db, organisation_id=self.organisation.id, user_id=self.user.id)
        add_photo(
            self.db,
            vault=self.vault,
            settings=self.settings,
            data=data,
            organisation_id=self.organisation.id,
            user_id=self.user.id,
            case_id=case.id,
        )
        self.db.commit()
        return case

    def reload(self, row):
        self.db.expire_all()
        return self.db.get(type(row), row.id)

    def candidates(self, case: Case) -> list[Candidate]:
        self.db.expire_all()
        return list(self.db.scalars(select(Candidate).where(Candidate.case_id == case.id).order_by(Candidate.rank)))


def make_record(
    session: Session,
    *,
    organisation_id: int,
    user_id: int,
    consent_days: int = 365,
    case_reference: str | None = None,
    label: str | None = None,
    guardian_name: str = "A Guardian",
    date_of_birth: date | None = None,
    missing_since: date = date(2025, 1, 1),
) -> Record:
    """An active record with a valid consent; aged 9 unless a date of birth is given."""
    now = utcnow()
    record = Record(
        organisation_id=organisation_id,
        created_by=user_id,
        case_reference=case_reference or uuid.uuid4().hex[:10],
        label=label or f"child-{uuid.uuid4().hex[:6]}",
        date_of_birth=date_of_birth,
        age_years=None if date_of_birth else 9,
        missing_since=missing_since,
        status="active",
    )
    record.consent = Consent(
        guardian_name=guardian_name,
        guardian_relationship="mother",
        responsibility_verified_by="birth certificate",
        lawful_basis="consent",
        purpose="finding the child",
        notice_version="v1",
        obtained_at=now - timedelta(days=1),
        expires_at=now + timedelta(days=consent_days),
    )
    session.add(record)
    session.flush()
    return record


def make_case(session: Session, *, organisation_id: int, user_id: int, retention_days: int = 30) -> Case:
    case = Case(
        organisation_id=organisation_id,
        submitted_by=user_id,
        case_reference=uuid.uuid4().hex[:10],
        purpose="searching for a missing child",
        status="queued",
        attempts=0,
        retention_until=utcnow() + timedelta(days=retention_days),
    )
    session.add(case)
    session.flush()
    return case


def add_photo(
    session: Session,
    *,
    vault: PhotoVault,
    settings: Settings,
    data: bytes,
    organisation_id: int,
    user_id: int,
    record_id: int | None = None,
    case_id: int | None = None,
) -> Photo:
    image = check_upload(data, settings)
    return store_photo(
        session,
        vault=vault,
        image=image,
        organisation_id=organisation_id,
        uploaded_by=user_id,
        record_id=record_id,
        case_id=case_id,
    )


def add_unchecked_photo(
    session: Session,
    *,
    vault: PhotoVault,
    data: bytes,
    organisation_id: int,
    user_id: int,
    record_id: int | None = None,
    case_id: int | None = None,
) -> Photo:
    """A photo stored without the upload check, as if a damaged file got past it."""
    image = CheckedImage(data=data, width=1, height=1, source_format="JPEG", thumbnail=b"")
    return store_photo(
        session,
        vault=vault,
        image=image,
        organisation_id=organisation_id,
        uploaded_by=user_id,
        record_id=record_id,
        case_id=case_id,
    )


def side_by_side(*paths: Path, height: int = 400) -> bytes:
    """One JPEG with the given photos next to each other, each scaled to `height`."""
    images = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            images.append(image.resize((round(image.width * height / image.height), height)))
    canvas = Image.new("RGB", (sum(image.width for image in images), height), "white")
    left = 0
    for image in images:
        canvas.paste(image, (left, 0))
        left += image.width
    return _jpeg(canvas)


def faceless_photo(size: int = 320) -> bytes:
    """A smooth gradient: a valid photo in which no face can be found."""
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    pixels = np.stack(
        [np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)), np.full((size, size), 128, dtype=np.uint8)],
        axis=-1,
    )
    return _jpeg(Image.fromarray(pixels))


def upscaled(path: Path, factor: int) -> bytes:
    """The photo enlarged `factor` times: the same face, slower to analyse."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        return _jpeg(image.resize((image.width * factor, image.height * factor)))


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()
