"""Calibrations and published evaluation reports (ORM only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow


class Calibration(Base):
    __tablename__ = "calibrations"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per model id
    threshold: Mapped[float] = mapped_column(Float)
    target_fmr: Mapped[float] = mapped_column(Float)
    top_k: Mapped[int] = mapped_column(Integer)
    # [{"band": "strong", "upper": 0.41, "fmr": 1e-5}, ...], strongest first, last upper == threshold
    bands: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    achieved_fmr: Mapped[float] = mapped_column(Float)
    fnmr: Mapped[float] = mapped_column(Float)
    genuine_pairs: Mapped[int] = mapped_column(Integer)
    impostor_pairs: Mapped[int] = mapped_column(Integer)
    reliable: Mapped[bool] = mapped_column(Boolean)
    # One entry per age-gap band (matching.calibration.GapThreshold as a dict): the band's threshold,
    # or null where its impostor pairs could not show the target; empty when no pair had a known gap
    # (NULL on calibrations stored before per-band thresholds existed).
    gap_thresholds: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    # What it was computed on: manifest sha256 and counts, never paths or identities.
    dataset: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The newest activation of a model's calibrations is the one in force.
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class EvaluationReport(Base):
    __tablename__ = "evaluation_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    dataset_sha256: Mapped[str] = mapped_column(String(64))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)  # report.json of `reunite evaluate`: figures only
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
