"""What storing photos without metadata costs the matcher: the re-encoded JPEG against the upload.

The service stores (and the workers embed) not the uploaded file but its upright pixels
encoded again as a JPEG with no metadata (`service.photos.service.check_upload`), so that
no GPS position or camera serial leaves with a photo. Every re-encoding loses a little.
For every photo of a folder of identities (default: the shared faces) this embeds both
the decoded upload and the decoded stored JPEG with the service's own analysis (the
default dlib model) and prints:

- drift: the distance between the two embeddings of the same face (median, max);
- genuine / impostor: for each probe photo, the distance to the same person's closest
  other photo and to anyone else's closest photo, upload-vs-upload against
  stored-vs-stored (the gallery re-encoded as the service stores it);
- rank 1 on both sides, and the stored bytes against the upload's (size ratio).

Usage: .venv/bin/python bench/reencode_drift.py [FOLDER]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from matching.faces import analyse_image
from matching.images import InputRejected, decode_image
from service.photos.service import check_upload, image_limits
from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def photos_by_identity(folder: Path) -> dict[str, list[Path]]:
    return {
        person.name: sorted(p for p in person.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        for person in sorted(folder.iterdir())
        if person.is_dir()
    }


def embedding(data: bytes, settings: Settings) -> np.ndarray | None:
    """The one face's vector as the service would embed it (None when not exactly one face)."""
    try:
        faces = analyse_image(decode_image(data, image_limits(settings)), "enrol", settings.face_settings())
    except InputRejected:  # no face, or too many
        return None
    return faces[0].embedding if len(faces) == 1 else None


def nearest(probe: int, vectors: list[np.ndarray], people: list[str]) -> tuple[float, float, bool]:
    """(closest same-person distance, closest other-person distance, rank 1) for one probe."""
    distances = [(float(np.linalg.norm(vectors[probe] - v)), people[i]) for i, v in enumerate(vectors) if i != probe]
    same = min(d for d, person in distances if person == people[probe])
    other = min(d for d, person in distances if person != people[probe])
    return same, other, same < other


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder", nargs="?", type=Path, default=REPO.parent / "shared" / "testdata" / "faces" / "identities"
    )
    args = parser.parse_args(argv)
    settings = Settings(environment="development", data_dir=Path("/tmp/reunite-bench-unused"))
    rows = []
    for person, paths in photos_by_identity(args.folder).items():
        for path in paths:
            upload = path.read_bytes()
            stored = check_upload(upload, settings).data
            before, after = embedding(upload, settings), embedding(stored, settings)
            if before is not None and after is not None:
                rows.append((person, path.name, before, after, len(stored) / len(upload)))
    people = [row[0] for row in rows]
    drift = [float(np.linalg.norm(row[2] - row[3])) for row in rows]
    print(f"# Re-encoding drift: {len(rows)} photos of {len(set(people))} identities from {args.folder}")
    print(f"drift (same face, upload vs stored): median {statistics.median(drift):.4f}, max {max(drift):.4f}")
    print(f"stored size / upload size: median {statistics.median(r[4] for r in rows):.2f}")
    probes = [i for i, person in enumerate(people) if people.count(person) > 1]
    for side, column in (("upload", 2), ("stored", 3)):
        vectors = [row[column] for row in rows]
        found = [nearest(i, vectors, people) for i in probes]
        print(
            f"{side:>6}: genuine median {statistics.median(f[0] for f in found):.4f}"
            f" max {max(f[0] for f in found):.4f}"
            f" | impostor min {min(f[1] for f in found):.4f} | rank 1 {sum(f[2] for f in found)}/{len(found)}"
        )


if __name__ == "__main__":
    main()
