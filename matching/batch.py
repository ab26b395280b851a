"""Embedding many photo files in parallel, one result per file.

Detection and embedding are CPU-bound and dlib releases no useful parallelism of
its own here, so `embed_files` spreads files over worker processes, each loading
the models once. A file that cannot be used yields a result with the refusal
message instead of raising, so one bad photo never stops a batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from matching.embedders import get_embedder
from matching.faces import Face, FaceSettings, Purpose, analyse_image
from matching.images import ImageLimits, InputRejected, load_image_file

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class FileResult:
    path: Path
    faces: tuple[Face, ...] = ()
    refusal_code: str | None = None
    refusal: str | None = None  # plain-language reason when the file gave no faces

    @property
    def ok(self) -> bool:
        return self.refusal is None


@dataclass(frozen=True)
class BatchJob:
    purpose: Purpose
    settings: FaceSettings = FaceSettings()
    limits: ImageLimits = ImageLimits()
    model_id: str | None = None  # a registered embedder's id; None: the default model


def analyse_file(path: Path, job: BatchJob) -> FileResult:
    """Decode and analyse one file; refusals become results, not exceptions."""
    try:
        image = load_image_file(path, job.limits)
        faces = analyse_image(image, job.purpose, job.settings, get_embedder(job.model_id) if job.model_id else None)
    except InputRejected as refusal:
        return FileResult(path=path, refusal_code=refusal.code, refusal=refusal.message)
    except OSError as exc:
        return FileResult(path=path, refusal_code="unreadable", refusal=f"The file cannot be read ({exc.strerror}).")
    return FileResult(path=path, faces=tuple(faces))


def embed_files(paths: Iterable[Path], job: BatchJob, workers: int | None = None) -> Iterator[FileResult]:
    """Analyse files on `workers` processes (default: every core), in input order."""
    paths = list(paths)
    workers = max(1, min(workers or os.cpu_count() or 1, len(paths) or 1))
    if workers == 1:
        yield from (analyse_file(path, job) for path in paths)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(analyse_file, paths, [job] * len(paths), chunksize=1)


def photos_by_identity(root: Path) -> dict[str, list[Path]]:
    """One sub-folder per identity, each holding that identity's photos."""
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    found: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
        if photos:
            found[folder.name] = photos
    return found
