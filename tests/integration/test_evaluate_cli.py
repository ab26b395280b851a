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


def evaluate(*args: str):
    return runner.invoke(app, ["evaluate", *args, "--bootstrap", "30", "--workers", "2"])


def test_evaluates_real_faces_and_reuses_the_cache(manifest, tmp_path) -> None:
    cache = tmp_path / "cache"
    first = evaluate(str(manifest), "--out", str(tmp_path / "one"), "--cache", str(cache))
    assert first.exit_code == 0, first.output
    assert "6 computed, 0 from the cache" in first.output
    report = json.loads((tmp_path / "one" / "report.json").read_text())
    overall = report["identification"]["overall"]
    # Gallery: obama.jpg, obama_partial_face.jpg, biden.jpg; every obama probe must find obama first.
    assert overall["mated_searches"] == 3 and overall["rank_1"] == 1.0
    assert report["failure_to_enrol"]["probe"] == {"photos": 5, "failed": 1, "rate": 0.2, "reasons": {"no_face": 1},
                                                   "ci95": report["failure_to_enrol"]["probe"]["ci95"]}
    assert report["verification"]["overall"]["at_threshold"]["fnmr"] == 0.0
    assert report["model"]["id"] == "dlib_face_recognition_resnet_model_v1"
    assert report["groups"]["sex"]["m"]["photos"] == 5
    assert report["age_gaps"]["5-9"]["verification"]["genuine_pairs"] == 1  # obama at 40 and at 47
    assert_no_label_or_path(tmp_path / "one", manifest)

    second = evaluate(str(manifest), "--out", str(tmp_path / "two"), "--cache", str(cache))
    assert second.exit_code == 0, second.output
    assert "0 computed, 6 from the cache" in second.output
    again = json.loads((tmp_path / "two" / "report.json").read_text())
    assert {**again, "created_at": None} == {**report, "created_at": None}  # same templates, same figures


def assert_no_label_or_path(out: Path, manifest: Path) -> None:
    for path in out.iterdir():
        text = path.read_bytes()
        for secret in (b"obama", b"biden", b"blank.png", str(manifest.parent).encode()):
            assert secret not in text, path.name
        if path.suffix == ".json":
            assert not re.search(rb'"(identity|path|label)"\s*:', text)  # no such field anywhere


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


def test_shared_faces_in_folder_mode(shared_images, tmp_path) -> None:
    result = evaluate(str(shared_images / "identities"), "--out", str(tmp_path / "out"), "--cache",
                      str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["dataset"]["photos"], report["dataset"]["identities"]) == (17, 6)
    assert report["identification"]["overall"]["rank_1"] == 1.0
    verification = report["verification"]["overall"]
    assert (verification["genuine_pairs"], verification["impostor_pairs"]) == (23, 113)
    assert verification["at_fmr"]["0.0001"]["reliable"] is False and verification["at_fmr"]["0.0001"]["fnmr"] is None
    assert report["age_bands"] == {}
    assert "No photo has an age" in (tmp_path / "out" / "report.html").read_text()
