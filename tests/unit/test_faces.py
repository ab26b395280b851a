"""Real dlib on real photos: detection, box mapping, quality, embeddings, refusals.

The portable tests use the face_recognition sdist photos (always available); the
identity tests use ../shared/testdata/faces when present.
"""

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matching.faces import (
    EMBEDDING_DIM,
    MODEL_ID,
    FaceSettings,
    NoFaceFound,
    TooManyFaces,
    analyse_image,
    model_version,
    raw_library_embeddings,
)
from matching.images import ImageLimits, decode_image, load_image_file

pytestmark = pytest.mark.faces


def only_face(path: Path, purpose="probe", **limits):
    faces = analyse_image(load_image_file(path, ImageLimits(**limits)), purpose)
    assert len(faces) == 1, f"{path.name}: expected one face, found {len(faces)}"
    return faces[0]


def distance(a, b) -> float:
    return float(np.linalg.norm(a.embedding - b.embedding))


@pytest.fixture(scope="module")
def sdist(sdist_images):
    names = ["obama", "obama2", "obama3", "biden"]
    return {name: only_face(sdist_images / f"{name}.jpg") for name in names}


def test_every_embedding_names_its_model(sdist):
    face = sdist["obama"]
    assert face.model_id == MODEL_ID
    assert face.model_version == model_version()
    assert "sha256." in face.model_version
    assert face.embedding.dtype == np.float32 and face.embedding.shape == (EMBEDDING_DIM,)


def test_same_person_is_closer_than_different_people(sdist):
    same = [distance(sdist["obama"], sdist[n]) for n in ("obama2", "obama3")]
    different = [distance(sdist[n], sdist["biden"]) for n in ("obama", "obama2", "obama3")]
    assert max(same) < min(different)


def test_pipeline_gives_the_raw_library_embedding_on_small_photos(sdist_images):
    # With no downscaling, detection, alignment and the network see exactly what
    # face_recognition's own calls see.
    path = sdist_images / "obama2.jpg"
    (ours,) = analyse_image(load_image_file(path, ImageLimits(working_max_side=4096)), "probe")
    (raw,) = raw_library_embeddings(np.asarray(Image.open(path).convert("RGB")))
    assert np.allclose(ours.embedding, raw, atol=1e-5)


def test_boxes_are_mapped_back_to_the_original_photo(sdist_images, tmp_path):
    small = Image.open(sdist_images / "obama.jpg").convert("RGB")
    large = small.resize((small.width * 3, small.height * 3), Image.Resampling.BICUBIC)
    large.save(tmp_path / "large.png")
    face_small = only_face(sdist_images / "obama.jpg")
    face_large = only_face(tmp_path / "large.png")
    for coordinate_small, coordinate_large in zip(face_small.box.as_tuple(), face_large.box.as_tuple()):
        assert coordinate_large == pytest.approx(coordinate_small * 3, abs=12)
    assert distance(face_small, face_large) < 0.12


def test_quality_figures_are_plausible_and_blur_lowers_sharpness(sdist_images, tmp_path):
    sharp = only_face(sdist_images / "obama.jpg")
    from PIL import ImageFilter

    Image.open(sdist_images / "obama.jpg").filter(ImageFilter.GaussianBlur(6)).save(tmp_path / "blur.png")
    blurred = only_face(tmp_path / "blur.png")
    assert sharp.quality.box_px > 100
    assert 0 <= sharp.quality.asymmetry < 0.3
    assert sharp.quality.detection_score > 0
    assert blurred.quality.sharpness < sharp.quality.sharpness / 4
    # The gates flag, never refuse: the blurred face was found and embedded all the same.
    assert not sharp.low_quality(FaceSettings())
    assert blurred.low_quality(FaceSettings()) and blurred.quality.flags(FaceSettings()) == ["the face is blurry"]
    assert blurred.embedding.shape == (EMBEDDING_DIM,)
    assert distance(blurred, sharp) < 0.6  # still the same person within the provisional threshold
    gentler = FaceSettings(min_sharpness=blurred.quality.sharpness / 2)
    assert not blurred.low_quality(gentler)


def test_a_photo_without_a_face_is_refused():
    blank = Image.new("RGB", (400, 300), (120, 160, 200))
    with pytest.raises(NoFaceFound, match="No face"):
        analyse_image(decode_image(_png(blank)), "probe")


def test_crowd_photos_over_the_face_cap_are_refused(sdist_images):
    pair = _side_by_side(sdist_images / "obama.jpg", sdist_images / "biden.jpg")
    image = decode_image(_png(pair))
    assert len(analyse_image(image, "probe", FaceSettings(max_faces=2))) == 2
    with pytest.raises(TooManyFaces, match="2 faces"):
        analyse_image(image, "probe", FaceSettings(max_faces=1))


def test_thirty_two_bit_png_is_decoded_and_searched(sdist_images):
    face = only_face(sdist_images / "32bit.png")
    assert face.quality.box_px > 40


# --- the six identities of ../shared ---------------------------------------------------


@pytest.fixture(scope="module")
def shared_embeddings(shared_images):
    identities = shared_images / "identities"
    found = {}
    for folder in sorted(identities.iterdir()):
        for path in sorted(folder.iterdir()):
            faces = analyse_image(load_image_file(path), "probe")
            found[(folder.name, path.name)] = max(faces, key=lambda f: f.quality.box_px)
    return found


def test_right_identity_ranks_first_for_every_probe(shared_embeddings):
    gallery = {}
    for (person, photo), face in shared_embeddings.items():
        gallery.setdefault(person, (photo, face))  # first photo of each person is enrolled
    probes = [(person, face) for (person, photo), face in shared_embeddings.items() if gallery[person][0] != photo]
    assert len(probes) >= 10
    for person, probe in probes:
        ranked = sorted(gallery, key=lambda name: distance(gallery[name][1], probe))
        assert ranked[0] == person, f"a photo of {person} ranked {ranked[0]} first"


def test_different_people_are_farther_apart_than_the_same_person(shared_embeddings):
    genuine, impostor = [], []
    for (key_a, a), (key_b, b) in itertools.combinations(shared_embeddings.items(), 2):
        (genuine if key_a[0] == key_b[0] else impostor).append(distance(a, b))
    assert max(genuine) < min(impostor)


def test_multi_face_photos_find_every_face(shared_images):
    for path in sorted((shared_images / "multi").iterdir()):
        faces = analyse_image(load_image_file(path), "probe")
        assert len(faces) >= 2, path.name


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _side_by_side(left: Path, right: Path) -> Image.Image:
    a, b = Image.open(left).convert("RGB"), Image.open(right).convert("RGB")
    height = max(a.height, b.height)
    canvas = Image.new("RGB", (a.width + b.width, height), (255, 255, 255))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width, 0))
    return canvas
