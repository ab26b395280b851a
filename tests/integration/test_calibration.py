"""Calibrations in the service: versioned, audited, and the threshold and bands the service uses.

Pair distances here are synthetic where the test is about bookkeeping (which threshold
a given set of distances yields is exact arithmetic); the pipeline test uses real faces.
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from matching.calibration import DEFAULT_REVIEW_THRESHOLD, DISTANCE_BANDS
from matching.faces import MODEL_ID
from service.audit.models import AuditEvent
from service.calibration.card import UNMEASURED_CHILDREN, standing_notice
from service.calibration.models import Calibration, EvaluationReport
from service.calibration.service import (
    CalibrationError,
    activate_calibration,
    publish_evaluation,
    review_policy,
    store_calibration,
)
from tests.support.gallery import World
from tests.support.pages import Person, text_of
from tests.support.reports import synthetic_report
from tests.support.service import make_organisation, make_user, migrate_down_and_up, sign_in

GENUINE = np.linspace(0.2, 0.6, 50)
DATASET = {"manifest_sha256": "ab" * 32, "photos": 60, "identities": 12}


def impostors_from(low: float, count: int = 1000) -> np.ndarray:
    return np.linspace(low, low + 0.5, count)


def calibrate(db, *, low: float, target_fmr: float = 1e-3, actor_id=None) -> Calibration:
    row = store_calibration(
        db,
        model_id=MODEL_ID,
        model_version="v-test",
        genuine=GENUINE,
        impostor=impostors_from(low),
        target_fmr=target_fmr,
        top_k=5,
        dataset=DATASET,
        actor_id=actor_id,
    )
    db.commit()
    return row


def events(db, action: str) -> list[AuditEvent]:
    db.expire_all()
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def test_without_a_calibration_the_placeholders_are_in_force(db):
    policy = review_policy(db, MODEL_ID)
    assert (policy.threshold, policy.bands, policy.calibrated) == (DEFAULT_REVIEW_THRESHOLD, DISTANCE_BANDS, False)


def test_a_calibration_sets_threshold_bands_and_version_and_is_audited(db):
    row = calibrate(db, low=0.5)
    impostor = impostors_from(0.5)
    # FMR 1e-3 of 1000 impostor pairs allows one at or below the threshold: just below the second.
    assert row.threshold == pytest.approx(impostor[1]) and row.threshold < impostor[1]
    assert (row.version, row.reliable, row.impostor_pairs, row.genuine_pairs) == (1, True, 1000, 50)
    strong, possible = row.bands
    assert (strong["band"], possible["band"]) == ("strong", "possible")
    assert strong["upper"] <= possible["upper"] <= row.threshold
    assert strong["reliable"] is False and possible["reliable"] is False  # 1e-5 and 1e-4 need more pairs
    policy = review_policy(db, MODEL_ID)
    assert (policy.threshold, policy.calibration_version, policy.top_k) == (row.threshold, 1, 5)
    assert policy.band(row.threshold + 0.01) == "weak" and policy.band(0.0) == "strong"
    [event] = events(db, "calibration.created")
    assert event.target_id == str(row.id) and '"version":1' in event.details


def test_a_newer_calibration_takes_over_and_an_older_one_can_be_restored(db):
    admin = make_user(db, "platform_admin").user
    first = calibrate(db, low=0.5)
    second = calibrate(db, low=0.7, actor_id=admin.id)
    assert second.version == 2 and review_policy(db, MODEL_ID).threshold == second.threshold

    activate_calibration(db, model_id=MODEL_ID, version=1, actor_id=admin.id)
    db.commit()
    assert review_policy(db, MODEL_ID).threshold == first.threshold
    [event] = events(db, "calibration.activated")
    assert event.actor_id == admin.id and '"version":1' in event.details


def test_refused_calibrations_change_nothing(db):
    with pytest.raises(CalibrationError, match="impostor"):
        store_calibration(
            db,
            model_id=MODEL_ID,
            model_version="v",
            genuine=GENUINE,
            impostor=[],
            target_fmr=1e-3,
            top_k=5,
            dataset=DATASET,
            actor_id=None,
        )
    with pytest.raises(CalibrationError, match="no calibration version 7"):
        activate_calibration(db, model_id=MODEL_ID, version=7, actor_id=None)
    db.rollback()
    assert db.scalars(select(Calibration)).all() == [] and events(db, "calibration.created") == []


def test_each_model_has_its_own_calibrations(db):
    calibrate(db, low=0.5)
    assert review_policy(db, "another_model").calibrated is False


@pytest.mark.faces
def test_the_pipeline_proposes_candidates_within_the_active_calibration_only(app, client, db, tmp_path, sdist_images):
    world = World(app, db, tmp_path)
    obama = world.enrol((sdist_images / "obama.jpg").read_bytes())
    calibrate(db, low=0.05)  # a threshold far below any real same-person distance
    strict = world.case((sdist_images / "obama2.jpg").read_bytes())
    assert world.pipeline.process_case(strict.id) == "searched"
    assert world.candidates(strict) == []

    calibrate(db, low=0.7)  # now same-person distances are within it
    lenient = world.case((sdist_images / "obama2.jpg").read_bytes())
    assert world.pipeline.process_case(lenient.id) == "searched"
    [candidate] = world.candidates(lenient)
    assert candidate.record_id == obama.record_id
    assert candidate.distance <= review_policy(db, MODEL_ID).threshold

    caseworker = make_user(db, "caseworker", organisation=world.organisation)
    db.commit()
    shown = client.get(f"/api/v1/cases/{lenient.id}", headers=sign_in(client, caseworker)).json()
    assert shown["candidates"][0]["distance_band"] == review_policy(db, MODEL_ID).band(candidate.distance)


def test_the_model_card_shows_calibration_and_latest_evaluation(client, db):
    report = synthetic_report(MODEL_ID)
    calibrate(db, low=0.5)
    publish_evaluation(db, report=report, actor_id=None)
    db.commit()
    caseworker = make_user(db, "caseworker", organisation=make_organisation(db))
    db.commit()
    card = client.get("/api/v1/model", headers=sign_in(client, caseworker)).json()
    assert card["model"]["id"] == MODEL_ID
    assert card["calibration"]["version"] == 1 and card["review_threshold"] == card["calibration"]["threshold"]
    assert [band["band"] for band in card["distance_bands"]] == ["strong", "possible"]
    assert card["evaluation"]["identification"] == report["identification"]["overall"]
    assert set(card["evaluation"]["groups"]["sex"]) == {"female", "male"}
    measured = {
        band
        for band, figures in card["evaluation"]["age_bands"].items()
        if figures["identification"]["rank_1"] is not None
    }
    assert measured == {"6-9", "18+"}
    assert f"{report['dataset']['photos']} photos of 16 people" in card["notice"]
    assert "aged 6-9: 100 % of 16 searches" in card["notice"] and "18+" not in card["notice"]
    assert client.get("/api/v1/model").status_code == 401
    assert [e.target_id for e in events(db, "evaluation.published")] == [
        str(db.scalars(select(EvaluationReport.id)).one())
    ]


def test_the_notice_admits_what_was_not_measured():
    notice = standing_notice(None, None)
    assert UNMEASURED_CHILDREN in notice and "not been calibrated" in notice and "No evaluation" in notice


def test_a_report_that_is_not_one_is_refused(db):
    with pytest.raises(CalibrationError, match="not a report"):
        publish_evaluation(db, report={"figures": 1}, actor_id=None)


def test_the_model_card_page_shows_the_figures_to_everyone_signed_in(app, db):
    report = synthetic_report(MODEL_ID)
    calibrate(db, low=0.5)
    publish_evaluation(db, report=report, actor_id=None)
    reviewer = make_user(db, "reviewer", organisation=make_organisation(db))
    db.commit()
    page = text_of(Person(app, reviewer).get("/model"))
    assert "Model card" in page and MODEL_ID in page
    assert "Version 1" in page and "Aged 6-9 100 %" in page and "Aged 18+ 100 %" in page
    assert "male" in page and "female" in page
    assert "not calibrated" not in page.lower()


def gap_pairs() -> dict:
    """0-1 years apart: 1000 impostor pairs, enough for 1e-3; 5-9: 400, too few; others none."""
    return {
        "0-1": (GENUINE, impostors_from(0.45)),
        "2-4": (np.empty(0), np.empty(0)),
        "5-9": (GENUINE + 0.2, impostors_from(0.8, count=400)),
        "10+": (np.empty(0), np.empty(0)),
    }


def test_thresholds_per_age_gap_are_stored_given_by_the_policy_shown_and_audited(client, db, app):
    row = store_calibration(
        db,
        model_id=MODEL_ID,
        model_version="v-test",
        genuine=GENUINE,
        impostor=impostors_from(0.5),
        target_fmr=1e-3,
        top_k=5,
        dataset=DATASET,
        actor_id=None,
        gap_pairs=gap_pairs(),
    )
    db.commit()
    near, _, far, _ = row.gap_thresholds
    assert near["calibrated"] and near["threshold"] == pytest.approx(impostors_from(0.45)[1])
    assert (near["genuine_pairs"], near["impostor_pairs"], near["trials_needed"]) == (50, 1000, 1000)
    assert (far["calibrated"], far["threshold"], far["impostor_pairs"]) == (False, None, 400)
    policy = review_policy(db, MODEL_ID)
    assert policy.gap_thresholds == (("0-1", near["threshold"]),)
    assert policy.threshold_for(1.0) == near["threshold"] < row.threshold
    assert policy.threshold_for(7.0) == row.threshold == policy.widest_threshold  # 5-9: not calibrated
    [event] = events(db, "calibration.created")
    assert '"gap_bands":["0-1","2-4","5-9","10+"]' in event.details
    assert '"gap_impostor_pairs":[1000,0,400,0]' in event.details

    caseworker = make_user(db, "caseworker", organisation=make_organisation(db))
    db.commit()
    card = client.get("/api/v1/model", headers=sign_in(client, caseworker)).json()
    assert [(gap["band"], gap["threshold"]) for gap in card["calibration"]["gap_thresholds"]] == [
        ("0-1", near["threshold"]),
        ("2-4", None),
        ("5-9", None),
        ("10+", None),
    ]
    page = text_of(Person(app, caseworker).get("/model"))
    assert "Threshold by years between the two photos" in page
    assert f"0-1 {near['threshold']:.3f} 50 / 1000" in page
    assert f"5-9 Not calibrated: needs 1000 different-person pairs; uses {row.threshold:.3f}" in page


def test_without_ages_a_calibration_has_no_gap_thresholds(db):
    row = calibrate(db, low=0.5)
    assert row.gap_thresholds == [] and review_policy(db, MODEL_ID).gap_thresholds == ()
    empty = {label: (np.empty(0), np.empty(0)) for label in ("0-1", "2-4", "5-9", "10+")}
    again = store_calibration(
        db,
        model_id=MODEL_ID,
        model_version="v",
        genuine=GENUINE,
        impostor=impostors_from(0.5),
        target_fmr=1e-3,
        top_k=5,
        dataset=DATASET,
        actor_id=None,
        gap_pairs=empty,
    )
    assert again.gap_thresholds == []


def test_a_calibration_from_before_gap_thresholds_uses_the_global_one(db, database_url):
    row = calibrate(db, low=0.5)
    db.execute(Calibration.__table__.update().values(gap_thresholds=None))  # as stored before 0009
    db.commit()
    db.expire_all()
    assert review_policy(db, MODEL_ID).gap_thresholds == () and review_policy(db, MODEL_ID).threshold == row.threshold
    db.close()
    migrate_down_and_up(database_url, revision="0008", table="calibrations", column="gap_thresholds")
