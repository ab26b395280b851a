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
    for name, value in {
        "ENVIRONMENT": "test",
        "SECRET_KEY": settings.secret_key.get_secret_value(),
        "DATABASE_URL": settings.database_url,
        "DATA_DIR": str(settings.data_dir),
        "MASTER_KEY": settings.master_key.get_secret_value(),
        "AUDIT_KEY_PATH": str(settings.audit_key_path),
    }.items():
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
    actions = db.scalars(
        select(AuditEvent.action).where(AuditEvent.action.like("calibration.%")).order_by(AuditEvent.seq)
    ).all()
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

    result = runner.invoke(
        app,
        [
            "evaluate",
            str(photos),
            "--out",
            str(tmp_path / "report"),
            "--bootstrap",
            "5",
            "--cache",
            str(tmp_path / "cache"),
            "--publish",
        ],
    )
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
    result = runner.invoke(
        app, ["evaluate", str(photos), "--out", str(tmp_path / "report"), "--bootstrap", "0", "--cache", cache]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "report" / "report.json").read_text())["threshold"] == in_force


def aged_shared_faces(shared_images, root):
    """The 17 shared photos copied beside a manifest giving every photo age 30 but one of Obama's, aged 45.

    Pairs at 0-1 years apart: 120 (18 same-person, 102 different), enough for a target of 0.05;
    pairs 15 years apart (10+): 16 (5 same-person, 11 different), not enough (20 needed).
    """
    lines = ["path,identity,age_at_photo"]
    for person in sorted((shared_images / "identities").iterdir()):
        for number, photo in enumerate(sorted(person.iterdir())):
            (root / person.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, root / person.name / photo.name)
            age = 45 if person.name == "obama" and number == 0 else 30
            lines.append(f"{person.name}/{photo.name},{person.name},{age}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def test_a_threshold_per_age_gap_only_where_the_data_can_show_the_target(
    environment, shared_images, faces_cache, db, tmp_path
):
    import json

    from matching.calibration import threshold_for_fmr
    from matching.dataset import embed_dataset, load_manifest
    from service.calibration.card import model_card

    manifest = aged_shared_faces(shared_images, tmp_path / "aged")
    result = calibrate(str(manifest), "--target-fmr", "0.05", "--cache", str(faces_cache), "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "0-1 years apart: threshold" in result.output
    assert "10+ years apart: not calibrated" in result.output and "needs 20 impostor pairs" in result.output

    db.rollback()
    row = db.scalars(select(Calibration)).one()
    near, two, five, far = row.gap_thresholds
    assert [gap["band"] for gap in row.gap_thresholds] == ["0-1", "2-4", "5-9", "10+"]
    assert (near["calibrated"], near["genuine_pairs"], near["impostor_pairs"]) == (True, 18, 102)
    assert (far["calibrated"], far["threshold"], far["genuine_pairs"], far["impostor_pairs"]) == (False, None, 5, 11)
    assert not two["calibrated"] and not five["calibrated"] and two["impostor_pairs"] == 0
    # The band's threshold is exactly threshold_for_fmr on the real distances of the pairs 0-1 years apart.
    samples = embed_dataset(load_manifest(manifest), workers=1, cache_dir=faces_cache).samples
    same_age = [(a, b) for i, a in enumerate(samples) for b in samples[i + 1 :] if a.age == b.age]
    distances = {
        kind: [float(np.linalg.norm(a.vector - b.vector)) for a, b in same_age if (a.identity == b.identity) == kind]
        for kind in (True, False)
    }
    expected = threshold_for_fmr(distances[True], distances[False], 0.05)
    assert near["threshold"] == pytest.approx(expected.threshold) and near["fnmr"] == pytest.approx(expected.fnmr)

    policy = review_policy(db, MODEL_ID)
    assert policy.gap_thresholds == (("0-1", near["threshold"]),)
    assert policy.threshold_for(0.5) == near["threshold"] and policy.threshold_for(15.0) == row.threshold
    assert policy.threshold_for(None) == row.threshold

    event = db.scalars(select(AuditEvent).where(AuditEvent.action == "calibration.created")).one()
    details = json.loads(event.details)
    assert {key: value for key, value in details.items() if key.startswith("gap_")} == {
        "gap_bands": ["0-1", "2-4", "5-9", "10+"],
        "gap_thresholds": [round(near["threshold"], 6), None, None, None],
        "gap_genuine_pairs": [18, 0, 0, 5],
        "gap_impostor_pairs": [102, 0, 0, 11],
    }

    listed = runner.invoke(app, ["calibrate", "--list"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0
    assert f"0-1: {near['threshold']:.4f}" in listed.output and "10+: global (11 < 20 imp.)" in listed.output

    card = model_card(db, model_id=MODEL_ID, model_version=row.model_version)
    assert card["calibration"]["gap_thresholds"] == row.gap_thresholds
