"""Embedding speed per face of every registered model, against the raw library calls, in one run.

Faces are found once (the service's default detection); then, face by face, each model's
`embed` is timed against the plain library doing the same work on the same face:

- dlib_face_recognition_resnet_model_v1: face_recognition.face_encodings on the box;
- dlib_resnet_v1_flip: dlib's 5-point shape, get_face_chip, compute_face_descriptor on
  the chip and its mirror in one batch;
- sface_2021dec_int8bq: OpenCV on the same BGR crop: FaceDetectorYN.detect on the crop
  shrunk to 320 px, alignCrop, FaceRecognizerSF.feature;
- fusion_dlib_sface: both raw sides above, one after the other.

The figure kept is each side's median over rounds (alternating ours and raw), in ms per
face. `--separation` also prints, per model, how far apart the same and different people
are on these photos (largest same-person distance, smallest different-person distance,
their ratio and d'); `--fallback` measures SFace's dlib 68-point landmark fallback
against YuNet's landmarks on every face. Neither is an accuracy claim for children.

Usage: .venv/bin/python bench/embedders.py [--faces DIR] [--rounds 5] [--separation] [--fallback] [--opencv-threads N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from matching.batch import PHOTO_SUFFIXES  # noqa: E402
from matching.embedders import available_embedders, get_embedder  # noqa: E402
from matching.faces import FaceSettings, detect  # noqa: E402
from matching.images import ImageLimits, load_image_file  # noqa: E402
from matching.model_files import SFACE, YUNET, verified_path  # noqa: E402

MODELS = ("dlib_face_recognition_resnet_model_v1", "dlib_resnet_v1_flip", "sface_2021dec_int8bq", "fusion_dlib_sface")


def default_faces() -> Path:
    shared = REPO.parent / "shared" / "testdata" / "faces" / "identities"
    if shared.is_dir():
        return shared
    from tests.support.faces import sdist_faces

    return sdist_faces()


def load_faces(source: Path) -> list[tuple[str, object, object]]:
    """(identity, decoded image, box) for the first face of every photo under `source`."""
    found = []
    for photo in sorted(p for p in source.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES):
        image = load_image_file(photo, ImageLimits())
        detections = detect(image, FaceSettings())
        if detections:
            found.append((photo.parent.name, image, detections[0][0]))
    return found


class Raw:
    """The plain library calls for each model, models loaded once."""

    def __init__(self):
        import cv2
        import dlib
        import face_recognition
        from face_recognition import api

        self.cv2, self.dlib_module, self.fr, self.api = cv2, dlib, face_recognition, api
        self.detector = cv2.FaceDetectorYN.create(str(verified_path(YUNET)), "", (320, 320), 0.5, 0.3, 20)
        self.recogniser = cv2.FaceRecognizerSF.create(str(verified_path(SFACE)), "")

    def dlib(self, pixels, box):
        return self.fr.face_encodings(pixels, [box.as_tuple()])[0]

    def flip(self, pixels, box):
        rect = self.dlib_module.rectangle(box.left, box.top, box.right, box.bottom)
        shape = self.api.pose_predictor_5_point(pixels, rect)
        chip = self.dlib_module.get_face_chip(pixels, shape, size=150, padding=0.25)
        plain, mirrored = self.api.face_encoder.compute_face_descriptor([chip, np.ascontiguousarray(chip[:, ::-1])])
        return (np.asarray(plain) + np.asarray(mirrored)) / 2

    def sface(self, pixels, box):
        cv2 = self.cv2
        margin = round(0.5 * max(box.right - box.left, box.bottom - box.top))
        top, left = max(0, box.top - margin), max(0, box.left - margin)
        crop = cv2.cvtColor(pixels[top : box.bottom + margin, left : box.right + margin], cv2.COLOR_RGB2BGR)
        scale = min(1.0, 320 / max(crop.shape[:2]))
        small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else crop
        self.detector.setInputSize((small.shape[1], small.shape[0]))
        _, rows = self.detector.detect(small)
        row = rows[0].copy()
        row[:14] /= scale
        return self.recogniser.feature(self.recogniser.alignCrop(crop, row))

    def fusion(self, pixels, box):
        return self.dlib(pixels, box), self.sface(pixels, box)

    def for_model(self, model_id: str):
        return {
            "dlib_face_recognition_resnet_model_v1": self.dlib,
            "dlib_resnet_v1_flip": self.flip,
            "sface_2021dec_int8bq": self.sface,
            "fusion_dlib_sface": self.fusion,
        }[model_id]


def speed(faces, rounds: int) -> None:
    import cv2

    raw = Raw()
    print(
        f"faces: {len(faces)}, rounds: {rounds}, OpenCV threads: {cv2.getNumThreads()}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '-')}"
    )
    print(f"{'model':<40}{'ours ms/face':>14}{'raw ms/face':>13}{'ours/raw':>10}")
    for model_id in MODELS:
        embedder, library = get_embedder(model_id), raw.for_model(model_id)
        embedder.embed(faces[0][1].pixels, [faces[0][2]])  # load the models before timing
        library(faces[0][1].pixels, faces[0][2])
        ours_times, raw_times = [], []
        for _ in range(rounds):
            for _, image, box in faces:
                start = time.perf_counter()
                embedder.embed(image.pixels, [box])
                ours_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                library(image.pixels, box)
                raw_times.append(time.perf_counter() - start)
        ours, theirs = statistics.median(ours_times) * 1000, statistics.median(raw_times) * 1000
        print(f"{model_id:<40}{ours:>14.1f}{theirs:>13.1f}{ours / theirs:>10.2f}")


def separation(faces) -> None:
    print(f"\n{'model':<40}{'same max':>10}{'diff min':>10}{'ratio':>8}{'d_prime':>9}  (pairs: same/diff)")
    for model_id in available_embedders():
        embedder = get_embedder(model_id)
        vectors = [embedder.embed(image.pixels, [box])[0] for _, image, box in faces]
        same, different = [], []
        for (a, va), (b, vb) in itertools.combinations(zip([f[0] for f in faces], vectors), 2):
            (same if a == b else different).append(float(np.linalg.norm(va - vb)))
        d_prime = (np.mean(different) - np.mean(same)) / np.sqrt((np.var(different) + np.var(same)) / 2)
        print(
            f"{model_id:<40}{max(same):>10.3f}{min(different):>10.3f}{min(different) / max(same):>8.2f}"
            f"{d_prime:>9.2f}  ({len(same)}/{len(different)})"
        )


def fallback(faces) -> None:
    """SFace with YuNet's landmarks against SFace with dlib's 68-point ones, on every face."""
    from matching import sface
    from matching.embedders import _landmarks_from_68

    models = sface.SFaceModels(verified_path(SFACE), verified_path(YUNET))
    found = sum(models.align(image.pixels, box, _landmarks_from_68).landmarks == "yunet" for _, image, box in faces)
    print(f"\nYuNet found the landmarks of {found} of {len(faces)} faces (the rest would take the fallback)")
    embedder = get_embedder("sface_2021dec_int8bq")
    yunet = [embedder.embed(image.pixels, [box])[0] for _, image, box in faces]
    saved = sface.MIN_OVERLAP
    sface.MIN_OVERLAP = 1.01  # no detection overlaps enough: every face takes the fallback
    try:
        derived = [embedder.embed(image.pixels, [box])[0] for _, image, box in faces]
    finally:
        sface.MIN_OVERLAP = saved
    shifts = [float(np.linalg.norm(a - b)) for a, b in zip(yunet, derived)]
    print(
        f"SFace landmarks, {len(faces)} faces: dlib-68 fallback moves a vector by median {np.median(shifts):.3f}, "
        f"max {max(shifts):.3f}"
    )
    labels = [f[0] for f in faces]
    for name, probes in (("yunet probe vs yunet gallery", yunet), ("fallback probe vs yunet gallery", derived)):
        same, different = [], []
        for i, j in itertools.permutations(range(len(faces)), 2):
            (same if labels[i] == labels[j] else different).append(float(np.linalg.norm(probes[i] - yunet[j])))
        print(f"  {name:<34} same max {max(same):.3f}  diff min {min(different):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--separation", action="store_true")
    parser.add_argument("--fallback", action="store_true")
    parser.add_argument(
        "--opencv-threads",
        type=int,
        default=None,
        help="OpenCV threads (the workers use 1: one process per core) [default: OpenCV's]",
    )
    args = parser.parse_args()
    if args.opencv_threads is not None:
        import cv2

        cv2.setNumThreads(args.opencv_threads)
    source = args.faces or default_faces()
    faces = load_faces(source)
    print(f"photos under {source}")
    speed(faces, args.rounds)
    if args.separation:
        separation(faces)
    if args.fallback:
        fallback(faces)
    print(f"\nload average: {os.getloadavg()[0]:.2f} (after the run; other work on the machine slows both sides)")


if __name__ == "__main__":
    main()
