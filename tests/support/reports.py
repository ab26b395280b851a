"""A real `reunite evaluate` report computed on synthetic vectors, for the model card's tests.

Sixteen people, two photos each, eight adults and eight children aged 7, half in each
group of `sex`; each person's two vectors are close, different people far apart, so
every figure is known: the right person is ranked first for every probe.
"""

from __future__ import annotations

import numpy as np

from matching.evaluation import Sample, evaluate


def synthetic_report(model_id: str, model_version: str = "v-test") -> dict:
    rng = np.random.default_rng(0)
    samples = []
    for person in range(16):
        centre = rng.normal(size=128)
        for _ in range(2):
            samples.append(
                Sample(
                    identity=f"p{person}",
                    vector=centre + rng.normal(scale=0.05, size=128),
                    age=30.0 if person < 8 else 7.0,
                    groups={"sex": "female" if person % 2 else "male"},
                )
            )
    report = evaluate(samples, threshold=0.6, bootstrap_rounds=20)
    return {
        "model": {"id": model_id, "version": model_version},
        **report,
        "dataset": {"manifest_sha256": "cd" * 32, **report["dataset"]},
    }
