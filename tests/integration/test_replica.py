"""The index replica protocol on both databases: catch-up, removal, snapshots, and many processes.

Vectors here are random (no dlib): what is under test is that a replica applies the
`IndexChange` log exactly, in order, and that a removal committed before a search
starts is never returned by a search in any process.
"""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest
from sqlalchemy import delete

from matching.index import VectorIndex
from service.auth import service as auth_service
from service.db import make_engine, make_session_factory, transaction
from service.photos.index_log import append_index_change
from service.photos.models import Embedding, IndexChange, Photo
from service.worker.replica import IndexReplica, vector_to_bytes
from tests.support.gallery import make_record
from tests.support.service import make_organisation, make_user

MODEL = "test-model"
OTHER_MODEL = "other-model"


@pytest.fixture
def gallery(db, monkeypatch):
    """An organisation, a user and one record with one photo to hang embeddings on."""
    monkeypatch.setattr(auth_service, "hash_password", lambda password: "not-a-usable-hash")
    organisation = make_organisation(db)
    user = make_user(db, "caseworker", organisation=organisation).user
    record = make_record(db, organisation_id=organisation.id, user_id=user.id)
    photo = Photo(organisation_id=organisation.id, uploaded_by=user.id, record_id=record.id, status="embedded")
    db.add(photo)
    db.commit()
    return photo.id


def random_vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, 128)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def add_embeddings(sessions, photo_id: int, vectors: np.ndarray, *, model_id: str = MODEL) -> list[int]:
    """Insert embeddings and their `add` changes in one transaction, as the pipeline does."""
    with transaction(sessions) as session:
        rows = [
            Embedding(
                photo_id=photo_id,
                face_index=0,
                box_top=0,
                box_right=1,
                box_bottom=1,
                box_left=0,
                quality="{}",
                vector=vector_to_bytes(v),
                model_id=model_id,
                model_version="1",
            )
            for v in vectors
        ]
        session.add_all(rows)
        session.flush()
        for row in rows:
            append_index_change(session, op="add", embedding_id=row.id, model_id=model_id)
        return [row.id for row in rows]


def remove_embedding(sessions, embedding_id: int, *, model_id: str = MODEL) -> None:
    """Erase an embedding as a withdrawal does: the row goes and a `remove` is logged, together."""
    with transaction(sessions) as session:
        append_index_change(session, op="remove", embedding_id=embedding_id, model_id=model_id)
        session.execute(delete(Embedding).where(Embedding.id == embedding_id))


def catch_up(replica: IndexReplica, sessions, model_id: str = MODEL) -> int:
    session = sessions()
    try:
        return replica.catch_up(session, model_id)
    finally:
        session.close()


def nearest(replica: IndexReplica, vector: np.ndarray, k: int = 1) -> list[int]:
    _, ids = replica.index(MODEL).search(vector, k)
    return [int(i) for i in ids[0] if i >= 0]


def test_catch_up_applies_adds_and_removes_in_order(app, gallery, tmp_path):
    sessions = app.state.session_factory
    vectors = random_vectors(3, seed=1)
    ids = add_embeddings(sessions, gallery, vectors)
    replica = IndexReplica(tmp_path / "index")

    assert catch_up(replica, sessions) == 3
    assert sorted(replica.index(MODEL).ids().tolist()) == sorted(ids)
    assert nearest(replica, vectors[1]) == [ids[1]]

    remove_embedding(sessions, ids[1])
    assert catch_up(replica, sessions) == 1
    assert ids[1] not in replica.index(MODEL)
    assert ids[1] not in nearest(replica, vectors[1], k=3)
    with app.state.session_factory() as session:
        assert replica.index(MODEL).sequence == max(c.seq for c in session.query(IndexChange))
    assert catch_up(replica, sessions) == 0  # nothing new: nothing applied


def test_add_and_remove_in_one_catch_up_leave_nothing(app, gallery, tmp_path):
    sessions = app.state.session_factory
    ids = add_embeddings(sessions, gallery, random_vectors(2, seed=2))
    remove_embedding(sessions, ids[0])
    replica = IndexReplica(tmp_path / "index")
    catch_up(replica, sessions)
    assert replica.index(MODEL).ids().tolist() == [ids[1]]


def test_an_add_whose_embedding_is_gone_is_skipped(app, gallery, tmp_path):
    sessions = app.state.session_factory
    ids = add_embeddings(sessions, gallery, random_vectors(2, seed=3))
    with transaction(sessions) as session:  # erased before any replica saw it, remove not yet logged
        session.execute(delete(Embedding).where(Embedding.id == ids[0]))
    replica = IndexReplica(tmp_path / "index")
    assert catch_up(replica, sessions) == 2
    assert replica.index(MODEL).ids().tolist() == [ids[1]]
    remove_embedding(sessions, ids[0])  # the remove that follows is harmless
    catch_up(replica, sessions)
    assert replica.index(MODEL).ids().tolist() == [ids[1]]


def test_models_have_separate_indexes(app, gallery, tmp_path):
    sessions = app.state.session_factory
    ours = add_embeddings(sessions, gallery, random_vectors(2, seed=4))
    theirs = add_embeddings(sessions, gallery, random_vectors(1, seed=5), model_id=OTHER_MODEL)
    replica = IndexReplica(tmp_path / "index")
    catch_up(replica, sessions, MODEL)
    catch_up(replica, sessions, OTHER_MODEL)
    assert sorted(replica.index(MODEL).ids().tolist()) == sorted(ours)
    assert replica.index(OTHER_MODEL).ids().tolist() == theirs


def test_a_snapshot_is_loaded_and_then_caught_up(app, gallery, tmp_path):
    sessions = app.state.session_factory
    vectors = random_vectors(4, seed=6)
    first = add_embeddings(sessions, gallery, vectors[:2])
    writer = IndexReplica(tmp_path / "index")
    catch_up(writer, sessions)
    path = writer.save_snapshot(MODEL)
    saved_at = writer.index(MODEL).sequence
    later = add_embeddings(sessions, gallery, vectors[2:])
    remove_embedding(sessions, first[0])

    reader = IndexReplica(tmp_path / "index")
    assert reader.index(MODEL).sequence == saved_at  # loaded from the snapshot file
    assert path.exists()
    assert catch_up(reader, sessions) == 3  # only the changes after the snapshot
    fresh = IndexReplica(tmp_path / "elsewhere")  # no snapshot: the whole log
    catch_up(fresh, sessions)
    expected = sorted([first[1], *later])
    assert sorted(reader.index(MODEL).ids().tolist()) == expected
    assert sorted(fresh.index(MODEL).ids().tolist()) == expected


def test_snapshots_are_written_every_n_changes(app, gallery, tmp_path):
    sessions = app.state.session_factory
    replica = IndexReplica(tmp_path / "index", snapshot_every=3)
    add_embeddings(sessions, gallery, random_vectors(2, seed=7))
    catch_up(replica, sessions)
    assert not replica.snapshot_path(MODEL).exists()
    add_embeddings(sessions, gallery, random_vectors(1, seed=8))
    catch_up(replica, sessions)
    assert VectorIndex.load(replica.snapshot_path(MODEL)).sequence == replica.index(MODEL).sequence


def test_a_snapshot_ahead_of_the_database_is_not_trusted(app, gallery, tmp_path):
    sessions = app.state.session_factory
    ids = add_embeddings(sessions, gallery, random_vectors(1, seed=9))
    stale = VectorIndex(dim=128)
    stale.add([999_999], random_vectors(1, seed=10), sequence=10_000)  # from another database
    (tmp_path / "index").mkdir()
    stale.save(tmp_path / "index" / f"{MODEL}.faiss")
    replica = IndexReplica(tmp_path / "index")
    catch_up(replica, sessions)
    assert replica.index(MODEL).ids().tolist() == ids


def test_a_damaged_snapshot_is_rebuilt_from_the_log(app, gallery, tmp_path):
    sessions = app.state.session_factory
    ids = add_embeddings(sessions, gallery, random_vectors(1, seed=11))
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / f"{MODEL}.faiss").write_bytes(b"not an index")
    replica = IndexReplica(tmp_path / "index")
    catch_up(replica, sessions)
    assert replica.index(MODEL).ids().tolist() == ids


def test_a_replica_that_applies_a_removal_rewrites_the_snapshot_on_disk(app, gallery, tmp_path):
    """A snapshot written before an erasure must not keep the erased vector, even one saved late."""
    sessions = app.state.session_factory
    vectors = random_vectors(2, seed=12)
    ids = add_embeddings(sessions, gallery, vectors)
    replica = IndexReplica(tmp_path / "index")
    catch_up(replica, sessions)
    path = replica.save_snapshot(MODEL)
    erased = vector_to_bytes(vectors[0])
    assert erased in path.read_bytes()  # the check below can see a vector in the file

    remove_embedding(sessions, ids[0])
    catch_up(replica, sessions)
    assert erased not in path.read_bytes()
    assert VectorIndex.load(path).ids().tolist() == [ids[1]]
    # A replica with no snapshot on disk writes none for a removal (snapshots stay every n or daily).
    elsewhere = IndexReplica(tmp_path / "elsewhere")
    catch_up(elsewhere, sessions)
    remove_embedding(sessions, ids[1])
    catch_up(elsewhere, sessions)
    assert not elsewhere.snapshot_path(MODEL).exists()


# --- many processes -------------------------------------------------------------------------


def test_a_pq_refine_replica_trains_finds_and_never_returns_a_removal(app, gallery, tmp_path):
    sessions = app.state.session_factory
    vectors = random_vectors(1200, seed=7)
    ids = add_embeddings(sessions, gallery, vectors)
    replica = IndexReplica(tmp_path / "index", index_kind="pq-refine", index_options={"train_min": 1000})
    assert catch_up(replica, sessions) == 1200
    index = replica.index(MODEL)
    assert (index.kind, index.dim, index.trained) == ("pq-refine", 128, True)
    assert nearest(replica, vectors[42]) == [ids[42]]

    remove_embedding(sessions, ids[42])
    catch_up(replica, sessions)
    assert ids[42] not in nearest(replica, vectors[42], k=10)


def test_a_snapshot_of_another_kind_is_rebuilt_as_the_configured_kind(app, gallery, tmp_path):
    sessions = app.state.session_factory
    ids = add_embeddings(sessions, gallery, random_vectors(3, seed=8))
    exact = IndexReplica(tmp_path / "index")
    catch_up(exact, sessions)
    exact.save_snapshot(MODEL)

    approximate = IndexReplica(tmp_path / "index", index_kind="pq-refine")
    assert approximate.index(MODEL).kind == "pq-refine" and len(approximate.index(MODEL)) == 0
    assert catch_up(approximate, sessions) == 3
    assert sorted(approximate.index(MODEL).ids().tolist()) == sorted(ids)


def search_until(database_url: str, index_dir: str, vector: np.ndarray, ready, stop, results) -> None:
    """In a separate process: catch up and search in a loop, noting when each search started."""
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    replica = IndexReplica(index_dir)
    found = []
    while not stop.is_set():
        started = time.time()
        catch_up(replica, sessions)
        found.append((started, nearest(replica, vector, k=5)))
        ready.set()
    engine.dispose()
    results.put(found)


def test_no_search_in_any_process_returns_a_removal_committed_before_it_started(app, gallery, database_url, tmp_path):
    sessions = app.state.session_factory
    vectors = random_vectors(20, seed=12)
    ids = add_embeddings(sessions, gallery, vectors)
    target, probe = ids[7], vectors[7]
    # Forked (quick to start); each process opens its own engine and never touches the parent's.
    context = multiprocessing.get_context("fork")
    results, stop = context.Queue(), context.Event()
    ready = [context.Event() for _ in range(2)]
    searchers = [
        context.Process(target=search_until, args=(database_url, str(tmp_path / "index"), probe, event, stop, results))
        for event in ready
    ]
    for searcher in searchers:
        searcher.start()
    try:
        assert all(event.wait(timeout=60) for event in ready), "a searching process did not start"
        time.sleep(0.3)
        remove_embedding(sessions, target)
        committed = time.time()
        time.sleep(1.0)
    finally:
        stop.set()
    found = [results.get(timeout=60) for _ in searchers]
    for searcher in searchers:
        searcher.join(timeout=30)

    for per_process in found:
        before = [hits for started, hits in per_process if started < committed]
        after = [hits for started, hits in per_process if started > committed]
        assert any(target in hits for hits in before), "the target was never found before the removal"
        assert after, "no search started after the removal"
        assert not any(target in hits for hits in after)


def test_appends_are_serialised_so_sequence_order_is_commit_order(app, gallery, backend):
    """While one transaction holds an uncommitted change, another cannot take the next number."""
    if backend != "postgresql":
        pytest.skip("SQLite admits one writer at a time by itself (BEGIN IMMEDIATE)")
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    sessions = app.state.session_factory
    first, second = sessions(), sessions()
    try:
        append_index_change(first, op="add", embedding_id=1, model_id=MODEL)  # uncommitted
        second.execute(text("SET LOCAL lock_timeout = '300ms'"))
        with pytest.raises(OperationalError):
            append_index_change(second, op="add", embedding_id=2, model_id=MODEL)
        second.rollback()
        first.commit()
        later = append_index_change(second, op="add", embedding_id=2, model_id=MODEL)
        second.commit()
        with sessions() as session:
            assert later.seq == max(change.seq for change in session.query(IndexChange))
    finally:
        first.close()
        second.close()
