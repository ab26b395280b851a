"""`reunite match enrol` and `reunite match search` on real photos, through the CLI."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from service.cli import app

pytestmark = pytest.mark.faces
runner = CliRunner()


@pytest.fixture(scope="module")
def gallery(sdist_images, tmp_path_factory):
    """obama and biden enrolled, plus one file in obama/ that is not a photo."""
    root = tmp_path_factory.mktemp("identities")
    for person, photo in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        (root / person).mkdir()
        shutil.copy(sdist_images / photo, root / person / photo)
    (root / "obama" / "notes.jpg").write_text("not a photo")
    index = root.parent / "gallery" / "faces.index"
    result = runner.invoke(app, ["match", "enrol", str(root), "--index", str(index), "--workers", "2"])
    return root, index, result


def test_enrol_reports_each_file_and_saves_index_and_labels(gallery):
    _, index, result = gallery
    assert result.exit_code == 1, result.output  # one file refused, the others enrolled
    assert "Enrolled 2 faces of 2 identities" in result.output
    assert "notes.jpg" in result.output and "not a photo" in result.output
    labels = json.loads(index.with_name("faces.index.labels.json").read_text())
    assert sorted(labels["records"].values()) == ["biden", "obama"]
    assert index.exists()


def test_search_ranks_the_right_person_first(gallery, sdist_images):
    _, index, _ = gallery
    for probe in ("obama2.jpg", "obama3.jpg"):
        result = runner.invoke(app, ["match", "search", str(sdist_images / probe), "--index", str(index), "--json"])
        assert result.exit_code == 0, result.output
        (face,) = json.loads(result.stdout)["faces"]
        assert face["candidates"][0]["label"] == "obama"
        assert face["candidates"][0]["rank"] == 1
        assert all(c["label"] != "biden" for c in face["candidates"])  # biden is beyond the threshold


def test_search_table_output(gallery, sdist_images):
    _, index, _ = gallery
    result = runner.invoke(app, ["match", "search", str(sdist_images / "obama2.jpg"), "--index", str(index)])
    assert result.exit_code == 0
    assert "obama" in result.output


def test_search_refuses_a_face_less_photo(gallery, tmp_path):
    from PIL import Image

    _, index, _ = gallery
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 300), (200, 200, 200)).save(blank)
    result = runner.invoke(app, ["match", "search", str(blank), "--index", str(index)])
    assert result.exit_code == 2
    assert "No face was found" in result.output


@pytest.mark.parametrize("photo", ["missing.jpg", "notes.jpg"])
def test_search_refuses_missing_or_unreadable_input(gallery, photo):
    root, index, _ = gallery
    result = runner.invoke(app, ["match", "search", str(root / "obama" / photo), "--index", str(index)])
    assert result.exit_code == 2
    assert "error" in result.output


def test_search_without_an_index_says_what_to_do(sdist_images, tmp_path):
    result = runner.invoke(app, ["match", "search", str(sdist_images / "obama.jpg"), "--index", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "reunite match enrol" in result.output


def test_enrol_refuses_a_missing_folder(tmp_path):
    result = runner.invoke(app, ["match", "enrol", str(tmp_path / "nowhere"), "--index", str(tmp_path / "i")])
    assert result.exit_code == 2
    assert not (tmp_path / "i").exists()


def test_enrol_saves_nothing_when_no_photo_has_a_face(tmp_path):
    (tmp_path / "someone").mkdir()
    (tmp_path / "someone" / "a.jpg").write_bytes(b"\xff\xd8 broken")
    result = runner.invoke(app, ["match", "enrol", str(tmp_path), "--index", str(tmp_path / "i")])
    assert result.exit_code == 2
    assert "nothing was saved" in result.output
    assert not (tmp_path / "i").exists()
