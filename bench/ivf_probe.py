"""Exploratory: can an IVF index meet the 1M target that HNSW missed on realistic vectors?

Same synthetic gallery as bench/search_speed.py (fitted to real dlib embeddings),
raw FAISS IndexIVFFlat (not yet a VectorIndex kind): training and adding time, then
for each nprobe the single-query p50/p95 on one thread and recall@10 against exact
search. Prints figures only.

Usage: .venv/bin/python bench/ivf_probe.py [--size 1000000] [--nlist 4096] [--queries 500]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_speed as shared  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--nlist", type=int, default=4096)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--nprobes", default="16,32,64,128,256")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shared.describe_machine()
    model = shared.fitted_model(argparse.Namespace(faces=shared.FACES, seed=args.seed))
    rng = np.random.default_rng(args.seed)
    vectors, _, centres = shared.make_gallery(args.size, model, rng)
    queries, _ = shared.make_queries(args.queries, centres, model, rng)
    queries = np.ascontiguousarray(queries, dtype=np.float32)

    exact = faiss.IndexFlatL2(vectors.shape[1])
    exact.add(vectors)
    faiss.omp_set_num_threads(2)
    _, truth = exact.search(queries, 10)

    quantizer = faiss.IndexFlatL2(vectors.shape[1])
    ivf = faiss.IndexIVFFlat(quantizer, vectors.shape[1], args.nlist)
    started = time.perf_counter()
    sample = vectors[rng.choice(len(vectors), size=min(len(vectors), 64 * args.nlist), replace=False)]
    ivf.train(sample)
    trained = time.perf_counter() - started
    ivf.add(vectors)
    added = time.perf_counter() - started - trained
    print(f"IVF{args.nlist},Flat on {args.size:,}: train {trained:.1f} s, add {added:.1f} s (2 threads)")

    faiss.omp_set_num_threads(1)
    print(f"{'nprobe':>7}{'p50 ms':>9}{'p95 ms':>9}{'recall@10':>11}")
    for nprobe in (int(n) for n in args.nprobes.split(",")):
        ivf.nprobe = nprobe
        latencies, found = [], []
        for query in queries:
            start = time.perf_counter()
            _, ids = ivf.search(query[None, :], 10)
            latencies.append((time.perf_counter() - start) * 1000)
            found.append(ids[0])
        recall = shared.recall_at_k(np.array(found), truth)
        print(f"{nprobe:>7}{np.percentile(latencies, 50):>9.2f}{np.percentile(latencies, 95):>9.2f}{recall:>11.4f}")


if __name__ == "__main__":
    main()
