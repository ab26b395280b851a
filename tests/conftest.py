"""Fixtures shared by every test folder."""

from pathlib import Path

import pytest

from tests.support.faces import sdist_faces, shared_faces


@pytest.fixture(scope="session")
def sdist_images() -> Path:
    """Real photos from the face_recognition sdist: always available."""
    return sdist_faces()


@pytest.fixture(scope="session")
def shared_images() -> Path:
    """../shared/testdata/faces, or skip where a machine has no copy."""
    folder = shared_faces()
    if folder is None:
        pytest.skip("../shared/testdata/faces is not present on this machine")
    return folder
