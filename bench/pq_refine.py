"""PQ fast-scan over every code plus exact re-ranking: can it meet the 1M search target?

The target is p95 <= 5 ms per single query with recall@10 >= 0.99 against exact search at
1M vectors on this 2-core machine. Each variant is a FAISS `index_factory` string wrapped in
`IndexRefineFlat` (",RFlat"): the base index (4-bit PQ fast-scan, optionally after an OPQ
rotation or a PCA, or inside an IVF) proposes k * k_factor candidates, which are re-ranked
with the exact float vectors. Base indexes are trained on a random sample of at most
TRAIN_SAMPLE gallery vectors. For each variant it prints build time (training + adding, one
thread), resident-memory growth, and for each k_factor (and nprobe, for IVF) the
single-query p50/p95 wall and CPU time on one FAISS thread and recall@10 against exact search.
Finally it times `matching.index.VectorIndex(kind="pq-refine")` the same way, i.e. the code
the service runs (its own re-ranking), also with 10% of the ids removed (removal filter).

Data: the synthetic gallery of bench/search_speed.py (imported, not copied), fitted to real
dlib embeddings; queries are fresh photos of gallery identities. The 1-minute load average is
printed after each variant, since the machine is shared.

Usage: .venv/bin/python bench/pq_refine.py [--sizes 100000,1000000] [--queries 1000] [--seed 0]
           [--variants "PQ64x4fs;OPQ32,PQ32x4fs"] [--k-factors 10,30,50,100,300] [--nprobes 256,512]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_speed as shared  # also puts the repository on sys.path

from matching.index import VectorIndex, set_search_threads

K = shared.K
TRAIN_SAMPLE = 65_536
REMOVED_SHARE = 0.1  # removed without compaction for the last VectorIndex row
# Builds use one thread: with another process on one of the two cores, OpenMP's spinning
# barriers made two-thread k-means training 10-20x slower (0.75 s became 12-14 s at 100k).
BUILD_THREADS = 1
DEFAULT_VARIANTS = (
    "PQ32x4fs;PQ64x4fs;PQ64x4fs_64;PQ128x4fs;OPQ32,PQ32x4fs;OPQ64,PQ64x4fs;"
    "PCA64,PQ32x4fs;PCA64,PQ64x4fs;IVF1024,PQ64x4fs"
)


@dataclass
class Result:
    size: int
    kind: str
    params: str
    build_s: float
    rss_mb: float
    timings: shared.Timings
    recall: float
    load: float


class RawSearcher:
    """Adapter giving a raw FAISS refine index the `search(query, k)` of VectorIndex."""

    def __init__(self, index: faiss.Index, params: faiss.SearchParameters) -> None:
        self.index, self.params = index, params

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        squared, found = self.index.search(query.reshape(1, -1), k, params=self.params)
        return np.sqrt(np.maximum(squared, 0)), found


def build_variant(spec: str, vectors: np.ndarray, rng: np.random.Generator) -> tuple[faiss.Index, float, float]:
    """(refine index, build seconds, RSS growth MB) for one factory string."""
    before = shared.rss_mb()
    set_search_threads(BUILD_THREADS)
    started = time.perf_counter()
    index = faiss.index_factory(vectors.shape[1], spec + ",RFlat")
    sample = rng.choice(len(vectors), size=min(len(vectors), TRAIN_SAMPLE), replace=False)
    index.train(vectors[np.sort(sample)])
    index.add(vectors)
    build_s = time.perf_counter() - started
    return index, build_s, shared.rss_mb() - before


def search_grid(spec: str, args: argparse.Namespace) -> list[tuple[str, faiss.SearchParameters]]:
    """(label, refine search parameters) for every k_factor, times every nprobe for IVF."""
    nprobes = args.nprobes if spec.startswith("IVF") else [None]
    grid = []
    for nprobe in nprobes:
        for k_factor in args.k_factors:
            base = faiss.SearchParametersIVF(nprobe=nprobe) if nprobe else None
            params = faiss.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=base)
            params.keep_alive = base  # the SWIG object must outlive the search parameters
            label = f"k_factor={k_factor}" + (f", nprobe={nprobe}" if nprobe else "")
            grid.append((label, params))
    return grid


def bench_variant(
    spec: str,
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> list[Result]:
    index, build_s, rss = build_variant(spec, vectors, rng)
    print(f"  {spec}: built in {build_s:.1f} s, RSS +{rss:.0f} MB")
    set_search_threads(1)
    results = []
    for label, params in search_grid(spec, args):
        timings = shared.time_single_queries(RawSearcher(index, params), queries)
        result = Result(
            len(vectors),
            spec,
            label,
            build_s,
            rss,
            timings,
            shared.recall_at_k(timings.found, truth),
            os.getloadavg()[0],
        )
        print_row(result)
        results.append(result)
    del index
    return results


def bench_vector_index(
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    exact: faiss.IndexFlatL2,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> list[Result]:
    """The service's own kind, built through `rebuild` like a replica would; then again
    after removing REMOVED_SHARE of the ids (no compaction), against the exact answers
    over the remaining vectors."""
    before = shared.rss_mb()
    set_search_threads(BUILD_THREADS)
    started = time.perf_counter()
    index = VectorIndex.rebuild(
        (np.arange(len(vectors), dtype=np.int64), vectors),
        kind="pq-refine",
        pq_m=args.pq_m,
        k_factor=args.kind_k_factor,
        compact_threshold=1.0,
    )
    build_s = time.perf_counter() - started
    rss = shared.rss_mb() - before
    params = f"pq_m={args.pq_m}, k_factor={args.kind_k_factor}"
    set_search_threads(1)
    results = []
    for label in ("", f", {REMOVED_SHARE:.0%} removed"):
        if label:
            removed = rng.choice(len(vectors), size=int(REMOVED_SHARE * len(vectors)), replace=False)
            index.remove(removed)
            truth = exact_without(exact, queries, removed)
        timings = shared.time_single_queries(index, queries)
        if label:
            assert not np.isin(timings.found, removed).any(), "a removed id was returned"
        results.append(
            Result(
                len(vectors),
                "VectorIndex pq-refine",
                params + label,
                build_s,
                rss,
                timings,
                shared.recall_at_k(timings.found, truth),
                os.getloadavg()[0],
            )
        )
        print_row(results[-1])
    return results


def exact_without(exact: faiss.IndexFlatL2, queries: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """True top-K ids (= positions here) over the gallery minus `removed`."""
    excluded = faiss.IDSelectorBatch(removed.astype(np.int64))
    kept = faiss.IDSelectorNot(excluded)
    set_search_threads(BUILD_THREADS)
    found = exact.search(queries, K, params=faiss.SearchParameters(sel=kept))[1]
    set_search_threads(1)
    return found


def bench_size(
    size: int, model: shared.EmbeddingModel, args: argparse.Namespace, rng: np.random.Generator
) -> list[Result]:
    print(f"\n== {size:,} vectors")
    vectors, identity, centres = shared.make_gallery(size, model, rng)
    queries, _ = shared.make_queries(args.queries, centres, model, rng)
    shared.report_data_shape(vectors, identity)
    exact = faiss.IndexFlatL2(vectors.shape[1])
    exact.add(vectors)
    set_search_threads(BUILD_THREADS)
    truth = exact.search(queries, K)[1]  # batched: the true top 10, computed once
    results = []
    for spec in args.variants:
        results += bench_variant(spec, vectors, queries, truth, args, rng)
    results += bench_vector_index(vectors, queries, truth, exact, args, rng)
    return results


def print_row(r: Result) -> None:
    wall50, wall95 = np.percentile(r.timings.wall, [50, 95])
    cpu95 = np.percentile(r.timings.cpu, 95)
    met = "yes" if wall95 <= 5 and r.recall >= shared.RECALL_TARGET else ""
    print(
        f"| {r.size:,} | {r.kind} | {r.params} | {r.build_s:.1f} | {wall50:.2f} | {wall95:.2f} "
        f"| {cpu95:.2f} | {r.recall:.4f} | {r.rss_mb:.0f} | {r.load:.2f} | {met} |",
        flush=True,
    )


def print_table(results: list[Result]) -> None:
    print(
        "\n| vectors | kind | params | build s | p50 ms | p95 ms | CPU p95 ms | recall@10 "
        "| RSS delta MB | load 1 min | target met |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for result in results:
        print_row(result)


def parse_args() -> argparse.Namespace:
    def numbers(text: str) -> list[int]:
        return [int(part) for part in text.split(",")]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", type=numbers)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants", default=DEFAULT_VARIANTS, type=lambda text: [part for part in text.split(";") if part]
    )
    parser.add_argument("--k-factors", default="10,30,50,100,300", type=numbers)
    parser.add_argument("--nprobes", default="256,512", type=numbers, help="IVF variants only")
    parser.add_argument("--pq-m", type=int, default=64, help="for the VectorIndex row")
    parser.add_argument("--kind-k-factor", type=int, default=100, help="for the VectorIndex row")
    parser.add_argument("--faces", type=Path, default=shared.FACES)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    shared.describe_machine()
    print(f"faiss compile options: {faiss.get_compile_options()}")
    model = shared.fitted_model(args)
    results: list[Result] = []
    for size in args.sizes:
        # One generator per size, so a gallery does not depend on the variants run before it.
        results += bench_size(size, model, args, np.random.default_rng([args.seed, size]))
    print_table(results)
    shared.describe_machine()


if __name__ == "__main__":
    main()
