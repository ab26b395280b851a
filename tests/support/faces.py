"""Where the tests find real faces, without keeping any photo in the repository.

`sdist_faces()` gives the test images shipped in the face_recognition 1.3.0 source
distribution on PyPI (obama, obama2, obama3, biden, partial faces, a 32-bit PNG),
downloaded once with pip into a cache outside the repository and checked against a
pinned digest. `shared_faces()` gives ../shared/testdata/faces when it exists.
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
REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "reunite" / "testfaces"
    return Path(os.environ.get("REUNITE_TEST_CACHE", default))


def sdist_faces() -> Path:
    """Folder with the sdist's test_images, fetched on first use."""
    target = cache_dir() / "face_recognition-1.3.0-test_images"
    if (target / "obama.jpg").exists():
        return target
    archive = _download_sdist(cache_dir())
    _extract_test_images(archive, target)
    return target


def shared_faces() -> Path | None:
    folder = REPO_ROOT.parent / "shared" / "testdata" / "faces"
    return folder if (folder / "identities").is_dir() else None


def _download_sdist(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / SDIST
    if not archive.exists():
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                 "face_recognition==1.3.0", "-d", scratch],
                check=True,
            )
            os.replace(Path(scratch) / SDIST, archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        archive.unlink()
        raise RuntimeError(f"{SDIST} digest {digest} is not the pinned one; removed it, run again")
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


def shrunk_jpeg(path: Path, side: int = 600) -> bytes:
    """A photo re-encoded with its long side at most `side` px: the same faces, found faster."""
    import io

    from PIL import Image

    image = Image.open(path).convert("RGB")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue()
