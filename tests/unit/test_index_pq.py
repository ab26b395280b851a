"""Unit tests for the "pq-refine" kind of matching.index.VectorIndex.

A 4-bit PQ fast scan proposes a short list that is re-ranked with the exact vectors. These
tests check what the kind promises on synthetic vectors: exact search until `train_min`
vectors are live, then recall against a numpy brute force, exact Euclidean distances for
whatever is returned, removals never returned (the fast scan takes no FAISS selector, so the
index filters its short list itself), persistence with the codes, compaction and rebuild.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matching.index import IndexFileError, VectorIndex

DIM = 16
PQ_M = 8  # 2 dimensions per 4-bit sub-quantizer
TRAIN_MIN = 1_000


def random_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal((n, DIM)).astype(np.float32)


def brute_force(gallery: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int):
    distances = np.linalg.norm(queries[:, None, :].astype(np.float64) - gallery[None], axis=2)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, axis=1), ids[order]


def recall(found: np.ndarray, expected: np.ndarray) -> float:
    hits = sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), expected.tolist()))
    return hits / expected.size


def pq_index(n: int = 3000, seed: int = 0, **options) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.choice(10**12, size=n, replace=False).astype(np.int64)
    vectors = random_vectors(rng, n)
    options = {"pq_m": PQ_M, "train_min": TRAIN_MIN, **options}
    index = VectorIndex(DIM, "pq-refine", **options)
    index.add(ids, vectors)
    return index, ids, vectors


# ----- training and accuracy ----------------------------------------------------------------


def test_search_is_exact_until_train_min_then_trains() -> None:
    rng = np.random.default_rng(1)
    vectors = random_vectors(rng, TRAIN_MIN)
    ids = np.arange(TRAIN_MIN, dtype=np.int64)
    index = VectorIndex(DIM, "pq-refine", pq_m=PQ_M, train_min=TRAIN_MIN, k_factor=1)
    index.add(ids[:-1], vectors[:-1])
    assert not index.trained
    queries = random_vectors(rng, 20)
    distances, found = index.search(queries, 10)
    expected_distances, expected_ids = brute_force(vectors[:-1], ids[:-1], queries, 10)
    np.testing.assert_array_equal(found, expected_ids)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-5, atol=1e-5)
    index.add(ids[-1:], vectors[-1:])  # reaches train_min
    assert index.trained


def test_recall_against_brute_force_and_short_list_matters() -> None:
    index, ids, vectors = pq_index(k_factor=20)
    queries = random_vectors(np.random.default_rng(2), 100)
    _, expected = brute_force(vectors, ids, queries, 10)
    assert recall(index.search(queries, 10)[1], expected) >= 0.99
    index.k_factor = 1  # short list of 10: the PQ ranking alone decides, so recall drops
    assert recall(index.search(queries, 10)[1], expected) < 0.9


def test_returned_distances_are_exact_euclidean() -> None:
    index, ids, vectors = pq_index(k_factor=5)
    queries = random_vectors(np.random.default_rng(3), 30)
    distances, found = index.search(queries, 10)
    by_id = dict(zip(ids.tolist(), vectors))
    exact = np.array(
        [[np.linalg.norm(by_id[i].astype(np.float64) - q) for i in row] for q, row in zip(queries, found.tolist())]
    )
    np.testing.assert_allclose(distances, exact, rtol=1e-5, atol=1e-5)
    assert (np.diff(distances, axis=1) >= 0).all()
    assert distances.dtype == np.float32 and found.dtype == np.int64


def test_vectors_added_after_training_are_found() -> None:
    index, _, _ = pq_index()
    new = random_vectors(np.random.default_rng(4), 5) * 3  # outside the training spread
    index.add(np.arange(5, dtype=np.int64), new)
    distances, found = index.search(new, 1)
    assert found[:, 0].tolist() == list(range(5))
    np.testing.assert_allclose(distances[:, 0], 0.0, atol=1e-3)


def test_more_results_than_vectors_are_padded() -> None:
    index, ids, vectors = pq_index(n=TRAIN_MIN)
    distances, found = index.search(vectors[0], TRAIN_MIN + 50)
    assert sorted(found[0, :TRAIN_MIN].tolist()) == sorted(ids.tolist())
    assert (found[0, TRAIN_MIN:] == -1).all() and np.isinf(distances[0, TRAIN_MIN:]).all()


# ----- removal -------------------------------------------------------------------------------


def test_removed_ids_are_never_returned_by_next_search() -> None:
    index, ids, vectors = pq_index(compact_threshold=1.0, k_factor=10)
    target = int(ids[7])
    assert index.search(vectors[7], 1)[1][0, 0] == target
    index.remove([target])
    assert target not in index.search(vectors[7], 10)[1]
    removed = set(ids[100:700].tolist())  # 20% removed, no compaction
    index.remove(list(removed))
    _, found = index.search(vectors[:200], 10)
    assert not set(found.ravel().tolist()) & (removed | {target})
    assert (found >= 0).all()  # the short list is enlarged, so live results fill every slot
    live = np.ones(len(ids), bool)
    live[100:700] = live[7] = False
    _, expected = brute_force(vectors[live], ids[live], vectors[:200], 10)
    assert recall(found, expected) >= 0.99


def test_random_removals_and_re_adds_stay_consistent() -> None:
    rng = np.random.default_rng(5)
    index, ids, vectors = pq_index(n=1500, compact_threshold=0.3)
    live = dict(zip(ids.tolist(), vectors))
    removed: set[int] = set()
    for step in range(40):
        if removed and rng.random() < 0.3:
            embedding_id = int(rng.choice(sorted(removed)))
            vector = random_vectors(rng, 1)
            index.add([embedding_id], vector)
            removed.discard(embedding_id)
            live[embedding_id] = vector[0]
        else:
            batch = rng.choice(sorted(live), size=int(rng.integers(5, 30)), replace=False)
            index.remove(batch)
            removed.update(batch.tolist())
            for embedding_id in batch.tolist():
                del live[embedding_id]
        _, found = index.search(random_vectors(rng, 5), 50)
        assert not set(found.ravel().tolist()) & removed, f"removed id returned at step {step}"
        assert (found >= 0).all(), f"missing results at step {step}"
        assert len(index) == len(live) and set(index.ids().tolist()) == set(live)


def test_compaction_retrains_or_returns_to_exact_search() -> None:
    index, ids, vectors = pq_index(n=2000, compact_threshold=1.0)
    index.remove(ids[:500])
    index.compact()
    assert index.trained and index.removed_count == 0 and len(index) == 1500
    _, found = index.search(vectors[500:520], 1)
    assert found[:, 0].tolist() == ids[500:520].tolist()
    index.remove(ids[500:1200])  # 800 live, below train_min
    index.compact()
    assert not index.trained
    _, found = index.search(vectors, 10)
    _, expected = brute_force(vectors[1200:], ids[1200:], vectors, 10)
    np.testing.assert_array_equal(found, expected)


# ----- persistence and rebuild ---------------------------------------------------------------


@pytest.mark.parametrize("n", [500, 3000], ids=["untrained", "trained"])
def test_save_load_roundtrip_is_identical(n: int, tmp_path: Path) -> None:
    index, ids, vectors = pq_index(n=n, compact_threshold=1.0, k_factor=7)
    index.remove(ids[:40], sequence=12)
    path = tmp_path / "gallery.index"
    index.save(path)
    loaded = VectorIndex.load(path)
    queries = random_vectors(np.random.default_rng(6), 40)
    for got, expected in zip(loaded.search(queries, 20), index.search(queries, 20)):
        np.testing.assert_array_equal(got, expected)
    assert (loaded.kind, loaded.sequence, loaded.trained) == ("pq-refine", 12, index.trained)
    assert (loaded.pq_m, loaded.k_factor, loaded.train_min) == (PQ_M, 7, TRAIN_MIN)
    assert loaded.removed_count == 40
    assert not set(loaded.search(vectors, 50)[1].ravel().tolist()) & set(ids[:40].tolist())


def test_codes_that_do_not_match_the_vectors_are_refused(tmp_path: Path) -> None:
    small, _, _ = pq_index(n=1200)
    large, _, _ = pq_index(n=1500, seed=1)
    small.save(tmp_path / "small.index")
    large.save(tmp_path / "large.index")
    with np.load(tmp_path / "small.index") as small_file, np.load(tmp_path / "large.index") as large_file:
        parts = {name: small_file[name] for name in small_file.files}
        parts["codes"] = large_file["codes"]
    with open(tmp_path / "mixed.index", "wb") as handle:
        np.savez(handle, **parts)
    with pytest.raises(IndexFileError, match="PQ codes"):
        VectorIndex.load(tmp_path / "mixed.index")


def test_rebuild_from_arrays_and_pairs_agree() -> None:
    rng = np.random.default_rng(7)
    ids = np.arange(5000, 7000, dtype=np.int64)
    vectors = random_vectors(rng, 2000)
    options = {"kind": "pq-refine", "pq_m": PQ_M, "train_min": TRAIN_MIN, "sequence": 9}
    from_arrays = VectorIndex.rebuild((ids, vectors), **options)
    from_pairs = VectorIndex.rebuild(zip(ids.tolist(), vectors), **options)
    assert from_arrays.trained and from_pairs.trained and from_arrays.sequence == 9
    queries = random_vectors(rng, 10)
    for a, b in zip(from_arrays.search(queries, 5), from_pairs.search(queries, 5)):
        np.testing.assert_array_equal(a, b)


# ----- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"pq_m": 5},
        {"pq_m": 0},
        {"k_factor": 0},
        {"train_min": 999},
        {"train_min": True},
    ],
)
def test_bad_construction_is_refused(options: dict) -> None:
    with pytest.raises(ValueError):
        VectorIndex(DIM, "pq-refine", **options)


def test_bad_k_factor_is_refused_and_kept() -> None:
    index = VectorIndex(DIM, "pq-refine", pq_m=PQ_M, k_factor=30)
    with pytest.raises(ValueError):
        index.k_factor = 0
    assert index.k_factor == 30
