"""Unit tests for matching.report: the files written, a self-contained HTML page, the JSON
layout, and no identity label anywhere in the output."""

from __future__ import annotations

import base64
import json
import re
from datetime import date

import numpy as np
import pytest

from matching.evaluation import Sample, evaluate
from matching.report import caveats, percent, render_html, write_report

SECRET_LABELS = ("Zebulon Quartermaine", "Philippa Oyelaran-Smith")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def samples(ages: bool = True) -> list[Sample]:
    rng = np.random.default_rng(2)
    found = []
    for person in range(12):
        label = SECRET_LABELS[person] if person < len(SECRET_LABELS) else f"person-{person}"
        centre = rng.normal(size=16)
        for photo in range(3):
            found.append(
                Sample(
                    identity=label,
                    vector=centre + rng.normal(scale=0.25, size=16),
                    groups={"sex": "fm"[person % 2], "tone": "<script>alert(1)</script>" if person < 3 else "II"},
                    age=float(2 + person + 3 * photo) if ages else None,
                    taken_at=date(2015 + photo, 1, 1) if ages else None,
                )
            )
    found.append(Sample(identity="person-3", gallery_failure="no_face", probe_failure="no_face"))
    return found


def full_report(ages: bool = True) -> dict:
    report = evaluate(samples(ages), threshold=1.0, bootstrap_rounds=20)
    return {
        "model": {"id": "dlib_face_recognition_resnet_model_v1", "version": "0.3.0+sha256.test"},
        "created_at": "2026-11-27T10:00:00+00:00",
        **report,
        "dataset": {"manifest_sha256": "ab" * 32, **report["dataset"]},
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    report = full_report()
    paths = write_report(report, out)
    return report, out, paths


def test_writes_json_html_and_plots(written) -> None:
    _, out, paths = written
    names = {p.name for p in paths}
    assert names == {p.name for p in out.iterdir()}
    assert {
        "report.json",
        "report.html",
        "scores.png",
        "det_overall.png",
        "cmc_overall.png",
        "det_group_sex.png",
        "cmc_group_sex.png",
        "det_group_tone.png",
        "det_age_bands.png",
        "cmc_age_bands.png",
        "det_age_gaps.png",
        "cmc_age_gaps.png",
    } <= names
    for path in out.glob("*.png"):
        assert path.read_bytes().startswith(PNG_MAGIC)


def test_json_has_every_section(written) -> None:
    report, out, _ = written
    stored = json.loads((out / "report.json").read_text())
    assert stored == json.loads(json.dumps(report))
    assert set(stored["model"]) == {"id", "version"}
    assert {"manifest_sha256", "photos", "identities"} <= set(stored["dataset"])
    assert stored["threshold"] == 1.0 and stored["created_at"]
    overall = stored["identification"]["overall"]
    for k in (1, 5, 10, 20):
        assert isinstance(overall[f"rank_{k}"], float)
    assert {"at_fmr", "at_threshold", "eer"} <= set(stored["verification"]["overall"])
    for value in ("f", "m"):
        assert {"verification", "identification", "failure_to_enrol"} <= set(stored["groups"]["sex"][value])
    assert set(stored["age_bands"]) == {"0-2", "3-5", "6-9", "10-13", "14-17", "18+"}
    assert set(stored["age_gaps"]) == {"0-1", "2-4", "5-9", "10+"}


def test_html_is_self_contained(written) -> None:
    _, out, _ = written
    html = (out / "report.html").read_text()
    assert not re.search(r"https?://|<link|<script|@import|url\(", html, re.IGNORECASE)
    sources = re.findall(r'src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    assert embedded == {p.read_bytes() for p in out.glob("*.png")}  # every plot, shown once each
    assert "<style>" in html


def test_html_explains_the_figures_and_their_limits(written) -> None:
    _, out, _ = written
    html = (out / "report.html").read_text()
    for heading in (
        "What this data can and cannot show",
        "Failure to enrol",
        "Verification",
        "Identification",
        "By group",
        "By age at photo",
        "By years between photos",
        "Method",
    ):
        assert heading in html
    assert "needs at least 10000 impostor pairs with a distance" in html  # FMR 1e-4 from a few hundred pairs
    assert "&lt;script&gt;" in html  # a group value is shown as text, never as markup


def test_no_identity_label_in_any_file(written) -> None:
    _, out, _ = written
    for path in out.iterdir():
        content = path.read_bytes()
        for label in SECRET_LABELS:
            assert label.encode() not in content, path.name
        assert b"person-" not in content, path.name


def test_caveats_without_ages() -> None:
    sentences = caveats(full_report(ages=False))
    assert any("No photo has an age" in s for s in sentences)
    assert any("FNMR at FMR 0.0001 is not reported" in s for s in sentences)
    assert any("fewer than 10 people" in s for s in sentences)


def test_caveats_without_children() -> None:
    report = full_report()
    for band in ("0-2", "3-5", "6-9", "10-13", "14-17"):
        report["age_bands"][band]["photos"] = 0
    assert any("No photo is of a child" in s for s in caveats(report))


def test_nothing_is_written_when_the_report_cannot_be_rendered(tmp_path) -> None:
    report = full_report()
    report["threshold"] = float("nan")  # JSON cannot hold it
    with pytest.raises(ValueError):
        write_report(report, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "rate, shown",
    [
        (0.00012, "0.012 %"),
        (0.0000012, "0.00012 %"),
        (0.0095, "0.95 %"),
        (0.5, "50.0 %"),
        (5 / 6, "83.3 %"),
        (0.99988, "99.988 %"),
        (0.0, "0 %"),
        (1.0, "100 %"),
        (None, "—"),
    ],
)
def test_small_rates_keep_their_significant_digits(rate, shown) -> None:
    assert percent(rate) == shown


def test_end_to_end_is_the_headline_and_enrolled_only_stands_beside_it(written) -> None:
    report, out, _ = written
    html = (out / "report.html").read_text()
    summary = html[html.index("<h2>Summary</h2>") : html.index("<h2>Failure to enrol</h2>")]
    assert "end to end (95 % interval)" in summary and "enrolled only" in summary
    # person-3's faceless photo is a missed search end to end: 36 enrolled mated searches, 37 in all.
    e2e, enrolled = report["identification"]["overall"], report["enrolled_only"]["identification"]["overall"]
    assert (e2e["mated_searches"], enrolled["mated_searches"]) == (37, 36)
    assert f'<td class="headline">{percent(e2e["rank_1"])}' in summary
    assert "37 / 36 mated searches" in summary
    # The false-candidate rate at the service threshold, next to FNIR at it.
    assert "(FPIR)" in summary and "(FNIR)" in summary
    assert "FPIR at the service threshold" in html


def test_not_applicable_and_not_reliable_cells_are_told_apart(written) -> None:
    report, out, _ = written
    html = (out / "report.html").read_text()
    gaps = html[html.index("<h2>By years between photos</h2>") : html.index("<h2>Method</h2>")]
    # A non-mated search has no gap: every FPIR cell there is N/A, never "not reliable".
    assert gaps.count(">N/A</span>") >= 2 * len(report["age_gaps"])
    verification = html[html.index("<h2>Verification") : html.index("<h2>Identification")]
    assert "not reliable" in verification and "N/A" not in verification  # FMR 1e-4: pairs exist, too few


def test_a_tiny_rate_is_not_printed_as_zero(tmp_path) -> None:
    report = full_report()
    report["verification"]["overall"]["at_threshold"]["fmr"] = 0.00012
    html = render_html(report, {})
    assert "0.012 %" in html
