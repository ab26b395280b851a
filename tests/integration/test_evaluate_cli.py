"""`reunite evaluate` end to end: real photos, the real pipeline, the cache, the files written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from service.cli import app

pytestmark = pytest.mark.faces
runner = CliRunner()

# The sdist's photos: obama.jpg, obama2.jpg, obama3.jpg and the partial faces show one man,
# biden.jpg another. Ages and groups are made up: they exercise the columns, not the matcher.
ROWS = (
    ("obama.jpg", "o", "gallery", "40", "2001-05-01", "m"),
    ("obama2.jpg", "o", "probe", "47", "2008-05-01", "m"),
    ("obama3.jpg", "o", "probe", "", "2003-01-01", "m"),
    ("obama_partial_face.jpg", "o", "", "", "", ""),
    ("biden.jpg", "b", "", "65", "", "m"),
    ("blank.png", "b", "probe", "", "", "m"),
)


@pytest.fixture(scope="module")
def manifest(sdist_images, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    for name, *_ in ROWS:
        if name != "blank.png":
            shutil.copy(sdist_images / name, root / name)
    Image.new("RGB", (240, 240), (128, 128, 128)).save(root / "blank.png")
    lines = ["path,identity,set,age_at_photo,taken_at,group:sex"] + [",".join(row) for row in ROWS]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One embedding cache for the module: the first test fills it, later ones embed nothing."""
    return tmp_path_factory.mktemp("cache")


def evaluate(*args: str, bootstrap: int = 30):
    return runner.invoke(app, ["evaluate", *args, "--bootstrap", str(bootstrap), "--workers", "2"])


def test_evaluates_real_faces_and_reuses_the_cache(manifest, cache, tmp_path) -> None:
    first = evaluate(str(manifest), "--out", str(tmp_path / "one"), "--cache", str(cache))
    assert first.exit_code == 0, first.output
    assert "6 computed, 0 from the cache" in first.output
    report = json.loads((tmp_path / "one" / "report.json").read_text())
    enrolled = report["enrolled_only"]["identification"]["overall"]
    # Gallery: obama.jpg, obama_partial_face.jpg, biden.jpg; every obama probe must find obama first.
    assert enrolled["mated_searches"] == 3 and enrolled["rank_1"] == 1.0
    # End to end the faceless probe of b is a fourth mated search (biden.jpg is in the gallery), missed.
    overall = report["identification"]["overall"]
    assert (overall["mated_searches"], overall["rank_1"], overall["at_threshold"]["fnir"]) == (4, 0.75, 0.25)
    assert overall["non_mated_searches"] == 5 and overall["at_threshold"]["fpir"] is not None
    assert "rank 1: 75.0 % of 4 mated searches (100 % of 3)" in first.output
    assert "FNIR 25.0 % (0 %), FPIR" in first.output
    assert report["failure_to_enrol"]["probe"] == {
        "photos": 5,
        "failed": 1,
        "rate": 0.2,
        "reasons": {"no_face": 1},
        "unavailable": {},
        "ci95": report["failure_to_enrol"]["probe"]["ci95"],
    }
    # Same-person pairs: five of o, and biden.jpg with blank.png, which has no face: a miss end to end.
    assert report["verification"]["overall"]["genuine_pairs"] == 6
    assert report["verification"]["overall"]["at_threshold"]["fnmr"] == pytest.approx(1 / 6)
    assert report["enrolled_only"]["verification"]["overall"]["at_threshold"]["fnmr"] == 0.0
    assert report["model"]["id"] == "dlib_face_recognition_resnet_model_v1"
    assert report["groups"]["sex"]["m"]["photos"] == 5
    assert report["age_gaps"]["5-9"]["verification"]["genuine_pairs"] == 1  # obama at 40 and at 47
    assert_no_label_or_path(tmp_path / "one", manifest)

    # The same manifest again, with one photo listed twice and a copy of another under a new name:
    # accepted with a warning naming the lines, each photo counted once, nothing embedded again.
    shutil.copy(manifest.parent / "obama2.jpg", manifest.parent / "obama2-copy.jpg")
    doubled = manifest.parent / "doubled.csv"
    doubled.write_text(manifest.read_text() + "obama.jpg,o,gallery,40,2001-05-01,m\nobama2-copy.jpg,o,probe,,,m\n")
    second = evaluate(str(doubled), "--out", str(tmp_path / "two"), "--cache", str(cache))
    assert second.exit_code == 0, second.output
    assert "0 computed, 6 from the cache" in second.output
    assert (
        "line 8 ('obama.jpg') is the same photo as line 2 ('obama.jpg'); counted once, as listed there" in second.output
    )
    assert "line 9 ('obama2-copy.jpg') is the same photo as line 3 ('obama2.jpg')" in second.output
    again = json.loads((tmp_path / "two" / "report.json").read_text())
    assert (again["dataset"]["duplicates_ignored"], report["dataset"]["duplicates_ignored"]) == (2, 0)
    assert again["dataset"]["manifest_sha256"] != report["dataset"]["manifest_sha256"]  # the lines as read
    same = ("created_at", "dataset")
    assert {**again, **dict.fromkeys(same)} == {**report, **dict.fromkeys(same)}  # same templates, same figures
    assert {**again["dataset"], "manifest_sha256": None, "duplicates_ignored": None} == {
        **report["dataset"],
        "manifest_sha256": None,
        "duplicates_ignored": None,
    }


def assert_no_label_or_path(out: Path, manifest: Path) -> None:
    for path in out.iterdir():
        text = path.read_bytes()
        for secret in (b"obama", b"biden", b"blank.png", str(manifest.parent).encode()):
            assert secret not in text, path.name
        if path.suffix == ".json":
            assert not re.search(rb'"(identity|path|label)"\s*:', text)  # no such field anywhere


def test_help_shows_the_defaults() -> None:
    wide = {"COLUMNS": "250"}
    evaluate_help = runner.invoke(app, ["evaluate", "--help"], env=wide).output
    assert "[default: 200]" in evaluate_help
    assert (
        "[default: (the service's active calibration for the model, else the model's published threshold "
        "(0.6 for dlib's))]"
    ) in evaluate_help
    assert "[default: (~/.cache/reunite/embeddings)]" in evaluate_help
    calibrate_help = runner.invoke(app, ["calibrate", "--help"], env=wide).output
    assert "[default: (REUNITE_CALIBRATION_TARGET_FMR, 0.001 unless set)]" in calibrate_help
    assert "[default: (REUNITE_REVIEW_TOP_K, 10 unless set)]" in calibrate_help


def test_a_bad_manifest_writes_nothing(manifest, tmp_path) -> None:
    bad = manifest.parent / "bad.csv"
    bad.write_text("path,identity,set\nobama.jpg,o,gallery\nbiden.jpg,b,enrol\n")
    result = evaluate(str(bad), "--out", str(tmp_path / "out"), "--no-cache")
    assert result.exit_code == 2
    assert "line 3: unknown set 'enrol'" in result.output
    assert not (tmp_path / "out").exists()


def test_no_usable_photo_writes_nothing(manifest, tmp_path) -> None:
    faceless = manifest.parent / "faceless.csv"
    faceless.write_text("path,identity\nblank.png,b\n")
    result = evaluate(str(faceless), "--out", str(tmp_path / "out"), "--no-cache")
    assert result.exit_code == 2
    assert "no photo gave a usable face" in result.output
    assert not (tmp_path / "out").exists()


def test_shared_faces_in_folder_mode(shared_images, faces_cache, tmp_path) -> None:
    result = evaluate(str(shared_images / "identities"), "--out", str(tmp_path / "out"), "--cache", str(faces_cache))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["dataset"]["photos"], report["dataset"]["identities"]) == (17, 6)
    assert report["identification"]["overall"]["rank_1"] == 1.0
    verification = report["verification"]["overall"]
    assert (verification["genuine_pairs"], verification["impostor_pairs"]) == (23, 113)
    # Every photo enrols, so both countings agree; the false-candidate rate is measured beside FNIR.
    assert report["enrolled_only"]["verification"]["overall"] == verification
    assert report["identification"]["overall"]["at_threshold"]["fpir"] == 0.0
    assert verification["at_fmr"]["0.0001"]["reliable"] is False and verification["at_fmr"]["0.0001"]["fnmr"] is None
    assert report["age_bands"] == {}
    assert "No photo has an age" in (tmp_path / "out" / "report.html").read_text()


def test_an_uncalibrated_model_is_measured_at_its_own_published_threshold(
    manifest, cache, tmp_path, monkeypatch
) -> None:
    """SFace's distances run from 0 to 2: dlib's 0.6 would call almost every same-person pair a miss."""
    monkeypatch.setenv("REUNITE_DATA_DIR", str(tmp_path / "no-service"))
    result = evaluate(
        str(manifest),
        "--out",
        str(tmp_path / "sface"),
        "--cache",
        str(cache),
        "--model",
        "sface_2021dec_int8bq",
        bootstrap=0,
    )
    assert result.exit_code == 0, result.output
    assert "Threshold 1.128: sface_2021dec_int8bq is not calibrated" in result.output
    assert json.loads((tmp_path / "sface" / "report.json").read_text())["threshold"] == 1.128


def test_a_model_without_any_threshold_is_refused_before_embedding(manifest, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("REUNITE_DATA_DIR", str(tmp_path / "no-service"))
    result = evaluate(str(manifest), "--out", str(tmp_path / "fusion"), "--no-cache", "--model", "fusion_dlib_sface")
    assert result.exit_code == 2
    assert "fusion_dlib_sface has no calibration and no published threshold: give --threshold" in result.output
    assert "computed" not in result.output and not (tmp_path / "fusion").exists()


def test_an_unreadable_service_database_is_an_error_not_a_fallback(manifest, tmp_path, monkeypatch) -> None:
    """Measuring at another threshold than the service's, without saying so, would mislead."""
    monkeypatch.setenv("REUNITE_DATABASE_URL", "postgresql+psycopg://reunite:secret@127.0.0.1:9/absent")
    result = evaluate(str(manifest), "--out", str(tmp_path / "out"), "--no-cache")
    assert result.exit_code == 2
    assert "the service database (postgresql+psycopg://reunite:***@127.0.0.1:9/absent) cannot be read" in result.output
    assert "give --threshold" in result.output and "secret" not in result.output
    assert "computed" not in result.output and not (tmp_path / "out").exists()
