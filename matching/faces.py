"""Face detection, quality figures and 128-d embeddings with `face_recognition` (dlib).

`analyse_image` takes a decoded photo and returns one `Face` per detected face:
its box in original-image pixels, quality figures a reviewer can read, and a
float32 embedding stamped with the model id and version that produced it, so that
embeddings of different models are never compared and a model change can be
migrated. Detection runs on the downscaled working copy (bounded cost); landmarks
and embeddings run on the full-resolution pixels (best detail).

The vectors come from an embedder (`matching.embedders`): the default dlib ResNet
unless another is passed; `embed_again` gives already-found faces another model's
vectors without detecting them again (a model migration embeds with both).

Choices, measured on the shared faces (see docs/performance.md):
- Landmarks: faces are aligned for the network with the 5-point model, the
  alignment dlib's reference pipeline and face_recognition's default use (68-point
  alignment moves embeddings by about 0.12, a third of a same-person distance);
  the 68-point model runs as well, about 1 ms a face, only to measure pose.
- Jitter: 1 (none) for probes and enrolment by default. Jittering re-embeds N
  perturbed copies and averages them, multiplying the cost by N for a small
  robustness gain; it is a setting (`enrol_jitters`) for galleries that can
  afford it, and every embedding records the jitter it was made with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np
from PIL import ImageFile

from matching.images import DecodedImage, InputRejected
from matching.quality import (
    DEFAULT_MAX_ASYMMETRY,
    DEFAULT_MIN_FACE_PX,
    DEFAULT_MIN_SHARPNESS,
    Gates,
    quality_flags,
)

# face_recognition switches Pillow to accept truncated files for everyone on
# import; Reunite refuses truncated photos, so the setting is put back.
_truncated_setting = ImageFile.LOAD_TRUNCATED_IMAGES
import dlib  # noqa: E402
import face_recognition  # noqa: E402
from face_recognition import api as fr_api  # noqa: E402

ImageFile.LOAD_TRUNCATED_IMAGES = _truncated_setting

from matching.embedders import DEFAULT_MODEL_ID, Embedder, default_embedder  # noqa: E402
from matching.embedders import model_version as model_version  # noqa: E402  (re-exported for callers)

MODEL_ID = DEFAULT_MODEL_ID
EMBEDDING_DIM = 128
Purpose = Literal["enrol", "probe"]


class NoFaceFound(InputRejected):
    code = "no_face"


class TooManyFaces(InputRejected):
    code = "too_many_faces"


@dataclass(frozen=True)
class FaceSettings:
    """How faces are found and embedded; one instance per process."""

    detector: Literal["hog", "cnn"] = "hog"
    # One upsampling of the working copy finds faces down to about 40 px there.
    upsample: int = 1
    max_faces: int = 8
    enrol_jitters: int = 1
    probe_jitters: int = 1
    # Quality gates (matching.quality): a face below one is flagged low quality, never refused.
    min_face_px: int = DEFAULT_MIN_FACE_PX
    min_sharpness: float = DEFAULT_MIN_SHARPNESS
    max_asymmetry: float = DEFAULT_MAX_ASYMMETRY

    def jitters(self, purpose: Purpose) -> int:
        return self.enrol_jitters if purpose == "enrol" else self.probe_jitters


@dataclass(frozen=True)
class Box:
    """A face box in original-image pixels, in face_recognition's (top, right, bottom, left) order."""

    top: int
    right: int
    bottom: int
    left: int

    @property
    def size(self) -> int:
        return min(self.right - self.left, self.bottom - self.top)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.top, self.right, self.bottom, self.left)


@dataclass(frozen=True)
class FaceQuality:
    """Figures a reviewer and the quality gates read; none of them identifies anyone."""

    box_px: int  # shorter side of the face box, original pixels
    sharpness: float  # variance of the Laplacian of the aligned 150 px face chip
    asymmetry: float  # 0 frontal … 1 full profile, from eye-corner to nose distances
    detection_score: float  # HOG margin or CNN confidence

    def flags(self, gates: Gates) -> list[str]:
        """Plain-language reasons this face is low quality (empty when none); never a refusal."""
        return quality_flags(asdict(self), gates)


@dataclass(frozen=True)
class Face:
    box: Box
    quality: FaceQuality
    embedding: np.ndarray = field(repr=False)  # (128,) float32
    model_id: str
    model_version: str
    jitters: int

    def low_quality(self, gates: Gates) -> bool:
        return bool(self.quality.flags(gates))


def analyse_image(
    image: DecodedImage, purpose: Purpose, settings: FaceSettings = FaceSettings(), embedder: Embedder | None = None
) -> list[Face]:
    """Detect, measure and embed every face (default embedder unless given); refuse none or too many."""
    detections = detect(image, settings)
    if not detections:
        raise NoFaceFound("No face was found in this photo. Please send a photo where the face is clearly visible.")
    if len(detections) > settings.max_faces:
        raise TooManyFaces(
            f"This photo shows {len(detections)} faces; at most {settings.max_faces} are searched. "
            "Please crop the photo to the person concerned."
        )
    return embed(image, detections, purpose, settings, embedder)


def detect(image: DecodedImage, settings: FaceSettings) -> list[tuple[Box, float]]:
    """Face boxes (original pixels) and detection scores, found on the working copy."""
    if settings.detector == "cnn":
        found = [(d.rect, float(d.confidence)) for d in fr_api.cnn_face_detector(image.working, settings.upsample)]
    else:
        rects, scores, _ = fr_api.face_detector.run(image.working, settings.upsample, 0.0)
        found = list(zip(rects, (float(s) for s in scores)))
    return [(_to_original(rect, image), score) for rect, score in found]


def embed(
    image: DecodedImage,
    detections: list[tuple[Box, float]],
    purpose: Purpose,
    settings: FaceSettings,
    embedder: Embedder | None = None,
) -> list[Face]:
    """Landmarks, quality and embeddings for known boxes, all faces in one network batch."""
    embedder = embedder or default_embedder()
    # Quality is measured the same way whatever the embedder: on the 5-point chip and 68-point pose.
    shapes = dlib.full_object_detections()
    poses = []
    for box, _ in detections:
        rect = dlib.rectangle(box.left, box.top, box.right, box.bottom)
        shapes.append(fr_api.pose_predictor_5_point(image.pixels, rect))
        poses.append(fr_api.pose_predictor_68_point(image.pixels, rect))
    jitters = settings.jitters(purpose)
    vectors = embedder.embed(image.pixels, [box for box, _ in detections], jitters=jitters)
    chips = dlib.get_face_chips(image.pixels, shapes, size=150)
    version = embedder.version
    faces = []
    for (box, score), pose, vector, chip in zip(detections, poses, vectors, chips):
        quality = FaceQuality(
            box_px=box.size,
            sharpness=round(_sharpness(chip), 2),
            asymmetry=round(_asymmetry(pose), 3),
            detection_score=round(score, 3),
        )
        faces.append(
            Face(
                box=box,
                quality=quality,
                embedding=np.asarray(vector, dtype=np.float32),
                model_id=embedder.id,
                model_version=version,
                jitters=jitters,
            )
        )
    return faces


def embed_again(image: DecodedImage, faces: Sequence[Face], embedder: Embedder) -> list[Face]:
    """The same faces (boxes, quality, jitters) with `embedder`'s vectors, without detecting again."""
    faces = list(faces)
    if not faces:
        return []
    jitters = faces[0].jitters
    vectors = embedder.embed(image.pixels, [face.box for face in faces], jitters=jitters)
    return [
        replace(face, embedding=vector, model_id=embedder.id, model_version=embedder.version)
        for face, vector in zip(faces, vectors)
    ]


def _to_original(rect: dlib.rectangle, image: DecodedImage) -> Box:
    """Map a working-copy rectangle to original pixels, clipped to the photo."""
    factor = 1.0 / image.scale
    return Box(
        top=max(0, round(rect.top() * factor)),
        right=min(image.width, round(rect.right() * factor)),
        bottom=min(image.height, round(rect.bottom() * factor)),
        left=max(0, round(rect.left() * factor)),
    )


def _sharpness(chip: np.ndarray) -> float:
    """Variance of a 4-neighbour Laplacian on the grey chip: low means blurred."""
    grey = np.asarray(chip, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1]
    return float(laplacian.var())


def _asymmetry(pose: dlib.full_object_detection) -> float:
    """How far the nose tip sits from the middle of the eyes (68-point model): 0 frontal, near 1 in profile."""

    def point(index: int) -> np.ndarray:
        return np.array([pose.part(index).x, pose.part(index).y], dtype=np.float64)

    left_eye, right_eye, nose = point(36), point(45), point(30)
    to_left = np.linalg.norm(nose - left_eye)
    to_right = np.linalg.norm(nose - right_eye)
    total = to_left + to_right
    return float(abs(to_left - to_right) / total) if total > 0 else 1.0


def raw_library_embeddings(pixels: np.ndarray) -> list[np.ndarray]:
    """The plain face_recognition calls, for benchmarks and equivalence tests."""
    locations = face_recognition.face_locations(pixels)
    return face_recognition.face_encodings(pixels, locations)
