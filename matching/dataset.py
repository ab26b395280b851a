"""Labelled photo sets for measuring the matcher: read a manifest, embed it as the service does.

A manifest is a CSV file with a header row. Columns: `path` (relative to the manifest's
folder, never leaving it), `identity`, optional `set` (`gallery`, `probe`, or empty for
both roles), optional `age_at_photo` (years), optional `taken_at` (ISO date) and any number of
`group:<name>` columns (an empty cell means the photo's value is unknown). A folder with one
sub-folder of photos per identity works too: every photo in both roles. `load_manifest`
refuses anything else with a `ManifestError` naming the line. The same photo listed twice (the
same path, or the same file content) is counted once, as first listed, and reported in
`EmbeddedDataset.duplicates`; the same photo labelled as two people is refused.

`embed_dataset` runs the service's own pipeline on every photo (`matching.batch.embed_files`:
the same decoding limits, detector and embedding model, the default one unless another
registered model is named), in parallel, and keeps each outcome in a cache keyed by the
file's sha256, the model and the detection settings, so a second run embeds nothing. The
cache holds face templates: it lives outside the repository (`default_cache_dir()`),
readable by its owner only. It stores the quality figures, not the flags: the quality gates
are applied when the data set is read, so changing a gate recomputes nothing.

Enrolment rule, the service's: a gallery photo enrols when exactly one face is detected,
whatever its quality (a record photo with several faces is refused: which one is the
child?). A probe photo enrols when at least one face is detected. The service searches
every face of a case photo; a measurement follows one known person per probe, taken to be
its largest face (the person the photo is of; smaller faces behind are searched by the
service but not measured here). No face, or a file that cannot be used, is a failure to
enrol, with a reason code. A photo in both sets is embedded once, for enrolment. Each
photo's template is flagged low quality (`EmbeddedPhoto.quality_flags`) when its face is
below a quality gate of the face settings, as the service flags it; nothing is refused for
its quality.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from matching.evaluation import Sample
from matching.faces import FaceSettings, Purpose
from matching.images import ImageLimits
from matching.quality import known_figures, quality_flags

REQUIRED_COLUMNS = ("path", "identity")
OPTIONAL_COLUMNS = ("set", "age_at_photo", "taken_at")
GROUP_PREFIX = "group:"
GROUP_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
SETS = {"": (True, True), "gallery": (True, False), "probe": (False, True)}
MAX_AGE = 130
CACHE_FORMAT = 2  # 2: the largest face's vector and quality figures, no "usable" count
# Face settings that only flag, never change what is detected or embedded: not part of the cache key.
GATE_FIELDS = ("min_face_px", "min_sharpness", "max_asymmetry")

ProgressCallback = Callable[[int, int], None]  # (photos done, photos in total)


class ManifestError(ValueError):
    """The manifest cannot be used as it is; the message names the line and the problem."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


@dataclass(frozen=True)
class Entry:
    """One photo of the data set, as the manifest describes it."""

    path: Path  # absolute
    relative: str  # as written in the manifest (folder mode: identity/file name)
    identity: str
    gallery: bool = True
    probe: bool = True
    line: int | None = None  # manifest line; None in folder mode
    age: float | None = None
    taken_at: date | None = None
    groups: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbeddedPhoto:
    """What the pipeline made of one entry: one template, or why it did not enrol."""

    entry: Entry
    sha256: str | None  # None when the file could not be read
    vector: np.ndarray | None = field(repr=False)
    gallery_failure: str | None
    probe_failure: str | None
    from_cache: bool
    # Why the template's face is low quality under the face settings' gates (empty: not flagged).
    quality_flags: tuple[str, ...] = ()

    @property
    def low_quality(self) -> bool:
        """The photo gave a template, flagged low quality as the service would flag it."""
        return self.vector is not None and bool(self.quality_flags)

    def sample(self) -> Sample:
        e = self.entry
        return Sample(
            identity=e.identity,
            vector=self.vector,
            gallery=e.gallery,
            probe=e.probe,
            gallery_failure=self.gallery_failure,
            probe_failure=self.probe_failure,
            groups=dict(e.groups),
            age=e.age,
            taken_at=e.taken_at,
        )


@dataclass(frozen=True)
class Duplicate:
    """An entry whose photo (same path or same file content) was already listed: counted once, as `first`."""

    entry: Entry
    first: Entry

    def describe(self) -> str:
        return f"{_where(self.entry)} is the same photo as {_where(self.first)}; counted once, as listed there"


def _where(entry: Entry) -> str:
    return f"line {entry.line} ({entry.relative!r})" if entry.line is not None else repr(entry.relative)


@dataclass(frozen=True)
class EmbeddedDataset:
    """Every photo's outcome, the model that made the templates and a digest of the data set."""

    photos: tuple[EmbeddedPhoto, ...]
    model_id: str
    model_version: str
    manifest_sha256: str  # digest of every entry (path, identity, set, age, date, groups) and photo sha256
    cache_hits: int
    computed: int
    duplicates: tuple[Duplicate, ...] = ()  # entries left out because their photo was already listed

    @property
    def samples(self) -> list[Sample]:
        """One `matching.evaluation.Sample` per photo, in manifest order."""
        return [photo.sample() for photo in self.photos]

    @property
    def templates(self) -> int:
        """Photos that gave a template in at least one role."""
        return sum(
            1 for p in self.photos if p.vector is not None and (p.gallery_failure is None or p.probe_failure is None)
        )

    @property
    def low_quality(self) -> int:
        """Photos whose template is flagged low quality (counted among `templates`)."""
        return sum(1 for p in self.photos if p.low_quality and (p.gallery_failure is None or p.probe_failure is None))

    def summary(self) -> dict[str, Any]:
        """What the data set was, in counts and digests only: for stored calibrations and reports."""
        return {
            "manifest_sha256": self.manifest_sha256,
            "photos": len(self.photos),
            "identities": len({p.entry.identity for p in self.photos}),
            "photos_with_template": self.templates,
            "duplicates_ignored": len(self.duplicates),
            "photos_low_quality": self.low_quality,
            "model_id": self.model_id,
            "model_version": self.model_version,
        }


@dataclass(frozen=True)
class _Analysis:
    """The cached outcome of the pipeline on one file."""

    refusal: str | None  # reason code when the file gave no faces at all
    faces: int = 0  # faces detected
    vector: np.ndarray | None = None  # the largest face's embedding (the only one when faces == 1)
    quality: Mapping[str, float] = field(default_factory=dict)  # that face's quality figures


# ----- reading a manifest ------------------------------------------------------------------


def load_manifest(path: str | Path) -> list[Entry]:
    """Entries of a CSV manifest, or of a folder of one sub-folder per identity."""
    path = Path(path)
    if path.is_dir():
        return _folder_entries(path)
    if not path.is_file():
        raise ManifestError(f"{path} is neither a manifest file nor a folder of identities")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path} cannot be read as UTF-8 text ({exc})") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        columns = _columns(next(reader, None))
        entries = [_entry(row, columns, path.parent, reader.line_num) for row in reader if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise ManifestError(f"not a valid CSV file ({exc})", reader.line_num) from exc
    if not entries:
        raise ManifestError(f"{path} lists no photos")
    return entries  # the same photo twice is counted once by embed_dataset, with a warning


def _folder_entries(root: Path) -> list[Entry]:
    from matching.batch import photos_by_identity

    try:
        found = photos_by_identity(root)
    except OSError as exc:
        raise ManifestError(f"cannot read the folder {root} ({exc})") from exc
    if not found:
        raise ManifestError(f"{root} has no sub-folders with photos (expected one folder per identity)")
    return [
        Entry(path=photo.resolve(), relative=f"{name}/{photo.name}", identity=name)
        for name, photos in found.items()
        for photo in photos
    ]


def _columns(header: list[str] | None) -> list[str]:
    if not header:
        raise ManifestError("the manifest is empty; the first line must name the columns", 1)
    columns = [c.strip() for c in header]
    for column in columns:
        if column.startswith(GROUP_PREFIX):
            if not GROUP_NAME.fullmatch(column[len(GROUP_PREFIX) :]):
                raise ManifestError(
                    f"group column {column!r} needs a name of letters, digits, '_' or '-' after 'group:'", 1
                )
        elif column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            known = ", ".join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
            raise ManifestError(f"unknown column {column!r} (known: {known}, group:<name>)", 1)
        if columns.count(column) > 1:
            raise ManifestError(f"column {column!r} appears twice", 1)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(f"missing column {', '.join(map(repr, missing))}", 1)
    return columns


def _entry(row: list[str], columns: list[str], root: Path, line: int) -> Entry:
    if len(row) != len(columns):
        raise ManifestError(f"{len(row)} fields, but the header names {len(columns)} columns", line)
    cells = {column: value.strip() for column, value in zip(columns, row)}
    if not cells["identity"]:
        raise ManifestError("the identity is empty", line)
    set_name = cells.get("set", "").lower()
    if set_name not in SETS:
        raise ManifestError(f"unknown set {cells['set']!r}: use gallery, probe, or leave it empty for both", line)
    gallery, probe = SETS[set_name]
    return Entry(
        path=_photo_path(cells["path"], root, line),
        relative=cells["path"],
        identity=cells["identity"],
        gallery=gallery,
        probe=probe,
        line=line,
        age=_age(cells.get("age_at_photo", ""), line),
        taken_at=_taken_at(cells.get("taken_at", ""), line),
        groups={c[len(GROUP_PREFIX) :]: v for c, v in cells.items() if c.startswith(GROUP_PREFIX)},
    )


def _photo_path(value: str, root: Path, line: int) -> Path:
    if not value:
        raise ManifestError("the path is empty", line)
    if Path(value).is_absolute():
        raise ManifestError(f"the path {value!r} must be relative to the manifest's folder", line)
    base = root.resolve()
    path = (base / value).resolve()
    if not path.is_relative_to(base):
        raise ManifestError(f"the path {value!r} leads outside the manifest's folder", line)
    if not path.is_file():
        raise ManifestError(f"no such photo: {value!r}", line)
    return path


def _age(value: str, line: int) -> float | None:
    if not value:
        return None
    try:
        age = float(value)
    except ValueError:
        raise ManifestError(f"age_at_photo {value!r} is not a number of years", line) from None
    if not math.isfinite(age) or not 0 <= age <= MAX_AGE:
        raise ManifestError(f"age_at_photo {value!r} must be between 0 and {MAX_AGE} years", line)
    return age


def _taken_at(value: str, line: int) -> date | None:
    if not value:
        return None
    try:
        taken = date.fromisoformat(value)
    except ValueError:
        try:
            taken = datetime.fromisoformat(value).date()
        except ValueError:
            raise ManifestError(f"taken_at {value!r} is not an ISO date (YYYY-MM-DD)", line) from None
    if taken > date.today():
        raise ManifestError(f"taken_at {value!r} is in the future", line)
    return taken


# ----- embedding ---------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """~/.cache/reunite/embeddings (or under $XDG_CACHE_HOME): outside any repository."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "reunite" / "embeddings"


def embed_dataset(
    entries: Sequence[Entry],
    *,
    face_settings: FaceSettings = FaceSettings(),
    limits: ImageLimits = ImageLimits(),
    workers: int | None = None,
    cache_dir: Path | None = None,
    progress_callback: ProgressCallback | None = None,
    model_id: str | None = None,
) -> EmbeddedDataset:
    """Embed every entry with the service's pipeline; cached outcomes are reused, new ones stored.

    `face_settings` and `limits`: the service's (`Settings.face_settings()`, whose quality gates
    flag templates, and `service.photos.service.image_limits(settings)`). `workers`: processes (None = every core).
    `cache_dir`: None disables the cache. `progress_callback(done, total)` is called as photos are
    resolved. `model_id`: a registered embedder (None: the default model). An entry whose file
    content was already listed is counted once, as first listed (two copies would pose as a
    perfect genuine pair), and returned in `duplicates`. Raises `ManifestError` when the same
    content is labelled as two identities, and `matching.embedders.UnknownEmbedder` for an
    unknown model id.
    """
    from matching.embedders import DEFAULT_MODEL_ID, get_embedder

    embedder = get_embedder(model_id or DEFAULT_MODEL_ID)
    listed = [_file_sha256(entry.path) for entry in entries]
    digest = _dataset_digest(entries, listed)  # of every entry as read, duplicates included
    entries, hashes, duplicates = _without_duplicates(entries, listed)
    job = _Job(face_settings, limits, embedder.id, embedder.version, embedder.dimension)
    keys = [_cache_key(h, e, job) if h else None for e, h in zip(entries, hashes)]
    analyses: dict[str, _Analysis] = {}
    if cache_dir is not None:
        analyses = {key: found for key in keys if key and (found := _read_cache(cache_dir, key, job.dimension))}
    progress = _Progress(len(entries), progress_callback)
    progress.advance(sum(1 for key in keys if key is None or key in analyses))
    computed = _compute_missing(entries, keys, analyses, job, workers, progress)
    if cache_dir is not None:
        for key in computed:
            if analyses[key].refusal != "unreadable":  # may be readable next time
                _write_cache(cache_dir, key, analyses[key])
    photos = tuple(
        _photo(entry, file_hash, analyses.get(key) if key else None, key not in computed, face_settings)
        for entry, file_hash, key in zip(entries, hashes, keys)
    )
    return EmbeddedDataset(
        photos=photos,
        model_id=job.model_id,
        model_version=job.model_version,
        manifest_sha256=digest,
        cache_hits=sum(1 for p in photos if p.from_cache),
        computed=len(computed),
        duplicates=duplicates,
    )


@dataclass(frozen=True)
class _Job:
    """Everything besides a file's bytes that decides its outcome."""

    face_settings: FaceSettings
    limits: ImageLimits
    model_id: str
    model_version: str
    dimension: int


class _Progress:
    def __init__(self, total: int, callback: ProgressCallback | None):
        self.total, self.done, self.callback = total, 0, callback

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.callback is not None and count:
            self.callback(self.done, self.total)


def _purpose(entry: Entry) -> Purpose:
    return "enrol" if entry.gallery else "probe"


def _compute_missing(
    entries: Sequence[Entry],
    keys: Sequence[str | None],
    analyses: dict[str, _Analysis],
    job: _Job,
    workers: int | None,
    progress: _Progress,
) -> set[str]:
    """Run the pipeline, on every core, on the files whose outcome is not known; returns their keys."""
    from matching.batch import BatchJob, embed_files

    computed: set[str] = set()
    for purpose in ("enrol", "probe"):
        todo = {
            key: entry.path
            for entry, key in zip(entries, keys)
            if key and key not in analyses and _purpose(entry) == purpose
        }
        batch = BatchJob(purpose=purpose, settings=job.face_settings, limits=job.limits, model_id=job.model_id)
        for key, result in zip(todo, embed_files(list(todo.values()), batch, workers)):
            analyses[key] = _analysis(result)
            computed.add(key)
            progress.advance()
    return computed


def _analysis(result: Any) -> _Analysis:
    """Keep what the enrolment rule and the flags need from a `matching.batch.FileResult`."""
    if not result.ok:
        return _Analysis(refusal=result.refusal_code or "rejected_input")
    largest = max(result.faces, key=lambda face: face.quality.box_px)
    return _Analysis(
        refusal=None, faces=len(result.faces), vector=largest.embedding, quality=known_figures(asdict(largest.quality))
    )


def _photo(
    entry: Entry, file_hash: str | None, analysis: _Analysis | None, from_cache: bool, settings: FaceSettings
) -> EmbeddedPhoto:
    gallery, probe = _failures(analysis or _Analysis(refusal="unreadable"))
    vector = analysis.vector if analysis is not None and (gallery is None or probe is None) else None
    flags = tuple(quality_flags(analysis.quality, settings)) if analysis is not None and vector is not None else ()
    return EmbeddedPhoto(
        entry=entry,
        sha256=file_hash,
        vector=vector,
        gallery_failure=gallery,
        probe_failure=probe,
        from_cache=from_cache and analysis is not None,
        quality_flags=flags,
    )


def _failures(analysis: _Analysis) -> tuple[str | None, str | None]:
    """(gallery, probe) reason codes under the enrolment rule; None where the photo enrols.

    Quality is never a failure: it only flags (`EmbeddedPhoto.quality_flags`).
    """
    if analysis.refusal is not None:
        return analysis.refusal, analysis.refusal
    if analysis.faces == 0:  # not produced by the pipeline (no face is a refusal); kept safe
        return "no_face", "no_face"
    return ("several_faces" if analysis.faces > 1 else None), None


# ----- hashing and the cache ---------------------------------------------------------------


def _file_sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _without_duplicates(
    entries: Sequence[Entry], hashes: Sequence[str | None]
) -> tuple[list[Entry], list[str | None], tuple[Duplicate, ...]]:
    """Each photo once, as first listed: the same file content (or, unreadable, the same path) again
    is left out and reported. The same photo labelled as another identity is refused: a photo
    shows one person, and counting it once would pick one label silently."""
    first: dict[str | Path, Entry] = {}
    kept: list[tuple[Entry, str | None]] = []
    duplicates = []
    for entry, file_hash in zip(entries, hashes):
        key = file_hash or entry.path
        if key not in first:
            first[key] = entry
            kept.append((entry, file_hash))
            continue
        earlier = first[key]
        if earlier.identity != entry.identity:
            raise ManifestError(
                f"{entry.relative!r} is the same photo as {_where(earlier)}, labelled as "
                "another person; a photo must show one person",
                entry.line,
            )
        duplicates.append(Duplicate(entry=entry, first=earlier))
    return [e for e, _ in kept], [h for _, h in kept], tuple(duplicates)


def _cache_key(file_hash: str, entry: Entry, job: _Job) -> str:
    """Everything that can change a file's outcome: its bytes, the model, the settings.

    The quality gates are left out: they flag a template when the data set is read, from the
    cached figures, and change nothing that is cached.
    """
    settings = job.face_settings
    face = {k: v for k, v in asdict(settings).items() if k not in ("enrol_jitters", "probe_jitters", *GATE_FIELDS)}
    material = {
        "format": CACHE_FORMAT,
        "file": file_hash,
        "model_id": job.model_id,
        "model_version": job.model_version,
        "jitters": settings.jitters(_purpose(entry)),
        "face_settings": face,
        "limits": asdict(job.limits),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.json"


def _read_cache(cache_dir: Path, key: str, dimension: int) -> _Analysis | None:
    """The stored outcome, or None when absent or unreadable (it is then recomputed)."""
    try:
        stored = json.loads(_cache_path(cache_dir, key).read_text())
        vector = stored["vector"]
        if vector is not None:
            vector = np.frombuffer(base64.b64decode(vector, validate=True), dtype="<f4").astype(np.float32)
            if vector.shape != (dimension,):
                return None
        return _Analysis(
            refusal=stored["refusal"],
            faces=int(stored["faces"]),
            vector=vector,
            quality=known_figures(stored["quality"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(cache_dir: Path, key: str, analysis: _Analysis) -> None:
    """Write atomically, owner-only: the file holds a face template."""
    path = _cache_path(cache_dir, key)
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    vector = analysis.vector
    stored = {
        "refusal": analysis.refusal,
        "faces": analysis.faces,
        "quality": dict(analysis.quality),
        "vector": None if vector is None else base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode(),
    }
    handle, scratch = tempfile.mkstemp(dir=path.parent, suffix=".tmp")  # created 0600
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(stored, out)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def _dataset_digest(entries: Iterable[Entry], hashes: Iterable[str | None]) -> str:
    """sha256 over every entry as read and its photo's sha256: the same data gives the same digest."""
    digest = hashlib.sha256()
    for entry, file_hash in zip(entries, hashes):
        row = [
            entry.relative,
            entry.identity,
            entry.gallery,
            entry.probe,
            entry.age,
            entry.taken_at.isoformat() if entry.taken_at else None,
            sorted(entry.groups.items()),
            file_hash,
        ]
        digest.update(json.dumps(row).encode() + b"\n")
    return digest.hexdigest()
