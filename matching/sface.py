"""SFace (OpenCV Zoo) features for faces dlib has already found: YuNet landmarks, `alignCrop`, `feature`.

SFace was trained on faces aligned by five landmarks (eye centres, nose tip, mouth
corners) warped to a 112 px template, the landmarks OpenCV's YuNet detector gives. The
service keeps dlib's detector (so every model sees the same faces and quality figures),
so for each dlib box this module runs YuNet on a crop around the box and takes the
detection that overlaps the box best. When YuNet finds nothing there, the five points are
derived from dlib's 68-point landmarks instead (eye centres as the mean of each eye's six
points, nose tip 30, mouth corners 48 and 54). Measured on the shared faces
(docs/accuracy.md, "Embedders"): YuNet found every face; the derived points move a vector
by 0.30 (median) but keep people apart as well as YuNet's do.

OpenCV takes BGR images: every crop is converted from the service's RGB first. The raw
feature is not unit length; callers compare Euclidean distances, so `feature` returns it
L2-normalised, which makes the distance a function of the cosine similarity SFace was
trained for (d^2 = 2 - 2 cos).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# A crop of the box plus this share of its longer side on every side holds the whole head.
CROP_MARGIN = 0.5
# YuNet runs on the crop shrunk to at most this side (its cost grows with the input area; the
# face is then about 160 px, and YuNet found every face of the shared set). Alignment uses the
# full-size crop.
DETECT_MAX_SIDE = 320
# dlib has already decided there is a face, so YuNet's own threshold can be lenient.
DETECT_SCORE = 0.5
# A YuNet box must overlap the dlib box at least this much (intersection over union) to be
# the same face; measured overlaps of the same face are 0.51 to 0.77 (YuNet's boxes are taller).
MIN_OVERLAP = 0.3

FallbackLandmarks = Callable[[np.ndarray, Any], np.ndarray]  # (RGB image, box) -> (5, 2) points in image pixels


@dataclass(frozen=True)
class Aligned:
    """An aligned 112 px BGR face and where its landmarks came from."""

    chip: np.ndarray
    landmarks: str  # "yunet" or "dlib68"


class SFaceModels:
    """The YuNet detector and the SFace recogniser of one process (OpenCV objects are not shareable)."""

    def __init__(self, sface: Path, yunet: Path):
        import cv2

        self._cv2 = cv2
        self.detector = cv2.FaceDetectorYN.create(
            str(yunet), "", (DETECT_MAX_SIDE, DETECT_MAX_SIDE), DETECT_SCORE, 0.3, 20
        )
        self.recogniser = cv2.FaceRecognizerSF.create(str(sface), "")

    def align(self, rgb: np.ndarray, box: Any, fallback: FallbackLandmarks) -> Aligned:
        """The face in `box` aligned to SFace's template, from a BGR crop around it."""
        top, left, bottom, right = _crop_bounds(rgb.shape, box)
        crop = np.ascontiguousarray(rgb[top:bottom, left:right, ::-1])  # RGB -> BGR
        local_box = (box.left - left, box.top - top, box.right - box.left, box.bottom - box.top)
        row = self._yunet_row(crop, local_box)
        source = "yunet"
        if row is None:
            points = np.asarray(fallback(rgb, box), dtype=np.float32) - np.array([left, top], dtype=np.float32)
            row = np.concatenate([np.asarray(local_box, dtype=np.float32), points.ravel(), [0.0]]).astype(np.float32)
            source = "dlib68"
        return Aligned(chip=self.recogniser.alignCrop(crop, row), landmarks=source)

    def feature(self, chip: np.ndarray) -> np.ndarray:
        """The 128-d SFace feature of an aligned BGR chip, L2-normalised."""
        raw = np.asarray(self.recogniser.feature(chip), dtype=np.float32).ravel()
        return unit(raw)

    def _yunet_row(self, crop: np.ndarray, local_box: tuple[int, int, int, int]) -> np.ndarray | None:
        """YuNet's detection row (box, 5 landmarks, score) overlapping the box best, in crop pixels."""
        height, width = crop.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
        small = (
            crop
            if scale == 1.0
            else self._cv2.resize(
                crop, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=self._cv2.INTER_AREA
            )
        )
        self.detector.setInputSize((small.shape[1], small.shape[0]))
        _, found = self.detector.detect(small)
        if found is None or len(found) == 0:
            return None
        rows = np.array(found, dtype=np.float32)
        rows[:, 0:14:2] *= width / small.shape[1]  # x, width and landmark x back to full-size crop pixels
        rows[:, 1:14:2] *= height / small.shape[0]  # y, height and landmark y
        overlaps = [box_overlap(tuple(row[:4]), local_box) for row in rows]
        best = int(np.argmax(overlaps))
        return rows[best] if overlaps[best] >= MIN_OVERLAP else None


def five_points_from_68(points: np.ndarray) -> np.ndarray:
    """YuNet's five landmarks (right eye, left eye, nose tip, right and left mouth corner) from dlib's 68."""
    points = np.asarray(points, dtype=np.float32)
    return np.stack([points[36:42].mean(axis=0), points[42:48].mean(axis=0), points[30], points[48], points[54]])


def box_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    across = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    down = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = across * down
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


def unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("the model gave an empty vector for this face")
    return (np.asarray(vector, dtype=np.float32) / np.float32(norm)).astype(np.float32)


def _crop_bounds(shape: tuple[int, ...], box: Any) -> tuple[int, int, int, int]:
    height, width = shape[:2]
    margin = round(CROP_MARGIN * max(box.right - box.left, box.bottom - box.top))
    return (
        max(0, box.top - margin),
        max(0, box.left - margin),
        min(height, box.bottom + margin),
        min(width, box.right + margin),
    )
