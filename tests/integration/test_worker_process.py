"""Real Celery worker processes (`reunite worker`) on Redis and PostgreSQL, and `reunite serve`.

Slow (marked `worker_process`): each test starts worker processes that load the face
models. Work is sent exactly as the API sends it (CeleryDispatcher, ids only), and
outcomes are read from the database, which holds all state (there is no result
backend). Redis uses one database number per test run (REUNITE_TEST_REDIS_DB or a
random one), flushed at the start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from service.auth import service as auth_service
from service.cases.models import Case
from service.db import utcnow
from service.photos.models import Embedding, Photo
from service.reviews.models import Candidate
from service.settings import Settings
from service.worker.dispatch import CeleryDispatcher
from service.worker.reaper import reap
from tests.support.gallery import World, add_photo, make_record
from tests.support.workers import Workers, redis_database, wait_for

pytestmark = [pytest.mark.faces, pytest.mark.worker_process]

DONE_CASE = ("searched", "no_face", "rejected_input", "failed")


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url():
    yield from redis_database()


@pytest.fixture(scope="session")
def rabbitmq_url():
    """A fresh RabbitMQ virtual host for this run (queue names are fixed, so share nothing)."""
    port_open = False
    with socket.socket() as probe:
        port_open = probe.connect_ex(("127.0.0.1", 5672)) == 0
    if not port_open or shutil.which("rabbitmqctl") is None:
        pytest.skip("RabbitMQ is not running here")
    vhost = f"reunite_test_{os.getpid()}"
    for command in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
        subprocess.run(["rabbitmqctl", "-q", *command], check=True, capture_output=True, timeout=60)
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


@pytest.fixture
def postgres_only(backend):
    if backend != "postgresql":
        pytest.skip("worker processes are tested on PostgreSQL (the production database)")


@pytest.fixture
def world(postgres_only, app, db, tmp_path, monkeypatch) -> World:
    monkeypatch.setattr(auth_service, "hash_password", lambda password: "not-a-usable-hash")
    return World(app, db, tmp_path)


@pytest.fixture
def workers(settings, redis_url, tmp_path):
    started = Workers(settings, redis_url, tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def dispatcher(settings, redis_url) -> CeleryDispatcher:
    return CeleryDispatcher(settings.model_copy(update={"broker_url": redis_url}))


def status_of(db: Session, model, row_id: int) -> str:
    db.rollback()  # a fresh snapshot each time
    return db.scalar(select(model.status).where(model.id == row_id))


def enrol(world: World, dispatcher: CeleryDispatcher, data: bytes, record=None) -> Photo:
    photo = world.record_photo(data, record=record)
    dispatcher.record_photo(photo.id)
    wait_for(lambda: status_of(world.db, Photo, photo.id) == "embedded", what=f"photo {photo.id} to be embedded")
    return photo


def submit(world: World, dispatcher: CeleryDispatcher, data: bytes) -> Case:
    case = world.case(data)
    dispatcher.case(case.id)
    return case


def searched(world: World, case: Case) -> Case:
    wait_for(lambda: status_of(world.db, Case, case.id) in DONE_CASE, what=f"case {case.id} to be searched")
    return world.reload(case)


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_worker_embeds_a_record_photo_and_searches_a_case(world, broker, settings, tmp_path, request, sdist_images):
    url = request.getfixturevalue("redis_url" if broker == "redis" else "rabbitmq_url")
    workers = Workers(settings, url, tmp_path)
    dispatcher = CeleryDispatcher(settings.model_copy(update={"broker_url": url}))
    request.addfinalizer(workers.stop_all)
    workers.start()
    photo = enrol(world, dispatcher, (sdist_images / "obama.jpg").read_bytes())
    case = searched(world, submit(world, dispatcher, (sdist_images / "obama2.jpg").read_bytes()))

    assert case.status == "searched" and case.faces == 1
    [candidate] = world.candidates(case)
    assert (candidate.record_id, candidate.rank, candidate.status) == (photo.record_id, 1, "pending_review")


def test_a_worker_killed_mid_task_loses_nothing_and_duplicates_nothing(
    world, workers, dispatcher, settings, sdist_images
):
    workers.start()
    photo = enrol(world, dispatcher, (sdist_images / "obama.jpg").read_bytes())
    # Hold the record's row so the case's search blocks where it writes its candidates,
    # after the probe face is stored: a controlled "mid-task" to kill the worker in.
    blocker = Session(create_engine(settings.database_url))
    blocker.execute(text("SELECT id FROM records WHERE id = :id FOR UPDATE"), {"id": photo.record_id})
    try:
        case = submit(world, dispatcher, (sdist_images / "obama2.jpg").read_bytes())
        wait_for(lambda: blocked_backends(world.db), what="the search to wait on the record's lock")
        assert status_of(world.db, Case, case.id) == "processing"
        workers.kill(workers.processes[0])
    finally:
        blocker.rollback()
        blocker.close()
        blocker.get_bind().dispose()
    assert probe_faces(world.db, case) == 1  # stored by the killed worker before it died

    workers.start()  # a new worker; the reaper (run here, as if its timeout had passed) re-queues the case
    later = utcnow() + timedelta(minutes=settings.processing_timeout_minutes + 1)
    report = reap(
        world.app.state.session_factory,
        dispatcher=dispatcher,
        processing_timeout=timedelta(minutes=settings.processing_timeout_minutes),
        now=later,
    )
    assert report.cases_sent == [case.id]
    case = searched(world, case)

    assert case.status == "searched" and case.attempts == 2
    assert [(c.record_id, c.rank) for c in world.candidates(case)] == [(photo.record_id, 1)]
    assert probe_faces(world.db, case) == 1  # the second attempt reused the stored face


def blocked_backends(db: Session) -> int:
    db.rollback()
    return db.scalar(
        text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
    )


def probe_faces(db: Session, case: Case) -> int:
    db.rollback()
    return db.scalar(
        select(func.count())
        .select_from(Embedding)
        .join(Photo, Photo.id == Embedding.photo_id)
        .where(Photo.case_id == case.id)
    )


def test_after_a_withdrawal_no_search_in_any_worker_process_returns_the_record(
    world, workers, dispatcher, sdist_images
):
    workers.start(concurrency=2)  # two pool processes, each with its own index replica
    obama = (sdist_images / "obama.jpg").read_bytes()
    probe = (sdist_images / "obama2.jpg").read_bytes()
    withdrawn = enrol(world, dispatcher, obama)
    kept = enrol(world, dispatcher, obama)  # a second record of the same face, which stays
    early = [submit(world, dispatcher, probe) for _ in range(4)]
    wait_for(
        lambda: any(status_of(world.db, Case, case.id) == "searched" for case in early),
        what="a first case to be searched",
    )

    world.withdraw(withdrawn.record_id)
    withdrawn_at = utcnow()  # the erasure has committed: from here no search may propose the record
    late = [submit(world, dispatcher, probe) for _ in range(2)]
    for case in early + late:
        assert searched(world, case).status == "searched"

    world.db.rollback()
    every = world.db.scalars(select(Candidate).where(Candidate.case_id.in_([c.id for c in early + late]))).all()
    assert withdrawn.record_id not in {c.record_id for c in every}
    assert all(c.created_at <= withdrawn_at for c in every if c.status == "redacted")
    assert any(c.status == "redacted" for c in every), "no search found the record before its withdrawal"
    for case in late:
        assert [c.record_id for c in world.candidates(case)] == [kept.record_id]


# --- the embedded service ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_runs_a_worker_on_the_filesystem_broker_and_stops_it(tmp_path, sdist_images):
    """`reunite serve` on SQLite: a photo is processed by its worker child while the API answers."""
    import psutil

    data_dir, port = tmp_path / "data", free_port()
    environment = {**os.environ, "REUNITE_DATA_DIR": str(data_dir), "REUNITE_ENVIRONMENT": "development"}
    for variable in ("REUNITE_DATABASE_URL", "REUNITE_BROKER_URL"):
        environment.pop(variable, None)
    serve = subprocess.Popen(
        [sys.executable, "-c", "from service.cli import app; app()", "serve", "--port", str(port)],
        env=environment,
        stdout=open(tmp_path / "serve.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), what="the API to answer")
        children = psutil.Process(serve.pid).children(recursive=True)
        assert children, "serve started no worker"
        settings = Settings(data_dir=data_dir)
        photo_id = _stored_record_photo(settings, (sdist_images / "obama.jpg").read_bytes())
        CeleryDispatcher(settings).record_photo(photo_id)
        engine = create_engine(settings.sqlalchemy_url)
        with Session(engine) as db:
            answered = []
            wait_for(
                lambda: (
                    answered.append(_answers(f"http://127.0.0.1:{port}/healthz"))
                    or status_of(db, Photo, photo_id) not in ("queued", "processing")
                ),
                what="the embedded worker to process the photo",
            )
            assert status_of(db, Photo, photo_id) == "embedded"
            assert all(answered)  # the API kept answering meanwhile
        engine.dispose()

        serve.send_signal(signal.SIGTERM)  # what a service manager sends
        serve.wait(timeout=60)
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], "worker processes outlived serve"
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _stored_record_photo(settings: Settings, data: bytes) -> int:
    """A record with consent and one queued photo, written straight into serve's database."""
    from service.photos.storage import PhotoVault
    from tests.support.service import make_organisation, make_user

    engine = create_engine(settings.sqlalchemy_url)
    try:
        with Session(engine) as db:
            organisation = make_organisation(db)
            user = make_user(db, "caseworker", organisation=organisation).user
            record = make_record(db, organisation_id=organisation.id, user_id=user.id)
            vault = PhotoVault(settings.photo_root, settings.photo_master_key())
            photo = add_photo(
                db,
                vault=vault,
                settings=settings,
                data=data,
                organisation_id=organisation.id,
                user_id=user.id,
                record_id=record.id,
            )
            db.commit()
            return photo.id
    finally:
        engine.dispose()
