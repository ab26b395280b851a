"""The model registry where reviewers and auditors read it: `GET /api/v1/model` and the /model page."""

from __future__ import annotations

from fastapi.testclient import TestClient

from matching.embedders import available_embedders
from matching.faces import MODEL_ID
from matching.model_files import MODELS_DIR_ENV, SFACE
from tests.support.pages import Person, text_of
from tests.support.service import make_organisation, make_user, sign_in

SFACE_ID = "sface_2021dec_int8bq"


def test_the_card_names_each_models_licence_weights_and_training_data(
    app, client: TestClient, db, tmp_path, monkeypatch
):
    reviewer = make_user(db, "reviewer", organisation=make_organisation(db))
    db.commit()
    headers = sign_in(client, reviewer)
    card = client.get("/api/v1/model", headers=headers).json()
    assert card["model"]["id"] == MODEL_ID and card["model"]["licence"] == "LicenseRef-dlib-models-public-domain"
    assert [w["file"] for w in card["model"]["weights"]] == [
        "dlib_face_recognition_resnet_model_v1.dat",
        "shape_predictor_5_face_landmarks.dat",
    ]
    assert "FaceScrub" in card["model"]["training_data"]
    models = {entry["id"]: entry for entry in card["models"]}
    assert list(models) == list(available_embedders())
    sface = models[SFACE_ID]
    assert sface["installed"] and sface["licence"].startswith("Apache-2.0 AND MIT")
    assert SFACE.sha256 in [w["sha256"] for w in sface["weights"]]

    # On a server without the SFace files, the page says so, without showing where it looked.
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "elsewhere"))
    page = text_of(Person(app, reviewer).get("/model"))
    assert "Models this service can use" in page and SFACE.sha256 in page and "iBUG 300-W" in page
    assert f"{SFACE_ID} : Apache-2.0 AND MIT AND LicenseRef-iBUG-300-W-non-commercial. Usable here: no" in page
    assert "its weight files are missing or altered on this server" in page
    assert str(tmp_path) not in page
