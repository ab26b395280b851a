"""Withdrawal leaves no remnant in SQLite's files (the database file, its write-ahead log) or index snapshots.

Unique markers go into the record's label, the guardian's name and a face vector; after the
withdrawal the raw bytes of `reunite.db` and `reunite.db-wal` are searched for them (and for
the photo's wrapped data key), and the index snapshot files for the vector. Before the
withdrawal the same search finds them, so the test can tell a scrubbed file from one that was
never written.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from service.photos.models import Embedding, Photo
from service.worker.replica import IndexReplica
from service.records.models import Record
from service.retention import ERASED_LABEL
from tests.integration.test_records import (  # noqa: F401  (people is a fixture)
    API,
    MODEL,
    add_faces,
    bearer,
    create_record,
    people,
    upload_photo,
)

pytestmark = pytest.mark.one_backend


def database_bytes(database_url: str) -> bytes:
    path = Path(database_url.removeprefix("sqlite:///"))
    return b"".join(file.read_bytes() for file in (path, Path(f"{path}-wal")) if file.exists())


def test_after_withdrawal_no_label_name_vector_or_key_is_left_in_the_sqlite_files(
    backend, app, client, db, settings, people, database_url
):
    if backend != "sqlite":
        pytest.skip("the file-level check is about SQLite; PostgreSQL is VACUUM (docs/security.md)")
    marker = uuid.uuid4().hex
    label, guardian = f"L{marker[:20]}", f"G{marker[:20]}"
    headers = bearer(settings, people.caseworker)
    record_id = create_record(client, headers, label=label, consent={"guardian_name": guardian})
    photo_id = upload_photo(client, headers, record_id, taken_at="2025-05-04")["photo_id"]
    [face] = add_faces(db, photo_id, 1)
    vector_marker = (marker * 16).encode()[:512]  # 128 float32s whose bytes spell the marker
    db.get(Embedding, face).vector = np.frombuffer(vector_marker, np.float32).tobytes()
    wrapped_key = db.get(Photo, photo_id).wrapped_key
    assert db.get(Photo, photo_id).taken_at is not None
    db.commit()
    secrets = [label.encode(), guardian.encode(), vector_marker[:64], wrapped_key]
    assert all(secret in database_bytes(database_url) for secret in secrets)  # the search can find them
    replica = IndexReplica(settings.index_dir)  # as a worker's, on the same data folder
    replica.catch_up(db, MODEL)
    assert vector_marker in replica.save_snapshot(MODEL).read_bytes()

    response = client.post(f"{API}/records/{record_id}/consent/withdraw", headers=headers)
    assert response.status_code == 200, response.text

    remaining = database_bytes(database_url)
    assert [secret for secret in secrets if secret in remaining] == []
    assert [path.name for path in settings.index_dir.iterdir() if vector_marker[:64] in path.read_bytes()] == []
    record = db.get(Record, record_id)
    # What survives, by decision (docs/security.md): the reference, the dates the law asks to keep.
    assert (record.label, record.date_of_birth, record.age_years, record.case_reference) == (
        ERASED_LABEL,
        None,
        None,
        "REF-1",
    )
    assert record.missing_since is not None and record.consent.withdrawn_at is not None
    photo = db.get(Photo, photo_id)
    assert (photo.status, photo.taken_at, photo.age_at_photo, photo.wrapped_key, photo.sha256) == (
        "erased",
        None,
        None,
        None,
        None,
    )
