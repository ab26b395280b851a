"""Quality gates measured: how far must a face degrade before matching degrades?

Every real photo of a folder of identities (default: the shared faces) is degraded
in controlled steps, and each degraded copy goes through the service's own
pipeline (`matching.images.decode_image` on the encoded bytes, then
`matching.faces.analyse_image`, the default dlib model). For each step it prints:

- detected: the share of copies in which the face is still found (a face whose box
  overlaps the clean face's box; a detection elsewhere does not count);
- the quality figures the service stores (box_px, sharpness, asymmetry; medians);
- genuine: the distance from the degraded face to the same person's closest OTHER
  clean photo (the best photo per record, as a search ranks records), median;
- impostor: the distance to the closest clean photo of anyone else, median;
- rank 1: the share of copies whose closest clean photo (itself left out) is the
  same person's; within T: the share whose genuine distance is within the review
  threshold T (the provisional 0.6 by default), i.e. that a search would propose.

Rates are over copies whose person has another photo; a face that is no longer
detected counts as a miss in rank 1 and within T (end to end, as in NIST's FNIR).
Step 0 of every degradation is the undegraded photo, measured in the same run.

Degradations (levels are chosen so that one level means the same for every photo):
- blur: Gaussian blur, sigma in pixels of the 150 px face chip the sharpness is
  measured on (sigma_image = level x face box / 150);
- downscale: the whole photo shrunk until the face box is `level` px across;
- enlarge: shrunk to a `level` px face, then enlarged back (a face cut out of a
  group photo and enlarged: a big box with little detail);
- jpeg: JPEG at quality `level`;
- noise: Gaussian noise of standard deviation `level` (0-255);
- dark: every pixel times `level` (under-exposure: contrast falls);
- turn: a 2D warp that shifts the middle of the face sideways by `level` of half
  the face width (a crude stand-in for a head turn: it moves the asymmetry figure;
  a real turn also hides half the face).

Then every degraded copy is pooled and binned by each quality figure, and each
candidate gate is scored: how many copies it would flag, and rank 1 / within T of
the flagged and of the unflagged copies. A gate is worth its flag where the
flagged copies match clearly worse than the unflagged ones.

Usage: .venv/bin/python bench/quality_gates.py [FOLDER] [--workers 2] [--threshold 0.6]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from matching.batch import photos_by_identity  # noqa: E402
from matching.calibration import DEFAULT_REVIEW_THRESHOLD  # noqa: E402
from matching.images import ImageLimits, InputRejected, decode_image  # noqa: E402
from matching.quality import DEFAULT_MAX_ASYMMETRY, DEFAULT_MIN_FACE_PX, DEFAULT_MIN_SHARPNESS  # noqa: E402

LIMITS = ImageLimits()
CHIP_PX = 150  # the aligned chip the sharpness figure is measured on (matching.faces)


# ----- degradations: (RGB image, level, clean face box) -> encoded photo bytes ------------------

Box = tuple[int, int, int, int]  # (top, right, bottom, left), original pixels


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _face_px(box: Box) -> int:
    top, right, bottom, left = box
    return min(right - left, bottom - top)


def _from_array(pixels: np.ndarray) -> bytes:
    return _png(Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)))


def blur(image: Image.Image, level: float, box: Box) -> bytes:
    return _png(image.filter(ImageFilter.GaussianBlur(level * _face_px(box) / CHIP_PX)))


def _shrunk(image: Image.Image, level: float, box: Box) -> Image.Image:
    factor = min(1.0, level / _face_px(box))
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS) if factor < 1 else image


def downscale(image: Image.Image, level: float, box: Box) -> bytes:
    return _png(_shrunk(image, level, box))


def enlarge(image: Image.Image, level: float, box: Box) -> bytes:
    return _png(_shrunk(image, level, box).resize(image.size, Image.Resampling.BICUBIC))


def jpeg(image: Image.Image, level: float, box: Box) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(level))
    return buffer.getvalue()


def noise(image: Image.Image, level: float, box: Box) -> bytes:
    pixels = np.asarray(image, dtype=np.float32)
    return _from_array(pixels + np.random.default_rng(0).normal(0.0, level, pixels.shape))


def dark(image: Image.Image, level: float, box: Box) -> bytes:
    return _from_array(np.asarray(image, dtype=np.float32) * level)


def turn(image: Image.Image, level: float, box: Box) -> bytes:
    """Shift the face's middle column sideways by `level` half-widths, the edges kept (piecewise linear)."""
    top, right, bottom, left = box
    half = (right - left) / 2
    middle = left + half
    outer_left, outer_right = max(0.0, left - half), min(image.width - 1.0, right + half)
    # Output column -> source column: what was in the middle now shows at middle + shift.
    columns = np.arange(image.width, dtype=np.float64)
    source = np.interp(
        columns,
        [0, outer_left, middle + level * half, outer_right, image.width - 1],
        [0, outer_left, middle, outer_right, image.width - 1],
    )
    pixels = np.asarray(image, dtype=np.float32)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, image.width - 1)
    weight = (source - low)[None, :, None]
    return _from_array(pixels[:, low] * (1 - weight) + pixels[:, high] * weight)


@dataclass(frozen=True)
class Degradation:
    name: str
    unit: str
    levels: tuple[float, ...]  # the first is "none": the clean photo's own measurement is used
    apply: Callable[[Image.Image, float, Box], bytes]


DEGRADATIONS = (
    Degradation("blur", "sigma, chip px", (0, 0.5, 1, 1.5, 2, 3, 4, 6), blur),
    Degradation("downscale", "face px", (0, 120, 80, 60, 48, 40, 36, 32, 28, 24), downscale),
    Degradation("enlarge", "face px before enlarging", (0, 60, 40, 30, 24, 18, 12), enlarge),
    Degradation("jpeg", "quality", (0, 50, 30, 20, 10, 5, 2), jpeg),
    Degradation("noise", "sigma, 0-255", (0, 5, 10, 20, 30, 45), noise),
    Degradation("dark", "brightness factor", (1, 0.5, 0.3, 0.2, 0.12, 0.08), dark),
    Degradation("turn", "shift, half face widths", (0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.3), turn),
)


# ----- the pipeline on one photo ----------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """One degraded copy of one photo, as the pipeline saw it."""

    photo: int
    degradation: str
    level: float
    detected: bool
    box_px: int | None = None
    sharpness: float | None = None
    asymmetry: float | None = None
    vector: np.ndarray | None = None


def _faces(data: bytes):
    from matching.faces import FaceSettings, analyse_image

    try:
        return analyse_image(decode_image(data, LIMITS), "enrol", FaceSettings())
    except InputRejected:
        return []


def _overlap(a, b) -> float:
    """Intersection over union of two (top, right, bottom, left) boxes."""
    top, bottom = max(a[0], b[0]), min(a[2], b[2])
    left, right = max(a[3], b[3]), min(a[1], b[1])
    inter = max(0, bottom - top) * max(0, right - left)
    area = (a[2] - a[0]) * (a[1] - a[3]) + (b[2] - b[0]) * (b[1] - b[3]) - inter
    return inter / area if area > 0 else 0.0


def measure_photo(task: tuple[int, Path]) -> list[Observation]:
    """The clean face (the largest), then every degradation level of this photo."""
    number, path = task
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")  # upright, as decode_image makes it
    clean = _faces(_png(image))
    if not clean:
        return [Observation(number, "clean", 0, detected=False)]
    face = max(clean, key=lambda f: f.quality.box_px)
    box = face.box.as_tuple()
    found = [_observation(number, "clean", 0, face)]
    for degradation in DEGRADATIONS:
        found.append(_observation(number, degradation.name, degradation.levels[0], face))
        for level in degradation.levels[1:]:
            data = degradation.apply(image, level, box)
            scale = min(1.0, level / face.box.size) if degradation.name == "downscale" else 1.0
            expected = tuple(round(v * scale) for v in box)
            matching = [f for f in _faces(data) if _overlap(f.box.as_tuple(), expected) > 0.3]
            best = max(matching, key=lambda f: _overlap(f.box.as_tuple(), expected), default=None)
            found.append(_observation(number, degradation.name, level, best))
    return found


def _observation(number: int, degradation: str, level: float, face) -> Observation:
    if face is None:
        return Observation(number, degradation, level, detected=False)
    return Observation(
        number,
        degradation,
        level,
        detected=True,
        box_px=face.quality.box_px,
        sharpness=face.quality.sharpness,
        asymmetry=face.quality.asymmetry,
        vector=face.embedding,
    )


# ----- scoring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    observation: Observation
    genuine: float | None  # closest other clean photo of the same person
    impostor: float | None  # closest clean photo of anyone else
    mated: bool  # the person has another clean photo
    rise: float | None = None  # genuine minus the same photo's clean genuine distance

    @property
    def rank_1(self) -> bool:
        return self.genuine is not None and (self.impostor is None or self.genuine < self.impostor)

    def within(self, threshold: float) -> bool:
        return self.genuine is not None and self.genuine <= threshold


def score(observations: Sequence[Observation], identity_of: Sequence[str]) -> list[Scored]:
    clean = {o.photo: o.vector for o in observations if o.degradation == "clean" and o.detected}
    scored = []
    for o in observations:
        others = [p for p in clean if p != o.photo]
        same = [p for p in others if identity_of[p] == identity_of[o.photo]]
        different = [p for p in others if identity_of[p] != identity_of[o.photo]]
        genuine = impostor = None
        if o.detected:
            if same:
                genuine = min(float(np.linalg.norm(o.vector - clean[p])) for p in same)
            if different:
                impostor = min(float(np.linalg.norm(o.vector - clean[p])) for p in different)
        scored.append(Scored(o, genuine, impostor, mated=bool(same)))
    clean_genuine = {s.observation.photo: s.genuine for s in scored if s.observation.degradation == "clean"}
    return [
        replace(
            s,
            rise=None
            if s.genuine is None or clean_genuine.get(s.observation.photo) is None
            else s.genuine - clean_genuine[s.observation.photo],
        )
        for s in scored
    ]


def _median(values: Iterable[float | None]) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.median(values):.3g}" if values else "-"


def _p90(values: Iterable[float | None]) -> str:
    values = sorted(v for v in values if v is not None)
    return f"{values[min(len(values) - 1, int(0.9 * len(values)))]:.3g}" if values else "-"


def _rate(hits: int, total: int) -> str:
    return f"{100 * hits / total:.0f} % ({hits}/{total})" if total else "-"


def _row(items: list[Scored], threshold: float) -> list[str]:
    mated = [s for s in items if s.mated]
    return [
        _rate(sum(s.observation.detected for s in items), len(items)),
        _median(s.observation.box_px for s in items),
        _median(s.observation.sharpness for s in items),
        _median(s.observation.asymmetry for s in items),
        _median(s.genuine for s in mated),
        _median(s.impostor for s in items),
        _rate(sum(s.rank_1 for s in mated), len(mated)),
        _rate(sum(s.within(threshold) for s in mated), len(mated)),
    ]


def _print_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


FIGURE_COLUMNS = ["detected", "box_px", "sharpness", "asymmetry", "genuine", "impostor", "rank 1", "within T"]


def print_levels(scored: list[Scored], threshold: float) -> None:
    print(f"## By degradation and level (medians; rank 1 and within T={threshold} over mated copies)\n")
    rows = [["none (clean)", "-", *_row([s for s in scored if s.observation.degradation == "clean"], threshold)]]
    for degradation in DEGRADATIONS:
        for level in degradation.levels:
            items = [
                s for s in scored if s.observation.degradation == degradation.name and s.observation.level == level
            ]
            shown = "none" if level == degradation.levels[0] else f"{level:g}"
            rows.append([f"{degradation.name} ({degradation.unit})", shown, *_row(items, threshold)])
    _print_table(["degradation", "level", *FIGURE_COLUMNS], rows)


BINS = {
    "sharpness": (0, 2, 5, 10, 15, 20, 30, 50, 100, float("inf")),
    "box_px": (0, 24, 32, 40, 48, 60, 80, 120, float("inf")),
    "asymmetry": (0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, float("inf")),
}
# Which copies each figure is binned over: the degradations that move it (the others keep the box
# and the pose, and binning them too would mix in blur, darkness, ...).
MOVED_BY = {"sharpness": None, "box_px": ("downscale",), "asymmetry": ("turn",)}
CANDIDATE_GATES = {
    "sharpness": (2, 5, 8, 10, 15, 20, 30),
    "box_px": (32, 36, 40, 48, 60, 80),
    "asymmetry": (0.2, 0.3, 0.4, 0.5, 0.6),
}


def _first_level(name: str) -> float:
    return next(d.levels[0] for d in DEGRADATIONS if d.name == name)


def print_clean(scored: list[Scored]) -> None:
    clean = [s.observation for s in scored if s.observation.degradation == "clean" and s.observation.detected]
    print("## The clean photos\n")
    for figure in ("box_px", "sharpness", "asymmetry"):
        values = sorted(getattr(o, figure) for o in clean)
        print(f"- {figure}: {values[0]:g} to {values[-1]:g} (median {statistics.median(values):g})")
    genuine = [s.genuine for s in scored if s.observation.degradation == "clean" and s.genuine is not None]
    impostor = [s.impostor for s in scored if s.observation.degradation == "clean" and s.impostor is not None]
    print(f"- largest genuine distance {max(genuine):.3f}, smallest impostor distance {min(impostor):.3f}\n")


def _flagged(s: Scored, figure: str, gate: float) -> bool:
    value = getattr(s.observation, figure)
    return value > gate if figure == "asymmetry" else value < gate


def print_pooled(scored: list[Scored], threshold: float) -> None:
    """Every detected, mated degraded copy, binned by each figure; then each candidate gate scored."""
    pool = [
        s
        for s in scored
        if s.observation.detected
        and s.mated
        and s.observation.degradation != "clean"
        and s.observation.level != _first_level(s.observation.degradation)
    ]
    print(f"## Pooled: {len(pool)} detected degraded copies of photos whose person has another photo\n")
    print("rise: how much the genuine distance grew over the same photo's clean one.\n")
    for figure, edges in BINS.items():
        rows = []
        sources = MOVED_BY[figure]
        copies = [s for s in pool if sources is None or s.observation.degradation in sources]
        for low, high in zip(edges, edges[1:]):
            items = [s for s in copies if low <= getattr(s.observation, figure) < high]
            if items:
                rows.append(
                    [
                        f"{low:g}-{high:g}",
                        str(len(items)),
                        _median(s.genuine for s in items),
                        _median(s.rise for s in items),
                        _p90(s.rise for s in items),
                        _rate(sum(s.rank_1 for s in items), len(items)),
                        _rate(sum(s.within(threshold) for s in items), len(items)),
                    ]
                )
        print(f"### By {figure} ({'every degradation' if sources is None else ', '.join(sources) + ' copies'})\n")
        _print_table(
            [figure, "copies", "genuine (median)", "rise (median)", "rise (90th pct)", "rank 1", f"within {threshold}"],
            rows,
        )
    print("### Candidate gates: flagged copies against the others\n")
    rows = []
    for figure, gates in CANDIDATE_GATES.items():
        for gate in gates:
            flagged = [s for s in pool if _flagged(s, figure, gate)]
            kept = [s for s in pool if not _flagged(s, figure, gate)]
            sign = ">" if figure == "asymmetry" else "<"
            rows.append(
                [
                    f"{figure} {sign} {gate:g}",
                    _rate(len(flagged), len(pool)),
                    _median(s.rise for s in flagged),
                    _rate(sum(s.rank_1 for s in flagged), len(flagged)),
                    _rate(sum(s.within(threshold) for s in flagged), len(flagged)),
                    _median(s.rise for s in kept),
                    _rate(sum(s.rank_1 for s in kept), len(kept)),
                    _rate(sum(s.within(threshold) for s in kept), len(kept)),
                ]
            )
    _print_table(
        [
            "flag when",
            "flagged",
            "flagged: rise",
            "flagged: rank 1",
            f"flagged: within {threshold}",
            "others: rise",
            "others: rank 1",
            f"others: within {threshold}",
        ],
        rows,
    )
    current = (
        f"box_px < {DEFAULT_MIN_FACE_PX}, sharpness < {DEFAULT_MIN_SHARPNESS:g}, asymmetry > {DEFAULT_MAX_ASYMMETRY:g}"
    )
    flagged = [
        s
        for s in pool
        if s.observation.box_px < DEFAULT_MIN_FACE_PX
        or s.observation.sharpness < DEFAULT_MIN_SHARPNESS
        or s.observation.asymmetry > DEFAULT_MAX_ASYMMETRY
    ]
    print(f"Gates in matching/quality.py now ({current}): flag {_rate(len(flagged), len(pool))} of the copies.\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = REPO.parent / "shared" / "testdata" / "faces" / "identities"
    parser.add_argument(
        "folder",
        nargs="?",
        type=Path,
        default=default,
        help="one sub-folder of photos per identity [default: the shared faces]",
    )
    parser.add_argument("--workers", type=int, default=2, help="processes [default: 2]")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_REVIEW_THRESHOLD,
        help=f"review threshold for 'within T' [default: {DEFAULT_REVIEW_THRESHOLD}]",
    )
    args = parser.parse_args(argv)
    identities = photos_by_identity(args.folder)
    photos = [(name, path) for name, paths in identities.items() for path in paths]
    identity_of = [name for name, _ in photos]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        observations = [o for found in pool.map(measure_photo, list(enumerate(p for _, p in photos))) for o in found]
    scored = score(observations, identity_of)
    copies = sum(1 for o in observations if o.degradation != "clean")
    print(
        f"# Quality gates: {len(photos)} photos of {len(identities)} identities from {args.folder}, "
        f"{copies} degraded copies, {time.perf_counter() - started:.0f} s\n"
    )
    print_clean(scored)
    print_levels(scored, args.threshold)
    print_pooled(scored, args.threshold)


if __name__ == "__main__":
    main()
