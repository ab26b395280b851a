"""The flip-augmented dlib model, SFace and the fusion, on real faces (the face_recognition sdist photos).

Each model is checked against the raw library doing the same work (dlib on the aligned
chip and its mirror; SFace's own cosine similarity), and on what it must do for the
service: tell the same person from another, on the Euclidean scale the index compares.
SFace's weights come from `reunite models install`, which `make install-dev` runs.
"""

import numpy as np
import pytest

from matching import sface as sface_module
from matching.embedders import (
    ModelNotInstalled,
    _dlib_models,
    aligned_chips,
    available_embedders,
    default_embedder,
    get_embedder,
    model_registry,
)
from matching.faces import analyse_image, embed_again
from matching.images import ImageLimits, decode_image
from matching.model_files import MODELS_DIR_ENV, SFACE, YUNET, licence_text, models_dir, verified_path
from tests.support.faces import shrunk_jpeg

pytestmark = pytest.mark.faces

FLIP = "dlib_resnet_v1_flip"
SFACE_ID = "sface_2021dec_int8bq"
FUSION = "fusion_dlib_sface"
NAMES = ("obama", "obama2", "biden")


@pytest.fixture(scope="module")
def photos(sdist_images):
    """Each photo (shrunk to 600 px: the same faces, found faster) with its one face found by the default pipeline."""
    found = {}
    for name in NAMES:
        image = decode_image(shrunk_jpeg(sdist_images / f"{name}.jpg"), ImageLimits())
        (face,) = analyse_image(image, "probe")
        found[name] = (image, face)
    return found


@pytest.fixture(scope="module")
def flip_vectors(photos):
    return vectors_of(FLIP, photos)


@pytest.fixture(scope="module")
def sface_vectors(photos):
    return vectors_of(SFACE_ID, photos)


def vectors_of(model_id, photos):
    embedder = get_embedder(model_id)
    return {name: embed_again(image, [face], embedder)[0].embedding for name, (image, face) in photos.items()}


def same_and_different(vectors):
    def distance(a, b):
        return float(np.linalg.norm(vectors[a] - vectors[b]))

    same = [distance("obama", "obama2")]
    different = [distance(name, "biden") for name in ("obama", "obama2")]
    return same, different


# --- flip -----------------------------------------------------------------------------------------


def test_the_flip_vector_is_the_mean_of_the_chip_and_its_mirror(photos, flip_vectors):
    encoder = _dlib_models().face_encoder
    for name in ("obama", "biden"):
        image, face = photos[name]
        (chip,) = aligned_chips(image.pixels, [face.box])
        plain = np.asarray(encoder.compute_face_descriptor(chip))
        mirrored = np.asarray(encoder.compute_face_descriptor(np.ascontiguousarray(np.fliplr(chip))))
        # The chip is exactly what the default model embeds, so only the mirror is new.
        assert np.array_equal(plain.astype(np.float32), face.embedding), name
        flipped = flip_vectors[name]
        assert flipped.dtype == np.float32 and flipped.shape == (128,)
        np.testing.assert_allclose(flipped, (plain + mirrored) / 2, atol=1e-6)
        assert 0.01 < np.linalg.norm(flipped - face.embedding) < 0.2, name  # another space, close by


def test_the_flip_model_still_tells_people_apart(flip_vectors):
    same, different = same_and_different(flip_vectors)
    assert max(same) < 0.6 < min(different)


# --- SFace ----------------------------------------------------------------------------------------


def test_sface_separates_the_same_person_from_another_on_unit_vectors(sface_vectors):
    vectors = sface_vectors
    for vector in vectors.values():
        assert vector.dtype == np.float32 and vector.shape == (128,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    same, different = same_and_different(vectors)
    # OpenCV's own cosine threshold for SFace is 0.363, i.e. a Euclidean distance of 1.13 on unit vectors.
    assert max(same) < 1.13 < min(different)


def test_sface_distance_is_the_cosine_similarity_opencv_computes(photos):
    models = sface_module.SFaceModels(verified_path(SFACE), verified_path(YUNET))
    raw = {}
    for name in ("obama", "biden"):
        image, face = photos[name]
        aligned = models.align(image.pixels, face.box, lambda *_: pytest.fail("YuNet found these faces"))
        raw[name] = models.recogniser.feature(aligned.chip)
    cosine = models.recogniser.match(raw["obama"], raw["biden"], 0)  # FaceRecognizerSF_FR_COSINE
    ours = vectors_of(SFACE_ID, {name: photos[name] for name in ("obama", "biden")})
    assert float(np.linalg.norm(ours["obama"] - ours["biden"])) ** 2 == pytest.approx(2 - 2 * cosine, abs=1e-4)


def test_without_yunet_landmarks_dlibs_68_points_align_the_face(photos, sface_vectors, monkeypatch):
    with_yunet = sface_vectors
    monkeypatch.setattr(sface_module, "MIN_OVERLAP", 1.01)  # no YuNet detection can overlap enough
    fallback = vectors_of(SFACE_ID, photos)
    shifts = [float(np.linalg.norm(with_yunet[name] - fallback[name])) for name in NAMES]
    assert min(shifts) > 0.01  # the fallback did run
    # Still the same people: a fallback-aligned probe against YuNet-aligned photos.
    mixed = {**with_yunet, "obama2": fallback["obama2"], "biden": fallback["biden"]}
    same, different = same_and_different(mixed)
    assert max(same) < 1.13 < min(different)


# --- fusion ---------------------------------------------------------------------------------------


def test_fusion_vectors_have_both_parts_unit_length_and_averaged_squared_distances(photos, sface_vectors):
    fused = vectors_of(FUSION, photos)
    parts = [{name: face.embedding for name, (_, face) in photos.items()}, sface_vectors]
    assert get_embedder(FUSION).dimension == 256
    for name, vector in fused.items():
        assert vector.dtype == np.float32 and vector.shape == (256,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
        dlib_part = parts[0][name] / np.linalg.norm(parts[0][name])
        np.testing.assert_allclose(vector[:128] * np.sqrt(2), dlib_part, atol=1e-6)
        np.testing.assert_allclose(vector[128:] * np.sqrt(2), parts[1][name], atol=1e-6)

    def unit_distance(vectors, a, b):
        return np.linalg.norm(vectors[a] / np.linalg.norm(vectors[a]) - vectors[b] / np.linalg.norm(vectors[b]))

    expected = np.mean([unit_distance(p, "obama", "biden") ** 2 for p in parts])
    assert np.linalg.norm(fused["obama"] - fused["biden"]) ** 2 == pytest.approx(expected, rel=1e-5)
    same, different = same_and_different(fused)
    assert max(same) < min(different)


# --- the registry, the files, the refusals ----------------------------------------------------------


def test_every_registered_model_has_a_complete_registry_entry():
    entries = model_registry()
    assert [entry["id"] for entry in entries] == list(available_embedders())
    assert {FLIP, SFACE_ID, FUSION} <= set(available_embedders())
    for entry in entries:
        assert entry["installed"] and entry["problem"] is None, entry["id"]
        assert entry["version"] and len(entry["version"]) <= 64 and "sha256." in entry["version"]
        assert entry["licence"] and entry["training_data"] and entry["weights"]
        for weight in entry["weights"]:
            assert len(weight["sha256"]) == 64 and int(weight["sha256"], 16) >= 0
            assert weight["file"] and weight["licence"] and weight["source"] and weight["upstream"]
            assert weight["training_data"] and weight["bytes"] > 0
    by_id = {entry["id"]: entry for entry in entries}
    assert by_id[SFACE_ID]["licence"].startswith("Apache-2.0 AND MIT")
    assert "iBUG 300-W" in str(by_id["dlib_resnet_v1_align68"]["weights"])  # the non-commercial dataset is named
    assert "Children are under-represented" in by_id[SFACE_ID]["training_data"]


def test_the_dlib_files_installed_are_the_ones_the_registry_names():
    import face_recognition_models

    from matching.model_files import DLIB_LANDMARKS_5, DLIB_LANDMARKS_68, DLIB_RESNET, file_sha256

    locations = {
        DLIB_RESNET: face_recognition_models.face_recognition_model_location(),
        DLIB_LANDMARKS_5: face_recognition_models.pose_predictor_five_point_model_location(),
        DLIB_LANDMARKS_68: face_recognition_models.pose_predictor_model_location(),
    }
    for weight, location in locations.items():
        assert location.endswith(weight.name) and file_sha256(location) == weight.sha256


def test_the_licences_ship_in_the_package_and_beside_the_installed_files():
    sface_licence, yunet_licence = licence_text(SFACE.licence_file), licence_text(YUNET.licence_file)
    assert "Apache License" in sface_licence and "Version 2.0" in sface_licence and "Yaoyao Zhong" in sface_licence
    assert "MIT License" in yunet_licence and "Copyright (c) 2020 Shiqi Yu" in yunet_licence
    assert (models_dir() / SFACE.licence_file).read_text() == sface_licence
    assert (models_dir() / YUNET.licence_file).read_text() == yunet_licence


def test_sface_without_its_files_is_refused_and_says_how_to_install(tmp_path, monkeypatch, photos):
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    image, face = photos["obama"]
    for model_id in (SFACE_ID, FUSION):
        with pytest.raises(ModelNotInstalled) as refusal:
            get_embedder(model_id).embed(image.pixels, [face.box])
        message = str(refusal.value)
        assert model_id in message and SFACE.name in message and "reunite models install" in message
        with pytest.raises(ModelNotInstalled):
            get_embedder(model_id).version  # noqa: B018 - no version is claimed for files never checked
    entry = {e["id"]: e for e in model_registry()}[SFACE_ID]
    assert (entry["installed"], entry["version"]) == (False, None) and "reunite models install" in entry["problem"]
    assert default_embedder().embed(image.pixels, [face.box])[0].shape == (128,)  # dlib is unaffected


def test_an_altered_weight_file_is_refused_with_both_digests(tmp_path, monkeypatch, photos):
    for weight in (SFACE, YUNET):
        (tmp_path / weight.name).write_bytes(verified_path(weight).read_bytes())
    damaged = bytearray((tmp_path / YUNET.name).read_bytes())
    damaged[1000] ^= 0xFF
    (tmp_path / YUNET.name).write_bytes(bytes(damaged))
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    image, face = photos["obama"]
    with pytest.raises(ModelNotInstalled) as refusal:
        get_embedder(SFACE_ID).embed(image.pixels, [face.box])
    message = str(refusal.value)
    assert YUNET.name in message and YUNET.sha256 in message and "expected" in message
    assert "reunite models install --force" in message
