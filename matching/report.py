"""Write an evaluation report: report.json, a self-contained report.html and PNG plots.

Input is the dict of `matching.evaluation.evaluate` (plus model, dataset digest and time):
figures and counts only, so nothing written here can hold a face, a vector, a name or a
path. The HTML carries its CSS inline and its plots as base64 PNG, and loads nothing from
anywhere, so it can be mailed or archived as one file. Plots are drawn with matplotlib's Agg
canvas, without pyplot's global state. Everything is rendered in memory before the first
file is written.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).parent / "templates"
FEW_IDENTITIES = 10  # groups with fewer people than this are flagged as anecdotal
CHILD_AGE_BANDS = ("0-2", "3-5", "6-9", "10-13", "14-17")


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write report.json, report.html and the plots into `out_dir`; returns the paths written."""
    document = json.dumps(report, indent=2, allow_nan=False)
    plots = draw_plots(report)
    html = render_html(report, plots)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"report.json": document.encode(), "report.html": html.encode(), **plots}
    for name, content in files.items():
        (out_dir / name).write_bytes(content)
    return [out_dir / name for name in files]


# ----- plots -------------------------------------------------------------------------------


def draw_plots(report: dict[str, Any]) -> dict[str, bytes]:
    """PNG file name -> bytes: DET and CMC curves per family of subsets, and the score distributions."""
    curves = report["curves"]
    plots = {}
    families = [("overall", "Overall", {"all photos": curves["overall"]})]
    families += [(f"group_{_slug(name)}", f"By {name}", values) for name, values in curves["groups"].items()]
    families += [("age_bands", "By age at photo", curves["age_bands"]), ("age_gaps", "By age gap", curves["age_gaps"])]
    for slug, title, subsets in families:
        if any(s["det"] for s in subsets.values()):
            plots[f"det_{slug}.png"] = _det_plot(title, subsets, report)
        if any(s["cmc"] for s in subsets.values()):
            plots[f"cmc_{slug}.png"] = _cmc_plot(title, subsets)
    if curves["scores"]:
        plots["scores.png"] = _score_plot(curves["scores"], report)
    return plots


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _det_plot(title: str, subsets: dict[str, Any], report: dict[str, Any]) -> bytes:
    figure, axes = _figure()
    for label, subset in subsets.items():
        det = subset["det"]
        if det:
            points = [(x, y) for x, y in zip(det["fmr"], det["fnmr"]) if x > 0]
            if points:
                axes.step(*zip(*points), where="post", label=label)
    for target in report["settings"]["fmr_targets"]:
        axes.axvline(target, color="grey", linestyle=":", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_xlim(min(report["settings"]["fmr_targets"]) / 2, 1.0)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("false match rate (FMR, log scale)")
    axes.set_ylabel("false non-match rate (FNMR)")
    axes.set_title(f"DET: {title}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")
    return _png(figure)


def _cmc_plot(title: str, subsets: dict[str, Any]) -> bytes:
    figure, axes = _figure()
    for label, subset in subsets.items():
        if subset["cmc"]:
            ranks = range(1, len(subset["cmc"]) + 1)
            axes.plot(ranks, subset["cmc"], marker="o", markersize=3, label=label)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("rank")
    axes.set_ylabel("hit rate (right person at this rank or better)")
    axes.set_title(f"CMC: {title}")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    return _png(figure)


def _score_plot(scores: dict[str, Any], report: dict[str, Any]) -> bytes:
    figure, axes = _figure()
    edges = scores["edges"]
    for kind in ("genuine", "impostor"):
        counts = scores[kind]
        total = sum(counts)
        if total:
            axes.stairs([c / total for c in counts], edges, label=f"{kind} pairs ({total})", fill=False)
    axes.axvline(report["threshold"], color="black", label=f"service threshold {report['threshold']:.3f}")
    for target, figures in report["verification"]["overall"]["at_fmr"].items():
        if figures["threshold"] is not None:
            axes.axvline(figures["threshold"], color="grey", linestyle="--", linewidth=0.8)
            axes.annotate(
                f"FMR {target}",
                (figures["threshold"], 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize="x-small",
            )
    axes.set_xlabel("Euclidean distance between two photos' templates")
    axes.set_ylabel("share of pairs")
    axes.set_title("Distances of same-person and different-person pairs")
    axes.legend(fontsize="small")
    return _png(figure)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_") or "group"


# ----- HTML --------------------------------------------------------------------------------


def render_html(report: dict[str, Any], plots: dict[str, bytes]) -> str:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(pct=percent, num=_number, ci=_interval)
    images = {name: "data:image/png;base64," + base64.b64encode(data).decode() for name, data in plots.items()}
    template = environment.get_template("report.html.j2")
    return template.render(report=report, images=images, caveats=caveats(report), few=FEW_IDENTITIES, slug=_slug)


def caveats(report: dict[str, Any]) -> list[str]:
    """Plain sentences on what this report's data cannot show, from its own counts."""
    dataset = report["dataset"]
    found = [
        f"These figures come from {dataset['photos']} photos of {dataset['identities']} people. "
        "They describe how the matcher did on these photos; the 95 % intervals show how much they "
        "could move with other people photographed in the same way, and nothing more.",
    ]
    found += _children_caveats(report)
    verification = report["verification"]["overall"]
    scored = report["enrolled_only"]["verification"]["overall"]["impostor_pairs"]  # what thresholds are set on
    for target, figures in verification["at_fmr"].items():
        if figures["threshold"] is None:
            found.append(
                f"FNMR at FMR {target} is not reported: showing a false-match rate of {target} needs "
                f"at least {figures['trials_needed']} impostor pairs with a distance, and this data has "
                f"{scored}."
            )
    found += _zero_error_caveats(report)
    identification = report["identification"]["overall"]
    if identification["uninformative_ranks"]:
        ranks = ", ".join(str(k) for k in identification["uninformative_ranks"])
        found.append(
            f"The gallery holds {identification['gallery_identities']} people, so every enrolled "
            f"person is found by rank {ranks} by construction: the hit rate there says nothing about "
            "the matcher, only about failures to enrol."
        )
    small = [
        f"{name} = {value}"
        for name, values in report["groups"].items()
        for value, figures in values.items()
        if figures["identities"] < FEW_IDENTITIES
    ]
    if small:
        found.append(
            f"Some groups have fewer than {FEW_IDENTITIES} people ({'; '.join(small)}): "
            "differences between such groups are anecdotes, not findings."
        )
    return found


def _children_caveats(report: dict[str, Any]) -> list[str]:
    bands = report["age_bands"]
    children = sum(bands.get(band, {}).get("photos", 0) for band in CHILD_AGE_BANDS)
    if not bands:
        return [
            "No photo has an age, so nothing here shows how the matcher does on children, the "
            "people this service is for, or across the years between two photos of a child."
        ]
    if not children:
        return [
            "No photo is of a child: nothing here shows how the matcher does on children, the "
            "people this service is for."
        ]
    return []


def _zero_error_caveats(report: dict[str, Any]) -> list[str]:
    verification = report["verification"]["overall"]
    at = verification["at_threshold"]
    found = []
    if at["fnmr"] == 0 and verification["genuine_pairs"]:
        found.append(_rule_of_three("same-person pairs", "missed", verification["genuine_pairs"]))
    if at["fmr"] == 0 and verification["impostor_pairs"]:
        found.append(_rule_of_three("different-person pairs", "matched", verification["impostor_pairs"]))
    return found


def _rule_of_three(what: str, error: str, trials: int) -> str:
    return (
        f"No {what} were {error} at the service threshold, and the bootstrap interval is then 0–0: "
        f"resampling cannot show errors that never happened. With {trials} {what}, the true rate "
        f"could still be up to about {percent(min(1.0, 3 / trials))} (95 % upper bound, rule of three)."
    )


def percent(value: Any) -> str:
    """A rate as a percentage with enough digits to tell it from 0 % and 100 %.

    Between 1 % and 99 %: one decimal (83.3 %). Closer to 0 % or 100 %: two significant
    digits of the distance to it (0.012 %, 99.95 %), so that a rate of 0.00012 never reads
    as 0.0 %. Exactly 0 and 1 read 0 % and 100 %.
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return "—"
    share = value * 100
    if share in (0, 100):
        return f"{share:.0f} %"
    nearest = min(share, 100 - share)
    decimals = 1 if nearest >= 1 else 1 - math.floor(math.log10(nearest))
    return f"{share:.{decimals}f} %"


def _number(value: Any, digits: int = 3) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "—"
    return f"{value:.{digits}f}"


def _interval(block: dict[str, Any], key: str) -> str:
    bounds = (block.get("ci95") or {}).get(key)
    if not bounds:
        return ""
    return f"{percent(bounds[0])} – {percent(bounds[1])}"
