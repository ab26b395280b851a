"""Calibrations and evaluation reports: store, activate, and read what is in force.

The review threshold and the distance bands the service uses come from the newest
activated calibration of the model in use; with none, the service falls back to the
placeholders in `matching.calibration` and says so (`ReviewPolicy.calibrated` is False).
Every stored or re-activated calibration and every published evaluation writes an
audit event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from matching.ages import gap_band
from matching.calibration import (
    DEFAULT_REVIEW_THRESHOLD,
    DISTANCE_BANDS,
    calibrated_bands,
    distance_band,
    threshold_for_fmr,
    thresholds_by_gap,
)
from service.audit.actions import AuditAction
from service.audit.service import record_event
from service.calibration.models import Calibration, EvaluationReport
from service.db import utcnow
from service.refusal import Refused


class CalibrationError(Refused, ValueError):
    """A calibration cannot be stored or activated; the message says why in plain words."""


@dataclass(frozen=True)
class ReviewPolicy:
    """What a search and a reviewer use: the threshold, the band edges and where they came from."""

    threshold: float
    bands: tuple[tuple[str, float], ...]
    top_k: int | None  # None: the service's review_top_k setting
    calibration_id: int | None
    calibration_version: int | None
    # Thresholds calibrated for an age-gap band (matching.ages.AGE_GAPS label -> threshold), only
    # for bands whose data could show the target FMR; other gaps, and unknown ones, use `threshold`.
    gap_thresholds: tuple[tuple[str, float], ...] = ()

    @property
    def calibrated(self) -> bool:
        return self.calibration_id is not None

    def band(self, distance: float | None) -> str | None:
        return distance_band(distance, self.bands)

    def threshold_for(self, gap_years: float | None) -> float:
        """The review threshold for two photos `gap_years` apart (None: unknown gap)."""
        band = gap_band(gap_years)
        return self.threshold if band is None else dict(self.gap_thresholds).get(band, self.threshold)

    @property
    def widest_threshold(self) -> float:
        """The largest threshold any gap may use: how far an index search must reach."""
        return max([self.threshold, *(threshold for _, threshold in self.gap_thresholds)])


PLACEHOLDER_POLICY = ReviewPolicy(
    threshold=DEFAULT_REVIEW_THRESHOLD, bands=DISTANCE_BANDS, top_k=None, calibration_id=None, calibration_version=None
)


def store_calibration(
    session: Session,
    *,
    model_id: str,
    model_version: str,
    genuine: np.ndarray,
    impostor: np.ndarray,
    target_fmr: float,
    top_k: int,
    dataset: dict[str, Any],
    actor_id: int | None,
    gap_pairs: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> Calibration:
    """Compute the threshold for `target_fmr` from labelled pair distances, store it and activate it.

    `gap_pairs` (AGE_GAPS label -> (genuine, impostor), e.g. from
    `matching.evaluation.verification_distances_by_gap`) adds a threshold per age-gap band
    wherever that band's impostor pairs can show the target; the other bands are stored as not
    calibrated and use the global threshold.
    """
    try:
        figures = threshold_for_fmr(genuine, impostor, target_fmr)
        edges = calibrated_bands(impostor, target_fmr, figures.threshold)
        by_gap = _gap_thresholds(gap_pairs, target_fmr)
    except ValueError as exc:
        raise CalibrationError(str(exc)) from exc
    version = (session.scalar(select(func.max(Calibration.version)).where(Calibration.model_id == model_id)) or 0) + 1
    row = Calibration(
        model_id=model_id,
        model_version=model_version,
        version=version,
        threshold=figures.threshold,
        target_fmr=target_fmr,
        top_k=top_k,
        bands=[asdict(edge) for edge in edges],
        achieved_fmr=figures.achieved_fmr,
        fnmr=figures.fnmr,
        genuine_pairs=figures.genuine_pairs,
        impostor_pairs=figures.impostor_pairs,
        reliable=figures.reliable,
        gap_thresholds=by_gap,
        dataset=dataset,
        created_by_id=actor_id,
        activated_at=utcnow(),
    )
    session.add(row)
    session.flush()
    _audit_activation(session, row, actor_id=actor_id, action=AuditAction.CALIBRATION_CREATED)
    return row


def _gap_thresholds(
    gap_pairs: Mapping[str, tuple[np.ndarray, np.ndarray]] | None, target_fmr: float
) -> list[dict[str, Any]]:
    """Every band's threshold or why it has none; nothing when no pair had a known gap."""
    if not gap_pairs or not any(len(genuine) or len(impostor) for genuine, impostor in gap_pairs.values()):
        return []
    return [asdict(found) for found in thresholds_by_gap(gap_pairs, target_fmr)]


def activate_calibration(session: Session, *, model_id: str, version: int, actor_id: int | None) -> Calibration:
    """Put an earlier (or the current) calibration of `model_id` back in force."""
    row = session.scalars(
        select(Calibration).where(Calibration.model_id == model_id, Calibration.version == version)
    ).first()
    if row is None:
        raise CalibrationError(f"There is no calibration version {version} for model {model_id}.")
    row.activated_at = utcnow()
    session.flush()
    _audit_activation(session, row, actor_id=actor_id, action=AuditAction.CALIBRATION_ACTIVATED)
    return row


def _audit_activation(session: Session, row: Calibration, *, actor_id: int | None, action: AuditAction) -> None:
    record_event(
        session,
        action=action,
        actor_id=actor_id,
        target_type="calibration",
        target_id=row.id,
        details={
            "model_id": row.model_id,
            "version": row.version,
            "threshold": round(row.threshold, 6),
            "target_fmr": row.target_fmr,
            "impostor_pairs": row.impostor_pairs,
            "genuine_pairs": row.genuine_pairs,
            "reliable": row.reliable,
            **_gap_details(row.gap_thresholds or []),
        },
    )


def _gap_details(gaps: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Per-band thresholds for the audit trail, as parallel lists of codes and numbers (details are
    flat): the band, its threshold (null: not calibrated, the global one applies) and pair counts."""
    return {
        "gap_bands": [gap["band"] for gap in gaps],
        "gap_thresholds": [None if gap["threshold"] is None else round(gap["threshold"], 6) for gap in gaps],
        "gap_genuine_pairs": [gap["genuine_pairs"] for gap in gaps],
        "gap_impostor_pairs": [gap["impostor_pairs"] for gap in gaps],
    }


def active_calibration(session: Session, model_id: str) -> Calibration | None:
    return session.scalars(
        select(Calibration)
        .where(Calibration.model_id == model_id, Calibration.activated_at.is_not(None))
        .order_by(Calibration.activated_at.desc(), Calibration.id.desc())
        .limit(1)
    ).first()


def list_calibrations(session: Session, model_id: str | None = None) -> list[Calibration]:
    query = select(Calibration).order_by(Calibration.model_id, Calibration.version)
    if model_id is not None:
        query = query.where(Calibration.model_id == model_id)
    return list(session.scalars(query))


def review_policy(session: Session, model_id: str) -> ReviewPolicy:
    """The threshold and bands in force for `model_id` (placeholders when never calibrated)."""
    return policy_of(active_calibration(session, model_id))


def policy_of(row: Calibration | None) -> ReviewPolicy:
    """The policy a calibration sets; the placeholders for None."""
    if row is None:
        return PLACEHOLDER_POLICY
    gaps = tuple((gap["band"], gap["threshold"]) for gap in row.gap_thresholds or [] if gap["calibrated"])
    return ReviewPolicy(
        threshold=row.threshold,
        bands=tuple((edge["band"], edge["upper"]) for edge in row.bands),
        top_k=row.top_k,
        calibration_id=row.id,
        calibration_version=row.version,
        gap_thresholds=gaps,
    )


def band_lookup(session: Session) -> Callable[[str, float | None], str | None]:
    """band(model_id, distance) under each model's policy in force, read once per model."""
    policies: dict[str, ReviewPolicy] = {}

    def band(model_id: str, distance: float | None) -> str | None:
        if model_id not in policies:
            policies[model_id] = review_policy(session, model_id)
        return policies[model_id].band(distance)

    return band


def publish_evaluation(session: Session, *, report: dict[str, Any], actor_id: int | None) -> EvaluationReport:
    """Store an evaluation report (`report.json` of `reunite evaluate`) for the model card."""
    try:
        model, dataset = report["model"], report["dataset"]
        row = EvaluationReport(
            model_id=str(model["id"]),
            model_version=str(model["version"]),
            dataset_sha256=str(dataset["manifest_sha256"]),
            report=report,
            published_by_id=actor_id,
        )
    except (KeyError, TypeError) as exc:
        raise CalibrationError("That file is not a report written by `reunite evaluate`.") from exc
    session.add(row)
    session.flush()
    record_event(
        session,
        action=AuditAction.EVALUATION_PUBLISHED,
        actor_id=actor_id,
        target_type="evaluation_report",
        target_id=row.id,
        details={"model_id": row.model_id, "photos": dataset.get("photos"), "identities": dataset.get("identities")},
    )
    return row


def latest_evaluation(session: Session, model_id: str) -> EvaluationReport | None:
    return session.scalars(
        select(EvaluationReport)
        .where(EvaluationReport.model_id == model_id)
        .order_by(EvaluationReport.published_at.desc(), EvaluationReport.id.desc())
        .limit(1)
    ).first()
