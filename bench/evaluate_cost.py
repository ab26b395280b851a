"""Cost of `reunite evaluate`'s figures: seconds for the point estimates and per bootstrap round.

Synthetic 128-d vectors (allowed for scale: the cost depends on counts, not on faces):
--identities people with --photos-per photos each, one group column with three values, an
age per photo, and --fail of the photos failing to enrol (no template), so that both the
end-to-end and the enrolled-only figures are computed as for real data. As a floor, the
same run times `matching.calibration.pair_distances` over the same vectors: every pair's
distance, the least any evaluation must compute once.

Usage: .venv/bin/python bench/evaluate_cost.py [--identities 400] [--photos-per 3] [--rounds 5] [--fail 0.05]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from matching.calibration import pair_distances  # noqa: E402
from matching.evaluation import Sample, evaluate  # noqa: E402


def samples(identities: int, photos_per: int, fail: float, rng: np.random.Generator) -> list[Sample]:
    found = []
    for person in range(identities):
        centre = rng.normal(size=128)
        centre /= np.linalg.norm(centre)
        for _ in range(photos_per):
            failed = rng.random() < fail
            vector = None if failed else (centre + rng.normal(scale=0.03, size=128)).astype(np.float32)
            found.append(
                Sample(
                    identity=f"p{person}",
                    vector=vector,
                    gallery_failure="no_face" if failed else None,
                    probe_failure="no_face" if failed else None,
                    groups={"g": "abc"[person % 3]},
                    age=float(rng.integers(0, 30)),
                )
            )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=400)
    parser.add_argument("--photos-per", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fail", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = samples(args.identities, args.photos_per, args.fail, np.random.default_rng(args.seed))
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}")

    start = time.perf_counter()
    point = evaluate(data, threshold=0.6, bootstrap_rounds=0)
    point_seconds = time.perf_counter() - start
    start = time.perf_counter()
    evaluate(data, threshold=0.6, bootstrap_rounds=args.rounds)
    per_round = (time.perf_counter() - start - point_seconds) / max(args.rounds, 1)
    usable = [s for s in data if s.vector is not None]
    start = time.perf_counter()
    pair_distances(np.stack([s.vector for s in usable]), [s.identity for s in usable])
    floor = time.perf_counter() - start

    counts = point["dataset"]
    print(
        f"{counts['photos']} photos, {counts['identities']} people, {args.fail:.0%} failing to enrol: "
        f"{counts['genuine_pairs'] + counts['impostor_pairs']} pairs, {counts['mated_searches']} mated and "
        f"{counts['non_mated_searches']} non-mated searches (end to end)"
    )
    print(f"point estimates (both countings, every group, band and gap, curves): {point_seconds:.2f} s")
    print(f"each bootstrap round: {per_round:.2f} s ({args.rounds} rounds)")
    print(f"floor, pair_distances over the enrolled photos once: {floor:.2f} s")


if __name__ == "__main__":
    main()
