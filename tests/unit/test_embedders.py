"""The embedder interface and registry, on real faces (the face_recognition sdist photos).

The default embedder must give exactly what face_recognition's own calls give (so
every embedding stored before the interface existed stays valid); the 68-point
alternative must give face_recognition's "large" alignment: a different space that
still tells people apart.
"""

import face_recognition
import numpy as np
import pytest

from matching.embedders import (
    DEFAULT_MODEL_ID,
    DlibResNet,
    Embedder,
    UnknownEmbedder,
    available_embedders,
    default_embedder,
    get_embedder,
    model_version,
    register_embedder,
)
from matching.faces import MODEL_ID, analyse_image, embed_again
from matching.images import ImageLimits, load_image_file

pytestmark = pytest.mark.faces

ALIGN68 = "dlib_resnet_v1_align68"
NAMES = ("obama", "obama2", "obama3", "biden")


@pytest.fixture(scope="module")
def photos(sdist_images):
    """Each photo decoded at full size, with its one face found by the default pipeline."""
    found = {}
    for name in NAMES:
        image = load_image_file(sdist_images / f"{name}.jpg", ImageLimits(working_max_side=4096))
        (face,) = analyse_image(image, "probe")
        found[name] = (image, face)
    return found


def test_the_registry_lists_the_default_first_and_refuses_unknown_ids():
    assert available_embedders()[0] == DEFAULT_MODEL_ID == MODEL_ID
    assert ALIGN68 in available_embedders()
    assert default_embedder() is get_embedder(DEFAULT_MODEL_ID)
    with pytest.raises(UnknownEmbedder) as refusal:
        get_embedder("arcface_r100")
    assert "arcface_r100" in str(refusal.value) and DEFAULT_MODEL_ID in str(refusal.value)


def test_an_id_cannot_be_registered_twice_and_metrics_must_be_euclidean():
    with pytest.raises(ValueError, match="already registered"):
        register_embedder(DlibResNet())

    class Cosine(DlibResNet):
        id = "cosine_variant"
        metric = "cosine"

    with pytest.raises(ValueError, match="metric"):
        register_embedder(Cosine())
    assert "cosine_variant" not in available_embedders()


@pytest.mark.parametrize("model_id", [DEFAULT_MODEL_ID, ALIGN68])
def test_every_embedder_describes_itself_and_embeds_each_box(model_id, photos):
    embedder = get_embedder(model_id)
    assert isinstance(embedder, Embedder)
    assert (embedder.dimension, embedder.metric) == (128, "euclidean")
    assert "sha256." in embedder.version and len(embedder.version) <= 64
    image, face = photos["obama"]
    vectors = embedder.embed(image.pixels, [face.box, face.box])
    assert len(vectors) == 2
    assert all(v.dtype == np.float32 and v.shape == (128,) for v in vectors)
    assert np.array_equal(vectors[0], vectors[1])
    assert embedder.embed(image.pixels, []) == []


def test_the_two_models_have_different_versions():
    assert get_embedder(ALIGN68).version != default_embedder().version == model_version()


def test_bad_input_is_refused_in_words(photos):
    image, face = photos["obama"]
    with pytest.raises(ValueError, match="RGB image"):
        default_embedder().embed(image.pixels[:, :, 0], [face.box])
    with pytest.raises(ValueError, match="RGB image"):
        default_embedder().embed(image.pixels.astype(np.float32), [face.box])
    with pytest.raises(ValueError, match="jitters"):
        default_embedder().embed(image.pixels, [face.box], jitters=0)


def test_the_default_is_exactly_face_recognitions_own_encoding(photos):
    for name, (image, face) in photos.items():
        (raw,) = face_recognition.face_encodings(image.pixels, [face.box.as_tuple()])
        assert np.array_equal(face.embedding, np.asarray(raw, dtype=np.float32)), name
        assert np.array_equal(default_embedder().embed(image.pixels, [face.box])[0], face.embedding), name
        (explicit,) = analyse_image(image, "probe", embedder=default_embedder())
        assert np.array_equal(explicit.embedding, face.embedding) and explicit.model_id == MODEL_ID


def test_align68_is_face_recognitions_large_alignment_and_another_space(photos):
    embedder = get_embedder(ALIGN68)
    shifts = []
    for name, (image, face) in photos.items():
        (raw,) = face_recognition.face_encodings(image.pixels, [face.box.as_tuple()], model="large")
        (moved,) = embed_again(image, [face], embedder)
        assert np.array_equal(moved.embedding, np.asarray(raw, dtype=np.float32)), name
        assert (moved.box, moved.quality, moved.jitters) == (face.box, face.quality, face.jitters)
        assert (moved.model_id, moved.model_version) == (ALIGN68, embedder.version)
        shifts.append(float(np.linalg.norm(moved.embedding - face.embedding)))
    # The same network, another alignment: every face moves, by about a third of a same-person distance.
    assert min(shifts) > 0.05 and max(shifts) < 0.25


def test_align68_still_tells_people_apart(photos):
    embedder = get_embedder(ALIGN68)
    vectors = {name: embed_again(image, [face], embedder)[0].embedding for name, (image, face) in photos.items()}

    def distance(a, b):
        return float(np.linalg.norm(vectors[a] - vectors[b]))

    same = [distance("obama", other) for other in ("obama2", "obama3")]
    different = [distance(name, "biden") for name in ("obama", "obama2", "obama3")]
    assert max(same) < 0.6 < min(different)


def test_analysing_with_align68_stamps_its_model_on_every_face(photos):
    image, face = photos["obama2"]
    (moved,) = analyse_image(image, "probe", embedder=get_embedder(ALIGN68))
    assert (moved.model_id, moved.box, moved.quality) == (ALIGN68, face.box, face.quality)
    assert not np.array_equal(moved.embedding, face.embedding)
