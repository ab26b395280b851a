"""Face embedders: the interface every embedding model implements, and the registry of them.

An embedder turns faces, given as boxes in a photo's full-resolution RGB pixels, into
fixed-length float32 vectors compared with its `metric`. Vectors of different
embedders live in different spaces and are never compared: every stored embedding,
index and calibration is kept per embedder `id`, and `version` changes whenever the
weights do. A better model is adopted by registering it here and re-embedding the
gallery with it (`reunite match reembed --model ID`).

Registered:
- `dlib_face_recognition_resnet_model_v1` (the default): dlib's ResNet on faces aligned
  with the 5-point landmarks, as dlib's reference pipeline and face_recognition do.
- `dlib_resnet_v1_align68`: the same network on faces aligned with the 68-point
  landmarks; see its class for why it is here.
- `dlib_resnet_v1_flip`: the default, averaged with the embedding of the mirrored face.
- `sface_2021dec_int8bq`: OpenCV Zoo's SFace (Apache-2.0) on dlib's boxes, aligned with
  YuNet's landmarks (matching.sface); its weights come from `reunite models install`.
- `fusion_dlib_sface`: the default and SFace together (score-level fusion).

Every embedder carries its registry entry (`weights`, `training_data`; `registry_entry`
gives the whole entry with licences and provenance), read by the model card. Models
load on first use (not on import), so reading the registry, an id or a version costs
nothing beyond checking the weights' sha256; `matching.faces` loads dlib when imported.
A model whose weight files are missing or altered stays registered but refuses to give
a version or a vector (`ModelNotInstalled`, which says how to install it).
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, Protocol

import numpy as np

from matching.calibration import DEFAULT_REVIEW_THRESHOLD
from matching.model_files import (
    DLIB_LANDMARKS_5,
    DLIB_LANDMARKS_68,
    DLIB_RESNET,
    SFACE,
    YUNET,
    ModelFileError,
    WeightFile,
    file_sha256,
    models_dir,
    verified_once,
)
from matching.sface import five_points_from_68, unit  # numpy only: OpenCV loads with the SFace model

Metric = Literal["euclidean"]
DEFAULT_MODEL_ID = "dlib_face_recognition_resnet_model_v1"


class FaceBox(Protocol):
    """A face box in pixels (`matching.faces.Box` is one); read-only, as a frozen dataclass is."""

    @property
    def top(self) -> int: ...
    @property
    def right(self) -> int: ...
    @property
    def bottom(self) -> int: ...
    @property
    def left(self) -> int: ...


class UnknownEmbedder(LookupError):
    """No embedder is registered under the given id."""

    def __init__(self, model_id: str):
        self.model_id = model_id
        known = ", ".join(available_embedders())
        super().__init__(f"unknown embedding model {model_id!r}; available: {known}")


class ModelNotInstalled(UnknownEmbedder):
    """Registered, but its weight files are missing or altered here: as unusable as an unknown id."""

    def __init__(self, model_id: str, problem: str):
        self.model_id = model_id
        self.problem = problem
        LookupError.__init__(self, f"The embedding model {model_id} cannot be used on this machine. {problem}")


class Embedder(ABC):
    """One embedding model. Instances are stateless and shared by a whole process."""

    id: str
    dimension: int
    metric: Metric = "euclidean"
    # The registry entry: every file of weights the vectors depend on, and what they were trained on.
    weights: tuple[WeightFile, ...] = ()
    training_data: str = ""
    # A threshold published for this model's distances, used until it is calibrated here:
    # face_recognition's 0.6 for dlib's ResNet. None: nothing published, calibrate first.
    provisional_threshold: float | None = DEFAULT_REVIEW_THRESHOLD

    @property
    @abstractmethod
    def version(self) -> str:
        """Identifies the exact weights; stored beside every embedding."""

    def check_installed(self) -> None:  # noqa: B027 (optional hook: most models have nothing to check)
        """Raise ModelNotInstalled when a weight file this model loads itself is missing or altered."""

    @abstractmethod
    def embed(self, image: np.ndarray, boxes: Sequence[FaceBox], *, jitters: int = 1) -> list[np.ndarray]:
        """One (dimension,) float32 vector per box, in order, for an RGB uint8 image (H, W, 3).

        `jitters` > 1 averages the embeddings of that many perturbed copies (slower,
        slightly more robust); 1 means none.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


class DlibResNet(Embedder):
    """dlib's face recognition ResNet (128-d, Euclidean) on faces aligned with 5 landmarks.

    The default model: the alignment dlib's reference pipeline and face_recognition
    use, so these embeddings equal face_recognition's own `face_encodings`.
    """

    id = DEFAULT_MODEL_ID
    dimension = 128
    landmarks: Literal[5, 68] = 5
    weights = (DLIB_RESNET, DLIB_LANDMARKS_5)
    training_data = DLIB_RESNET.training_data

    @property
    def version(self) -> str:
        return model_version()

    def embed(self, image: np.ndarray, boxes: Sequence[FaceBox], *, jitters: int = 1) -> list[np.ndarray]:
        _check_inputs(image, jitters)
        if not boxes:
            return []
        models = _dlib_models()
        predictor = models.pose_predictor_5_point if self.landmarks == 5 else models.pose_predictor_68_point
        shapes = models.dlib.full_object_detections()
        for box in boxes:
            shapes.append(predictor(image, models.dlib.rectangle(box.left, box.top, box.right, box.bottom)))
        # One network batch for every face of the photo.
        vectors = models.face_encoder.compute_face_descriptor(image, shapes, jitters)
        return [np.asarray(vector, dtype=np.float32) for vector in vectors]


class DlibResNetAlign68(DlibResNet):
    """The same dlib ResNet, on faces aligned with the 68-point landmarks instead of 5.

    This is not a better model. It exists as a real alternative embedding space (the
    different alignment moves embeddings by about 0.12, a third of a same-person
    distance, while still separating people), so that a model migration can be run
    and tested end to end on real faces without a fake model.
    """

    id = "dlib_resnet_v1_align68"
    landmarks = 68

    weights = (DLIB_RESNET, DLIB_LANDMARKS_68)

    @property
    def version(self) -> str:
        return f"{model_version()}+lm68.{_file_digest(_weights().pose_predictor_model_location())[:12]}"


class DlibResNetFlip(DlibResNet):
    """The default model with test-time flip augmentation: the aligned chip and its mirror, averaged.

    The network sees the same 150 px chip dlib's own call cuts (5-point alignment, padding
    0.25) and its left-right mirror, in one batch; the vector is the mean of the two.
    Faces are not quite symmetric, so the mirror is a second, slightly different view of
    the same person. These vectors lie 0.06 to 0.14 from the default's (docs/accuracy.md,
    "Embedders"), so this is a model of its own, adopted by re-embedding.
    """

    id = "dlib_resnet_v1_flip"

    @property
    def version(self) -> str:
        return f"{model_version()}+flip"

    def embed(self, image: np.ndarray, boxes: Sequence[FaceBox], *, jitters: int = 1) -> list[np.ndarray]:
        _check_inputs(image, jitters)
        if not boxes:
            return []
        chips = aligned_chips(image, boxes)
        mirrored = [np.ascontiguousarray(chip[:, ::-1]) for chip in chips]
        vectors = _dlib_models().face_encoder.compute_face_descriptor([*chips, *mirrored], jitters)
        count = len(chips)
        return [
            ((np.asarray(plain, dtype=np.float64) + np.asarray(flipped, dtype=np.float64)) / 2).astype(np.float32)
            for plain, flipped in zip(vectors[:count], vectors[count:])
        ]


def aligned_chips(image: np.ndarray, boxes: Sequence[FaceBox]) -> list[np.ndarray]:
    """The 150 px chips dlib's ResNet embeds: 5-point alignment, padding 0.25, as compute_face_descriptor cuts them."""
    models = _dlib_models()
    shapes = models.dlib.full_object_detections()
    for box in boxes:
        shapes.append(
            models.pose_predictor_5_point(image, models.dlib.rectangle(box.left, box.top, box.right, box.bottom))
        )
    return list(models.dlib.get_face_chips(image, shapes, size=150, padding=0.25))


class SFace(Embedder):
    """OpenCV Zoo's SFace (MobileFaceNet, 128-d, Apache-2.0), int8 block-quantised, on dlib's face boxes.

    For each box, YuNet finds the five alignment landmarks in a crop around it (dlib's
    68-point landmarks stand in where YuNet finds no face there; see matching.sface),
    `alignCrop` warps the BGR crop to 112 px and the feature is L2-normalised, so the
    service's Euclidean distances order pairs exactly as SFace's cosine similarity does.
    Its distances run from 0 to 2, not on dlib's scale: calibrate it before switching.
    """

    id = "sface_2021dec_int8bq"
    dimension = 128
    weights = (SFACE, YUNET, DLIB_LANDMARKS_68)
    training_data = SFACE.training_data
    # OpenCV's published match threshold for SFace features: L2 distance 1.128 between unit
    # vectors (cosine similarity 0.363), set for adults; calibrate before trusting it here.
    provisional_threshold = 1.128

    @property
    def version(self) -> str:
        self.check_installed()
        import cv2

        return f"sface.sha256.{SFACE.sha256[:16]}+yunet.{YUNET.sha256[:8]}+cv{cv2.__version__}"

    def check_installed(self) -> None:
        _require_opencv()
        try:
            _opencv_files_checked(models_dir())
        except ModelFileError as error:
            raise ModelNotInstalled(self.id, str(error)) from None

    def embed(self, image: np.ndarray, boxes: Sequence[FaceBox], *, jitters: int = 1) -> list[np.ndarray]:
        _check_inputs(image, jitters)
        if jitters != 1:
            raise ValueError(f"{self.id} does not jitter: set the enrolment and probe jitters to 1 for this model")
        if not boxes:
            return []
        self.check_installed()
        models = _sface_models(models_dir())
        return [models.feature(models.align(image, box, _landmarks_from_68).chip) for box in boxes]


class Fusion(Embedder):
    """Score-level fusion: each part's vector L2-normalised, concatenated, divided by sqrt(parts).

    The fused vector has unit length, and its squared distance is the mean of the parts'
    squared distances between unit vectors, so distances stay on the 0 to 2 scale of one
    normalised model: two faces are close only when every part finds them close.
    """

    provisional_threshold = None  # nothing published for a fusion: it must be calibrated

    def __init__(self, model_id: str, parts: Sequence[Embedder], training_data: str):
        self.id = model_id
        self.parts = tuple(parts)
        self.dimension = sum(part.dimension for part in self.parts)
        self.weights = tuple(dict.fromkeys(w for part in self.parts for w in part.weights))
        self.training_data = training_data

    @property
    def version(self) -> str:
        described = "|".join(f"{part.id}={part.version}" for part in self.parts)
        return f"fusion.sha256.{hashlib.sha256(described.encode()).hexdigest()[:24]}"

    def check_installed(self) -> None:
        for part in self.parts:
            try:
                part.check_installed()
            except ModelNotInstalled as error:
                raise ModelNotInstalled(self.id, error.problem) from None

    def embed(self, image: np.ndarray, boxes: Sequence[FaceBox], *, jitters: int = 1) -> list[np.ndarray]:
        _check_inputs(image, jitters)
        if not boxes:
            return []
        self.check_installed()
        per_part = [part.embed(image, boxes, jitters=jitters) for part in self.parts]
        scale = 1.0 / math.sqrt(len(self.parts))
        return [
            np.concatenate([unit(vectors[face]) for vectors in per_part]) * np.float32(scale)
            for face in range(len(boxes))
        ]


# --- registry -------------------------------------------------------------------------------

_REGISTRY: dict[str, Embedder] = {}


def register_embedder(embedder: Embedder) -> Embedder:
    """Make an embedder available by its id (ids are unique and never reused)."""
    if not embedder.id or len(embedder.id) > 64:
        raise ValueError("an embedder id is 1 to 64 characters")
    if embedder.id in _REGISTRY:
        raise ValueError(f"an embedder with id {embedder.id!r} is already registered")
    if embedder.metric != "euclidean":
        raise ValueError(f"unsupported metric {embedder.metric!r}: the index compares Euclidean distances")
    if not embedder.weights or not embedder.training_data:
        raise ValueError(f"{embedder.id}: a registered model names its weight files and its training data")
    _REGISTRY[embedder.id] = embedder
    return embedder


def get_embedder(model_id: str) -> Embedder:
    try:
        return _REGISTRY[model_id]
    except KeyError:
        raise UnknownEmbedder(model_id) from None


def available_embedders() -> tuple[str, ...]:
    """Registered ids, the default first."""
    return tuple(sorted(_REGISTRY, key=lambda model_id: (model_id != DEFAULT_MODEL_ID, model_id)))


def default_embedder() -> Embedder:
    return _REGISTRY[DEFAULT_MODEL_ID]


def registry_entry(embedder: Embedder) -> dict[str, Any]:
    """What a reviewer or auditor reads about a model: version, licences, provenance, training data."""
    try:
        version, problem = embedder.version, None
    except ModelNotInstalled as error:
        version, problem = None, str(error)
    return {
        "id": embedder.id,
        "version": version,
        "installed": problem is None,
        "problem": problem,
        "dimension": embedder.dimension,
        "metric": embedder.metric,
        "licence": " AND ".join(dict.fromkeys(weight.licence for weight in embedder.weights)),
        "training_data": embedder.training_data,
        "weights": [
            {
                "file": w.name,
                "sha256": w.sha256,
                "bytes": w.size,
                "licence": w.licence,
                "source": w.source,
                "upstream": w.upstream,
                "training_data": w.training_data,
            }
            for w in embedder.weights
        ],
    }


def model_registry() -> list[dict[str, Any]]:
    """Every registered model's entry, the default first."""
    return [registry_entry(_REGISTRY[model_id]) for model_id in available_embedders()]


register_embedder(DlibResNet())
register_embedder(DlibResNetAlign68())
register_embedder(DlibResNetFlip())
register_embedder(SFace())
register_embedder(
    Fusion(
        "fusion_dlib_sface",
        (_REGISTRY[DEFAULT_MODEL_ID], _REGISTRY[SFace.id]),
        training_data=f"{DLIB_RESNET.training_data} SFace: {SFACE.training_data}",
    )
)


# --- versions and models -----------------------------------------------------------------------


@cache
def model_version() -> str:
    """Package version plus a digest of the ResNet weights: changes whenever the model does."""
    digest = _file_digest(_weights().face_recognition_model_location())
    package = metadata.version("face-recognition-models")
    return f"{package}+sha256.{digest[:16]}"


@cache
def _file_digest(path: str) -> str:
    return file_sha256(Path(path))


def _weights():
    import face_recognition_models

    return face_recognition_models


@cache
def _dlib_models():
    """face_recognition's loaded models (about a second, once per process)."""
    from PIL import ImageFile

    # face_recognition switches Pillow to accept truncated files for everyone on
    # import; Reunite refuses truncated photos, so the setting is put back.
    truncated_setting = ImageFile.LOAD_TRUNCATED_IMAGES
    import dlib
    from face_recognition import api

    ImageFile.LOAD_TRUNCATED_IMAGES = truncated_setting

    return SimpleNamespace(
        dlib=dlib,
        pose_predictor_5_point=api.pose_predictor_5_point,
        pose_predictor_68_point=api.pose_predictor_68_point,
        face_encoder=api.face_encoder,
    )


def _require_opencv() -> None:
    """OpenCV is a project dependency; say so plainly if an install lacks it."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        raise ModelNotInstalled(
            SFace.id,
            "OpenCV is not installed: run `pip install "
            "'opencv-python-headless>=4.8,<5'` (OpenCV 5 cannot load these models).",
        ) from None


def _opencv_files_checked(folder) -> tuple[Any, Any]:
    return verified_once(SFACE, folder), verified_once(YUNET, folder)


@cache
def _sface_models(folder):
    """SFace and YuNet, loaded once per process and models folder (files verified first)."""
    from matching.sface import SFaceModels

    sface, yunet = _opencv_files_checked(folder)
    return SFaceModels(sface, yunet)


def _landmarks_from_68(image: np.ndarray, box: FaceBox) -> np.ndarray:
    """SFace's five alignment points from dlib's 68-point landmarks, where YuNet found no face."""
    models = _dlib_models()
    shape = models.pose_predictor_68_point(image, models.dlib.rectangle(box.left, box.top, box.right, box.bottom))
    return five_points_from_68(np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float32))


def _check_inputs(image: np.ndarray, jitters: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("an embedder takes an RGB image as a uint8 array of shape (height, width, 3)")
    if not isinstance(jitters, int) or jitters < 1:
        raise ValueError("jitters must be a whole number of at least 1")
