"""Unit tests for matching.dataset: manifests and every refusal, folder mode, the enrolment
rule, and (on real photos, marked `faces`) embedding with the cache."""

from __future__ import annotations

import os
import shutil
import stat
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matching.dataset import (
    Entry,
    ManifestError,
    _Analysis,
    _failures,
    _photo,
    embed_dataset,
    load_manifest,
)
from matching.faces import FaceSettings

PHOTOS = ("photos/a1.jpg", "photos/a2.jpg", "photos/b1.jpg")


def manifest(tmp_path: Path, text: str, photos=PHOTOS) -> Path:
    for photo in photos:
        (tmp_path / photo).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / photo).write_bytes(b"not read by load_manifest")
    path = tmp_path / "manifest.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_every_column(tmp_path) -> None:
    path = manifest(
        tmp_path,
        "path,identity,set,age_at_photo,taken_at,group:sex,group:skin_tone\n"
        "photos/a1.jpg,ann,gallery,4.5,2019-03-01,f,V\n"
        "photos/a2.jpg,ann,probe,,,f,\n"
        "photos/b1.jpg,ben,,17,2020-01-02T10:00:00,m,II\n",
    )
    first, second, third = load_manifest(path)
    assert first == Entry(
        path=(tmp_path / "photos/a1.jpg").resolve(),
        relative="photos/a1.jpg",
        identity="ann",
        gallery=True,
        probe=False,
        line=2,
        age=4.5,
        taken_at=date(2019, 3, 1),
        groups={"sex": "f", "skin_tone": "V"},
    )
    assert (second.gallery, second.probe, second.age, second.taken_at) == (False, True, None, None)
    assert second.groups == {"sex": "f", "skin_tone": ""}  # empty: unknown
    assert (third.gallery, third.probe, third.taken_at, third.line) == (True, True, date(2020, 1, 2), 4)


def test_minimal_manifest_byte_order_mark_and_blank_lines(tmp_path) -> None:
    path = manifest(tmp_path, "\ufeffidentity , path\n\nann,photos/a1.jpg\n\n ben , photos/b1.jpg \n")
    entries = load_manifest(path)
    assert [(e.identity, e.relative, e.gallery, e.probe, e.line) for e in entries] == [
        ("ann", "photos/a1.jpg", True, True, 3),
        ("ben", "photos/b1.jpg", True, True, 5),
    ]


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("", 1, "empty"),
        ("path\nphotos/a1.jpg\n", 1, "missing column 'identity'"),
        ("path,identity,age\nphotos/a1.jpg,ann,3\n", 1, "unknown column 'age'"),
        ("path,identity,group:\nphotos/a1.jpg,ann,x\n", 1, "group column"),
        ("path,identity,group:a b\nphotos/a1.jpg,ann,x\n", 1, "group column"),
        ("path,identity,path\nphotos/a1.jpg,ann,x\n", 1, "appears twice"),
        ("path,identity\n", None, "lists no photos"),
        ("path,identity\nphotos/a1.jpg,ann\nphotos/b1.jpg\n", 3, "1 fields"),
        ("path,identity\nphotos/a1.jpg,ann,extra\n", 2, "3 fields"),
        ("path,identity\nphotos/a1.jpg,\n", 2, "identity is empty"),
        ("path,identity\n,ann\n", 2, "path is empty"),
        ("path,identity,set\nphotos/a1.jpg,ann,both\n", 2, "unknown set 'both'"),
        ("path,identity\nphotos/a1.jpg,ann\nphotos/zz.jpg,ann\n", 3, "no such photo"),
        ("path,identity\nphotos/a1.jpg,ann\nphotos,ann\n", 3, "no such photo"),  # a folder
        ("path,identity\n../outside.jpg,ann\n", 2, "outside the manifest's folder"),
        ("path,identity\nphotos/../../outside.jpg,ann\n", 2, "outside the manifest's folder"),
        ("path,identity\n/etc/passwd,ann\n", 2, "must be relative"),
        ("path,identity,age_at_photo\nphotos/a1.jpg,ann,four\n", 2, "not a number"),
        ("path,identity,age_at_photo\nphotos/a1.jpg,ann,-1\n", 2, "between 0 and 130"),
        ("path,identity,age_at_photo\nphotos/a1.jpg,ann,131\n", 2, "between 0 and 130"),
        ("path,identity,age_at_photo\nphotos/a1.jpg,ann,nan\n", 2, "between 0 and 130"),
        ("path,identity,taken_at\nphotos/a1.jpg,ann,01/02/2020\n", 2, "not an ISO date"),
        ("path,identity,taken_at\nphotos/a1.jpg,ann,2020-02-30\n", 2, "not an ISO date"),
        (f"path,identity,taken_at\nphotos/a1.jpg,ann,{date.today() + timedelta(days=2)}\n", 2, "in the future"),
        ('path,identity\n"photos/a1.jpg,ann\n', 2, "fields"),  # an unclosed quote swallows the rest
    ],
)
def test_refusals_name_the_line(tmp_path, text, line, message) -> None:
    (tmp_path.parent / "outside.jpg").write_bytes(b"x")
    with pytest.raises(ManifestError, match=message) as refused:
        load_manifest(manifest(tmp_path, text))
    assert refused.value.line == line
    if line is not None:
        assert str(refused.value).startswith(f"line {line}: ")


def test_a_link_leading_outside_is_refused(tmp_path) -> None:
    secret = tmp_path.parent / f"{tmp_path.name}-secret.jpg"
    secret.write_bytes(b"x")
    path = manifest(tmp_path, "path,identity\nphotos/link.jpg,ann\n")
    os.symlink(secret, tmp_path / "photos" / "link.jpg")
    with pytest.raises(ManifestError, match="outside"):
        load_manifest(path)


def test_not_utf8_is_refused(tmp_path) -> None:
    path = tmp_path / "manifest.csv"
    path.write_bytes(b"path,identity\nphotos/a1.jpg,J\xf6rg\n")
    with pytest.raises(ManifestError, match="UTF-8"):
        load_manifest(path)


def test_neither_file_nor_folder(tmp_path) -> None:
    with pytest.raises(ManifestError, match="neither"):
        load_manifest(tmp_path / "missing.csv")


def test_folder_mode(tmp_path) -> None:
    for photo in ("ann/1.jpg", "ann/2.png", "ben/1.jpg", "ben/notes.txt", "empty/readme.md"):
        (tmp_path / photo).parent.mkdir(exist_ok=True)
        (tmp_path / photo).write_bytes(b"x")
    entries = load_manifest(tmp_path)
    assert [(e.relative, e.identity, e.gallery, e.probe, e.line) for e in entries] == [
        ("ann/1.jpg", "ann", True, True, None),
        ("ann/2.png", "ann", True, True, None),
        ("ben/1.jpg", "ben", True, True, None),
    ]
    assert entries[0].path == (tmp_path / "ann/1.jpg").resolve()


def test_folder_without_identities_is_refused(tmp_path) -> None:
    (tmp_path / "loose.jpg").write_bytes(b"x")
    with pytest.raises(ManifestError, match="no sub-folders with photos"):
        load_manifest(tmp_path)


BLURRY_SMALL = {"box_px": 30.0, "sharpness": 3.0, "asymmetry": 0.1, "detection_score": 0.5}


@pytest.mark.parametrize(
    "analysis, gallery, probe",
    [
        (_Analysis(refusal="no_face"), "no_face", "no_face"),
        (_Analysis(refusal=None, faces=1), None, None),
        # Quality never refuses: a small, blurry face enrols in both roles (and is flagged).
        (_Analysis(refusal=None, faces=1, quality=BLURRY_SMALL), None, None),
        # The service refuses a record photo with two faces (which one is the child?); a probe uses its largest.
        (_Analysis(refusal=None, faces=2), "several_faces", None),
        (_Analysis(refusal=None, faces=3, quality=BLURRY_SMALL), "several_faces", None),
    ],
)
def test_enrolment_rule(analysis, gallery, probe) -> None:
    assert _failures(analysis) == (gallery, probe)


def test_a_template_is_flagged_by_the_gates_of_the_face_settings(tmp_path) -> None:
    entry = Entry(path=tmp_path / "a.jpg", relative="a.jpg", identity="ann")
    analysis = _Analysis(refusal=None, faces=1, vector=np.ones(128, np.float32), quality=BLURRY_SMALL)
    flagged = _photo(entry, "1" * 64, analysis, False, FaceSettings())
    assert flagged.gallery_failure is None and flagged.low_quality
    assert flagged.quality_flags == (
        "the face is small (30 px across; 40 px or more matches better)",
        "the face is blurry",
    )
    lenient = _photo(entry, "1" * 64, analysis, False, FaceSettings(min_face_px=24, min_sharpness=2))
    assert lenient.quality_flags == () and not lenient.low_quality
    refused = _photo(entry, "1" * 64, _Analysis(refusal="no_face"), False, FaceSettings())
    assert refused.quality_flags == () and not refused.low_quality  # no template, nothing to flag


# ----- embedding real photos -------------------------------------------------------------------


@pytest.fixture
def photo_set(sdist_images, tmp_path) -> list[Entry]:
    """obama twice (one a probe only), biden, a face-less image and a file that is not a photo."""
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        shutil.copy(sdist_images / name, tmp_path / name)
    Image.new("RGB", (200, 200), (180, 180, 180)).save(tmp_path / "blank.png")
    (tmp_path / "notes.jpg").write_text("not a photo")
    text = "path,identity,set\nobama.jpg,o,gallery\nobama2.jpg,o,probe\nbiden.jpg,b,\nblank.png,b,\nnotes.jpg,o,probe\n"
    return load_manifest(manifest(tmp_path, text, photos=()))


@pytest.mark.faces
def test_embeds_with_the_pipeline_and_caches_every_outcome(photo_set, tmp_path) -> None:
    cache = tmp_path / "cache"
    calls = []
    first = embed_dataset(photo_set, workers=2, cache_dir=cache, progress_callback=lambda *a: calls.append(a))
    outcomes = {p.entry.relative: (p.gallery_failure, p.probe_failure, p.vector is not None) for p in first.photos}
    assert outcomes == {
        "obama.jpg": (None, None, True),
        "obama2.jpg": (None, None, True),
        "biden.jpg": (None, None, True),
        "blank.png": ("no_face", "no_face", False),
        "notes.jpg": ("not_an_image", "not_an_image", False),
    }
    assert (first.cache_hits, first.computed, first.templates) == (0, 5, 3)
    assert calls[-1] == (5, 5)
    assert first.model_id == "dlib_face_recognition_resnet_model_v1" and first.model_version
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert len(files) == 5 and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700

    second = embed_dataset(photo_set, workers=2, cache_dir=cache)
    assert (second.cache_hits, second.computed) == (5, 0)
    for before, after in zip(first.photos, second.photos):
        assert (before.gallery_failure, before.probe_failure) == (after.gallery_failure, after.probe_failure)
        assert (before.vector is None and after.vector is None) or np.array_equal(before.vector, after.vector)
    assert second.manifest_sha256 == first.manifest_sha256

    # The quality gates only flag, from the cached figures: changing them recomputes nothing.
    stricter = embed_dataset(photo_set, workers=1, cache_dir=cache, face_settings=FaceSettings(min_face_px=10_000))
    assert (stricter.cache_hits, stricter.computed) == (5, 0)
    assert [p.low_quality for p in stricter.photos] == [True, True, True, False, False]
    assert not any(p.low_quality for p in second.photos)
    # A detection setting changes what is found: other settings, other cache entries.
    capped = embed_dataset(photo_set, workers=1, cache_dir=cache, face_settings=FaceSettings(max_faces=1))
    assert (capped.cache_hits, capped.computed) == (0, 5)


@pytest.mark.faces
def test_samples_carry_roles_and_failures(photo_set) -> None:
    samples = embed_dataset(photo_set, workers=1).samples
    assert [(s.gallery, s.probe) for s in samples] == [
        (True, False),
        (False, True),
        (True, True),
        (True, True),
        (False, True),
    ]
    assert samples[3].failure("gallery") == "no_face" and samples[0].failure("probe") is None
    assert samples[1].vector.shape == (128,)


@pytest.mark.faces
def test_a_broken_cache_entry_is_recomputed(photo_set, tmp_path) -> None:
    cache = tmp_path / "cache"
    embed_dataset(photo_set[:1], workers=1, cache_dir=cache)
    (entry,) = [p for p in cache.rglob("*.json")]
    entry.write_text('{"refusal": null, "faces": 1, "quality": {}, "vector": "AAAA"}')  # a vector of 3 bytes
    again = embed_dataset(photo_set[:1], workers=1, cache_dir=cache)
    assert (again.cache_hits, again.computed) == (0, 1)
    assert again.photos[0].vector.shape == (128,)


def test_the_same_photo_twice_is_counted_once_with_a_warning(tmp_path) -> None:
    Image.new("RGB", (50, 50)).save(tmp_path / "one.jpg")
    shutil.copy(tmp_path / "one.jpg", tmp_path / "two.jpg")
    Image.new("RGB", (50, 50), (9, 9, 9)).save(tmp_path / "three.jpg")
    text = "path,identity\none.jpg,b\nthree.jpg,c\ntwo.jpg,b\n./one.jpg,b\n"
    entries = load_manifest(manifest(tmp_path, text, photos=()))
    assert len(entries) == 4  # the same path twice is no longer refused when the manifest is read
    embedded = embed_dataset(entries, cache_dir=None, workers=1)
    assert [p.entry.relative for p in embedded.photos] == ["one.jpg", "three.jpg"]
    assert [d.describe() for d in embedded.duplicates] == [
        "line 4 ('two.jpg') is the same photo as line 2 ('one.jpg'); counted once, as listed there",
        "line 5 ('./one.jpg') is the same photo as line 2 ('one.jpg'); counted once, as listed there",
    ]
    assert embedded.summary()["duplicates_ignored"] == 2 and embedded.summary()["photos"] == 2
    # The digest is of every entry as read: dropping the duplicate lines changes it.
    plain = embed_dataset(
        load_manifest(manifest(tmp_path, "path,identity\none.jpg,b\nthree.jpg,c\n", photos=())),
        cache_dir=None,
        workers=1,
    )
    assert plain.duplicates == () and plain.manifest_sha256 != embedded.manifest_sha256


def test_the_same_photo_labelled_as_two_people_is_refused(tmp_path) -> None:
    Image.new("RGB", (50, 50)).save(tmp_path / "one.jpg")
    shutil.copy(tmp_path / "one.jpg", tmp_path / "two.jpg")
    entries = load_manifest(manifest(tmp_path, "path,identity\none.jpg,b\ntwo.jpg,c\n", photos=()))
    with pytest.raises(
        ManifestError, match="line 3: 'two.jpg' is the same photo as line 2 \\('one.jpg'\\), labelled as another person"
    ):
        embed_dataset(entries, cache_dir=None)


def test_the_digest_follows_the_content(tmp_path) -> None:
    from matching.dataset import _dataset_digest

    entries = load_manifest(manifest(tmp_path, "path,identity\nphotos/a1.jpg,ann\nphotos/b1.jpg,ben\n"))
    renamed = load_manifest(manifest(tmp_path, "path,identity\nphotos/a1.jpg,ann\nphotos/b1.jpg,bob\n"))
    hashes = ["1" * 64, "2" * 64]
    assert _dataset_digest(entries, hashes) == _dataset_digest(entries, hashes)
    assert _dataset_digest(entries, hashes) != _dataset_digest(renamed, hashes)
    assert _dataset_digest(entries, hashes) != _dataset_digest(entries, ["1" * 64, "3" * 64])


@pytest.mark.faces
def test_another_model_has_its_own_templates_and_cache_entries(photo_set, tmp_path) -> None:
    cache = tmp_path / "cache"
    default = embed_dataset(photo_set[:1], workers=1, cache_dir=cache)
    other = embed_dataset(photo_set[:1], workers=1, cache_dir=cache, model_id="dlib_resnet_v1_align68")
    assert (other.model_id, other.cache_hits, other.computed) == ("dlib_resnet_v1_align68", 0, 1)
    assert other.model_version != default.model_version
    assert not np.array_equal(other.photos[0].vector, default.photos[0].vector)


def test_an_unknown_model_is_refused(photo_set) -> None:
    from matching.embedders import UnknownEmbedder

    with pytest.raises(UnknownEmbedder, match="arcface"):
        embed_dataset(photo_set, model_id="arcface")


@pytest.mark.faces
def test_summary_holds_counts_and_digests_only(photo_set) -> None:
    embedded = embed_dataset(photo_set, workers=1)
    assert embedded.summary() == {
        "manifest_sha256": embedded.manifest_sha256,
        "photos": 5,
        "identities": 2,
        "photos_with_template": 3,
        "duplicates_ignored": 0,
        "photos_low_quality": 0,
        "model_id": "dlib_face_recognition_resnet_model_v1",
        "model_version": embedded.model_version,
    }


@pytest.mark.faces
def test_a_blurred_gallery_photo_enrols_flagged(sdist_images, tmp_path) -> None:
    """The service's rule: a detectable face is enrolled whatever its quality, and flagged."""
    from PIL import ImageFilter

    Image.open(sdist_images / "obama.jpg").filter(ImageFilter.GaussianBlur(6)).save(tmp_path / "blurred.png")
    shutil.copy(sdist_images / "obama2.jpg", tmp_path / "obama2.jpg")
    entries = load_manifest(
        manifest(tmp_path, "path,identity,set\nblurred.png,o,gallery\nobama2.jpg,o,probe\n", photos=())
    )
    embedded = embed_dataset(entries, workers=1, cache_dir=None)
    blurred, probe = embedded.photos
    assert (blurred.gallery_failure, blurred.vector.shape) == (None, (128,))
    assert blurred.quality_flags == ("the face is blurry",) and not probe.low_quality
    assert embedded.summary()["photos_low_quality"] == 1
    assert float(np.linalg.norm(blurred.vector - probe.vector)) < 0.6  # still matchable
