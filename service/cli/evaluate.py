"""`reunite evaluate MANIFEST --out DIR`: measure the matcher's accuracy on labelled photos.

Embeds every photo with the service's own pipeline and settings (cached by file digest, so a
second run embeds nothing), then writes report.json, a self-contained report.html and PNG
plots: failure to enrol, verification and identification figures with bootstrap intervals,
overall, per group, by age band and by years between photos. Exit codes: 0 written, 2 nothing
could be done (unusable manifest, no usable photo, unwritable output); nothing is written then.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from matching.calibration import DEFAULT_REVIEW_THRESHOLD
from matching.embedders import DEFAULT_MODEL_ID, UnknownEmbedder

if TYPE_CHECKING:
    from matching.dataset import EmbeddedDataset
    from service.settings import Settings

console = Console(soft_wrap=True, highlight=False)
errors = Console(stderr=True, soft_wrap=True, highlight=False)
FAILED = 2


def evaluate(
    manifest: Annotated[
        Path,
        typer.Argument(
            help="CSV manifest (path, identity, set, age_at_photo, taken_at, "
            "group:<name>) or a folder of one sub-folder per identity."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder to write report.json, report.html and the plots into.")],
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            show_default="the service's active calibration for the model, else the model's published "
            f"threshold ({DEFAULT_REVIEW_THRESHOLD} for dlib's)",
            help="Review threshold to measure at.",
        ),
    ] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap rounds for the 95 % intervals (0: none).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap draws.")] = 0,
    model: Annotated[str | None, typer.Option(help="Embedding model id.", show_default="the default model")] = None,
    workers: Annotated[int, typer.Option(min=0, help="Worker processes (0 = one per core).")] = 0,
    cache: Annotated[
        Path | None, typer.Option(help="Embedding cache folder.", show_default="~/.cache/reunite/embeddings")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the embedding cache.")] = False,
    publish: Annotated[
        bool,
        typer.Option(
            "--publish",
            help="Also store the report in the service's database, for the model card and the reviewers' notice.",
        ),
    ] = False,
) -> None:
    """Measure the matcher on labelled photos, the way NIST FRTE reports it."""
    from matching.evaluation import evaluate as measure
    from matching.report import write_report

    if out.exists() and not out.is_dir():
        raise _fail(f"{out} exists and is not a folder")
    if threshold is None:  # before embedding: a model without any threshold fails at once
        threshold = _service_threshold(model or DEFAULT_MODEL_ID)
    dataset = _embed_or_fail(manifest, model_id=model, workers=workers or None, cache=cache, use_cache=not no_cache)
    if not dataset.templates:
        raise _fail("no photo gave a usable face; nothing was written")
    report = _with_provenance(
        measure(dataset.samples, threshold=threshold, bootstrap_rounds=bootstrap, seed=seed), dataset
    )
    try:
        written = write_report(report, out)
    except OSError as exc:
        raise _fail(f"cannot write the report into {out}: {exc.strerror or exc}") from exc
    _summary(report, dataset, written)
    if publish:
        _publish(report)


def embed_with_progress(
    manifest: Path,
    *,
    settings: Settings,
    model_id: str | None = None,
    workers: int | None = None,
    cache: Path | None = None,
    use_cache: bool = True,
) -> EmbeddedDataset:
    """Read MANIFEST and embed its photos as the service would, with a progress bar on stderr.

    The service's face settings and image limits come from `settings`; `cache` defaults to
    `matching.dataset.default_cache_dir()`. Raises `matching.dataset.ManifestError` and
    `matching.embedders.UnknownEmbedder`.
    """
    from matching.dataset import default_cache_dir, embed_dataset, load_manifest
    from service.photos.service import image_limits

    entries = load_manifest(manifest)
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=True) as progress:
        task = progress.add_task("embed", total=len(entries))
        embedded = embed_dataset(
            entries,
            face_settings=settings.face_settings(),
            limits=image_limits(settings),
            workers=workers,
            model_id=model_id,
            cache_dir=(cache or default_cache_dir()) if use_cache else None,
            progress_callback=lambda done, total: progress.update(task, completed=done),
        )
    for duplicate in embedded.duplicates:
        errors.print(f"[yellow]warning:[/yellow] {duplicate.describe()}.")
    return embedded


def _embed_or_fail(manifest: Path, **options: Any) -> EmbeddedDataset:
    from pydantic import ValidationError

    from matching.dataset import ManifestError
    from service.settings import Settings

    try:
        settings = Settings()
    except (ValidationError, ValueError) as exc:
        raise _fail(f"the service settings are not valid: {exc}") from exc
    try:
        return embed_with_progress(manifest, settings=settings, **options)
    except ManifestError as exc:
        raise _fail(f"{manifest}: {exc}") from exc
    except UnknownEmbedder as exc:
        raise _fail(str(exc)) from exc


def _service_threshold(model_id: str) -> float:
    """The threshold the service searches with now: its database's active calibration, if it has one.

    Only read, never created or migrated: evaluating works without a service at all (no
    embedded database file yet). A database that is configured but cannot be read is an
    error, not a reason to measure at another threshold than the service's.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    from service.calibration.service import review_policy
    from service.db import make_engine
    from service.settings import Settings

    settings = Settings()
    url = settings.sqlalchemy_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return _published_threshold(model_id)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            policy = review_policy(session, model_id)
    except SQLAlchemyError as error:
        cause = type(getattr(error, "orig", None) or error).__name__
        raise _fail(
            f"the service database ({make_url(url).render_as_string()}) cannot be read, so its "
            f"threshold for {model_id} is unknown ({cause}). Start or "
            "migrate it, or give --threshold to measure at a threshold of your choosing."
        ) from None
    finally:
        engine.dispose()
    if not policy.calibrated:
        return _published_threshold(model_id)
    console.print(f"Threshold {policy.threshold:.4f}: the service's calibration {policy.calibration_version}.")
    return policy.threshold


def _published_threshold(model_id: str) -> float:
    """An uncalibrated model's published threshold (on its own distance scale), said aloud."""
    from matching.embedders import get_embedder

    try:
        threshold = get_embedder(model_id).provisional_threshold
    except UnknownEmbedder as error:
        raise _fail(str(error)) from None
    if threshold is None:
        raise _fail(
            f"{model_id} has no calibration and no published threshold: give --threshold, or calibrate "
            f"it first (reunite calibrate MANIFEST --model {model_id})"
        )
    console.print(
        f"Threshold {threshold}: {model_id} is not calibrated in this service; its published "
        "threshold, not measured here."
    )
    return threshold


def _publish(report: dict[str, Any]) -> None:
    from service.calibration.service import publish_evaluation
    from service.cli.serve import prepare
    from service.db import transaction
    from service.settings import Settings

    engine, sessions = prepare(Settings())
    try:
        with transaction(sessions) as session:
            row_id = publish_evaluation(session, report=report, actor_id=None).id
    finally:
        engine.dispose()
    console.print(f"Published as evaluation report {row_id}: the model card now shows these figures.")


def _with_provenance(report: dict[str, Any], dataset: EmbeddedDataset) -> dict[str, Any]:
    """Model, data digest and time first: what the figures were measured with and on."""
    return {
        "model": {"id": dataset.model_id, "version": dataset.model_version},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **report,
        "dataset": {
            "manifest_sha256": dataset.manifest_sha256,
            "duplicates_ignored": len(dataset.duplicates),
            **report["dataset"],
        },
    }


def _summary(report: dict[str, Any], dataset: EmbeddedDataset, written: list[Path]) -> None:
    from matching.report import caveats, percent

    search, search_enrolled = report["identification"]["overall"], report["enrolled_only"]["identification"]["overall"]
    pairs, pairs_enrolled = report["verification"]["overall"], report["enrolled_only"]["verification"]["overall"]
    fte = report["failure_to_enrol"]
    console.print(f"Embeddings: {dataset.computed} computed, {dataset.cache_hits} from the cache.")
    console.print(
        f"{report['dataset']['photos']} photos of {report['dataset']['identities']} people; "
        f"failure to enrol: gallery {percent(fte['gallery']['rate'])}, "
        f"probe {percent(fte['probe']['rate'])}."
    )
    console.print("End to end (a photo that failed to enrol counts as a miss), enrolled photos only in brackets:")
    console.print(
        f"  rank 1: {percent(search['rank_1'])} of {search['mated_searches']} mated searches "
        f"({percent(search_enrolled['rank_1'])} of {search_enrolled['mated_searches']})"
    )
    at, at_enrolled = search["at_threshold"], search_enrolled["at_threshold"]
    console.print(
        f"  at threshold {report['threshold']:.3f}: FNIR {percent(at['fnir'])} "
        f"({percent(at_enrolled['fnir'])}), FPIR {percent(at['fpir'])} ({percent(at_enrolled['fpir'])}) of "
        f"{search['non_mated_searches']} non-mated searches; FNMR {percent(pairs['at_threshold']['fnmr'])} "
        f"({percent(pairs_enrolled['at_threshold']['fnmr'])}), FMR {percent(pairs['at_threshold']['fmr'])} "
        f"({percent(pairs_enrolled['at_threshold']['fmr'])})."
    )
    for sentence in caveats(report)[1:]:
        console.print(f"[yellow]note:[/yellow] {sentence}")
    console.print(f"Wrote {len(written)} files into {written[0].parent}")


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}")
    return typer.Exit(FAILED)
