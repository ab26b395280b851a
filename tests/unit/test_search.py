"""Unit tests for matching.search: ranking neighbours into candidate records.

Hand-written neighbour lists check best-photo-per-record, the inclusive threshold, the top-k
cut, skipped unknown embeddings and deterministic tie order; a real flat index with one
record owning many photos checks that oversampling lets other records through.
"""

from __future__ import annotations

import numpy as np
import pytest

from matching.index import VectorIndex
from matching.search import Candidate, rank_candidates, search_gallery

# embedding id -> record id: record 1 has photos 10, 11, 12; record 2 has 20; record 3 has 30.
RECORD_OF = {10: 1, 11: 1, 12: 1, 20: 2, 30: 3}


def rank(distances, ids, *, threshold=1.0, top_k=10, record_of=RECORD_OF):
    return rank_candidates(
        np.asarray(distances, np.float32),
        np.asarray(ids, np.int64),
        record_of=record_of,
        threshold=threshold,
        top_k=top_k,
    )


def test_keeps_best_photo_per_record_and_ranks_from_one() -> None:
    result = rank([0.3, 0.1, 0.2, 0.25], [11, 12, 20, 10])
    assert result == [
        Candidate(record_id=1, embedding_id=12, distance=pytest.approx(0.1), rank=1),
        Candidate(record_id=2, embedding_id=20, distance=pytest.approx(0.2), rank=2),
    ]


def test_threshold_is_inclusive() -> None:
    distances = np.array([0.5, np.nextafter(np.float32(0.5), np.float32(1))], np.float32)
    result = rank_candidates(distances, np.array([20, 30]), record_of=RECORD_OF, threshold=float(distances[0]), top_k=5)
    assert [c.record_id for c in result] == [2]


def test_top_k_cuts_after_ranking() -> None:
    result = rank([0.4, 0.1, 0.3], [30, 20, 10], top_k=2)
    assert [(c.record_id, c.rank) for c in result] == [(2, 1), (1, 2)]


def test_unknown_and_padding_ids_are_skipped() -> None:
    result = rank([0.1, 0.2, np.inf], [99, 30, -1])
    assert [c.embedding_id for c in result] == [30]


def test_callable_lookup_may_return_none_or_raise_key_error() -> None:
    def lookup(embedding_id: int) -> int | None:
        if embedding_id == 99:
            raise KeyError(embedding_id)
        return RECORD_OF.get(embedding_id)

    result = rank([0.1, 0.2, 0.3], [99, 42, 20], record_of=lookup)
    assert [c.record_id for c in result] == [2]


def test_equal_distances_order_by_record_id() -> None:
    record_of = {1: 7, 2: 5, 3: 6}
    result = rank([0.2, 0.2, 0.2], [1, 2, 3], record_of=record_of)
    assert [c.record_id for c in result] == [5, 6, 7]


def test_accepts_a_single_row_from_index_output() -> None:
    result = rank([[0.2, 0.1]], [[20, 30]])
    assert [c.record_id for c in result] == [3, 2]


@pytest.mark.parametrize("kwargs", [{"top_k": 0}, {"threshold": float("nan")}])
def test_bad_limits_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        rank([0.1], [20], **kwargs)


def test_mismatched_rows_are_refused() -> None:
    with pytest.raises(ValueError):
        rank([0.1, 0.2], [20])
    with pytest.raises(ValueError):
        rank([[0.1], [0.2]], [[20], [30]])  # two queries


def crowded_gallery() -> tuple[VectorIndex, dict[int, int], np.ndarray]:
    """Record 1 has eight photos right next to the query; records 2 and 3 are a bit farther."""
    dim = 8
    query = np.zeros(dim, np.float32)
    vectors, record_of = [], {}
    for photo in range(8):
        vectors.append(np.full(dim, 0.01 * (photo + 1), np.float32))
        record_of[100 + photo] = 1
    for record_id, offset in ((2, 0.2), (3, 0.3)):
        vectors.append(np.full(dim, offset, np.float32))
        record_of[200 + record_id] = record_id
    index = VectorIndex(dim)
    index.add(list(record_of), np.stack(vectors))
    return index, record_of, query


def test_oversampling_lets_other_records_through() -> None:
    index, record_of, query = crowded_gallery()
    result = search_gallery(index, query, record_of=record_of, threshold=10.0, top_k=3)
    assert [c.record_id for c in result] == [1, 2, 3]
    assert result[0].embedding_id == 100
    assert result[1].distance == pytest.approx(0.2 * np.sqrt(8), rel=1e-5)  # Euclidean
    crowded = search_gallery(index, query, record_of=record_of, threshold=10.0, top_k=3, oversample=1)
    assert [c.record_id for c in crowded] == [1]  # what oversampling prevents


def test_search_gallery_applies_threshold_and_skips_withdrawn() -> None:
    index, record_of, query = crowded_gallery()
    without_record_2 = {e: r for e, r in record_of.items() if r != 2}
    result = search_gallery(index, query, record_of=without_record_2, threshold=0.3 * np.sqrt(8) * 1.001, top_k=5)
    assert [c.record_id for c in result] == [1, 3]


def test_search_gallery_on_empty_index_and_bad_input() -> None:
    assert search_gallery(VectorIndex(8), np.zeros(8, np.float32), record_of={}, threshold=1.0, top_k=3) == []
    with pytest.raises(ValueError):
        search_gallery(VectorIndex(8), np.zeros((2, 8), np.float32), record_of={}, threshold=1.0, top_k=3)
    with pytest.raises(ValueError):
        search_gallery(VectorIndex(8), np.zeros(8, np.float32), record_of={}, threshold=1.0, top_k=3, oversample=0)
