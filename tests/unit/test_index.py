"""Unit tests for matching.index: exactness, removal, persistence and input validation.

Synthetic random vectors stand in for embeddings; the flat index is checked against a numpy
brute force, and HNSW for recall. Removal is checked on both kinds, before and after a
save/load round trip and a compaction, including a randomised loop of removals and re-adds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from matching import index as index_module
from matching.index import IndexFileError, VectorIndex, set_search_threads

DIM = 16
KINDS = ["flat", "hnsw"]


def random_vectors(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    return rng.standard_normal((n, dim)).astype(np.float32)


def brute_force(gallery: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int):
    distances = np.linalg.norm(queries[:, None, :].astype(np.float64) - gallery[None], axis=2)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, axis=1), ids[order]


def filled(kind: str, n: int = 200, seed: int = 0, **options) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.choice(10**12, size=n, replace=False).astype(np.int64)
    vectors = random_vectors(rng, n)
    index = VectorIndex(DIM, kind, **options)
    index.add(ids, vectors)
    return index, ids, vectors


# ----- exactness and distances --------------------------------------------------------------


def test_flat_matches_numpy_brute_force() -> None:
    index, ids, vectors = filled("flat", n=300)
    queries = random_vectors(np.random.default_rng(1), 25)
    distances, found = index.search(queries, 10)
    expected_distances, expected_ids = brute_force(vectors, ids, queries, 10)
    np.testing.assert_array_equal(found, expected_ids)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-5, atol=1e-5)
    assert distances.dtype == np.float32 and found.dtype == np.int64


@pytest.mark.parametrize("kind", KINDS)
def test_distances_are_euclidean_not_squared(kind: str) -> None:
    index = VectorIndex(DIM, kind)
    origin = np.zeros((1, DIM), dtype=np.float32)
    far = origin.copy()
    far[0, :4] = 1.5  # Euclidean distance 3.0, squared 9.0
    index.add([1, 2], np.vstack([origin, far]))
    distances, ids = index.search(origin[0], 2)
    assert ids.tolist() == [[1, 2]]
    np.testing.assert_allclose(distances, [[0.0, 3.0]], atol=1e-6)


def test_hnsw_recall_on_small_data() -> None:
    index, ids, vectors = filled("hnsw", n=2000, hnsw_m=16, ef_search=64)
    queries = random_vectors(np.random.default_rng(2), 100)
    _, found = index.search(queries, 10)
    _, expected = brute_force(vectors, ids, queries, 10)
    hits = sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), expected.tolist()))
    assert hits / expected.size >= 0.95


@pytest.mark.parametrize("kind", KINDS)
def test_empty_index_search_is_padded(kind: str) -> None:
    distances, ids = VectorIndex(DIM, kind).search(np.zeros((3, DIM), np.float32), 4)
    assert ids.shape == (3, 4) and (ids == -1).all()
    assert np.isinf(distances).all()


@pytest.mark.parametrize("kind", KINDS)
def test_fewer_vectors_than_k_are_padded(kind: str) -> None:
    index, ids, vectors = filled(kind, n=3)
    distances, found = index.search(vectors[0], 5)
    assert sorted(found[0, :3].tolist()) == sorted(ids.tolist())
    assert found[0, 3:].tolist() == [-1, -1]
    assert np.isinf(distances[0, 3:]).all() and np.isfinite(distances[0, :3]).all()


# ----- removal -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_removed_id_is_never_returned_by_next_search(kind: str) -> None:
    index, ids, vectors = filled(kind, compact_threshold=1.0)
    target = int(ids[7])
    assert index.search(vectors[7], 1)[1][0, 0] == target
    assert index.remove([target, 123]) == 1
    assert target not in index and len(index) == len(ids) - 1
    _, found = index.search(vectors, len(ids))
    assert target not in found
    _, nearest = index.search(vectors, 10)
    assert (nearest >= 0).all()  # removed vectors are filtered, not just hidden as -1
    assert index.removed_count == 1  # kept as a tombstone: no compaction at threshold 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_random_removals_and_re_adds_stay_consistent(kind: str) -> None:
    rng = np.random.default_rng(5)
    index, ids, vectors = filled(kind, n=150, compact_threshold=0.3)
    live = dict(zip(ids.tolist(), vectors))
    removed: set[int] = set()
    for step in range(60):
        if removed and rng.random() < 0.3:  # re-add a removed id with a new vector
            embedding_id = int(rng.choice(sorted(removed)))
            vector = random_vectors(rng, 1)
            index.add([embedding_id], vector)
            removed.discard(embedding_id)
            live[embedding_id] = vector[0]
        else:
            batch = rng.choice(sorted(live), size=int(rng.integers(1, 4)), replace=False)
            assert index.remove(batch) == len(batch)
            for embedding_id in batch.tolist():
                removed.add(embedding_id)
                del live[embedding_id]
        _, found = index.search(random_vectors(rng, 5), len(ids))
        returned = set(found[found >= 0].tolist())
        assert not returned & removed, f"removed id returned at step {step}"
        assert (found[:, :10] >= 0).all(), f"removed vectors took result slots at step {step}"
        assert len(index) == len(live) and set(index.ids().tolist()) == set(live)
    if kind == "flat":  # exact search must still find every live vector at distance 0
        query_ids = list(live)[:20]
        distances, found = index.search(np.stack([live[i] for i in query_ids]), 1)
        assert found[:, 0].tolist() == query_ids
        assert np.allclose(distances[:, 0], 0.0, atol=1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_re_added_id_returns_its_new_vector(kind: str) -> None:
    index, ids, vectors = filled(kind, compact_threshold=1.0)
    target = int(ids[0])
    index.remove([target])
    new_vector = (vectors[0] + 50.0).reshape(1, DIM)  # far from everything else
    index.add([target], new_vector)
    distances, found = index.search(new_vector[0], 1)
    assert found[0, 0] == target and distances[0, 0] == pytest.approx(0.0, abs=1e-3)
    _, near_old = index.search(vectors[0], 3)
    assert target not in near_old  # the old vector of the id stays hidden


@pytest.mark.parametrize("kind", KINDS)
def test_automatic_compaction_reclaims_space_and_keeps_removals(kind: str) -> None:
    index, ids, vectors = filled(kind, n=100, compact_threshold=0.2)
    index.remove(ids[:20])  # exactly 20%: not above the threshold yet
    assert index.removed_count == 20
    index.remove(ids[20:21])
    assert index.removed_count == 0 and len(index) == 79
    _, found = index.search(vectors, 100)
    assert not set(found.ravel().tolist()) & set(ids[:21].tolist())
    distances, nearest = index.search(vectors[50:60], 1)
    assert nearest[:, 0].tolist() == ids[50:60].tolist()


def test_removing_everything_leaves_a_working_empty_index() -> None:
    index, ids, _ = filled("hnsw", n=10)
    index.remove(ids)
    assert len(index) == 0
    _, found = index.search(np.zeros(DIM, np.float32), 3)
    assert (found == -1).all()


# ----- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_duplicate_ids_are_refused_and_index_unchanged(kind: str) -> None:
    index, ids, vectors = filled(kind, n=10)
    with pytest.raises(ValueError, match="already"):
        index.add([int(ids[3]), 999], random_vectors(np.random.default_rng(9), 2))
    with pytest.raises(ValueError, match="duplicate"):
        index.add([5, 5], random_vectors(np.random.default_rng(9), 2))
    assert len(index) == 10 and 999 not in index


@pytest.mark.parametrize(
    "vectors, error",
    [
        (np.zeros((1, DIM), np.float64), TypeError),
        ([[0.0] * DIM], TypeError),
        (np.zeros((1, DIM + 1), np.float32), ValueError),
        (np.zeros(DIM, np.float32), ValueError),
        (np.full((1, DIM), np.nan, np.float32), ValueError),
        (np.full((1, DIM), np.inf, np.float32), ValueError),
    ],
)
def test_bad_vectors_are_refused(vectors, error) -> None:
    index = VectorIndex(DIM)
    with pytest.raises(error):
        index.add([1], vectors)
    assert len(index) == 0


@pytest.mark.parametrize(
    "ids, error",
    [
        ([1.5], TypeError),
        ([-1], ValueError),
        ([[1]], ValueError),
        ([1, 2], ValueError),
    ],
)
def test_bad_ids_are_refused(ids, error) -> None:
    with pytest.raises(error):
        VectorIndex(DIM).add(ids, np.zeros((1, DIM), np.float32))


def test_bad_queries_are_refused() -> None:
    index, _, _ = filled("flat", n=5)
    with pytest.raises(TypeError):
        index.search(np.zeros(DIM), 1)
    with pytest.raises(ValueError):
        index.search(np.full(DIM, np.nan, np.float32), 1)
    with pytest.raises(ValueError):
        index.search(np.zeros(DIM, np.float32), 0)


def test_bad_construction_is_refused() -> None:
    with pytest.raises(ValueError):
        VectorIndex(DIM, "ivf")
    with pytest.raises(ValueError):
        VectorIndex(0)
    with pytest.raises(ValueError):
        VectorIndex(DIM, compact_threshold=0.0)


def test_sequence_advances_with_changes_and_never_goes_back() -> None:
    index = VectorIndex(DIM)
    assert index.sequence == 0
    index.add([1], np.zeros((1, DIM), np.float32), sequence=4)
    index.remove([42], sequence=5)  # a no-op change still advances the sequence
    assert index.sequence == 5
    with pytest.raises(ValueError, match="behind"):
        index.add([2], np.ones((1, DIM), np.float32), sequence=3)
    assert index.sequence == 5 and 2 not in index


# ----- persistence ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_roundtrip_is_identical(kind: str, tmp_path: Path) -> None:
    index, ids, vectors = filled(kind, n=300, compact_threshold=1.0)
    removed = ids[:15]
    index.remove(removed, sequence=17)
    path = tmp_path / "gallery.index"
    index.save(path)
    loaded = VectorIndex.load(path)
    queries = random_vectors(np.random.default_rng(3), 40)
    for got, expected in zip(loaded.search(queries, 20), index.search(queries, 20)):
        np.testing.assert_array_equal(got, expected)
    assert loaded.sequence == 17 and loaded.kind == kind and len(loaded) == 285
    assert loaded.removed_count == 15
    assert not set(loaded.search(vectors, 300)[1].ravel().tolist()) & set(removed.tolist())
    loaded.add(removed[:1], vectors[:1])  # re-adding after load works
    assert loaded.search(vectors[0], 1)[1][0, 0] == removed[0]


def test_compaction_after_load_keeps_removals(tmp_path: Path) -> None:
    index, ids, vectors = filled("hnsw", n=100, compact_threshold=1.0)
    index.remove(ids[:30])
    index.save(tmp_path / "g.index")
    loaded = VectorIndex.load(tmp_path / "g.index")
    loaded.compact()
    assert loaded.removed_count == 0 and len(loaded) == 70
    assert not set(loaded.search(vectors, 100)[1].ravel().tolist()) & set(ids[:30].tolist())


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "gallery.index"
    old, _, vectors = filled("flat", n=20)
    old.save(path)
    before = path.read_bytes()
    bigger, _, _ = filled("flat", n=50, seed=1)

    def crash_midway(handle, **arrays):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(index_module.np, "savez", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        bigger.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["gallery.index"]
    monkeypatch.undo()
    assert len(VectorIndex.load(path)) == 20


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_corrupt_file_raises_index_file_error(damage: str, tmp_path: Path) -> None:
    path = tmp_path / "gallery.index"
    filled("hnsw", n=200)[0].save(path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF  # inside the FAISS payload; the zip CRC catches it
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(b"not an index at all" * 10)
    path.write_bytes(bytes(data))
    with pytest.raises(IndexFileError):
        VectorIndex.load(path)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path / "absent.index")


# ----- rebuild and threads -------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_rebuild_from_arrays_and_pairs_agree(kind: str) -> None:
    rng = np.random.default_rng(4)
    ids = np.arange(1000, 1100, dtype=np.int64)
    vectors = random_vectors(rng, 100)
    from_arrays = VectorIndex.rebuild((ids, vectors), kind=kind, sequence=9)
    from_pairs = VectorIndex.rebuild(zip(ids.tolist(), vectors), kind=kind, sequence=9)
    queries = random_vectors(rng, 10)
    for a, b in zip(from_arrays.search(queries, 5), from_pairs.search(queries, 5)):
        np.testing.assert_array_equal(a, b)
    assert from_arrays.sequence == 9 and from_arrays.kind == kind and len(from_pairs) == 100
    assert from_arrays.dim == DIM


def test_rebuild_from_nothing_is_empty() -> None:
    index = VectorIndex.rebuild([], sequence=3)
    assert len(index) == 0 and index.dim == 128 and index.sequence == 3


def test_set_search_threads_applies_in_other_threads() -> None:
    import threading

    import faiss

    seen: list[int] = []
    index, _, vectors = filled("flat", n=10)
    previous = faiss.omp_get_max_threads()
    try:
        set_search_threads(1)

        def search_in_worker() -> None:
            index.search(vectors[0], 1)
            seen.append(faiss.omp_get_max_threads())

        worker = threading.Thread(target=search_in_worker)
        worker.start()
        worker.join()
        assert seen == [1]
        with pytest.raises(ValueError):
            set_search_threads(0)
    finally:
        index_module._search_threads = None
        faiss.omp_set_num_threads(previous)
