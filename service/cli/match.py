"""`reunite match ...`: enrol a folder of identities into an index file and search it; re-embed the gallery.

`enrol` and `search` run the same matching pipeline as the service, without a
database: they are how a developer checks the matcher on real photos and the basis
of the benchmarks under bench/.

`reembed` works on the service's database (the `REUNITE_*` settings, as `reunite
admin` does): `--model ID` starts re-embedding every gallery photo with another
model in the background, and the workers switch the service over to it only when
every photo is done (service.embedding); `--status` shows the progress, `--cancel`
stops it, `--resume` hands a job whose message was lost to the workers again.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from matching.calibration import DEFAULT_REVIEW_THRESHOLD

if TYPE_CHECKING:
    from matching.batch import FileResult
    from matching.faces import FaceSettings
    from matching.index import VectorIndex

match_app = typer.Typer(no_args_is_help=True, help="Enrol photos into a local index and search it.")
console = Console()
errors = Console(stderr=True, soft_wrap=True)

# Exit codes: 1 = some inputs were refused, 2 = nothing could be done.
PARTLY_REFUSED = 1
FAILED = 2


def labels_path(index_path: Path) -> Path:
    return index_path.with_name(index_path.name + ".labels.json")


def fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}")
    return typer.Exit(FAILED)


@match_app.command("enrol")
def enrol(
    folder: Annotated[Path, typer.Argument(help="Folder with one sub-folder of photos per identity.")],
    index: Annotated[Path, typer.Option(help="Index file to write (labels go beside it).")],
    kind: Annotated[str, typer.Option(help="Index type: flat (exact), hnsw or pq-refine (approximate).")] = "flat",
    workers: Annotated[int, typer.Option(help="Worker processes (0 = one per core).")] = 0,
) -> None:
    """Embed every photo, one face per photo (low-quality ones flagged), and save the index with its labels."""
    from matching.batch import photos_by_identity

    face_settings = _face_settings()
    try:
        identities = photos_by_identity(folder)
    except (NotADirectoryError, OSError) as exc:
        raise fail(f"cannot read {folder}: {exc}") from exc
    if not identities:
        raise fail(f"{folder} has no sub-folders with photos (expected one folder per identity)")
    results = _embed_with_progress(identities, workers, face_settings)
    gallery = _gallery_from(results, identities)
    if not gallery["embeddings"]:
        _report(results, face_settings)
        raise fail("no usable face was found in any photo; nothing was saved")
    _save_gallery(index, kind, gallery)
    _report(results, face_settings)
    enrolled = len(gallery["embeddings"])
    console.print(f"Enrolled {enrolled} faces of {len(gallery['records'])} identities into {index}")
    if enrolled < sum(len(p) for p in identities.values()):
        raise typer.Exit(PARTLY_REFUSED)


@match_app.command("search")
def search(
    image: Annotated[Path, typer.Argument(help="Photo to search with.")],
    index: Annotated[Path, typer.Option(help="Index file written by `reunite match enrol`.")],
    top_k: Annotated[int, typer.Option(min=1, max=100, help="Candidates per face.")] = 10,
    threshold: Annotated[float, typer.Option(help="Largest Euclidean distance returned.")] = DEFAULT_REVIEW_THRESHOLD,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the ranked candidates for every face in IMAGE."""
    from matching.faces import analyse_image
    from matching.images import InputRejected, load_image_file
    from matching.search import search_gallery

    face_settings = _face_settings()
    vector_index, gallery = _load_gallery(index)
    try:
        faces = analyse_image(load_image_file(image), "probe", face_settings)
    except InputRejected as refusal:
        raise fail(f"{image}: {refusal.message}") from refusal
    except OSError as exc:
        raise fail(f"cannot read {image}: {exc.strerror or exc}") from exc
    record_of = {int(k): v for k, v in gallery["embeddings"].items()}
    report = []
    for face in faces:
        candidates = search_gallery(vector_index, face.embedding, record_of=record_of, threshold=threshold, top_k=top_k)
        report.append(
            {
                "box": list(face.box.as_tuple()),
                "quality": asdict(face.quality),
                "quality_flags": face.quality.flags(face_settings),
                "candidates": [{**asdict(c), "label": gallery["records"][str(c.record_id)]} for c in candidates],
            }
        )
    if as_json:
        print(json.dumps({"image": str(image), "threshold": threshold, "faces": report}, indent=2))
    else:
        _print_search(report, threshold)


def _face_settings() -> FaceSettings:
    """The service's face settings (detection, face cap, quality gates) from the `REUNITE_*` settings."""
    from pydantic import ValidationError

    from service.settings import Settings

    try:
        return Settings().face_settings()
    except (ValidationError, ValueError) as exc:
        raise fail(f"the service settings are not valid: {exc}") from exc


def _embed_with_progress(
    identities: dict[str, list[Path]], workers: int, face_settings: FaceSettings
) -> list[FileResult]:
    from matching.batch import BatchJob, embed_files

    paths = [p for photos in identities.values() for p in photos]
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    results = []
    with Progress(*columns, console=errors, transient=True) as progress:
        task = progress.add_task("embed", total=len(paths))
        for result in embed_files(paths, BatchJob(purpose="enrol", settings=face_settings), workers or None):
            results.append(result)
            progress.advance(task)
    return results


def _gallery_from(results: list[FileResult], identities: dict[str, list[Path]]) -> dict:
    """Ids and labels for every photo with exactly one face; the rest are refused."""
    from matching.faces import MODEL_ID, model_version

    record_ids = {name: number for number, name in enumerate(identities, start=1)}
    record_of_path = {p: record_ids[name] for name, photos in identities.items() for p in photos}
    gallery: dict = {"model_id": MODEL_ID, "model_version": model_version(), "records": {}, "embeddings": {}}
    ids: list[int] = []
    vectors = []
    for result in results:
        if not result.ok or len(result.faces) != 1:
            continue
        embedding_id = len(ids) + 1
        record_id = record_of_path[result.path]
        ids.append(embedding_id)
        vectors.append(result.faces[0].embedding)
        gallery["embeddings"][str(embedding_id)] = record_id
        gallery["records"][str(record_id)] = result.path.parent.name
    gallery["ids"], gallery["vectors"] = ids, vectors
    return gallery


def _save_gallery(index_path: Path, kind: str, gallery: dict) -> None:
    from matching.index import VectorIndex

    ids, vectors = gallery.pop("ids"), gallery.pop("vectors")
    try:
        vector_index = VectorIndex(kind=kind)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    vector_index.add(np.array(ids, dtype=np.int64), np.vstack(vectors))
    index_path.parent.mkdir(parents=True, exist_ok=True)
    vector_index.save(index_path)
    labels_path(index_path).write_text(json.dumps(gallery, indent=1))


def _load_gallery(index_path: Path) -> tuple[VectorIndex, dict]:
    from matching.faces import MODEL_ID, model_version
    from matching.index import IndexFileError, VectorIndex

    try:
        vector_index = VectorIndex.load(index_path)
        gallery = json.loads(labels_path(index_path).read_text())
    except FileNotFoundError as exc:
        raise fail(f"no index at {index_path}: run `reunite match enrol` first") from exc
    except (IndexFileError, json.JSONDecodeError) as exc:
        raise fail(f"{index_path} is not a readable index: {exc}") from exc
    if (gallery.get("model_id"), gallery.get("model_version")) != (MODEL_ID, model_version()):
        raise fail(
            f"{index_path} was made by model {gallery.get('model_id')} {gallery.get('model_version')}, "
            f"not the installed {MODEL_ID} {model_version()}: enrol again"
        )
    return vector_index, gallery


def _report(results: list[FileResult], face_settings: FaceSettings) -> None:
    table = Table(title="Enrolment", show_lines=False)
    for column in ("file", "outcome"):
        table.add_column(column)
    for result in results:
        table.add_row(f"{result.path.parent.name}/{result.path.name}", _outcome(result, face_settings))
    console.print(table)


def _outcome(result: FileResult, face_settings: FaceSettings) -> str:
    if not result.ok:
        return f"[red]refused[/red]: {result.refusal}"
    if len(result.faces) > 1:
        return f"[yellow]refused[/yellow]: {len(result.faces)} faces; a gallery photo must show one person"
    face = result.faces[0]
    flags = face.quality.flags(face_settings)
    if flags:
        return f"[yellow]1 face, low quality[/yellow] ({face.quality.box_px} px): {'; '.join(flags)}"
    return f"[green]1 face[/green] ({face.quality.box_px} px)"


def _print_search(report: list[dict], threshold: float) -> None:
    console.print(f"{len(report)} face(s); candidates within distance {threshold:.3f}")
    for number, face in enumerate(report, start=1):
        top, right, bottom, left = face["box"]
        flags = face["quality_flags"]
        caption = f"low quality: {'; '.join(flags)}" if flags else None
        table = Table(title=f"Face {number}: x {left}–{right}, y {top}–{bottom}", caption=caption)
        for column in ("rank", "identity", "distance", "embedding"):
            table.add_column(column)
        for c in face["candidates"]:
            table.add_row(str(c["rank"]), c["label"], f"{c['distance']:.3f}", str(c["embedding_id"]))
        if not face["candidates"]:
            table.add_row("-", "no candidate within the threshold", "", "")
        console.print(table)


# --- re-embedding the service's gallery ---------------------------------------------------------


@match_app.command("reembed")
def reembed(
    model: Annotated[
        str | None, typer.Option("--model", help="Model id to re-embed the gallery with (--status lists them).")
    ] = None,
    operator: Annotated[
        str | None,
        typer.Option(help="Email of the platform admin starting or cancelling; recorded in the audit trail."),
    ] = None,
    status: Annotated[bool, typer.Option("--status", help="Show the active model and the latest job.")] = False,
    cancel: Annotated[bool, typer.Option("--cancel", help="Stop the job in progress; the model stays.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Send the job in progress to the workers again.")] = False,
) -> None:
    """Re-embed the gallery from the stored photos in the background; switch models only when complete."""
    chosen = [
        name
        for name, given in (
            ("--model", model is not None),
            ("--status", status),
            ("--cancel", cancel),
            ("--resume", resume),
        )
        if given
    ]
    if len(chosen) != 1:
        raise fail("give exactly one of --model ID, --status, --cancel or --resume")
    if (model is not None or cancel) and not operator:
        raise fail("--operator EMAIL is required: the audit trail records who started or cancelled a job")
    from service.cli.serve import prepare
    from service.settings import Settings

    settings = Settings()
    engine, sessions = prepare(settings)
    try:
        if status:
            _show_status(sessions)
        elif model is not None and operator:  # operator: checked above
            _start_reembed(settings, sessions, model, operator)
        elif cancel and operator:
            _cancel_reembed(sessions, operator)
        else:
            _resume_reembed(settings, sessions)
    finally:
        engine.dispose()


def _start_reembed(settings, sessions, model: str, operator: str) -> None:
    from service.calibration.service import review_policy
    from service.db import transaction, utcnow
    from service.embedding.service import ReembedRefused, start_reembed

    try:
        with transaction(sessions) as session:
            job = start_reembed(session, target_model_id=model, actor=_operator(session, operator), now=utcnow())
            calibrated = review_policy(session, model).calibrated
    except ReembedRefused as refusal:
        raise fail(refusal.message) from refusal
    console.print(f"Re-embedding job {job.id} started: {job.total} photo(s) to embed with {model}.")
    _send_batch(settings, job.id)
    console.print(
        "The workers embed them in the background; the service switches to the new model only when "
        "every photo is done. Follow it with `reunite match reembed --status`."
    )
    if not calibrated:
        errors.print(
            f"[yellow]note:[/yellow] {model} has no calibration: after the switch, searches use the "
            "placeholder review threshold until one is stored "
            f"(`reunite calibrate MANIFEST --model {model}`)."
        )


def _cancel_reembed(sessions, operator: str) -> None:
    from service.db import transaction, utcnow
    from service.embedding.service import ReembedRefused, cancel_reembed

    try:
        with transaction(sessions) as session:
            job = cancel_reembed(session, actor=_operator(session, operator), now=utcnow())
    except ReembedRefused as refusal:
        raise fail(refusal.message) from refusal
    console.print(
        f"Re-embedding job {job.id} cancelled after {job.done} of {job.total} photo(s); the active model is unchanged."
    )


def _resume_reembed(settings, sessions) -> None:
    from service.embedding.service import current_job

    session = sessions()
    try:
        job = current_job(session)
    finally:
        session.close()
    if job is None:
        raise fail("no re-embedding job is in progress")
    _send_batch(settings, job.id)
    console.print(f"Re-embedding job {job.id} sent to the workers again (a duplicate message is harmless).")


def _send_batch(settings, job_id: int) -> None:
    from service.worker.dispatch import CeleryDispatcher

    try:
        CeleryDispatcher(settings).reembed(job_id)
    except Exception as exc:  # the job is recorded; the scheduler re-sends a job that does not move
        errors.print(
            f"[yellow]warning:[/yellow] the job is recorded but could not be sent to the workers "
            f"({type(exc).__name__}). The scheduler sends it again within "
            f"{settings.processing_timeout_minutes} minutes, or run `reunite match reembed --resume`."
        )
        raise typer.Exit(PARTLY_REFUSED) from exc


def _operator(session, email: str):
    from sqlalchemy import select

    from service.auth.models import User
    from service.auth.service import normalise_email

    user = session.scalars(select(User).where(User.email == normalise_email(email))).first()
    if user is None:
        raise fail(f"there is no account {email}; create one with `reunite admin create`")
    return user


def _show_status(sessions) -> None:
    from matching.embedders import available_embedders
    from service.auth.models import User
    from service.embedding.service import active_model, failure_reasons, latest_job

    session = sessions()
    try:
        model_id, version = active_model(session)
        job = latest_job(session)
        reasons = failure_reasons(session, job_id=job.id) if job is not None else {}
        people = (session.get(User, i) for i in ((job.started_by_id, job.finished_by_id) if job else ()) if i)
        emails = {user.id: user.email for user in people if user is not None}
    finally:
        session.close()
    console.print(f"Active model: [bold]{model_id}[/bold] (version {version})")
    console.print(f"Available models: {', '.join(available_embedders())}")
    if job is None:
        console.print("No re-embedding job has been run.")
        return
    table = Table(title=f"Re-embedding job {job.id}", show_header=False)
    share = f" ({100 * job.done / job.total:.0f}%)" if job.total else ""
    rows = [
        ("status", job.status),
        ("model", f"{job.source_model_id} -> {job.target_model_id}"),
        ("photos", f"{job.done} of {job.total} done{share}, {job.failed} failed"),
        ("started", f"{_when(job.created_at)} by {emails.get(job.started_by_id, '-')}"),
        (
            "finished",
            _when(job.finished_at) + (f" by {emails[job.finished_by_id]}" if job.finished_by_id in emails else ""),
        ),
    ]
    if reasons:
        rows.append(("failures", ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))))
    if job.message:
        rows.append(("note", job.message))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"
