"""Re-embedding the gallery with another model and switching over, on both databases, with real faces.

Records and cases are enrolled through the worker pipeline run in this process (as in
test_worker.py); the re-embedding's batches run here too (`Reembedder`), from the
photos sealed in the app's vault. The second model is the real 68-point-aligned dlib
ResNet, a different embedding space, so every search below says which model it used.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from matching.embedders import DEFAULT_MODEL_ID
from service.audit.models import AuditEvent
from service.auth.models import User
from service.cases.models import Case
from service.cli import app as cli
from service.db import transaction, utcnow
from service.worker import reembed as reembed_module
from service.embedding.models import ReembedFailure, ReembedJob
from service.worker.reembed import NOT_RUNNING, SKIPPED, Reembedder
from service.embedding.service import (
    COMPLETE,
    FAILED,
    MORE,
    ReembedRefused,
    active_model,
    cancel_reembed,
    claim_batch,
    models_to_embed,
    photos_to_embed,
    release_batch,
    stalled_jobs,
    start_reembed,
)
from service.photos.models import Embedding, IndexChange, Photo
from service.records.models import Record
from service.worker import pipeline as pipeline_module
from service.worker.celery_app import REAP, make_celery
from service.worker.replica import IndexReplica
from service.worker.tasks import REEMBED_BATCH, process_state
from tests.support.gallery import World
from tests.support.service import make_user

pytestmark = pytest.mark.faces

ALIGN68 = "dlib_resnet_v1_align68"


@pytest.fixture
def world(app, db, tmp_path) -> World:
    return World(app, db, tmp_path)


@pytest.fixture
def admin(db) -> User:
    account = make_user(db, "platform_admin")
    db.commit()
    return account.user


@pytest.fixture
def photos(sdist_images) -> dict[str, bytes]:
    return {name: (sdist_images / f"{name}.jpg").read_bytes() for name in ("obama", "obama2", "obama3", "biden")}


def start(world: World, admin: User, model: str = ALIGN68) -> int:
    with transaction(world.app.state.session_factory) as session:
        return start_reembed(session, target_model_id=model, actor=session.get(User, admin.id), now=utcnow()).id


def reembedder(world: World, **options) -> Reembedder:
    """A job runner with its own index replica, as a worker process on the same data folder has."""
    return Reembedder(
        settings=world.settings,
        sessions=world.app.state.session_factory,
        vault=world.vault,
        replica=IndexReplica(world.tmp_path / "index"),
        **options,
    )


def job(world: World, job_id: int) -> ReembedJob:
    world.db.rollback()  # a fresh snapshot: the pipeline committed in other sessions
    return world.db.get(ReembedJob, job_id, populate_existing=True)


def active(world: World) -> str:
    world.db.rollback()
    return active_model(world.db)[0]


def models_of(world: World, photo: Photo) -> list[str]:
    world.db.rollback()
    return sorted(world.db.scalars(select(Embedding.model_id).where(Embedding.photo_id == photo.id)))


def index_adds(world: World, photo: Photo, model_id: str) -> int:
    world.db.rollback()
    return world.db.scalar(
        select(func.count())
        .select_from(IndexChange)
        .join(Embedding, Embedding.id == IndexChange.embedding_id)
        .where(Embedding.photo_id == photo.id, IndexChange.model_id == model_id, IndexChange.op == "add")
    )


def searched(world: World, data: bytes) -> list:
    case = world.case(data)
    assert world.pipeline.process_case(case.id) == "searched"
    return world.candidates(case)


def audit_actions(world: World) -> list[str]:
    world.db.rollback()
    return list(world.db.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))


def withdraw(world: World, photo: Photo) -> None:
    world.db.rollback()  # SQLite: a write must not start from an older read snapshot
    world.withdraw(photo.record_id)


def case_of(world: World, candidate) -> Case:
    world.db.rollback()
    return world.db.get(Case, candidate.case_id)


def record_of(world: World, photo: Photo) -> Record:
    world.db.rollback()
    return world.db.get(Record, photo.record_id)


# --- the switch-over ------------------------------------------------------------------------------


def test_the_gallery_moves_to_the_new_model_and_searches_follow_the_switch(world, admin, photos):
    obama = world.enrol(photos["obama"])
    biden = world.enrol(photos["biden"])
    [before] = searched(world, photos["obama2"])
    assert (before.record_id, before.model_id) == (obama.record_id, DEFAULT_MODEL_ID)
    open_case_photo = world.db.scalars(select(Photo).where(Photo.case_id == before.case_id)).one()

    job_id = start(world, admin)
    assert (job(world, job_id).status, job(world, job_id).total) == ("queued", 3)  # two record photos, one open case
    assert models_to_embed(world.db) == (DEFAULT_MODEL_ID, ALIGN68)
    runner = reembedder(world, batch_size=2)
    assert runner.run_batch(job_id) == MORE
    progress = job(world, job_id)
    assert (progress.status, progress.done, progress.total, progress.failed) == ("running", 2, 3, 0)

    # Mid-job: searches still use the old model; a photo enrolled now is embedded with both.
    assert active(world) == DEFAULT_MODEL_ID
    [during] = searched(world, photos["obama2"])
    assert (during.record_id, during.model_id) == (obama.record_id, DEFAULT_MODEL_ID)
    obama3 = world.enrol(photos["obama3"])
    assert models_of(world, obama3) == sorted([DEFAULT_MODEL_ID, ALIGN68])
    assert index_adds(world, obama3, ALIGN68) == 1

    assert runner.run_to_end(job_id) == COMPLETE
    done = job(world, job_id)
    assert (done.status, done.done, done.total, done.failed) == ("complete", 5, 5, 0)
    assert done.finished_at is not None and done.started_by_id == admin.id
    assert active(world) == ALIGN68 and active_model(world.db)[1] == done.target_model_version
    for photo in (obama, biden, obama3, open_case_photo):  # the old model's embeddings are kept beside the new
        assert models_of(world, photo) == sorted([DEFAULT_MODEL_ID, ALIGN68])
    assert [index_adds(world, p, ALIGN68) for p in (obama, biden, open_case_photo)] == [1, 1, 0]  # probes: never
    assert (world.tmp_path / "index" / f"{ALIGN68}.faiss").exists()  # saved for searchers to load
    # (searches are audited as well: left out here)
    assert [action for action in audit_actions(world) if "search" not in action][-2:] == [
        "reembed_started",
        "embedding_model_switched",
    ]

    # After the switch: only the new model is searched, and it still finds the right people.
    after = searched(world, photos["obama2"])
    assert {c.model_id for c in after} == {ALIGN68}
    assert {c.record_id for c in after} == {obama.record_id, obama3.record_id}
    assert searched(world, photos["biden"])[0].record_id == biden.record_id
    # A new photo is embedded with the new model only, and matched against the open cases' new probe faces.
    newcomer = world.enrol(photos["obama3"])
    assert models_of(world, newcomer) == [ALIGN68]
    proposals = [c for c in world.candidates(case_of(world, before)) if c.record_id == newcomer.record_id]
    assert [c.model_id for c in proposals] == [ALIGN68]
    # A second photo of a record the open case already proposes does not propose it again with the new model.
    world.enrol(photos["obama3"], record=record_of(world, obama))
    assert [c.record_id for c in world.candidates(case_of(world, before))].count(obama.record_id) == 1


def test_switching_back_is_quick_because_the_old_embeddings_are_kept(world, admin, photos):
    world.enrol(photos["obama"])
    assert reembedder(world).run_to_end(start(world, admin)) == COMPLETE
    back = start(world, admin, DEFAULT_MODEL_ID)
    assert (job(world, back).total, job(world, back).done) == (1, 1)
    assert reembedder(world).run_to_end(back) == COMPLETE
    assert active(world) == DEFAULT_MODEL_ID


def test_a_photo_whose_worker_read_the_old_model_is_embedded_again_after_a_switch(world, admin, photos, monkeypatch):
    world.enrol(photos["biden"])
    late = world.record_photo(photos["obama"])
    real = pipeline_module.analyse_image

    def switch_while_analysing(image, purpose, settings, embedder=None):
        faces = real(image, purpose, settings, embedder)
        if embedder.id == DEFAULT_MODEL_ID:  # this worker read the models before any job existed
            assert reembedder(world).run_to_end(start(world, admin)) == COMPLETE
        return faces

    monkeypatch.setattr(pipeline_module, "analyse_image", switch_while_analysing)
    assert world.pipeline.process_record_photo(late.id) == "embedded"

    assert active(world) == ALIGN68
    assert models_of(world, late) == [ALIGN68] and index_adds(world, late, ALIGN68) == 1
    monkeypatch.setattr(pipeline_module, "analyse_image", real)
    assert searched(world, photos["obama2"])[0].record_id == late.record_id


# --- withdrawal, idempotence, failures --------------------------------------------------------------


def test_a_withdrawal_during_the_job_leaves_nothing_behind(world, admin, photos, monkeypatch):
    obama = world.enrol(photos["obama"])
    biden = world.enrol(photos["biden"])
    kept = world.enrol(photos["obama3"])
    job_id = start(world, admin)
    runner = reembedder(world, batch_size=1)
    assert runner.run_batch(job_id) == MORE  # obama's photo now has both models' embeddings
    assert ALIGN68 in models_of(world, obama)
    real = reembed_module.analyse_image
    analysed = []

    def withdraw_biden_meanwhile(image, purpose, settings, embedder=None):
        faces = real(image, purpose, settings, embedder)
        if not analysed:  # biden's photo is being embedded: the family withdraws consent right now
            withdraw(world, biden)
        analysed.append(faces)
        return faces

    monkeypatch.setattr(reembed_module, "analyse_image", withdraw_biden_meanwhile)
    assert runner.run_batch(job_id) == MORE
    withdraw(world, obama)  # after the job embedded it: every model's embeddings must go
    assert runner.run_to_end(job_id) == COMPLETE

    assert models_of(world, biden) == [] and models_of(world, obama) == []  # every model's embeddings erased
    assert index_adds(world, biden, ALIGN68) == 0
    assert (job(world, job_id).done, job(world, job_id).total) == (1, 1)  # only the kept record is due
    index = IndexReplica(world.tmp_path / "fresh")
    with world.app.state.session_factory() as session:
        index.catch_up(session, ALIGN68)
    world.db.rollback()
    kept_ids = set(
        world.db.scalars(select(Embedding.id).where(Embedding.photo_id == kept.id, Embedding.model_id == ALIGN68))
    )
    assert set(index.index(ALIGN68).ids().tolist()) == kept_ids
    assert [c.record_id for c in searched(world, photos["obama2"])] == [kept.record_id]
    assert searched(world, photos["biden"]) == []


def test_a_repeated_batch_writes_nothing_twice_and_one_claim_works_at_a_time(world, admin, photos):
    first = world.enrol(photos["obama"])
    second = world.enrol(photos["biden"])
    job_id = start(world, admin)
    runner = reembedder(world)
    sessions = world.app.state.session_factory
    with transaction(sessions) as session:
        claim = claim_batch(session, job_id=job_id, now=utcnow(), lease=runner.lease)
    with transaction(sessions) as session:
        batch = photos_to_embed(session, claim=claim, now=utcnow(), limit=10)
    assert [p.id for p in batch] == [first.id, second.id]
    assert runner.run_batch(job_id) == NOT_RUNNING  # another delivery while the batch is in hand

    embedder = pipeline_module.get_embedder(ALIGN68)
    assert [runner.embed_photo(claim, p, embedder) for p in batch] == ["embedded", "embedded"]
    # As if the worker died before releasing the batch and the message came again.
    assert [runner.embed_photo(claim, p, embedder) for p in batch] == [SKIPPED, SKIPPED]
    assert [index_adds(world, p, ALIGN68) for p in (first, second)] == [1, 1]
    assert models_of(world, first) == sorted([DEFAULT_MODEL_ID, ALIGN68])

    # The dead worker's claim runs out; the next delivery takes the job over and finishes it.
    world.db.execute(
        update(ReembedJob)
        .where(ReembedJob.id == job_id)
        .values(batch_claimed_at=utcnow() - runner.lease - timedelta(seconds=1))
    )
    world.db.commit()
    assert runner.run_to_end(job_id) == COMPLETE
    with transaction(sessions) as session:
        assert release_batch(session, claim=claim, now=utcnow()) is False  # the old claim is no longer ours
    assert [index_adds(world, p, ALIGN68) for p in (first, second)] == [1, 1]
    assert runner.run_batch(job_id) == NOT_RUNNING  # a late duplicate message after completion


def test_a_job_whose_message_was_lost_is_found_by_the_reaper(world, admin, photos):
    job_id = start(world, admin)
    sessions = world.app.state.session_factory
    with transaction(sessions) as session:
        assert stalled_jobs(session, now=utcnow(), stalled_after=timedelta(minutes=10)) == []
    later = utcnow() + timedelta(minutes=11)
    with transaction(sessions) as session:
        assert stalled_jobs(session, now=later, stalled_after=timedelta(minutes=10)) == [job_id]
    with transaction(sessions) as session:  # sent again once, not on every pass
        assert stalled_jobs(session, now=later + timedelta(minutes=1), stalled_after=timedelta(minutes=10)) == []


def test_a_photo_that_cannot_be_embedded_fails_the_job_and_nothing_is_switched(world, admin, photos):
    good = world.enrol(photos["obama"])
    damaged = world.enrol(photos["biden"])
    world.vault.erase(world.reload(damaged).storage_key)  # the stored file is lost
    job_id = start(world, admin)

    assert reembedder(world).run_to_end(job_id) == FAILED

    failed = job(world, job_id)
    assert (failed.status, failed.done, failed.failed) == ("failed", 1, 1)
    assert "not changed" in failed.message
    assert world.db.scalars(select(ReembedFailure.reason).where(ReembedFailure.job_id == job_id)).all() == [
        "unreadable"
    ]
    assert active(world) == DEFAULT_MODEL_ID
    assert ALIGN68 in models_of(world, good)  # kept: a later job skips it
    assert audit_actions(world)[-1] == "reembed_failed"
    assert models_to_embed(world.db) == (DEFAULT_MODEL_ID,)  # the job is over: new photos, one model


def test_the_worker_tasks_run_the_job_and_the_reaper_resends_a_stalled_one(world, admin, photos, settings):
    world.enrol(photos["obama"])
    world.enrol(photos["biden"])
    job_id = start(world, admin)
    app = make_celery(settings)  # the embedded filesystem broker: sent messages are files
    sent = settings.data_dir / "broker" / "queue"
    try:
        batch = app.tasks[REEMBED_BATCH]
        assert batch(job_id) == MORE  # both photos, then the next batch is sent
        [message] = sent.glob("*.msg")
        assert json.loads(message.read_text())["headers"]["task"] == REEMBED_BATCH
        world.db.rollback()
        world.db.execute(
            update(ReembedJob)
            .where(ReembedJob.id == job_id)
            .values(heartbeat_at=utcnow() - timedelta(minutes=settings.processing_timeout_minutes + 1))
        )
        world.db.commit()  # as if that message was lost
        assert app.tasks[REAP]()["reembed_jobs_sent"] == 1
        assert len(list(sent.glob("*.msg"))) == 2
        assert batch(job_id) == COMPLETE
        assert batch(job_id) == NOT_RUNNING  # the duplicate message finds the job over
        assert active(world) == ALIGN68
    finally:
        process_state(app).runtime.close()


# --- refusals ------------------------------------------------------------------------------------------


def test_refusals_are_clear_and_change_nothing(world, admin, photos):
    world.enrol(photos["obama"])
    caseworker = world.user
    events = len(audit_actions(world))

    def refused(model: str, actor: User = admin) -> str:
        with pytest.raises(ReembedRefused) as refusal:
            start(world, actor, model)
        return refusal.value.code

    assert refused("arcface_r100") == "unknown_model"
    assert refused(DEFAULT_MODEL_ID) == "already_active"
    assert refused(ALIGN68, caseworker) == "not_allowed"
    assert job(world, 1) is None and len(audit_actions(world)) == events

    job_id = start(world, admin)
    assert refused(ALIGN68) == "job_in_progress"
    with transaction(world.app.state.session_factory) as session:
        cancel_reembed(session, actor=session.get(User, admin.id), now=utcnow())
    cancelled = job(world, job_id)
    assert (cancelled.status, cancelled.finished_by_id) == ("cancelled", admin.id)
    assert reembedder(world).run_batch(job_id) == NOT_RUNNING
    assert active(world) == DEFAULT_MODEL_ID
    with (
        pytest.raises(ReembedRefused, match="No re-embedding job"),
        transaction(world.app.state.session_factory) as session,
    ):
        cancel_reembed(session, actor=session.get(User, admin.id), now=utcnow())
    assert audit_actions(world)[events:] == ["reembed_started", "reembed_cancelled"]


# --- the command ------------------------------------------------------------------------------------


def test_the_command_starts_a_job_shows_progress_and_refuses(world, admin, photos, settings, monkeypatch):
    world.enrol(photos["obama"])
    environment = {
        "REUNITE_ENVIRONMENT": "test",
        "REUNITE_SECRET_KEY": settings.secret_key.get_secret_value(),
        "REUNITE_DATABASE_URL": settings.database_url,
        "REUNITE_MASTER_KEY": settings.master_key.get_secret_value(),
        "REUNITE_DATA_DIR": str(settings.data_dir),
        "REUNITE_AUDIT_KEY_PATH": str(settings.audit_key_file),
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REUNITE_BROKER_URL", raising=False)  # the embedded filesystem broker in the data folder
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, ["match", "reembed", *args])

    result = run("--model", ALIGN68, "--operator", admin.email)
    assert result.exit_code == 0, result.output
    assert "1 photo(s) to embed" in result.output
    [message] = (settings.data_dir / "broker" / "queue").glob("*.msg")
    sent = json.loads(message.read_text())
    assert sent["headers"]["task"] == "reunite.reembed_batch" and "[1]" in sent["headers"]["argsrepr"]

    status = run("--status")
    assert status.exit_code == 0 and "queued" in status.output and f"{DEFAULT_MODEL_ID} -> {ALIGN68}" in status.output

    again = run("--model", ALIGN68, "--operator", admin.email)
    assert again.exit_code == 2 and "is queued" in again.output
    unknown = run("--model", "arcface_r100", "--operator", admin.email)
    assert unknown.exit_code == 2 and "no embedding model 'arcface_r100'" in unknown.output
    assert run("--model", ALIGN68).exit_code == 2  # who is doing it must be said
    assert run().exit_code == 2

    world.db.rollback()
    assert reembedder(world).run_to_end(world.db.scalars(select(ReembedJob.id)).one()) == COMPLETE
    status = run("--status")
    assert f"Active model: {ALIGN68}" in status.output and "complete" in status.output
    assert "1 of 1 done (100%)" in status.output and admin.email in status.output
    same = run("--model", ALIGN68, "--operator", admin.email)
    assert same.exit_code == 2 and "already the active model" in same.output

    assert run("--model", DEFAULT_MODEL_ID, "--operator", admin.email).exit_code == 0  # and back again...
    resumed = run("--resume")
    assert resumed.exit_code == 0 and len(list((settings.data_dir / "broker" / "queue").glob("*.msg"))) == 3
    cancelled = run("--cancel", "--operator", admin.email)
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output  # ...or not
    assert "No re-embedding job is in progress" in run("--cancel", "--operator", admin.email).output
    assert run("--resume").exit_code == 2
    assert f"Active model: {ALIGN68}" in run("--status").output
