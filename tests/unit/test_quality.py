"""The quality gates: plain reasons from stored figures, and the settings that set them."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from matching.quality import (
    DEFAULT_MAX_ASYMMETRY,
    DEFAULT_MIN_FACE_PX,
    DEFAULT_MIN_SHARPNESS,
    QualityGates,
    known_figures,
    quality_flags,
)
from service.settings import Settings

GATES = QualityGates(min_face_px=40, min_sharpness=10.0, max_asymmetry=0.3)


@pytest.mark.parametrize(
    "figures, flags",
    [
        ({"box_px": 40, "sharpness": 10.0, "asymmetry": 0.3}, []),  # on a gate is not below it
        (
            {"box_px": 39, "sharpness": 10.0, "asymmetry": 0.3},
            ["the face is small (39 px across; 40 px or more matches better)"],
        ),
        (
            {"box_px": 200, "sharpness": 9.99, "asymmetry": 0.31},
            ["the face is blurry", "the face is turned away from the camera"],
        ),
        ({}, []),  # a face stored without figures is not flagged for what was never measured
        ({"box_px": "12", "sharpness": True, "asymmetry": math.nan}, []),  # nor for figures that are not numbers
    ],
)
def test_flags_are_plain_reasons_from_the_figures(figures, flags) -> None:
    assert quality_flags(figures, GATES) == flags


def test_only_known_finite_figures_are_kept() -> None:
    stored = {
        "box_px": 80,
        "sharpness": math.inf,
        "asymmetry": 0.1,
        "detection_score": 1.5,
        "jitters": 1,
        "name": "never",
    }
    assert known_figures(stored) == {"box_px": 80.0, "asymmetry": 0.1, "detection_score": 1.5}
    assert known_figures(["not", "a", "mapping"]) == {}


def test_the_service_settings_set_the_gates_everywhere(monkeypatch) -> None:
    defaults = Settings()
    assert defaults.quality_gates() == QualityGates(DEFAULT_MIN_FACE_PX, DEFAULT_MIN_SHARPNESS, DEFAULT_MAX_ASYMMETRY)
    monkeypatch.setenv("REUNITE_QUALITY_MIN_FACE_PX", "64")
    monkeypatch.setenv("REUNITE_QUALITY_MIN_SHARPNESS", "4.5")
    monkeypatch.setenv("REUNITE_QUALITY_MAX_ASYMMETRY", "0.45")
    monkeypatch.setenv("REUNITE_MAX_FACES_PER_PHOTO", "3")
    settings = Settings()
    assert settings.quality_gates() == QualityGates(min_face_px=64, min_sharpness=4.5, max_asymmetry=0.45)
    face_settings = settings.face_settings()
    assert (
        face_settings.min_face_px,
        face_settings.min_sharpness,
        face_settings.max_asymmetry,
        face_settings.max_faces,
    ) == (64, 4.5, 0.45, 3)
    figures = {"box_px": 50, "sharpness": 4.0, "asymmetry": 0.5}
    assert quality_flags(figures, face_settings) == quality_flags(figures, settings.quality_gates())


@pytest.mark.parametrize(
    "name, value",
    [
        ("REUNITE_QUALITY_MIN_FACE_PX", "-1"),
        ("REUNITE_QUALITY_MIN_SHARPNESS", "-0.5"),
        ("REUNITE_QUALITY_MAX_ASYMMETRY", "1.5"),
    ],
)
def test_impossible_gates_are_refused_at_start(monkeypatch, name, value) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("REUNITE_").lower()):
        Settings()
