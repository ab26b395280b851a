"""Embedding throughput: `reunite match enrol` against a plain face_recognition loop.

Both sides run as fresh processes on the same files, both on every core (the raw
loop in a multiprocessing pool), alternating, several rounds; the figure kept is
each side's median. Two raw baselines are timed:

- raw-original: face_locations + face_encodings on the files as they are, which
  is what a plain script does (detection cost grows with photo size);
- raw-working: the same calls on copies already shrunk to the pipeline's working
  size, i.e. the same detection work as the pipeline, so the ratio against it is
  the cost of the pipeline's own bookkeeping (decoding checks, quality figures,
  68-point pose, parallel batching, writing the index).

Usage: .venv/bin/python bench/embed_throughput.py [--faces DIR] [--copies 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from matching.images import ImageLimits  # noqa: E402

RAW_LOOP = r"""
import sys, multiprocessing
import face_recognition

def embed(path):
    pixels = face_recognition.load_image_file(path)
    locations = face_recognition.face_locations(pixels)
    return len(face_recognition.face_encodings(pixels, locations))

if __name__ == "__main__":
    paths = sys.argv[2:]
    with multiprocessing.Pool(int(sys.argv[1])) as pool:
        faces = sum(pool.map(embed, paths, chunksize=1))
    print(faces)
"""


def default_faces() -> Path:
    shared = REPO.parent / "shared" / "testdata" / "faces" / "identities"
    if shared.is_dir():
        return shared
    from tests.support.faces import sdist_faces

    return sdist_faces()


def build_sets(source: Path, copies: int, scratch: Path) -> tuple[Path, Path]:
    """Identity folders of links to the photos (`copies` times), and shrunk copies of them."""
    originals, shrunk = scratch / "original", scratch / "working"
    photos = sorted(p for p in source.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    side = ImageLimits().working_max_side
    for number, photo in enumerate(photos):
        identity = photo.parent.name if photo.parent != source else f"person{number}"
        for copy in range(copies):
            name = f"{copy}-{photo.stem}.png"
            (originals / identity).mkdir(parents=True, exist_ok=True)
            (originals / identity / f"{copy}-{photo.name}").symlink_to(photo)
            (shrunk / identity).mkdir(parents=True, exist_ok=True)
            image = Image.open(photo).convert("RGB")
            image.thumbnail((side, side), Image.Resampling.BILINEAR)
            image.save(shrunk / identity / name)
    return originals, shrunk


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def files_in(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=None)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    source = args.faces or default_faces()
    reunite = str(Path(sys.executable).with_name("reunite"))
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        originals, shrunk = build_sets(source, args.copies, scratch)
        count = len(files_in(originals))
        commands = {
            "reunite match enrol": [
                reunite,
                "match",
                "enrol",
                str(originals),
                "--index",
                str(scratch / "bench.index"),
                "--workers",
                str(args.workers),
            ],
            "raw-original": [sys.executable, "-c", RAW_LOOP, str(args.workers), *files_in(originals)],
            "raw-working": [sys.executable, "-c", RAW_LOOP, str(args.workers), *files_in(shrunk)],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                times[name].append(timed(command))
    report(source, count, args, times)


def report(source: Path, count: int, args: argparse.Namespace, times: dict[str, list[float]]) -> None:
    print(f"photos: {count} ({args.copies} copies of {source}), workers: {args.workers}, rounds: {args.rounds}")
    print(f"load average: {os.getloadavg()[0]:.2f} (after the run)")
    medians = {name: statistics.median(values) for name, values in times.items()}
    ours = medians["reunite match enrol"]
    print(f"{'side':<22}{'median s':>10}{'images/s':>10}{'ratio ours/raw':>16}")
    for name, seconds in medians.items():
        ratio = (count / ours) / (count / seconds)
        print(f"{name:<22}{seconds:>10.2f}{count / seconds:>10.2f}{ratio:>16.2f}")


if __name__ == "__main__":
    main()
