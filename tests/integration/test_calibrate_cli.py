"""`reunite calibrate` end to end: real photos embedded as the service would, the threshold stored."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from matching.calibration import pair_distances
from matching.faces import MODEL_ID
from service.audit.models import AuditEvent
from service.calibration.models import Calibration
from service.calibration.service import review_policy
from service.cli import app

pytestmark = pytest.mark.faces
runner = CliRunner()
PEOPLE = {"first": ("obama.jpg", "obama2.jpg", "obama3.jpg"), "second": ("biden.jpg",)}


@pytest.fixture
def photos(sdist_images, tmp_path):
    root = tmp_path / "people"
    for person, names in PEOPLE.items():
        (root / person).mkdir(parents=True)
        for name in names:
            shutil.copy(sdist_images / name, root / person / name)
    return root


@pytest.fixture
def environment(settings, monkeypatch):
    """The CLI reads its settings from the environment: point it at the test's database."""
    for name, value in {"ENVIRONMENT": "test", "SECRET_KEY": settings.secret_key.get_secret_value(),
                        "DATABASE_URL": settings.database_url, "DATA_DIR": str(settings.data_dir),
                        "MASTER_KEY": settings.master_key.get_secret_value(),
                        "AUDIT_KEY_PATH": str(settings.audit_key_path)}.items():
        monkeypatch.setenv(f"REUNITE_{name}", value)


def calibrate(*args: str):
    return runner.invoke(app, ["calibrate", *args])


def test_calibrate_stores_the_threshold_for_the_target_and_can_go_back(environment, photos, db, tmp_path):
    cache = str(tmp_path / "cache")
    first = calibrate(str(photos), "--target-fmr", "0.1", "--top-k", "3", "--cache", cache, "--workers", "2")
    assert first.exit_code == 0, first.output
    assert "Calibration 1 of" in first.output and "cannot show a false-match rate of 0.1" in first.output

    db.rollback()
    [row] = db.scalars(select(Calibration)).all()
    # Three photos of one man and one of another: 3 same-person and 3 different-person pairs.
    assert (row.genuine_pairs, row.impostor_pairs, row.top_k, row.reliable) == (3, 3, 3, False)
    assert row.model_id == MODEL_ID and row.dataset["photos"] == 4
    assert "obama" not in str(row.dataset) and str(photos) not in str(row.dataset)
    assert row.achieved_fmr == 0.0 and row.bands[-1]["upper"] <= row.threshold
    assert review_policy(db, MODEL_ID).threshold == row.threshold

    second = calibrate(str(photos), "--target-fmr", "0.5", "--cache", cache)
    assert second.exit_code == 0, second.output
    assert "Calibration 2 of" in second.output and "0 computed" not in second.output
    db.rollback()
    newer = db.scalars(select(Calibration).where(Calibration.version == 2)).one()
    assert newer.threshold > row.threshold and review_policy(db, MODEL_ID).calibration_version == 2

    listed = calibrate("--list")
    assert listed.exit_code == 0 and "0.5" in listed.output

    back = calibrate("--activate", "1")
    assert back.exit_code == 0, back.output
    db.rollback()
    assert review_policy(db, MODEL_ID).calibration_version == 1
    actions = db.scalars(select(AuditEvent.action).where(AuditEvent.action.like("calibration.%"))
                         .order_by(AuditEvent.seq)).all()
    assert actions == ["calibration.created", "calibration.created", "calibration.activated"]


def test_the_threshold_lies_just_below_the_closest_impostor_pair(environment, photos, db, tmp_path):
    from matching.dataset import embed_dataset, load_manifest

    embedded = embed_dataset(load_manifest(photos), workers=1)
    vectors = np.stack([sample.vector for sample in embedded.samples])
    _, impostor = pair_distances(vectors, [sample.identity for sample in embedded.samples])
    result = calibrate(str(photos), "--target-fmr", "0.1", "--cache", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    db.rollback()
    row = db.scalars(select(Calibration)).one()
    assert row.threshold < impostor.min() and row.threshold == pytest.approx(impostor.min(), abs=1e-6)


def test_refusals_change_nothing(environment, photos, db, tmp_path):
    missing = calibrate(str(tmp_path / "nowhere.csv"))
    assert missing.exit_code == 2
    nothing = calibrate()
    assert nothing.exit_code == 2 and "MANIFEST" in nothing.output
    unknown = calibrate("--activate", "9")
    assert unknown.exit_code == 2 and "no calibration version 9" in unknown.output
    one_person = tmp_path / "one"
    shutil.copytree(photos / "first", one_person / "first")
    alone = calibrate(str(one_person), "--cache", str(tmp_path / "cache"))
    assert alone.exit_code == 2 and "impostor" in alone.output
    db.rollback()
    assert db.scalars(select(Calibration)).all() == []


def test_evaluate_publish_puts_the_report_on_the_model_card(environment, photos, db, tmp_path):
    from service.calibration.models import EvaluationReport

    result = runner.invoke(app, ["evaluate", str(photos), "--out", str(tmp_path / "report"), "--bootstrap", "5",
                                 "--cache", str(tmp_path / "cache"), "--publish"])
    assert result.exit_code == 0, result.output
    assert "Published as evaluation report" in result.output
    db.rollback()
    stored = db.scalars(select(EvaluationReport)).one()
    assert stored.model_id == MODEL_ID and stored.report["dataset"]["photos"] == 4
    assert stored.report["identification"]["overall"]["rank_1"] == 1.0
    assert db.scalars(select(AuditEvent).where(AuditEvent.action == "evaluation.published")).one()


def test_a_new_model_is_calibrated_before_the_gallery_moves_to_it(environment, photos, db, tmp_path):
    other = "dlib_resnet_v1_align68"
    result = calibrate(str(photos), "--model", other, "--target-fmr", "0.5", "--cache", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    assert f"Calibration 1 of {other}" in result.output
    db.rollback()
    assert review_policy(db, other).calibrated and not review_policy(db, MODEL_ID).calibrated
    unknown = calibrate(str(photos), "--model", "no_such_model")
    assert unknown.exit_code == 2


def test_evaluate_measures_at_the_threshold_the_service_uses(environment, photos, db, tmp_path):
    import json

    cache = str(tmp_path / "cache")
    assert calibrate(str(photos), "--target-fmr", "0.5", "--cache", cache).exit_code == 0
    db.rollback()
    in_force = review_policy(db, MODEL_ID).threshold
    result = runner.invoke(app, ["evaluate", str(photos), "--out", str(tmp_path / "report"), "--bootstrap", "0",
                                 "--cache", cache])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "report" / "report.json").read_text())["threshold"] == in_force
