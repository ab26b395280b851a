"""Where the tests find real faces, without keeping any photo in the repository.

`sdist_faces()` gives the test images shipped in the face_recognition 1.3.0 source
distribution on PyPI (obama, obama2, obama3, biden, partial faces, a 32-bit PNG),
downloaded once with pip into a cache outside the repository and checked against a
pinned digest (`service.demo.samples`, which `reunite demo` uses too). `shared_faces()`
gives ../shared/testdata/faces when it exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from service.demo.samples import sample_faces, samples_cache

REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    return Path(os.environ.get("REUNITE_TEST_CACHE") or samples_cache())


def sdist_faces() -> Path:
    """Folder with the sdist's test_images, fetched on first use (service.demo.samples)."""
    return sample_faces(cache_dir())


def shared_faces() -> Path | None:
    folder = REPO_ROOT.parent / "shared" / "testdata" / "faces"
    return folder if (folder / "identities").is_dir() else None


def shrunk_jpeg(path: Path, side: int = 600) -> bytes:
    """A photo re-encoded with its long side at most `side` px: the same faces, found faster."""
    import io

    from PIL import Image

    image = Image.open(path).convert("RGB")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue()
