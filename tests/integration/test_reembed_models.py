"""Switching the gallery to SFace or to the dlib+SFace fusion through the re-embedding flow, on real faces.

As in test_reembed.py: records are enrolled by the worker pipeline in this process with
the default model, the job's batches run here (`Reembedder`) from the photos sealed in
the app's vault, and a search after the switch uses the new model. SFace's distances
are on another scale than the provisional threshold, so a job to it is refused until
the model has a calibration of its own; the calibration stored here comes from real
SFace distances on the same photos.
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from matching.calibration import pair_distances
from matching.embedders import get_embedder
from matching.faces import analyse_image, embed_again
from matching.images import ImageLimits, decode_image
from matching.model_files import MODELS_DIR_ENV
from service.auth.models import User
from service.calibration.service import review_policy, store_calibration
from service.db import transaction, utcnow
from service.embedding.models import ReembedJob
from service.embedding.service import COMPLETE, ReembedRefused, active_model, start_reembed
from service.photos.models import Embedding
from service.photos.service import metadata_free_jpeg
from service.worker.replica import IndexReplica, vector_from_bytes
from service.worker.reembed import Reembedder
from tests.support.faces import shrunk_jpeg
from tests.support.gallery import World
from tests.support.service import make_user

# What differs here is the model, not the database: the re-embedding flow itself runs on both in test_reembed.py.
pytestmark = [pytest.mark.faces, pytest.mark.one_backend]

SFACE = "sface_2021dec_int8bq"
FUSION = "fusion_dlib_sface"


@pytest.fixture
def world(app, db, tmp_path) -> World:
    return World(app, db, tmp_path)


@pytest.fixture
def admin(db) -> User:
    account = make_user(db, "platform_admin")
    db.commit()
    return account.user


@pytest.fixture(scope="module")
def photos(sdist_images) -> dict[str, bytes]:
    """The sdist photos shrunk to 600 px (faces of 130 px or more): the same faces, found faster."""
    return {name: shrunk_jpeg(sdist_images / f"{name}.jpg") for name in ("obama", "obama2", "biden")}


@pytest.fixture(scope="module")
def distances(photos) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(genuine, impostor) distances of each new model on the photos, found once for the module."""
    # The pixels the service stores (each upload re-encoded without metadata), which the searches see.
    limits = ImageLimits()
    images = {
        name: decode_image(metadata_free_jpeg(decode_image(data, limits).pixels, max_bytes=limits.max_bytes), limits)
        for name, data in photos.items()
    }
    faces = {name: analyse_image(image, "enrol")[0] for name, image in images.items()}
    labels = ["obama" if name.startswith("obama") else name for name in photos]
    sface = np.stack([embed_again(images[name], [faces[name]], get_embedder(SFACE))[0].embedding for name in photos])
    dlib = np.stack([faces[name].embedding / np.linalg.norm(faces[name].embedding) for name in photos])
    # The fusion's vectors from its parts (as tested in tests/unit/test_model_embedders.py), without a third pass.
    fused = np.concatenate([dlib, sface], axis=1) / np.sqrt(2)
    return {SFACE: pair_distances(sface, labels), FUSION: pair_distances(fused, labels)}


def calibrate(world: World, model_id: str, distances) -> None:
    """A calibration of `model_id` from its own distances on the photos (few pairs: flagged unreliable)."""
    genuine, impostor = distances[model_id]
    # With two impostor pairs the threshold is the nearest impostor's distance, and that pair (the case photo
    # against Biden's record) is searched below: a hair under it, so no float32 rounding decides the tie.
    impostor = np.asarray(impostor) - 1e-6
    with transaction(world.app.state.session_factory) as session:
        store_calibration(
            session,
            model_id=model_id,
            model_version=get_embedder(model_id).version,
            genuine=genuine,
            impostor=impostor,
            target_fmr=0.01,
            top_k=10,
            dataset={"photos": 3},
            actor_id=None,
        )


def active_threshold(world: World, model_id: str) -> float:
    world.db.rollback()
    return review_policy(world.db, model_id).threshold


def start(world: World, admin: User, model_id: str) -> int:
    with transaction(world.app.state.session_factory) as session:
        return start_reembed(session, target_model_id=model_id, actor=session.get(User, admin.id), now=utcnow()).id


def refusal(world: World, admin: User, model_id: str) -> ReembedRefused:
    with pytest.raises(ReembedRefused) as refused:
        start(world, admin, model_id)
    world.db.rollback()
    assert world.db.scalars(select(ReembedJob).where(ReembedJob.target_model_id == model_id)).all() == []
    return refused.value


def switch(world: World, admin: User, model_id: str) -> None:
    runner = Reembedder(
        settings=world.settings,
        sessions=world.app.state.session_factory,
        vault=world.vault,
        replica=IndexReplica(world.tmp_path / "index"),
    )
    assert runner.run_to_end(start(world, admin, model_id)) == COMPLETE
    world.db.rollback()
    assert active_model(world.db) == (model_id, get_embedder(model_id).version)


def test_the_gallery_moves_to_sface_then_to_the_fusion_and_searches_follow(
    world, admin, photos, distances, tmp_path, monkeypatch
):
    obama = world.enrol(photos["obama"])
    biden = world.enrol(photos["biden"])
    # Refused, and nothing started: a model whose files are missing, then one never calibrated.
    with monkeypatch.context() as without_files:
        without_files.setenv(MODELS_DIR_ENV, str(tmp_path / "no-models"))
        for model_id in (SFACE, FUSION):
            refused = refusal(world, admin, model_id)
            assert refused.code == "model_not_installed" and "reunite models install" in refused.message
    refused = refusal(world, admin, SFACE)
    assert refused.code == "not_calibrated" and f"reunite calibrate MANIFEST --model {SFACE}" in refused.message

    calibrate(world, SFACE, distances)
    switch(world, admin, SFACE)
    stored = world.db.scalars(select(Embedding).where(Embedding.model_id == SFACE)).all()
    assert sorted(e.photo_id for e in stored) == sorted([obama.id, biden.id])
    assert all(len(e.vector) == 4 * 128 and e.model_version == get_embedder(SFACE).version for e in stored)
    case = world.case(photos["obama2"])
    assert world.pipeline.process_case(case.id) == "searched"
    assert [(c.record_id, c.model_id) for c in world.candidates(case)] == [(obama.record_id, SFACE)]

    calibrate(world, FUSION, distances)
    switch(world, admin, FUSION)
    world.db.rollback()
    fused = {e.photo_id: e for e in world.db.scalars(select(Embedding).where(Embedding.model_id == FUSION))}
    probe = world.db.scalars(
        select(Embedding).where(Embedding.model_id == FUSION, Embedding.photo_id.not_in([obama.id, biden.id]))
    ).one()  # the open case's probe face was re-embedded too
    assert len(fused) == 3 and all(len(e.vector) == 4 * 256 for e in fused.values())
    # The fused index the job built finds the right record for the probe's fused vector.
    replica = IndexReplica(world.tmp_path / "index")
    replica.catch_up(world.db, FUSION)
    distances_found, ids = replica.index(FUSION).search(vector_from_bytes(probe.vector), 2)
    assert list(ids[0]) == [fused[obama.id].id, fused[biden.id].id]
    assert distances_found[0][0] <= active_threshold(world, FUSION)
