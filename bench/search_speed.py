"""Search speed: single-query latency, memory and recall of the exact and approximate indexes.

For each gallery size it builds `matching.index.VectorIndex` exact ("flat") and then each
approximate kind asked for (--approx: "hnsw", "pq-refine"), and times single queries
through the same `search` call the service makes (one FAISS thread): p50/p95 latency,
resident-memory growth (psutil RSS delta while building), build time, and recall against
the exact answers, both recall@10 and recall of the exact top-10 neighbours that lie within
DEFAULT_REVIEW_THRESHOLD (the ones a reviewer could be shown). HNSW `ef_search` is tuned on
separate queries (smallest value reaching the recall@10 target), then measured on fresh ones.
As a floor for exact search it also times one pass over the same float32 matrix (`X @ q`,
best of several) and reports exact p50 as a multiple of it. "pq-refine" uses --pq-m and
--k-factor as given (bench/pq_refine.py sweeps them); it trains on one thread.

The vectors are synthetic but shaped like dlib embeddings, fitted at start-up to real
embeddings of the photos in --faces (one folder per person): their mean, and their covariance
shrunk towards a scaled identity (at least the Ledoit-Wolf weight, raised until distances
between different identities spread like the real ones). Identity centres are drawn from
N(mean, a*Sigma) and each identity gets 1-5 photos centre + N(0, b*Sigma), with a and b fitted
so that photos of one person are ~0.56 apart and of different people ~0.80 apart (achieved
figures are printed). Queries are fresh photos of gallery identities. Without the photo
folder, FALLBACK_* constants stand in.

Usage: .venv/bin/python bench/search_speed.py [--sizes 100000,1000000] [--queries 1000] [--seed 0]
           [--approx hnsw,pq-refine]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import psutil
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from matching.calibration import DEFAULT_REVIEW_THRESHOLD, pair_distances  # noqa: E402
from matching.index import VectorIndex, set_search_threads  # noqa: E402

DIM = 128
FACES = REPO.parent / "shared" / "testdata" / "faces" / "identities"
SAME_TARGET, DIFFERENT_TARGET = 0.56, 0.80  # typical dlib mean distances: same / different person
PHOTOS_PER_IDENTITY = (1, 5)
K = 10
RECALL_TARGET = 0.99
EF_CANDIDATES = (16, 32, 64, 96, 128, 192, 256, 320, 384, 512, 768, 1024)

# Used only when --faces is missing, measured on the 17 shared photos (6 people): the norm of
# their mean vector and the spread (sd) of distances between different people. The spectrum
# stands in for their sample covariance, whose eigenvalues fall off steeply.
FALLBACK_MEAN_NORM = 1.31
FALLBACK_IMPOSTOR_SD = 0.076
FALLBACK_SPECTRUM_DECAY = 1.5


@dataclass(frozen=True)
class EmbeddingModel:
    """Gaussian identity model: centre ~ N(mean, between*S), photo ~ centre + N(0, within*S)."""

    mean: np.ndarray  # (DIM,)
    factor: np.ndarray  # (DIM, DIM) with factor @ factor.T = S, trace(S) = 1
    between: float
    within: float

    def centres(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.mean + np.sqrt(self.between) * rng.standard_normal((n, DIM)) @ self.factor.T

    def photos(self, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal(centres.shape) @ self.factor.T
        return (centres + np.sqrt(self.within) * noise).astype(np.float32)


# ----- fitting the synthetic distribution ----------------------------------------------------


def real_embeddings(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(embeddings, person labels) of the largest face of every photo under folder/<person>/."""
    if not folder.is_dir():
        return None
    import face_recognition  # slow import, only needed here

    embeddings, labels = [], []
    for photo in sorted(p for p in folder.glob("*/*") if p.is_file()):
        pixels = face_recognition.load_image_file(photo)
        boxes = face_recognition.face_locations(pixels)
        if boxes:
            largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
            embeddings.append(face_recognition.face_encodings(pixels, [largest])[0])
            labels.append(photo.parent.name)
    if len(set(labels)) < 2:
        return None
    return np.array(embeddings), np.array(labels)


def ledoit_wolf_weight(samples: np.ndarray) -> float:
    """Ledoit-Wolf weight for shrinking the sample covariance towards a scaled identity."""
    centred = samples - samples.mean(axis=0)
    n, p = centred.shape
    sample_cov = centred.T @ centred / n
    target = np.trace(sample_cov) / p * np.eye(p)
    distance = np.sum((sample_cov - target) ** 2)
    spread = sum(np.sum((np.outer(x, x) - sample_cov) ** 2) for x in centred) / n**2
    return float(min(spread, distance) / distance) if distance > 0 else 1.0


def shrunk(covariance: np.ndarray, weight: float) -> np.ndarray:
    """Convex combination of `covariance` and the identity scaled to the same trace."""
    scaled_identity = np.trace(covariance) / len(covariance) * np.eye(len(covariance))
    return weight * scaled_identity + (1 - weight) * covariance


def effective_dimension(covariance: np.ndarray) -> float:
    """Participation ratio (sum of eigenvalues)^2 / sum of squares: 128 means isotropic."""
    spectrum = np.linalg.eigvalsh(covariance)
    return float(spectrum.sum() ** 2 / (spectrum**2).sum())


def fallback_shape(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, covariance, impostor sd) from FALLBACK_* constants with random directions."""
    mean_direction = rng.standard_normal(DIM)
    mean = FALLBACK_MEAN_NORM * mean_direction / np.linalg.norm(mean_direction)
    rotation, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    spectrum = np.arange(1, DIM + 1) ** -FALLBACK_SPECTRUM_DECAY
    return mean, (rotation * spectrum) @ rotation.T, FALLBACK_IMPOSTOR_SD


def fit_model(mean: np.ndarray, covariance: np.ndarray, seed: int) -> EmbeddingModel:
    """Scale between/within variances until sampled mean distances hit the targets."""
    rng = np.random.default_rng(seed)
    values, vectors = np.linalg.eigh(covariance / np.trace(covariance))
    factor = vectors * np.sqrt(np.clip(values, 0, None))
    within = SAME_TARGET**2 / 2  # E|d|^2 = 2*within*trace(S) for photos of one person
    between = (DIFFERENT_TARGET**2 - SAME_TARGET**2) / 2
    for _ in range(6):  # mean distance < RMS distance, so correct a few times empirically
        model = EmbeddingModel(mean, factor, between, within)
        same, different = distance_samples(model, rng, 4000)
        within *= (SAME_TARGET / same.mean()) ** 2
        between = (between + within) * (DIFFERENT_TARGET / different.mean()) ** 2 - within
    return EmbeddingModel(mean, factor, between, within)


def impostor_spread(mean: np.ndarray, covariance: np.ndarray, seed: int) -> float:
    model = fit_model(mean, covariance, seed)
    return float(distance_samples(model, np.random.default_rng(seed), 4000)[1].std())


def weight_for_spread(mean: np.ndarray, covariance: np.ndarray, start: float, target_sd: float, seed: int) -> float:
    """Smallest shrinkage weight >= start giving impostor distances the target spread.

    More shrinkage spreads variance over more dimensions, which narrows the distribution of
    distances; fixed seeds make the search deterministic. Bisection over [start, 1].
    """
    low, high = start, 1.0
    if impostor_spread(mean, shrunk(covariance, low), seed) <= target_sd:
        return low
    for _ in range(20):
        middle = (low + high) / 2
        if impostor_spread(mean, shrunk(covariance, middle), seed) > target_sd:
            low = middle
        else:
            high = middle
    return high


def distance_samples(model: EmbeddingModel, rng: np.random.Generator, pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances between two photos of one identity, and between photos of two identities."""
    centres = model.centres(pairs, rng)
    same = np.linalg.norm(model.photos(centres, rng) - model.photos(centres, rng), axis=1)
    others = model.centres(pairs, rng)
    different = np.linalg.norm(model.photos(centres, rng) - model.photos(others, rng), axis=1)
    return same, different


def make_gallery(
    size: int, model: EmbeddingModel, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors (size, DIM) float32, identity of each vector, identity centres)."""
    low, high = PHOTOS_PER_IDENTITY
    counts = rng.integers(low, high + 1, size=size)  # more identities than needed; cut below
    counts = counts[: np.searchsorted(np.cumsum(counts), size) + 1]
    identity = np.repeat(np.arange(len(counts)), counts)[:size]
    centres = model.centres(len(counts), rng)
    vectors = np.empty((size, DIM), dtype=np.float32)
    for start in range(0, size, 100_000):  # chunks keep float64 temporaries small
        stop = min(start + 100_000, size)
        vectors[start:stop] = model.photos(centres[identity[start:stop]], rng)
    return vectors, identity, centres


def make_queries(
    count: int, centres: np.ndarray, model: EmbeddingModel, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    identity = rng.integers(0, len(centres), size=count)
    return model.photos(centres[identity], rng), identity


# ----- measuring -----------------------------------------------------------------------------


def rss_mb() -> float:
    """Resident memory after returning freed heap pages to the OS.

    Without the trim, pages freed by earlier steps stay resident and get reused by the next
    index, which would hide part of its growth.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return psutil.Process().memory_info().rss / 2**20


@dataclass
class Timings:
    """Per-query wall-clock and calling-thread CPU milliseconds, with what was found."""

    wall: np.ndarray
    cpu: np.ndarray  # excludes time spent waiting for a core: shows the work, not the queue
    distances: np.ndarray
    found: np.ndarray


def time_single_queries(index: VectorIndex, queries: np.ndarray) -> Timings:
    wall, cpu = np.empty(len(queries)), np.empty(len(queries))
    distances = np.empty((len(queries), K), dtype=np.float32)
    found = np.empty((len(queries), K), dtype=np.int64)
    for row, query in enumerate(queries):
        wall_start, cpu_start = time.perf_counter(), time.thread_time()
        row_distances, row_ids = index.search(query, K)
        cpu[row] = (time.thread_time() - cpu_start) * 1000
        wall[row] = (time.perf_counter() - wall_start) * 1000
        distances[row], found[row] = row_distances[0], row_ids[0]
    return Timings(wall, cpu, distances, found)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), truth.tolist()))
    return hits / truth.size


def recall_within(found: np.ndarray, truth: np.ndarray, truth_distances: np.ndarray) -> float:
    """Share of exact top-K neighbours within the review threshold that were found."""
    wanted = [set(ids[d <= DEFAULT_REVIEW_THRESHOLD].tolist()) for ids, d in zip(truth, truth_distances)]
    hits = sum(len(w & set(f)) for w, f in zip(wanted, found.tolist()))
    return hits / max(1, sum(len(w) for w in wanted))


def matvec_ms(vectors: np.ndarray, query: np.ndarray, threads: int, repeats: int = 7) -> float:
    """Best time of one pass over `vectors` (X @ q) with `threads` BLAS threads."""
    best = np.inf
    with threadpool_limits(limits=threads, user_api="blas"):
        for _ in range(repeats):
            started = time.perf_counter()
            vectors @ query
            best = min(best, time.perf_counter() - started)
    return best * 1000


def tune_ef_search(index: VectorIndex, queries: np.ndarray, truth: np.ndarray) -> int:
    """Smallest ef_search whose recall@K on the tuning queries reaches RECALL_TARGET."""
    print("    ef_search tuning (separate queries):  ef  recall@10  wall p95 ms  cpu p95 ms")
    for ef in EF_CANDIDATES:
        index.ef_search = ef
        timings = time_single_queries(index, queries)
        recall = recall_at_k(timings.found, truth)
        print(
            f"    {'':37}{ef:4d}   {recall:.4f}   {np.percentile(timings.wall, 95):8.2f}"
            f"   {np.percentile(timings.cpu, 95):9.2f}"
        )
        if recall >= RECALL_TARGET:
            return ef
    return EF_CANDIDATES[-1]


@dataclass
class Row:
    size: int
    kind: str
    timings: Timings
    rss_mb: float
    recall: float | None = None
    recall_within: float | None = None
    build_s: float | None = None
    settings: str = ""


def bench_size(
    size: int, model: EmbeddingModel, args: argparse.Namespace, rng: np.random.Generator, threads_once: bool
) -> list[Row]:
    print(f"\n== {size:,} vectors")
    vectors, identity, centres = make_gallery(size, model, rng)
    queries, query_identity = make_queries(args.queries, centres, model, rng)
    tuning, _ = make_queries(args.tune_queries, centres, model, rng)
    report_data_shape(vectors, identity)
    ids = np.arange(size, dtype=np.int64)

    before = rss_mb()
    exact = VectorIndex.rebuild((ids, vectors), kind="flat")
    exact_rss = rss_mb() - before
    set_search_threads(1)
    truth = time_single_queries(exact, queries)
    rows = [Row(size, "exact (flat)", truth, exact_rss, settings="1 thread")]
    same_top1 = np.mean(identity[truth.found[:, 0]] == query_identity)
    print(f"  exact: top-1 neighbour is the query's identity for {same_top1:.1%} of queries")
    report_floor(vectors, queries[0], float(np.percentile(truth.wall, 50)))
    if threads_once:
        set_search_threads(2)
        rows.append(
            Row(
                size,
                "exact (flat)",
                time_single_queries(exact, queries[:200]),
                exact_rss,
                settings="2 threads, 200 queries",
            )
        )
        set_search_threads(1)
    tuning_truth = exact.search(tuning, K)[1]
    # `exact` stays alive while the others are built: its freed memory would mask their growth.
    if "hnsw" in args.approx:
        rows.append(bench_hnsw(size, ids, vectors, queries, truth, tuning, tuning_truth, args))
    if "pq-refine" in args.approx:
        rows.append(bench_pq_refine(size, ids, vectors, queries, truth, args))
    del exact
    return rows


def bench_hnsw(
    size: int,
    ids: np.ndarray,
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: Timings,
    tuning: np.ndarray,
    tuning_truth: np.ndarray,
    args: argparse.Namespace,
) -> Row:
    before = rss_mb()
    set_search_threads(os.cpu_count() or 1)  # building parallelises well
    started = time.perf_counter()
    approx = VectorIndex.rebuild((ids, vectors), kind="hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction)
    build_s = time.perf_counter() - started
    hnsw_rss = rss_mb() - before
    print(
        f"  hnsw: built in {build_s:.1f} s (M={args.hnsw_m}, "
        f"efConstruction={args.ef_construction}, {os.cpu_count()} threads)"
    )
    set_search_threads(1)
    approx.ef_search = args.ef_search or tune_ef_search(approx, tuning, tuning_truth)
    timings = time_single_queries(approx, queries)
    settings = f"M={args.hnsw_m}, efC={args.ef_construction}, ef_search={approx.ef_search}"
    return Row(
        size,
        "hnsw",
        timings,
        hnsw_rss,
        recall_at_k(timings.found, truth.found),
        recall_within(timings.found, truth.found, truth.distances),
        build_s,
        settings,
    )


def bench_pq_refine(
    size: int, ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, truth: Timings, args: argparse.Namespace
) -> Row:
    before = rss_mb()
    set_search_threads(1)  # training runs on one thread anyway (see matching.index)
    started = time.perf_counter()
    approx = VectorIndex.rebuild((ids, vectors), kind="pq-refine", pq_m=args.pq_m, k_factor=args.k_factor)
    build_s = time.perf_counter() - started
    pq_rss = rss_mb() - before
    print(f"  pq-refine: trained and built in {build_s:.1f} s (pq_m={args.pq_m}, 1 thread)")
    timings = time_single_queries(approx, queries)
    return Row(
        size,
        "pq-refine",
        timings,
        pq_rss,
        recall_at_k(timings.found, truth.found),
        recall_within(timings.found, truth.found, truth.distances),
        build_s,
        f"pq_m={args.pq_m} (4-bit fast scan), k_factor={args.k_factor}",
    )


def report_data_shape(vectors: np.ndarray, identity: np.ndarray) -> None:
    sample = np.random.default_rng(1).integers(0, len(vectors), size=(20000, 2))
    distances = np.linalg.norm(vectors[sample[:, 0]] - vectors[sample[:, 1]], axis=1)
    different = distances[identity[sample[:, 0]] != identity[sample[:, 1]]]
    pairs = np.flatnonzero(identity[1:] == identity[:-1])[:20000]  # neighbours in one identity
    same = np.linalg.norm(vectors[pairs] - vectors[pairs + 1], axis=1)
    print(
        f"  data: {identity[-1] + 1:,} identities; mean norm "
        f"{np.linalg.norm(vectors[:20000], axis=1).mean():.3f}; distance same identity "
        f"{same.mean():.3f} (sd {same.std():.3f}), different {different.mean():.3f} "
        f"(sd {different.std():.3f})"
    )


def report_floor(vectors: np.ndarray, query: np.ndarray, exact_p50: float) -> None:
    one, two = matvec_ms(vectors, query, 1), matvec_ms(vectors, query, 2)
    print(
        f"  one pass over the matrix (X @ q, best of 7): {one:.2f} ms on 1 BLAS thread, "
        f"{two:.2f} ms on 2; exact p50 / 1-thread pass = {exact_p50 / one:.2f}x (target <= 1.5x)"
    )


def print_table(rows: list[Row]) -> None:
    print(
        f"\n| vectors | index | p50 ms | p95 ms | CPU p50 ms | CPU p95 ms | RSS delta MB "
        f"| recall@10 | recall <= {DEFAULT_REVIEW_THRESHOLD} | build s | settings |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        wall50, wall95 = np.percentile(r.timings.wall, [50, 95])
        cpu50, cpu95 = np.percentile(r.timings.cpu, [50, 95])
        recall = f"{r.recall:.4f}" if r.recall is not None else "exact"
        within = f"{r.recall_within:.4f}" if r.recall_within is not None else "exact"
        build = f"{r.build_s:.0f}" if r.build_s is not None else "-"
        print(
            f"| {r.size:,} | {r.kind} | {wall50:.2f} | {wall95:.2f} | {cpu50:.2f} | "
            f"{cpu95:.2f} | {r.rss_mb:.0f} | {recall} | {within} | {build} | {r.settings} |"
        )


def fitted_model(args: argparse.Namespace) -> EmbeddingModel:
    """Mean and covariance shape from real embeddings (or fallbacks), scaled to the targets.

    Ledoit-Wolf assumes independent samples; ours are a few photos of six people, whose
    sample covariance spans little more than the differences between those six, so its
    weight is only a floor. The weight is raised until different identities' distances
    spread like the real impostor pairs do, which keeps the data from collapsing onto a
    handful of dimensions (an easier case for HNSW than real embeddings).
    """
    real = real_embeddings(args.faces)
    if real is None:
        print(f"no photos under {args.faces}: using FALLBACK_* constants")
        mean, covariance, impostor_sd = fallback_shape(np.random.default_rng(args.seed))
        floor = 0.0
    else:
        embeddings, labels = real
        mean = embeddings.mean(axis=0)
        covariance = np.cov(embeddings.T, bias=True)
        genuine, impostor = pair_distances(embeddings, labels)
        impostor_sd = float(impostor.std())
        floor = ledoit_wolf_weight(embeddings)
        print(
            f"real: {len(embeddings)} embeddings of {len(set(labels))} people; mean-vector "
            f"norm {np.linalg.norm(mean):.3f}; mean norm "
            f"{np.linalg.norm(embeddings, axis=1).mean():.3f}; distance same person "
            f"{genuine.mean():.3f}, different {impostor.mean():.3f} (sd {impostor_sd:.3f})"
        )
    weight = weight_for_spread(mean, covariance, floor, impostor_sd, args.seed)
    covariance = shrunk(covariance, weight)
    model = fit_model(mean, covariance, args.seed)
    print(
        f"shrinkage weight {weight:.2f} (Ledoit-Wolf floor {floor:.2f}); effective dimension "
        f"{effective_dimension(covariance):.1f} of {DIM}; variance scales: between "
        f"{model.between:.4f}, within {model.within:.4f}"
    )
    return model


def describe_machine() -> None:
    model_name = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(
        f"cpu: {model_name}, {os.cpu_count()} cores; faiss {faiss.__version__}; "
        f"numpy {np.__version__}; python {platform.python_version()}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", type=lambda text: [int(part) for part in text.split(",")])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--tune-queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hnsw-m", type=int, default=48)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef-search", type=int, default=0, help="skip tuning and use this")
    parser.add_argument(
        "--approx",
        default="hnsw,pq-refine",
        type=lambda text: text.split(","),
        help="approximate kinds to measure besides exact search",
    )
    parser.add_argument("--pq-m", type=int, default=64, help="pq-refine sub-quantizers")
    parser.add_argument("--k-factor", type=int, default=100, help="pq-refine short list / k")
    parser.add_argument("--faces", type=Path, default=FACES)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    describe_machine()
    model = fitted_model(args)
    rng = np.random.default_rng(args.seed)
    rows: list[Row] = []
    for position, size in enumerate(args.sizes):
        rows += bench_size(size, model, args, rng, threads_once=position == len(args.sizes) - 1)
    print_table(rows)
    print(f"\nuptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
