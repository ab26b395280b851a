"""End-to-end latency and enrolment throughput, through the API and real Celery workers.

Prints figures; asserts nothing. By default it runs on PostgreSQL and Redis, the
production arrangement: it creates its own database (dropped at the end) on the
server at REUNITE_TEST_POSTGRES and uses an empty Redis database (emptied again at
the end). The API runs in this process (TestClient on create_app, as the e2e tests
do); the workers are `reunite worker` processes.

1. Latency: N case photos submitted one after the other (POST /cases), each waited
   for before the next, to one idle worker process. Measured from just before the
   POST to the moment the worker wrote the candidates (the case's `searched_at`),
   and, as a check, to when this process saw the status `searched`. Set against:
   - the pure `analyse_image` time (decode + detect + embed) of the same photo,
     measured in this process right after its case was searched (the worker idle,
     one native thread, as the worker runs it), so each pair shares the machine's
     load of the moment;
   - the worker's own task times (`process_case` + `search_case`, from its log).
   The difference is what the queue, the database, the encryption and the index cost.
2. Enrolment throughput: M record photos uploaded (POST /records/{id}/photos) with
   TWO worker processes running, timed from the first upload to the last photo
   `embedded`; against the raw face_recognition library (load_image_file,
   face_locations, face_encodings) on the same files in a multiprocessing pool of two.

Photos: ../shared/testdata/faces/identities (fallback: the face_recognition sdist's
photos); the first photo of each identity is enrolled as the gallery first, so that
searches find and write candidates.

Usage: .venv/bin/python bench/e2e_latency.py [--submissions 100] [--enrolments 60] [--warmup 3]
"""

from __future__ import annotations

import argparse
import base64
import importlib
import logging
import multiprocessing
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# One native thread per process everywhere (the workers do the same): set before dlib loads.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import redis  # noqa: E402
import structlog  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
TASK_LINE = re.compile(r"Task (reunite\.\w+)\[[^\]]+\] succeeded in ([0-9.]+)s")
POLL_SECONDS = 0.01
DEADLINE_SECONDS = 120


# --- photos ------------------------------------------------------------------------------------


def photo_sets() -> tuple[str, dict[str, list[Path]]]:
    """(where from, identity -> photos)."""
    shared = REPO.parent / "shared" / "testdata" / "faces" / "identities"
    if shared.is_dir():
        folders = sorted(p for p in shared.iterdir() if p.is_dir())
        return str(shared), {
            f.name: sorted(p for p in f.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES) for f in folders
        }
    from tests.support.faces import sdist_faces

    folder = sdist_faces()
    return str(folder), {
        "obama": [folder / n for n in ("obama.jpg", "obama2.jpg", "obama3.jpg")],
        "biden": [folder / "biden.jpg"],
    }


def cycled(photos: list[Path], count: int) -> list[Path]:
    return [photos[i % len(photos)] for i in range(count)]


# --- statistics --------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1)."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: list[float]) -> str:
    if not values:
        return "n=0"
    ms = [v * 1000 for v in values]
    return (
        f"p50 {percentile(ms, 0.5):7.0f} ms   p95 {percentile(ms, 0.95):7.0f} ms   "
        f"mean {statistics.fmean(ms):7.0f} ms   (n={len(ms)})"
    )


def minus(left: list[float], right: list[float]) -> list[float]:
    return [a - b for a, b in zip(left, right, strict=True)]


def machine_state() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with open("/proc/uptime") as handle:
        up = float(handle.read().split()[0])
    return f"{os.cpu_count()} cores, load average {load} (1/5/15 min), up {up / 3600:.1f} h"


# --- the service under test --------------------------------------------------------------------


class Bench:
    """A fresh database, the API in this process, worker processes, two approved organisations."""

    def __init__(self, *, postgres_admin_url: str, redis_url: str, scratch: Path):
        from service.settings import Settings
        from tests.support.service import PostgresDatabases

        self.scratch = scratch
        self.databases = PostgresDatabases(postgres_admin_url)
        self.database = self.databases.create()  # dropped by close()
        self.redis_url = redis_url
        self.settings = Settings(
            environment="test",
            secret_key="b" * 48,
            database_url=self.databases.url(self.database),
            master_key=base64.b64encode(os.urandom(32)).decode(),
            data_dir=scratch / "data",
            audit_key_path=scratch / "audit-key.pem",
            broker_url=redis_url,
            daily_cases_per_user=1_000_000,
            daily_cases_per_organisation=1_000_000,
        )
        self.app = self.client = self.workers = None

    def start(self) -> None:
        from fastapi.testclient import TestClient

        from service.app import create_app
        from service.db import make_engine
        from service.migrate import upgrade
        from tests.support.workers import Workers

        engine = make_engine(self.settings.database_url)
        upgrade(engine)
        engine.dispose()
        self.workers = Workers(self.settings, self.redis_url, self.scratch)
        self.start_worker()
        self.app = create_app(self.settings)  # its dispatcher sends to the settings' broker (Redis)
        # The API's request log lines would bury the figures.
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        self.client = TestClient(self.app).__enter__()
        self.session = self.app.state.session_factory()
        self._arrange_people()
        self.wait_ready(0)

    def start_worker(self) -> int:
        self.workers.start(concurrency=1)
        return len(self.workers.processes) - 1

    def wait_ready(self, number: int) -> None:
        path = self.workers.log_path(number)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while " ready." not in path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {number} did not start:\n{self.workers.log_tails()}")
            time.sleep(0.1)

    def _arrange_people(self) -> None:
        from service.auth.tokens import issue_access_token
        from tests.support.service import make_organisation, make_user

        owner = make_organisation(self.session, name="Gallery owner")
        searcher = make_organisation(self.session, name="Searcher")
        users = {
            "owner": make_user(self.session, "caseworker", organisation=owner).user,
            "searcher": make_user(self.session, "caseworker", organisation=searcher).user,
        }
        self.session.commit()
        self.headers = {}
        for name, user in users.items():
            token, _ = issue_access_token(
                secret=self.settings.signing_secret(),
                user_id=user.id,
                token_version=user.token_version,
                lifetime=timedelta(hours=2),
            )
            self.headers[name] = {"Authorization": f"Bearer {token}"}
        self.session.rollback()

    # HTTP steps ---------------------------------------------------------------------------

    def create_record(self, number: int) -> int:
        now = datetime.now(UTC)
        body = {
            "case_reference": f"BENCH-{number}",
            "label": f"Bench child {number}",
            "age_years": 9,
            "missing_since": (now.date() - timedelta(days=30)).isoformat(),
            "consent": {
                "guardian_name": "Bench Guardian",
                "guardian_relationship": "mother",
                "responsibility_verified_by": "benchmark",
                "lawful_basis": "consent",
                "purpose": "benchmark",
                "notice_version": "bench",
                "obtained_at": (now - timedelta(days=1)).isoformat(),
                "expires_at": (now + timedelta(days=30)).isoformat(),
            },
        }
        response = self.client.post("/api/v1/records", json=body, headers=self.headers["owner"])
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def upload(self, record_id: int, data: bytes) -> int:
        response = self.client.post(
            f"/api/v1/records/{record_id}/photos",
            headers=self.headers["owner"],
            files={"file": ("photo", data, "application/octet-stream")},
        )
        assert response.status_code == 202, response.text
        return response.json()["photo_id"]

    def submit(self, data: bytes, number: int) -> int:
        response = self.client.post(
            "/api/v1/cases",
            headers=self.headers["searcher"],
            data={"case_reference": f"PROBE-{number}", "purpose": "benchmark"},
            files={"file": ("photo", data, "application/octet-stream")},
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]

    # Watching the database --------------------------------------------------------------------

    def wait_case(self, case_id: int):
        from service.cases.models import Case

        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            row = self.session.execute(select(Case.status, Case.searched_at).where(Case.id == case_id)).one()
            self.session.rollback()
            if row.status not in ("queued", "processing"):
                return row, time.time()
            if time.monotonic() > deadline:
                raise SystemExit(f"case {case_id} stuck in {row.status}:\n{self.workers.log_tails()}")
            time.sleep(POLL_SECONDS)

    def wait_photos(self, photo_ids: list[int]) -> dict[str, int]:
        from service.photos.models import Photo

        deadline = time.monotonic() + DEADLINE_SECONDS + len(photo_ids)
        while True:
            counts = dict(
                self.session.execute(
                    select(Photo.status, func.count()).where(Photo.id.in_(photo_ids)).group_by(Photo.status)
                ).all()
            )
            self.session.rollback()
            if not counts.get("queued") and not counts.get("processing"):
                return counts
            if time.monotonic() > deadline:
                raise SystemExit(f"photos still pending {counts}:\n{self.workers.log_tails()}")
            time.sleep(POLL_SECONDS * 5)

    def candidate_count(self) -> int:
        from service.reviews.models import Candidate

        count = self.session.scalar(select(func.count()).select_from(Candidate))
        self.session.rollback()
        return count

    def task_times(self, number: int, offset: int) -> tuple[dict[str, list[float]], int]:
        """Task durations logged by worker `number` after byte `offset`, and the new offset."""
        text = self.workers.log_path(number).read_bytes()
        found: dict[str, list[float]] = {}
        for name, seconds in TASK_LINE.findall(text[offset:].decode(errors="replace")):
            found.setdefault(name, []).append(float(seconds))
        return found, len(text)

    def close(self) -> None:
        if self.workers is not None:
            self.workers.stop_all(warm=False)
        if self.client is not None:
            self.session.close()
            self.client.__exit__(None, None, None)
            self.app.state.engine.dispose()
        self.databases.drop(self.database)
        self.databases.engine.dispose()
        redis.Redis.from_url(self.redis_url).flushdb()


def empty_redis_database(base: str) -> str:
    """The first empty database (15 downwards) on the Redis server: never one in use."""
    for number in range(15, 0, -1):
        url = f"{base.rstrip('/')}/{number}"
        if redis.Redis.from_url(url).dbsize() == 0:
            return url
    raise SystemExit("no empty Redis database to use; pass --redis-url")


# --- the measurements -------------------------------------------------------------------------


def measure_latency(bench: Bench, probes: list[Path], warmup: int) -> dict:
    """Submit each photo and wait for its candidates; then, while the worker is idle, analyse the same
    photo here. Interleaving the two keeps each pair under the same load from the rest of the machine."""
    analyse = Analyser(bench.settings.max_faces_per_photo)
    for number, path in enumerate(probes[:warmup]):  # the first search loads the replica, etc.
        bench.wait_case(bench.submit(path.read_bytes(), -1 - number))
        analyse(path.read_bytes())
    _, offset = bench.task_times(0, 0)
    written, seen, posting, analysed = [], [], [], []
    for number, path in enumerate(probes):
        data = path.read_bytes()
        started_wall, started = time.time(), time.perf_counter()
        case_id = bench.submit(data, number)
        posting.append(time.perf_counter() - started)
        row, seen_wall = bench.wait_case(case_id)
        if row.status != "searched":
            raise SystemExit(f"case {case_id} ended {row.status} ({path.name})")
        written.append(as_utc(row.searched_at).timestamp() - started_wall)
        seen.append(seen_wall - started_wall)
        analysed.append(analyse(data))
    tasks, _ = bench.task_times(0, offset)
    return dict(
        written=written, seen=seen, posting=posting, analysed=analysed, tasks=tasks, candidates=bench.candidate_count()
    )


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Analyser:
    """Pure decode + analyse_image of one photo, timed, with one native thread as in a worker."""

    def __init__(self, max_faces: int):
        from threadpoolctl import threadpool_limits

        from matching.faces import FaceSettings

        threadpool_limits(limits=1)
        self.settings = FaceSettings(max_faces=max_faces)

    def __call__(self, data: bytes) -> float:
        from matching.faces import analyse_image
        from matching.images import decode_image

        started = time.perf_counter()
        analyse_image(decode_image(data), "probe", self.settings)
        return time.perf_counter() - started


def measure_enrolment(bench: Bench, photos: list[Path]) -> tuple[float, float, dict]:
    """(first upload -> all processed, time spent uploading, outcome counts)."""
    records = [bench.create_record(10_000 + number) for number in range(len(photos))]
    payloads = [path.read_bytes() for path in photos]
    started = time.perf_counter()
    photo_ids = [bench.upload(record_id, data) for record_id, data in zip(records, payloads)]
    uploading = time.perf_counter() - started
    counts = bench.wait_photos(photo_ids)
    return time.perf_counter() - started, uploading, counts


def _raw_init() -> None:
    importlib.import_module("face_recognition")  # models load once per pool process, before the clock


def _raw_embed(path: str) -> int:
    import face_recognition

    pixels = face_recognition.load_image_file(path)
    return len(face_recognition.face_encodings(pixels, face_recognition.face_locations(pixels)))


def measure_raw(photos: list[Path], processes: int) -> float:
    context = multiprocessing.get_context("spawn")  # fresh processes, like worker processes
    with context.Pool(processes, initializer=_raw_init) as pool:
        pool.map(_raw_embed, [str(photos[0])] * processes, chunksize=1)  # warm each process
        started = time.perf_counter()
        faces = sum(pool.map(_raw_embed, [str(p) for p in photos], chunksize=1))
        elapsed = time.perf_counter() - started
    if faces < len(photos):
        print(f"  (raw library found {faces} faces in {len(photos)} photos)")
    return elapsed


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    from tests.support.service import ADMIN_URL

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=100, help="sequential case submissions timed")
    parser.add_argument("--warmup", type=int, default=3, help="submissions before timing (not counted)")
    parser.add_argument("--enrolments", type=int, default=60, help="record photos enrolled with two workers")
    parser.add_argument("--postgres", default=ADMIN_URL, help="PostgreSQL server URL (a database is created)")
    parser.add_argument(
        "--redis-url", default=None, help="Redis database for the broker (default: an empty one on 127.0.0.1:6379)"
    )
    args = parser.parse_args()

    source, identities = photo_sets()
    every_photo = [p for photos in identities.values() for p in photos]
    probes = cycled(every_photo, args.submissions)
    enrolments = cycled(every_photo, args.enrolments)
    redis_url = args.redis_url or empty_redis_database("redis://127.0.0.1:6379")
    print(f"machine at start: {machine_state()}")
    print(
        f"photos: {len(every_photo)} from {source} ({len(identities)} identities); broker {redis_url}; "
        f"PostgreSQL {args.postgres.rsplit('@', 1)[-1]}"
    )

    scratch = Path(tempfile.mkdtemp(prefix="reunite-bench-"))
    bench = Bench(postgres_admin_url=args.postgres, redis_url=redis_url, scratch=scratch)
    try:
        bench.start()
        gallery = []
        for number, photos in enumerate(identities.values()):
            gallery.append(bench.upload(bench.create_record(number), photos[0].read_bytes()))
        counts = bench.wait_photos(gallery)
        print(f"gallery: {len(gallery)} records, one photo each: {counts}")

        print(
            f"\n1. latency, {args.submissions} sequential submissions, one idle worker process "
            f"(after {args.warmup} warm-up submissions)"
        )
        latency = measure_latency(bench, probes, args.warmup)
        print(f"  POST /cases answered (202)          {summary(latency['posting'])}")
        print(f"  POST -> candidates written          {summary(latency['written'])}")
        print(f"  POST -> status seen by the client   {summary(latency['seen'])}")
        tasks = latency["tasks"]
        embed_tasks, search_tasks = tasks.get("reunite.process_case", []), tasks.get("reunite.search_case", [])
        print(f"  worker task process_case            {summary(embed_tasks)}")
        print(f"  worker task search_case             {summary(search_tasks)}")
        print(f"  pure decode + analyse_image         {summary(latency['analysed'])}")
        print(f"  written - analyse (same photo)      {summary(minus(latency['written'], latency['analysed']))}")
        if len(embed_tasks) == len(search_tasks) == len(latency["written"]):
            in_tasks = [e + s for e, s in zip(embed_tasks, search_tasks)]
            print(f"  written - the two tasks' run time   {summary(minus(latency['written'], in_tasks))}")
            print(f"  process_case - analyse              {summary(minus(embed_tasks, latency['analysed']))}")
        print(f"  candidates written in all: {latency['candidates']}")

        print(f"\n2. enrolment, {args.enrolments} record photos, two worker processes")
        bench.wait_ready(bench.start_worker())
        elapsed, uploading, counts = measure_enrolment(bench, enrolments)
        service_rate = args.enrolments / elapsed
        print(f"  Reunite: first upload -> all processed {elapsed:6.1f} s  = {service_rate:5.2f} photos/s  {counts}")
        print(f"    (of which {uploading:.1f} s uploading: the API ran here, on the same two cores)")
        bench.workers.stop_all(warm=False)  # the raw library gets the cores to itself, as the workers had
        raw_elapsed = measure_raw(enrolments, processes=2)
        raw_rate = args.enrolments / raw_elapsed
        print(f"  raw face_recognition, pool of 2:      {raw_elapsed:6.1f} s  = {raw_rate:5.2f} photos/s")
        print(f"  ratio Reunite / raw: {service_rate / raw_rate:.2f}")
    finally:
        bench.close()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nmachine at end: {machine_state()}")


if __name__ == "__main__":
    main()
