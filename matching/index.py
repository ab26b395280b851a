"""FAISS vector index keyed by 64-bit embedding ids, with removal, snapshots and threads.

`VectorIndex` stores float32 face embeddings (128-d by default) in an exact flat index
("flat", the default), an approximate HNSW graph ("hnsw"), or an exact flat index paired
with 4-bit product-quantisation codes ("pq-refine": a fast scan of every code proposes a
short list, re-ranked with the exact vectors), and answers k-nearest searches with true
Euclidean distances and embedding ids. Every kind holds vectors at FAISS positions and maps
positions to ids here; a removal marks the position dead and every later search filters
dead positions, with a FAISS `IDSelector` (the PQ fast scan accepts none, so "pq-refine"
drops dead positions from its short list before re-ranking), so a withdrawn embedding is
never returned, even by HNSW, which cannot delete. Dead positions are reclaimed by `compact()`,
run automatically once they exceed `compact_threshold` of the stored vectors. The index is a
cache of the database: `sequence` records the last `IndexChange` it contains, `save()` writes
an atomic snapshot and `load()` restores it exactly or raises `IndexFileError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

FORMAT_VERSION = 1
KINDS = ("flat", "hnsw", "pq-refine")
DEFAULT_COMPACT_THRESHOLD = 0.2
_COMPACT_CHUNK = 65_536  # vectors copied per step when compacting, to bound extra memory
# "pq-refine": the PQ codebooks are trained on at most this many live vectors (a seeded
# random sample); FAISS's k-means samples at most 4,096 per sub-quantizer anyway.
PQ_TRAIN_SAMPLE = 65_536
PQ_MIN_TRAIN = 1_000  # smallest allowed train_min: 16 centroids need a few hundred points
# Codes are scanned in blocks of this many vectors; 64 rather than FAISS's default 32 cut
# the 1M single-query p50 by a fifth to a third here (docs/performance.md).
PQ_BLOCK = 64

# Threads FAISS uses for searches; None leaves FAISS's default (all cores).
_search_threads: int | None = None


class IndexFileError(Exception):
    """A saved index file is truncated, corrupt or not an index file of a known format."""


def set_search_threads(n: int) -> None:
    """Use `n` OpenMP threads for every later `VectorIndex.search`, in any Python thread.

    Use 1 for single-query serving: on this 2-core machine a 1M flat search took 32 ms on
    one thread and 76 ms on two, because one query is memory-bound and threads only add
    synchronisation. OpenMP keeps this setting per calling thread, so setting it once in
    the main thread would not reach web-server worker threads; `search` therefore
    re-applies the value in whichever thread it runs (which also affects FAISS calls made
    later from that thread, such as an HNSW build).
    """
    global _search_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"thread count must be a positive integer, got {n!r}")
    _search_threads = n
    faiss.omp_set_num_threads(n)


def _apply_search_threads() -> None:
    if _search_threads is not None and faiss.omp_get_max_threads() != _search_threads:
        faiss.omp_set_num_threads(_search_threads)


class VectorIndex:
    """Embedding vectors keyed by non-negative int64 ids; see the module docstring.

    `sequence` is read-only and advanced only through the `sequence=` keyword of `add` and
    `remove`, so the change and its sequence number are applied together. Ids must be
    non-negative because -1 marks "no result" in search output.
    """

    def __init__(
        self,
        dim: int = 128,
        kind: str = "flat",
        *,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        pq_m: int = 64,
        k_factor: int = 100,
        train_min: int = 10_000,
        compact_threshold: float = DEFAULT_COMPACT_THRESHOLD,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        for name, value in (
            ("dim", dim),
            ("hnsw_m", hnsw_m),
            ("ef_construction", ef_construction),
            ("ef_search", ef_search),
            ("pq_m", pq_m),
            ("k_factor", k_factor),
            ("train_min", train_min),
        ):
            _require_positive_int(name, value)
        if kind == "pq-refine" and dim % pq_m:
            raise ValueError(f"pq_m must divide dim {dim}, got {pq_m}")
        if train_min < PQ_MIN_TRAIN:
            raise ValueError(f"train_min must be at least {PQ_MIN_TRAIN}, got {train_min}")
        if not 0.0 < compact_threshold <= 1.0:
            raise ValueError(f"compact_threshold must be in (0, 1], got {compact_threshold!r}")
        self._dim = dim
        self._kind = kind
        self._hnsw_m = hnsw_m
        self._ef_construction = ef_construction
        self._ef_search = ef_search
        self._pq_m = pq_m
        self._k_factor = k_factor
        self._train_min = train_min
        self._compact_threshold = compact_threshold
        self._sequence = 0
        self._faiss = self._new_faiss_index()
        # "pq-refine" only: codes aligned with self._faiss positions; None until trained.
        self._codes: Any = None
        self._labels = np.empty(0, dtype=np.int64)  # position -> id; -1 = removed; spare capacity
        self._size = 0  # positions in use in the FAISS index
        self._positions: dict[int, int] = {}  # live id -> position
        self._live_selector: Any = None  # cached IDSelector over live positions

    # ----- properties ---------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def sequence(self) -> int:
        """Sequence number of the last change applied; 0 for a fresh index."""
        return self._sequence

    @property
    def ef_search(self) -> int:
        """HNSW search breadth: higher is slower and more accurate. Unused by other kinds."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        _require_positive_int("ef_search", value)
        self._ef_search = value
        if self._kind == "hnsw":
            self._faiss.hnsw.efSearch = value

    @property
    def hnsw_m(self) -> int:
        return self._hnsw_m

    @property
    def pq_m(self) -> int:
        """For "pq-refine": 4-bit sub-quantizers per vector, so codes take pq_m / 2 bytes."""
        return self._pq_m

    @property
    def train_min(self) -> int:
        """For "pq-refine": live vectors needed before codes are trained; below, search is exact."""
        return self._train_min

    @property
    def trained(self) -> bool:
        """For "pq-refine": whether searches use the PQ short list (False: exact flat search)."""
        return self._codes is not None

    @property
    def k_factor(self) -> int:
        """For "pq-refine": the short list holds k * k_factor candidates; higher is slower and
        more accurate. Unused by the other kinds."""
        return self._k_factor

    @k_factor.setter
    def k_factor(self, value: int) -> None:
        _require_positive_int("k_factor", value)
        self._k_factor = value

    @property
    def removed_count(self) -> int:
        """Removed vectors still occupying space, awaiting `compact()`."""
        return self._size - len(self._positions)

    def __len__(self) -> int:
        return len(self._positions)

    def __contains__(self, embedding_id: object) -> bool:
        return embedding_id in self._positions

    def ids(self) -> np.ndarray:
        """Live embedding ids, sorted ascending."""
        return np.sort(np.fromiter(self._positions, dtype=np.int64, count=len(self._positions)))

    def __repr__(self) -> str:
        return (
            f"VectorIndex(kind={self._kind!r}, dim={self._dim}, live={len(self)}, "
            f"removed={self.removed_count}, sequence={self._sequence})"
        )

    # ----- changes ------------------------------------------------------------------------

    def add(self, ids: Any, vectors: np.ndarray, *, sequence: int | None = None) -> None:
        """Add `vectors` (n, dim) float32 under `ids`; refuses ids already present.

        Nothing changes if validation fails. `sequence`, when given, must not go backwards.
        """
        ids = _as_ids(ids)
        vectors = self._as_vectors(vectors, "vectors")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids but {len(vectors)} vectors")
        self._refuse_duplicates(ids)
        new_sequence = self._checked_sequence(sequence)
        if len(ids):
            self._faiss.add(vectors)
            if self._codes is not None:
                self._codes.add(vectors)  # encoded with the existing codebooks
            self._append_labels(ids)
            self._train_if_due()
        self._sequence = new_sequence

    def remove(self, ids: Any, *, sequence: int | None = None) -> int:
        """Remove `ids` and return how many were present. Unknown ids are ignored.

        The next search never returns them. May trigger `compact()` (see module docstring).
        """
        ids = _as_ids(ids)
        new_sequence = self._checked_sequence(sequence)
        positions = [self._positions.pop(i) for i in set(ids.tolist()) if i in self._positions]
        self._sequence = new_sequence
        if positions:
            self._labels[positions] = -1
            self._live_selector = None
            if self.removed_count > self._compact_threshold * self._size:
                self.compact()
        return len(positions)

    def compact(self) -> None:
        """Rebuild the FAISS index from live vectors only, reclaiming removed ones.

        Costs a full rebuild, about 50 minutes for a 1M HNSW index (M=48) on the 2-core
        machine (docs/performance.md), and it runs inside the `remove` that crosses the
        threshold. A replica that must not stall can pass compact_threshold=1.0 and load a
        snapshot rebuilt elsewhere instead. HNSW results may differ slightly afterwards
        because the graph is new. "pq-refine" retrains its codebooks on the live vectors
        (seconds at 1M), or returns to exact search if fewer than `train_min` remain.
        """
        live_ids = self._labels[: self._size]
        fresh = self._new_faiss_index()
        for start in range(0, self._size, _COMPACT_CHUNK):
            stop = min(start + _COMPACT_CHUNK, self._size)
            keep = live_ids[start:stop] >= 0
            if keep.any():
                fresh.add(np.ascontiguousarray(self._faiss.reconstruct_n(start, stop - start)[keep]))
        labels = live_ids[live_ids >= 0].copy()
        self._faiss = fresh
        self._codes = None
        self._reset_labels(labels)
        self._train_if_due()

    # ----- search -------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (distances, ids), each (q, k), nearest first.

        Distances are float32 Euclidean (not squared); missing results are id -1 with
        distance inf. `queries` is float32 (q, dim) or a single (dim,) vector.
        """
        queries = self._as_vectors(queries, "queries", allow_single=True)
        _require_positive_int("k", k)
        if not self._positions:
            return (
                np.full((len(queries), k), np.inf, dtype=np.float32),
                np.full((len(queries), k), -1, dtype=np.int64),
            )
        _apply_search_threads()
        if self._codes is not None:
            squared, positions = self._search_short_list(queries, k)
        else:
            squared, positions = self._faiss.search(queries, k, params=self._search_params())
        found = positions >= 0
        ids = np.where(found, self._labels[np.where(found, positions, 0)], -1)
        distances = np.where(ids >= 0, np.sqrt(np.maximum(squared, 0.0)), np.inf)
        return distances.astype(np.float32), ids.astype(np.int64)

    # ----- persistence --------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a snapshot atomically: temp file in the same directory, fsync, rename."""
        path = Path(path)
        payload: dict[str, Any] = {
            "meta": np.frombuffer(json.dumps(self._metadata()).encode(), dtype=np.uint8),
            "labels": self._labels[: self._size],
            "faiss": faiss.serialize_index(self._faiss),
        }
        if self._codes is not None:
            payload["codes"] = faiss.serialize_index(self._codes)
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        _fsync_directory(path.parent)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VectorIndex:
        """Restore a snapshot written by `save`. Raises IndexFileError if it is damaged."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                labels = np.asarray(data["labels"])
                raw = np.asarray(data["faiss"])
                codes = np.asarray(data["codes"]) if "codes" in data.files else None
            index = cls._from_parts(
                meta, labels, faiss.deserialize_index(raw), None if codes is None else faiss.deserialize_index(codes)
            )
        except FileNotFoundError:
            raise
        except (OSError, EOFError, KeyError, TypeError, ValueError, RuntimeError, zipfile.BadZipFile) as error:
            raise IndexFileError(f"cannot load index from {path}: {error}") from error
        return index

    @classmethod
    def rebuild(
        cls,
        source: tuple[Any, np.ndarray] | Iterable[tuple[int, np.ndarray]],
        *,
        kind: str = "flat",
        sequence: int = 0,
        dim: int | None = None,
        **options: Any,
    ) -> VectorIndex:
        """Build an index from (ids, vectors) arrays or from an iterable of (id, vector) pairs.

        `sequence` is the last change the source reflects. `dim` is only needed when the
        source is empty and not 128; `options` go to the constructor.
        """
        ids, vectors = _split_source(source, dim)
        index = cls(dim=vectors.shape[1], kind=kind, **options)
        index.add(ids, vectors, sequence=sequence)
        return index

    # ----- internals ----------------------------------------------------------------------

    def _new_faiss_index(self) -> Any:
        if self._kind in ("flat", "pq-refine"):
            return faiss.IndexFlatL2(self._dim)
        index = faiss.IndexHNSWFlat(self._dim, self._hnsw_m)
        index.hnsw.efConstruction = self._ef_construction
        index.hnsw.efSearch = self._ef_search
        return index

    def _train_if_due(self) -> None:
        """For "pq-refine": train codebooks once `train_min` vectors are live, and encode all.

        Trained on a seeded sample of live vectors; every stored position (dead ones too,
        to stay aligned with self._faiss) is encoded. Later additions are encoded with these
        codebooks; only the short list depends on how well they fit, never the distances.
        Runs on one thread (about 3 s at 1M): with two, k-means slowed down 10-20x while
        another process held the second core, as OpenMP threads wait on each other.
        """
        if self._kind != "pq-refine" or self._codes is not None:
            return
        if len(self._positions) < self._train_min:
            return
        live = np.flatnonzero(self._labels[: self._size] >= 0)
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(live, size=min(len(live), PQ_TRAIN_SAMPLE), replace=False))
        codes = faiss.IndexPQFastScan(self._dim, self._pq_m, 4, faiss.METRIC_L2, PQ_BLOCK)
        previous_threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            codes.train(self._faiss.reconstruct_batch(sample))
            for start in range(0, self._size, _COMPACT_CHUNK):
                stop = min(start + _COMPACT_CHUNK, self._size)
                codes.add(self._faiss.reconstruct_n(start, stop - start))
        finally:
            faiss.omp_set_num_threads(previous_threads)
        self._codes = codes

    def _search_short_list(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """For "pq-refine": (squared distances, positions) from a PQ short list re-ranked exactly.

        The fast scan takes no IDSelector, so dead positions are dropped from its short
        list, which is enlarged by the dead share to keep about k * k_factor live ones.
        """
        wanted = k * self._k_factor * self._size / max(1, len(self._positions))
        length = min(self._size, max(k, int(np.ceil(wanted))))
        positions = self._codes.search(queries, length)[1]
        if self.removed_count:
            dead = self._labels[np.where(positions >= 0, positions, 0)] < 0
            positions[dead] = -1
        squared = np.empty(positions.shape, dtype=np.float32)  # inf where position is -1
        self._faiss.compute_distance_subset(
            len(queries), faiss.swig_ptr(queries), length, faiss.swig_ptr(squared), faiss.swig_ptr(positions)
        )
        order = np.argsort(squared, axis=1, kind="stable")[:, :k]
        squared = np.take_along_axis(squared, order, axis=1)
        positions = np.where(np.isfinite(squared), np.take_along_axis(positions, order, axis=1), -1)
        if length < k:  # fewer stored vectors than k: pad like FAISS does
            pad = ((0, 0), (0, k - length))
            squared = np.pad(squared, pad, constant_values=np.inf)
            positions = np.pad(positions, pad, constant_values=-1)
        return squared, positions

    def _search_params(self) -> Any:
        """FAISS search parameters that hide removed positions, or None when there are none."""
        if self.removed_count == 0:
            return None
        if self._live_selector is None:
            live_bits = np.packbits(self._labels[: self._size] >= 0, bitorder="little")
            selector = faiss.IDSelectorBitmap(self._size, faiss.swig_ptr(live_bits))
            self._live_selector = (selector, live_bits)  # the selector borrows live_bits
        selector = self._live_selector[0]
        if self._kind == "hnsw":
            # faiss's generated stubs lack SearchParametersHNSW and the `sel` keyword; both exist at run time.
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self._ef_search)  # type: ignore[attr-defined]
        return faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]

    def _append_labels(self, ids: np.ndarray) -> None:
        needed = self._size + len(ids)
        if needed > len(self._labels):  # grow geometrically so single adds stay cheap
            grown = np.empty(max(needed, 2 * len(self._labels), 1024), dtype=np.int64)
            grown[: self._size] = self._labels[: self._size]
            self._labels = grown
        self._labels[self._size : needed] = ids
        self._positions.update(zip(ids.tolist(), range(self._size, needed)))
        self._size = needed
        self._live_selector = None

    def _reset_labels(self, labels: np.ndarray) -> None:
        """Adopt `labels` (position -> id, -1 removed) for the current FAISS index."""
        self._labels = np.asarray(labels, dtype=np.int64).copy()
        self._size = len(self._labels)
        live = np.flatnonzero(self._labels >= 0)
        self._positions = dict(zip(self._labels[live].tolist(), live.tolist()))
        self._live_selector = None

    def _refuse_duplicates(self, ids: np.ndarray) -> None:
        if len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate ids within the batch")
        present = [i for i in ids.tolist() if i in self._positions]
        if present:
            raise ValueError(f"ids already in the index: {present[:10]}")

    def _checked_sequence(self, sequence: int | None) -> int:
        if sequence is None:
            return self._sequence
        if isinstance(sequence, bool) or not isinstance(sequence, (int, np.integer)):
            raise TypeError(f"sequence must be an integer, got {sequence!r}")
        if sequence < self._sequence:
            raise ValueError(f"sequence {sequence} is behind the index's {self._sequence}")
        return int(sequence)

    def _as_vectors(self, vectors: Any, what: str, allow_single: bool = False) -> np.ndarray:
        if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32:
            # Refuse rather than convert: float64 here usually means an unconverted embedding.
            raise TypeError(
                f"{what} must be a float32 numpy array, got {getattr(vectors, 'dtype', type(vectors).__name__)}"
            )
        if allow_single and vectors.ndim == 1:
            vectors = vectors.reshape(1, -1)
        if vectors.ndim != 2 or vectors.shape[1] != self._dim:
            raise ValueError(f"{what} must have shape (n, {self._dim}), got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError(f"{what} contain NaN or infinite values")
        return np.ascontiguousarray(vectors)

    def _metadata(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": self._kind,
            "dim": self._dim,
            "sequence": self._sequence,
            "hnsw_m": self._hnsw_m,
            "ef_construction": self._ef_construction,
            "ef_search": self._ef_search,
            "pq_m": self._pq_m,
            "k_factor": self._k_factor,
            "train_min": self._train_min,
            "compact_threshold": self._compact_threshold,
        }

    @classmethod
    def _from_parts(cls, meta: dict[str, Any], labels: np.ndarray, raw_index: Any, codes: Any = None) -> VectorIndex:
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported format version {meta.get('format_version')!r}")
        pq_options = {key: meta[key] for key in ("pq_m", "k_factor", "train_min") if key in meta}
        index = cls(
            meta["dim"],
            meta["kind"],
            hnsw_m=meta["hnsw_m"],
            ef_construction=meta["ef_construction"],
            ef_search=meta["ef_search"],
            compact_threshold=meta["compact_threshold"],
            **pq_options,
        )
        expected_type = faiss.IndexHNSWFlat if index.kind == "hnsw" else faiss.IndexFlatL2
        if not isinstance(raw_index, expected_type) or raw_index.d != index.dim:
            raise ValueError("FAISS index does not match the recorded kind or dimension")
        if labels.dtype != np.int64 or labels.ndim != 1 or len(labels) != raw_index.ntotal:
            raise ValueError("id table does not match the FAISS index")
        if codes is not None and (
            index.kind != "pq-refine"
            or not isinstance(codes, faiss.IndexPQFastScan)
            or codes.d != index.dim
            or index.pq_m != codes.pq.M
            or codes.pq.nbits != 4
            or codes.ntotal != raw_index.ntotal
        ):
            raise ValueError("PQ codes do not match the recorded kind or the FAISS index")
        live = labels[labels >= 0]
        if len(np.unique(live)) != len(live):
            raise ValueError("id table has duplicate ids")
        index._faiss = raw_index
        index._codes = codes
        if index.kind == "hnsw" and isinstance(raw_index, faiss.IndexHNSWFlat):  # checked above
            raw_index.hnsw.efSearch = index.ef_search
        index._reset_labels(labels)
        index._train_if_due()  # only a file written without codes above train_min
        index._sequence = int(meta["sequence"])
        return index


def _as_ids(ids: Any) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"ids must be integers, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.max() > np.iinfo(np.int64).max:
        raise ValueError("ids must fit in a signed 64-bit integer")
    array = array.astype(np.int64)
    if (array < 0).any():
        raise ValueError("ids must be non-negative (-1 means 'no result')")
    return array


def _split_source(source: Any, dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Accept (ids, vectors) with 2-D vectors, or an iterable of (id, 1-D vector) pairs."""
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], np.ndarray) and source[1].ndim == 2:
        return np.asarray(source[0]), source[1]
    pairs = list(source)
    if not pairs:
        return np.empty(0, dtype=np.int64), np.empty((0, dim or 128), dtype=np.float32)
    ids = np.array([embedding_id for embedding_id, _ in pairs])
    vectors = np.stack([vector for _, vector in pairs])
    return ids, vectors


def _require_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; some filesystems refuse, which is harmless."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
