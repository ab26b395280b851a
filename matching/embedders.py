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

The dlib models load on first use (not on import), so reading the registry, an id or
a version costs nothing; `matching.faces` loads them when it is imported.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cache
from importlib import metadata
from types import SimpleNamespace
from typing import Literal, Protocol

import numpy as np

Metric = Literal["euclidean"]
DEFAULT_MODEL_ID = "dlib_face_recognition_resnet_model_v1"


class FaceBox(Protocol):
    """A face box in pixels (`matching.faces.Box` is one)."""

    top: int
    right: int
    bottom: int
    left: int


class UnknownEmbedder(LookupError):
    """No embedder is registered under the given id."""

    def __init__(self, model_id: str):
        self.model_id = model_id
        known = ", ".join(available_embedders())
        super().__init__(f"unknown embedding model {model_id!r}; available: {known}")


class Embedder(ABC):
    """One embedding model. Instances are stateless and shared by a whole process."""

    id: str
    dimension: int
    metric: Metric = "euclidean"

    @property
    @abstractmethod
    def version(self) -> str:
        """Identifies the exact weights; stored beside every embedding."""

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

    @property
    def version(self) -> str:
        return f"{model_version()}+lm68.{_file_digest(_weights().pose_predictor_model_location())[:12]}"


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


register_embedder(DlibResNet())
register_embedder(DlibResNetAlign68())


# --- versions and models -----------------------------------------------------------------------


@cache
def model_version() -> str:
    """Package version plus a digest of the ResNet weights: changes whenever the model does."""
    digest = _file_digest(_weights().face_recognition_model_location())
    package = metadata.version("face-recognition-models")
    return f"{package}+sha256.{digest[:16]}"


@cache
def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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

    return SimpleNamespace(dlib=dlib, pose_predictor_5_point=api.pose_predictor_5_point,
                           pose_predictor_68_point=api.pose_predictor_68_point, face_encoder=api.face_encoder)


def _check_inputs(image: np.ndarray, jitters: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("an embedder takes an RGB image as a uint8 array of shape (height, width, 3)")
    if not isinstance(jitters, int) or jitters < 1:
        raise ValueError("jitters must be a whole number of at least 1")
