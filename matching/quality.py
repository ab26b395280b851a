"""Quality gates: when a face is flagged low quality, read from its quality figures.

The gates never refuse a face. A record photo whose one face is small, blurry or
turned away is still enrolled and searched, and a case face below a gate is still
searched: a flagged face can still be found, a refused one never can. The flag
tells reviewers to weigh the comparison with care and caseworkers that a clearer
photo would help.

The figures are stored with every embedding (`matching.faces.FaceQuality`), so the
flags are computed when they are shown, from the stored figures and the gates in
force: a changed gate applies to every photo alike. This module needs neither dlib
nor numpy, so settings and pages can import it cheaply.

The defaults come from `bench/quality_gates.py` (docs/accuracy.md, "Quality
gates"): each gate sits where matching was measured to degrade, not where a figure
merely looks low.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

# Measured defaults (bench/quality_gates.py, docs/accuracy.md): below each, the same person's
# distance grew by more than 0.05 over the clean photo's. The service's settings start from these.
DEFAULT_MIN_FACE_PX = 40
DEFAULT_MIN_SHARPNESS = 10.0
DEFAULT_MAX_ASYMMETRY = 0.3

# The figures every stored face carries (see matching.faces.FaceQuality).
FIGURES = ("box_px", "sharpness", "asymmetry", "detection_score")


class Gates(Protocol):
    """Anything with the three gate values: `QualityGates` or `matching.faces.FaceSettings`."""

    @property
    def min_face_px(self) -> int: ...
    @property
    def min_sharpness(self) -> float: ...
    @property
    def max_asymmetry(self) -> float: ...


@dataclass(frozen=True)
class QualityGates:
    """The three gates: a face below any of them is flagged low quality, never refused."""

    min_face_px: int = DEFAULT_MIN_FACE_PX  # shorter side of the face box, original pixels
    min_sharpness: float = DEFAULT_MIN_SHARPNESS  # variance of the Laplacian of the 150 px chip
    max_asymmetry: float = DEFAULT_MAX_ASYMMETRY  # 0 frontal … 1 profile


def quality_flags(figures: Mapping[str, float], gates: Gates) -> list[str]:
    """Plain reasons the face is low quality (empty when none); a missing figure flags nothing."""
    found = []
    box_px = _number(figures.get("box_px"))
    if box_px is not None and box_px < gates.min_face_px:
        found.append(f"the face is small ({box_px:.0f} px across; {gates.min_face_px} px or more matches better)")
    sharpness = _number(figures.get("sharpness"))
    if sharpness is not None and sharpness < gates.min_sharpness:
        found.append("the face is blurry")
    asymmetry = _number(figures.get("asymmetry"))
    if asymmetry is not None and asymmetry > gates.max_asymmetry:
        found.append("the face is turned away from the camera")
    return found


def known_figures(figures: object) -> dict[str, float]:
    """The known quality figures of a stored mapping, as floats; anything else is left out."""
    if not isinstance(figures, Mapping):
        return {}
    return {name: float(value) for name in FIGURES if (value := _number(figures.get(name))) is not None}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
