"""Benchmark whatever dlib the running interpreter has: build flags, HOG detection, embeddings.

Prints figures only (no assertions), so two dlib builds (dlib-bin, a source build with
OpenBLAS, ...) can be compared by running this file with each build's interpreter:

    OPENBLAS_NUM_THREADS=1 /path/to/venv/bin/python bench/dlib_build.py \
        --save-embeddings /tmp/dlib-bin.npy
    /other/venv/bin/python bench/dlib_build.py --blas-threads 1 --compare /tmp/dlib-bin.npy

Thread settings: `--blas-threads N` sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and
MKL_NUM_THREADS to N before numpy or dlib is imported (and limits them again through
threadpoolctl when it is installed). Without it the inherited environment is used; either
way the values it ran with are printed. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are reported,
never changed.

`--save-embeddings PATH` writes an array of shape (2, faces, 128) (model "small", then
"large") to PATH and the detection boxes and crop boxes to PATH + ".json";
`--compare OTHER.npy` prints the largest absolute difference against such a file and
whether the detection boxes are identical.

Real photos are read from ../shared/testdata/faces beside the repository (override with
--faces-dir or REUNITE_TEST_FACES); nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOTO_NUM_THREADS")
OPENBLAS_TUNING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_VERBOSE")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
MODELS = ("small", "large")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    repo = Path(__file__).resolve().parents[1]
    default_faces = os.environ.get("REUNITE_TEST_FACES") or str(repo.parent / "shared" / "testdata" / "faces")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faces-dir", default=default_faces, help="root of the shared test faces (default: %(default)s)")
    p.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="set OPENBLAS/OMP/MKL_NUM_THREADS to N before importing numpy and dlib",
    )
    p.add_argument("--detect-runs", type=int, default=5, help="timed HOG runs per photo (after one warm-up)")
    p.add_argument("--upsample", type=int, default=1, help="number_of_times_to_upsample for face_locations")
    p.add_argument("--large-photo", default=None, help="photo for the large detection figure (default: largest found)")
    p.add_argument(
        "--medium-photo", default=None, help="photo for the ~1000 px figure (default: pixel count nearest 1000x1000)"
    )
    p.add_argument("--faces", type=int, default=100, help="embedding passes cover about this many faces")
    p.add_argument(
        "--embed-passes", type=int, default=3, help="timed embedding passes per model (best and median shown)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also time embeddings in N parallel processes (aggregate faces/s); 1 = skip",
    )
    p.add_argument("--skip-detect", action="store_true", help="skip the detection timings")
    p.add_argument("--save-embeddings", metavar="PATH", default=None)
    p.add_argument("--compare", metavar="OTHER.npy", default=None)
    return p.parse_args(argv)


def apply_thread_env(n: int | None) -> None:
    """Must run before numpy/dlib load OpenBLAS: OpenBLAS reads these once, at load time."""
    if n is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(n)


def section(title: str) -> None:
    print(f"\n== {title}")


def cpu_summary() -> str:
    model, flags = "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [f for f in ("sse4_1", "sse4_2", "avx", "avx2", "fma", "avx512f") if f in flags]
    return f"{model}; simd: {' '.join(simd) or '?'}"


def loaded_libraries(patterns=("blas", "lapack", "gomp", "omp", "dlib", "jpeg", "png", "X11")) -> list[str]:
    """Shared objects mapped into this process whose names match (shows which BLAS dlib uses)."""
    libs = set()
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 6 and ".so" in parts[-1]:
                name = os.path.basename(parts[-1]).lower()
                if any(pat.lower() in name for pat in patterns):
                    libs.add(parts[-1])
    except OSError:
        pass
    return sorted(libs)


def elf_comment(path: str) -> str:
    """The compiler string(s) in a shared object's .comment section, read without binutils."""
    import struct

    try:
        data = Path(path).read_bytes()
        if data[:4] != b"\x7fELF" or data[4] != 2:
            return "?"
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        strtab = sections[shstrndx]
        for sh in sections:
            name_off = strtab[4] + sh[0]
            name = data[name_off : data.index(b"\0", name_off)]
            if name == b".comment":
                raw = data[sh[4] : sh[4] + sh[5]]
                return "; ".join(sorted({s.decode(errors="replace") for s in raw.split(b"\0") if s}))
    except Exception as exc:  # report, never fail the benchmark on this
        return f"? ({exc})"
    return "?"


def report_build(dlib) -> None:
    section("interpreter and dlib build")
    print(f"python {platform.python_version()} at {sys.executable}")
    print(
        f"cpu: {cpu_summary()}; os.cpu_count()={os.cpu_count()}; "
        f"affinity={len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}"
    )
    print(f"dlib {dlib.__version__} from {os.path.dirname(dlib.__file__)}")
    print(f"dlib compiled: {getattr(dlib, '__time_compiled__', '?')}")
    ext = sys.modules.get("_dlib_pybind11")
    if ext is not None and getattr(ext, "__file__", None):
        print(f"extension: {ext.__file__}")
        print(f"extension compiler: {elf_comment(ext.__file__)}")
    flags = {
        k: getattr(dlib, k)
        for k in sorted(dir(dlib))
        if k.startswith(("DLIB_USE_", "USE_")) and isinstance(getattr(dlib, k), bool)
    }
    print("flags: " + ", ".join(f"{k}={v}" for k, v in flags.items()))
    try:
        from importlib.metadata import distributions

        wanted = {"dlib", "dlib-bin", "face-recognition", "face-recognition-models", "numpy"}
        dists = sorted(
            f"{d.metadata['Name']}=={d.version}"
            for d in distributions()
            if (d.metadata["Name"] or "").lower().replace("_", "-") in wanted
        )
        print("distributions: " + ", ".join(dists))
    except Exception:
        pass


def report_threads() -> None:
    section("threads")
    for var in THREAD_VARS + OPENBLAS_TUNING_VARS:
        print(f"{var}={os.environ.get(var, '(unset)')}")
    print("loaded libraries: " + (", ".join(loaded_libraries()) or "(none matching)"))
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        print("threadpoolctl: not installed")
        return
    for info in threadpool_info():
        print(
            "threadpool: "
            + ", ".join(
                f"{k}={info.get(k)}"
                for k in (
                    "user_api",
                    "internal_api",
                    "num_threads",
                    "version",
                    "threading_layer",
                    "architecture",
                    "filepath",
                )
            )
        )


def find_photos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def pick_photos(args, root: Path) -> tuple[Path, Path]:
    from PIL import Image

    sizes = {}
    for p in find_photos(root):
        with Image.open(p) as im:
            sizes[p] = im.size
    large = Path(args.large_photo) if args.large_photo else max(sizes, key=lambda p: sizes[p][0] * sizes[p][1])
    medium = (
        Path(args.medium_photo)
        if args.medium_photo
        else min(  # nearest to 1000x1000 pixels
            (p for p in sizes if p != large), key=lambda p: (abs(sizes[p][0] * sizes[p][1] - 1_000_000), str(p))
        )
    )
    return large, medium


def timed_runs(fn, runs: int) -> tuple[list[float], object]:
    result = fn()  # warm-up (also allocates, loads models)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def bench_detection(fr, args, root: Path) -> dict:
    section(f"HOG detection (face_locations, model=hog, upsample={args.upsample}, 1 warm-up + {args.detect_runs} runs)")
    large, medium = pick_photos(args, root)
    out = {}
    for label, path in (("large", large), ("medium", medium)):
        img = fr.load_image_file(str(path))
        times, boxes = timed_runs(
            lambda img=img: fr.face_locations(img, number_of_times_to_upsample=args.upsample, model="hog"),
            args.detect_runs,
        )
        rel = os.path.relpath(path, root)
        h, w = img.shape[:2]
        print(
            f"{label:6s} {rel} {w}x{h}: best {min(times):.3f} s, median {statistics.median(times):.3f} s, "
            f"{len(boxes)} face(s) {boxes}"
        )
        out[rel] = [list(b) for b in boxes]
    return out


def build_crops(fr, root: Path, upsample: int):
    """Each face HOG finds in identities/*, cropped with a margin; returns (crops, records)."""
    import numpy as np

    crops, records = [], []
    ident = root / "identities"
    for path in find_photos(ident if ident.is_dir() else root):
        img = fr.load_image_file(str(path))
        for top, right, bottom, left in fr.face_locations(img, number_of_times_to_upsample=upsample, model="hog"):
            h, w = img.shape[:2]
            m = int(0.3 * max(bottom - top, right - left))
            t, lft = max(0, top - m), max(0, left - m)
            b, r = min(h, bottom + m), min(w, right + m)
            crop = np.ascontiguousarray(img[t:b, lft:r])
            box = (top - t, right - lft, bottom - t, left - lft)
            crops.append((crop, box))
            records.append({"photo": os.path.relpath(path, root), "box": [top, right, bottom, left]})
    return crops, records


def embed_pass(fr, crops, model: str):
    return [fr.face_encodings(c, known_face_locations=[box], num_jitters=1, model=model)[0] for c, box in crops]


def bench_embeddings(fr, args, crops) -> dict:
    import numpy as np

    reps = max(1, -(-args.faces // len(crops)))
    work = crops * reps
    section(
        f"embeddings (face_encodings, known locations, num_jitters=1): {len(crops)} distinct faces "
        f"x {reps} = {len(work)} per pass, 1 warm-up + {args.embed_passes} passes"
    )
    results = {}
    for model in MODELS:
        embed_pass(fr, crops[:3], model)  # warm-up: loads the shape predictor and the network
        per_face = []
        first = None
        for _ in range(args.embed_passes):
            t0 = time.perf_counter()
            encs = embed_pass(fr, work, model)
            per_face.append((time.perf_counter() - t0) / len(work) * 1000)
            if first is None:
                first = np.array(encs[: len(crops)])
        print(
            f"model={model:5s}: best {min(per_face):.1f} ms/face, median {statistics.median(per_face):.1f} ms/face "
            f"({1000 / min(per_face):.1f} faces/s in one process)"
        )
        results[model] = first
    return results


def _worker(payload):
    faces_dir, n, model, blas_threads = payload
    apply_thread_env(blas_threads)
    import face_recognition as fr

    crops, _ = build_crops(fr, Path(faces_dir), 1)
    work = (crops * (-(-n // len(crops))))[:n]
    embed_pass(fr, work[:3], model)
    t0 = time.perf_counter()
    embed_pass(fr, work, model)
    return t0, time.perf_counter()


def bench_workers(args, root: Path) -> None:
    import multiprocessing as mp

    section(
        f"embeddings in {args.workers} parallel processes (each BLAS threads="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}, {args.faces} faces each)"
    )
    ctx = mp.get_context("spawn")
    for model in MODELS:
        with ctx.Pool(args.workers) as pool:
            spans = pool.map(_worker, [(str(root), args.faces, model, args.blas_threads)] * args.workers)
        wall = max(e for _, e in spans) - min(s for s, _ in spans)
        total = args.faces * args.workers
        print(
            f"model={model:5s}: {total} faces in {wall:.2f} s wall = {total / wall:.1f} faces/s aggregate "
            f"({wall / args.faces * 1000:.1f} ms/face per process)"
        )


def save_and_compare(args, embeddings: dict, records, detections) -> None:
    import numpy as np

    arr = np.stack([embeddings[m] for m in MODELS]).astype(np.float64)
    if args.save_embeddings:
        np.save(args.save_embeddings, arr)
        side = args.save_embeddings + ".json"
        sidecar = {"models": list(MODELS), "crops": records, "detections": detections}
        Path(side).write_text(json.dumps(sidecar, indent=1))
        print(f"\nsaved embeddings {arr.shape} to {args.save_embeddings} (boxes in {side})")
    if args.compare:
        section(f"compare with {args.compare}")
        other = np.load(args.compare)
        side = Path(args.compare + ".json")
        meta = json.loads(side.read_text()) if side.exists() else None
        if meta is not None:
            same_crops = meta["crops"] == records
            print(f"crop boxes identical: {same_crops}")
            if detections and meta.get("detections"):
                common = set(detections) & set(meta["detections"])
                print(
                    f"detection boxes identical: {all(detections[k] == meta['detections'][k] for k in common)} "
                    f"({len(common)} photo(s) compared)"
                )
            if not same_crops:
                print("(the face crops differ, so the embedding difference below is not meaningful)")
        if other.shape != arr.shape:
            print(f"shapes differ: {arr.shape} vs {other.shape}")
            return
        for i, m in enumerate(MODELS):
            print(f"model={m:5s}: max abs difference {float(np.max(np.abs(arr[i] - other[i]))):.3g}")
        print(f"overall max abs difference {float(np.max(np.abs(arr - other))):.3g}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_thread_env(args.blas_threads)  # before numpy / dlib load OpenBLAS
    import dlib
    import face_recognition as fr

    if args.blas_threads is not None:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.blas_threads)
        except ImportError:
            pass

    root = Path(args.faces_dir)
    report_build(dlib)
    report_threads()
    detections = {} if args.skip_detect else bench_detection(fr, args, root)
    crops, records = build_crops(fr, root, args.upsample)
    embeddings = bench_embeddings(fr, args, crops)
    if args.workers > 1:
        bench_workers(args, root)
    save_and_compare(args, embeddings, records, detections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
