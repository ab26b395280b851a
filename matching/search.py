"""Turn raw nearest-neighbour results into a ranked list of candidate records.

An index returns photos (embedding ids); reviewers need records. `rank_candidates` maps each
embedding to its record, skips embeddings that no longer map to a record (withdrawn since the
index was updated), keeps the best photo per record, drops anything farther than the review
threshold (a distance equal to the threshold is kept), and sorts by distance then record id so
the order is deterministic. `search_gallery` asks the index for several neighbours per wanted
record so that one record with many photos cannot crowd the others out. Distances are true
Euclidean distances, the same units as the calibrated threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import numpy as np

# Embedding id -> record id. A callable returns None (or raises KeyError) for unknown ids.
RecordLookup: TypeAlias = Mapping[int, int] | Callable[[int], int | None]


class NeighbourIndex(Protocol):
    """What `search_gallery` needs from an index, e.g. `matching.index.VectorIndex`."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Candidate:
    """One record proposed for human review; rank 1 is the closest."""

    record_id: int
    embedding_id: int
    distance: float
    rank: int


def rank_candidates(
    distances: np.ndarray,
    ids: np.ndarray,
    *,
    record_of: RecordLookup,
    threshold: float,
    top_k: int,
) -> list[Candidate]:
    """Rank the neighbours of ONE query (1-D rows, or a single (1, k) row) into candidates."""
    distances, ids = _one_row(distances, ids)
    _check_limits(threshold, top_k)
    lookup = _as_lookup(record_of)
    best: dict[int, tuple[float, int]] = {}  # record id -> (distance, embedding id)
    for distance, embedding_id in zip(distances.tolist(), ids.tolist()):
        if embedding_id < 0 or not distance <= threshold:  # also drops NaN and padding
            continue
        record_id = lookup(embedding_id)
        if record_id is None:
            continue
        if record_id not in best or (distance, embedding_id) < best[record_id]:
            best[record_id] = (distance, embedding_id)
    ordered = sorted(best.items(), key=lambda item: (item[1][0], item[0]))[:top_k]
    return [
        Candidate(record_id=record_id, embedding_id=embedding_id, distance=distance, rank=rank)
        for rank, (record_id, (distance, embedding_id)) in enumerate(ordered, start=1)
    ]


def search_gallery(
    index: NeighbourIndex,
    query_vector: np.ndarray,
    *,
    record_of: RecordLookup,
    threshold: float,
    top_k: int,
    oversample: int = 4,
) -> list[Candidate]:
    """Search one float32 query vector and return up to `top_k` ranked candidate records.

    Asks for `top_k * oversample` neighbours: records often hold several photos, and each
    photo takes a neighbour slot, so asking for only `top_k` would hide other records.
    """
    _check_limits(threshold, top_k)
    if isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 1:
        raise ValueError(f"oversample must be a positive integer, got {oversample!r}")
    if np.ndim(query_vector) != 1:
        raise ValueError(f"expected one query vector, got shape {np.shape(query_vector)}")
    distances, ids = index.search(query_vector, top_k * oversample)
    return rank_candidates(distances[0], ids[0], record_of=record_of, threshold=threshold, top_k=top_k)


def _one_row(distances: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distances, ids = np.asarray(distances), np.asarray(ids)
    if distances.ndim == 2 and distances.shape[0] == 1:
        distances = distances[0]
    if ids.ndim == 2 and ids.shape[0] == 1:
        ids = ids[0]
    if distances.ndim != 1 or distances.shape != ids.shape:
        raise ValueError(
            "expected the distances and ids of one query, with equal lengths; "
            f"got shapes {distances.shape} and {ids.shape}"
        )
    return distances, ids


def _check_limits(threshold: float, top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if not isinstance(threshold, (int, float, np.floating)) or math.isnan(threshold):
        raise ValueError(f"threshold must be a number, got {threshold!r}")


def _as_lookup(record_of: RecordLookup) -> Callable[[int], int | None]:
    if isinstance(record_of, Mapping):
        return record_of.get

    def lookup(embedding_id: int) -> int | None:
        try:
            return record_of(embedding_id)
        except KeyError:
            return None

    return lookup
