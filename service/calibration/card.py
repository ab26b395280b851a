"""The model card: the model in use, its calibration, its latest measured figures, the notice.

Everything here is read from stored rows; nothing is measured on the request path. The
standing notice reviewers see with every candidate is written from the same figures, so
it changes when a new evaluation is published and never claims what was not measured.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from matching.embedders import UnknownEmbedder, get_embedder, model_registry, registry_entry
from service.calibration.models import Calibration, EvaluationReport
from service.calibration.service import active_calibration, latest_evaluation, policy_of

ADULT_BANDS = {"18+"}
ALWAYS = (
    "Faces change quickly in childhood: the longer between the two photos, the less a close "
    "distance means. A candidate is only a suggestion; decide from the photos and the facts of "
    "the case, never from the band alone."
)
UNMEASURED_CHILDREN = (
    "The model was trained mostly on adults and its authors report that it confuses children with "
    "one another more often; its accuracy on children has not been measured for this service."
)


def model_card(session: Session, *, model_id: str, model_version: str) -> dict[str, Any]:
    calibration = active_calibration(session, model_id)
    evaluation = latest_evaluation(session, model_id)
    policy = policy_of(calibration)
    return {
        "model": {**_registry_facts(model_id), "id": model_id, "version": model_version},
        "models": _registry(),
        "review_threshold": policy.threshold,
        "distance_bands": calibration.bands
        if calibration
        else [{"band": band, "upper": upper, "reliable": False} for band, upper in policy.bands],
        "calibration": _calibration_out(calibration),
        "evaluation": _evaluation_out(evaluation),
        "notice": standing_notice(calibration, evaluation),
    }


NOT_INSTALLED = (
    "its weight files are missing or altered on this server; an operator installs them with `reunite models install`"
)


def _registry() -> list[dict[str, Any]]:
    """Every model the service can switch to, with licences and provenance (no server paths)."""
    return [{**entry, "problem": None if entry["installed"] else NOT_INSTALLED} for entry in model_registry()]


def _registry_facts(model_id: str) -> dict[str, Any]:
    """The active model's licence, weight files and training data (matching.embedders registry)."""
    try:
        entry = registry_entry(get_embedder(model_id))
    except UnknownEmbedder:  # a model this process does not know (an older or newer release)
        return {"licence": None, "training_data": None, "weights": []}
    return {key: entry[key] for key in ("licence", "training_data", "weights", "dimension")}


def _calibration_out(row: Calibration | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "version": row.version,
        "model_version": row.model_version,
        "threshold": row.threshold,
        "target_fmr": row.target_fmr,
        "achieved_fmr": row.achieved_fmr,
        "fnmr": row.fnmr,
        "top_k": row.top_k,
        "genuine_pairs": row.genuine_pairs,
        "impostor_pairs": row.impostor_pairs,
        "reliable": row.reliable,
        "bands": row.bands,
        "dataset": row.dataset,
        # Per age-gap band: its own threshold where its data could show the target, else null (the
        # review threshold applies); empty when the calibration data had no ages or dates.
        "gap_thresholds": row.gap_thresholds or [],
        "activated_at": row.activated_at,
    }


def _evaluation_out(row: EvaluationReport | None) -> dict[str, Any] | None:
    if row is None:
        return None
    report = row.report
    return {
        "published_at": row.published_at,
        "model_version": row.model_version,
        # Reports from before end-to-end counting hold enrolled-only figures in the same places.
        "counting": report.get("settings", {}).get("headline", "enrolled_only"),
        "dataset": report.get("dataset", {}),
        "identification": report.get("identification", {}).get("overall"),
        "verification": report.get("verification", {}).get("overall"),
        "failure_to_enrol": report.get("failure_to_enrol"),
        "age_bands": report.get("age_bands", {}),
        "age_gaps": report.get("age_gaps", {}),
        "groups": report.get("groups", {}),
    }


def standing_notice(calibration: Calibration | None, evaluation: EvaluationReport | None) -> str:
    """The reviewers' notice on the model's limits, in words, from the stored figures only."""
    parts = [_evaluation_sentence(evaluation), _children_sentence(evaluation), _threshold_sentence(calibration), ALWAYS]
    return " ".join(part for part in parts if part)


def _evaluation_sentence(evaluation: EvaluationReport | None) -> str:
    if evaluation is None:
        return "No evaluation of the model has been published for this service yet."
    report = evaluation.report
    dataset = report.get("dataset", {})
    rank_1 = _value(report.get("identification", {}).get("overall", {}).get("rank_1"))
    where = (
        f"In the latest evaluation ({dataset.get('photos', '?')} photos of "
        f"{dataset.get('identities', '?')} people, published {evaluation.published_at:%d %B %Y})"
    )
    if rank_1 is None:
        return where + " the rank-1 hit rate could not be measured."
    return f"{where} the right person was ranked first for {_percent(rank_1)} of probe photos."


def _children_sentence(evaluation: EvaluationReport | None) -> str:
    bands = (evaluation.report.get("age_bands") or {}) if evaluation else {}
    measured = []
    for band, figures in bands.items():
        if band in ADULT_BANDS or not isinstance(figures, dict):
            continue
        identification = figures.get("identification") or {}
        rank_1 = _value(identification.get("rank_1"))
        if rank_1 is not None:
            searches = identification.get("mated_searches")
            measured.append(f"aged {band}: {_percent(rank_1)}" + (f" of {searches} searches" if searches else ""))
    if not measured:
        return UNMEASURED_CHILDREN
    return (
        "Ranked first for children " + "; ".join(measured) + ". Few searches make these figures "
        "uncertain; the model card gives their intervals."
    )


def _threshold_sentence(calibration: Calibration | None) -> str:
    if calibration is None:
        return "The review threshold has not been calibrated on measured data yet, so the bands are provisional."
    reliability = "" if calibration.reliable else " (from too few pairs to be sure of that rate)"
    return (
        f"Candidates are proposed up to a distance set for a false-match rate of "
        f"{calibration.target_fmr:g}{reliability}; at that distance "
        f"{_percent(calibration.fnmr)} of same-person pairs were missed in calibration."
    )


def _value(figure: Any) -> float | None:
    """A report's rate, or None where the data could not measure it (stored as null)."""
    return float(figure) if isinstance(figure, (int, float)) else None


def _percent(value: float) -> str:
    return f"{value * 100:.0f} %"
