"""`reunite calibrate`: set the review threshold from a target false-match rate, on labelled photos.

The photos are embedded exactly as `reunite evaluate` embeds them (the service's decoding,
detection, quality gate and model), the genuine and impostor pair distances are formed the
same way, and the threshold for the target FMR is stored in the database as the next
version for the model in use, with the bands reviewers see and counts of the data it came
from. It takes effect for the next search; `--activate N` puts an earlier version back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from service.settings import Settings

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
FAILED = 2
# Shown in --help: the settings the options fall back to, with their built-in defaults.
DEFAULT_TARGET_FMR = (
    f"REUNITE_CALIBRATION_TARGET_FMR, {Settings.model_fields['calibration_target_fmr'].default:g} unless set"
)
DEFAULT_TOP_K = f"REUNITE_REVIEW_TOP_K, {Settings.model_fields['review_top_k'].default} unless set"


def calibrate(
    manifest: Annotated[
        Path | None, typer.Argument(help="Manifest CSV, or a folder of one sub-folder per identity.")
    ] = None,
    target_fmr: Annotated[
        float | None, typer.Option(help="False-match rate to allow.", show_default=DEFAULT_TARGET_FMR)
    ] = None,
    top_k: Annotated[int | None, typer.Option(help="Candidates per probe face.", show_default=DEFAULT_TOP_K)] = None,
    workers: Annotated[int | None, typer.Option(help="Processes for embedding.", show_default="one per core")] = None,
    cache: Annotated[
        Path | None, typer.Option(help="Embedding cache folder.", show_default="~/.cache/reunite/embeddings")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model id to calibrate; calibrate a new model before `reunite match reembed` to it.",
            show_default="the model in use",
        ),
    ] = None,
    activate: Annotated[
        int | None, typer.Option(help="Put calibration version N of the model in use back in force.")
    ] = None,
    list_all: Annotated[bool, typer.Option("--list", help="List the calibrations and which one is in force.")] = False,
) -> None:
    """Calibrate the review threshold for a target false-match rate (or list / re-activate calibrations)."""
    from service.cli.serve import prepare

    settings = Settings()
    engine, sessions = prepare(settings)
    try:
        if list_all:
            _list(sessions)
        elif activate is not None:
            _activate(sessions, activate, model)
        elif manifest is not None:
            _calibrate(
                sessions,
                settings,
                manifest,
                model=model,
                target_fmr=target_fmr or settings.calibration_target_fmr,
                top_k=top_k or settings.review_top_k,
                workers=workers,
                cache=cache,
            )
        else:
            _fail("give a MANIFEST to calibrate on, --list, or --activate N")
    finally:
        engine.dispose()


def _calibrate(
    sessions,
    settings: Settings,
    manifest: Path,
    *,
    model: str | None,
    target_fmr: float,
    top_k: int,
    workers: int | None,
    cache: Path | None,
) -> None:
    from matching.dataset import ManifestError
    from matching.embedders import UnknownEmbedder
    from matching.evaluation import verification_distances, verification_distances_by_gap
    from matching.report import percent
    from service.calibration.service import CalibrationError, store_calibration
    from service.cli.evaluate import embed_with_progress
    from service.db import transaction
    from service.embedding.service import active_model

    with transaction(sessions) as session:
        active_id, active_version = active_model(session)
    model_id = model or active_id
    try:
        embedded = embed_with_progress(manifest, settings=settings, model_id=model_id, workers=workers, cache=cache)
    except (ManifestError, UnknownEmbedder) as exc:
        _fail(str(exc))
    if model_id == active_id and embedded.model_version != active_version:
        _fail(
            f"the photos were embedded with {model_id} {embedded.model_version}, but the service uses "
            f"{active_version}: install the same model version as the workers"
        )
    model_version = embedded.model_version
    genuine, impostor = verification_distances(embedded.samples)
    try:
        with transaction(sessions) as session:
            row = store_calibration(
                session,
                model_id=model_id,
                model_version=model_version,
                genuine=genuine,
                impostor=impostor,
                target_fmr=target_fmr,
                top_k=top_k,
                dataset=embedded.summary(),
                actor_id=None,
                gap_pairs=verification_distances_by_gap(embedded.samples),
            )
            version, threshold, reliable, fnmr = row.version, row.threshold, row.reliable, row.fnmr
            gaps = list(row.gap_thresholds or [])
    except CalibrationError as exc:
        _fail(str(exc))
    console.print(
        f"Calibration {version} of {model_id} is now in force: threshold {threshold:.4f} for a "
        f"false-match rate of {target_fmr:g} ({len(impostor)} impostor and {len(genuine)} genuine "
        f"pairs; same-person pairs missed: {percent(fnmr)})."
    )
    if not reliable:
        console.print(
            f"[yellow]warning:[/yellow] {len(impostor)} impostor pairs cannot show a false-match rate "
            f"of {target_fmr:g}; it needs at least {round(1 / target_fmr)}. Calibrate on more photos."
        )
    if not gaps:
        console.print("No pair of photos has both ages or both dates: every gap between photos uses that threshold.")
    for gap in gaps:
        pairs = f"{gap['impostor_pairs']} impostor and {gap['genuine_pairs']} genuine pairs"
        if gap["calibrated"]:
            console.print(f"  {gap['band']} years apart: threshold {gap['threshold']:.4f} ({pairs}).")
        else:
            console.print(
                f"  {gap['band']} years apart: not calibrated, uses {threshold:.4f} ({pairs}; needs "
                f"{gap['trials_needed']} impostor pairs)."
            )


def _activate(sessions, version: int, model: str | None) -> None:
    from service.calibration.service import CalibrationError, activate_calibration
    from service.db import transaction
    from service.embedding.service import active_model

    try:
        with transaction(sessions) as session:
            model_id = model or active_model(session)[0]
            row = activate_calibration(session, model_id=model_id, version=version, actor_id=None)
            threshold = row.threshold
    except CalibrationError as exc:
        _fail(str(exc))
    console.print(f"Calibration {version} of {model_id} is in force again: threshold {threshold:.4f}.")


def _list(sessions) -> None:
    from matching.report import percent
    from service.calibration.service import active_calibration, list_calibrations

    session = sessions()
    try:
        table = Table(
            "model",
            "version",
            "threshold",
            "target FMR",
            "FNMR",
            "pairs (gen/imp)",
            "reliable",
            "by years apart",
            "in force",
        )
        for row in list_calibrations(session):
            in_force = active_calibration(session, row.model_id)
            table.add_row(
                row.model_id,
                str(row.version),
                f"{row.threshold:.4f}",
                f"{row.target_fmr:g}",
                percent(row.fnmr),
                f"{row.genuine_pairs}/{row.impostor_pairs}",
                "yes" if row.reliable else "no",
                _gaps_cell(row.gap_thresholds),
                "yes" if in_force and in_force.id == row.id else "",
            )
        console.print(table)
    finally:
        session.close()


def _gaps_cell(gaps: list[dict] | None) -> str:
    """One line per age-gap band: its threshold, or that it uses the global one, with its pair counts."""
    if gaps is None:
        return "-"  # stored before calibrate set thresholds per age gap
    if not gaps:
        return "none (no ages or dates)"
    return "\n".join(
        f"{gap['band']}: {gap['threshold']:.4f}"
        if gap["calibrated"]
        else f"{gap['band']}: global ({gap['impostor_pairs']} < {gap['trials_needed']} imp.)"
        for gap in gaps
    )


def _fail(message: str) -> None:
    errors.print(f"[red]error:[/red] {message}")
    raise typer.Exit(FAILED)
