"""Sample faces for the demo and the tests, fetched from the package registry, never kept in the repository.

The face_recognition 1.3.0 source distribution on PyPI ships a few test photos
(obama, obama2, obama3, biden, partial faces, a 32-bit PNG): public photos of adults,
so no child's photo is ever used for a demonstration. They are downloaded once with pip
into a cache folder, checked against a pinned sha256, and extracted there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "face_recognition-1.3.0.tar.gz"
SDIST_SHA256 = "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"
CACHE_ENV = "REUNITE_SAMPLES_CACHE"


class SamplesUnavailable(RuntimeError):
    """The sample photos could not be fetched or were not the pinned files; the message says why."""


def samples_cache() -> Path:
    """Where the sample photos are kept: $REUNITE_SAMPLES_CACHE, else ~/.cache/reunite/testfaces."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "reunite" / "testfaces")


def sample_faces(cache: Path | None = None) -> Path:
    """Folder with the sdist's test photos, fetched and verified on first use."""
    cache = cache or samples_cache()
    target = cache / "face_recognition-1.3.0-test_images"
    if (target / "obama.jpg").exists():
        return target
    archive = _download_sdist(cache)
    _extract_test_images(archive, target)
    return target


def _download_sdist(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / SDIST
    if not archive.exists():
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            fetched = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "face_recognition==1.3.0",
                    "-d",
                    scratch,
                ],
                capture_output=True,
                text=True,
            )
            if fetched.returncode != 0:
                raise SamplesUnavailable(
                    f"pip could not download {SDIST} from the package registry: {fetched.stderr.strip()[-300:]}"
                )
            os.replace(Path(scratch) / SDIST, archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        archive.unlink()
        raise SamplesUnavailable(f"{SDIST} has sha256 {digest}, not the pinned {SDIST_SHA256}; it was removed")
    return archive


def _extract_test_images(archive: Path, target: Path) -> None:
    partial = Path(tempfile.mkdtemp(dir=archive.parent))
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if "/tests/test_images/" in member.name and member.isfile():
                member.name = Path(member.name).name
                tar.extract(member, partial, filter="data")
    try:
        os.replace(partial, target)
    except OSError:  # a concurrent run got there first
        shutil.rmtree(partial)
