"""Fixtures shared by every test folder."""

from pathlib import Path

import pytest

from tests.support.faces import sdist_faces, shared_faces


@pytest.fixture(autouse=True)
def quick_hashing(monkeypatch):
    """Accounts made with the tests' PASSWORD share one real argon2 hash of it.

    argon2 costs a large fraction of a second per hash on a busy 2-core machine;
    verification still runs for real on every sign-in, and other passwords are
    hashed as usual.
    """
    from service.auth import service as auth_service
    from tests.support.service import PASSWORD, password_hash

    real = auth_service.hash_password
    monkeypatch.setattr(
        auth_service, "hash_password", lambda password: password_hash() if password == PASSWORD else real(password)
    )


@pytest.fixture(autouse=True)
def totp_clock(monkeypatch):
    """Second-factor codes are checked against the tests' clock, never the wall clock."""
    from service.auth import passwords
    from tests.support.service import TOTP_CLOCK

    monkeypatch.setattr(passwords, "totp_clock", TOTP_CLOCK)


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


@pytest.fixture(scope="session")
def faces_cache(tmp_path_factory) -> Path:
    """An embedding cache shared by the tests that embed the shared faces: embedded once per run."""
    return tmp_path_factory.mktemp("embedding-cache")


# --- the service on each database backend ------------------------------------------------

import base64  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402

from service.app import create_app  # noqa: E402
from service.db import make_engine, make_session_factory  # noqa: E402
from service.migrate import upgrade  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.worker.dispatch import RecordingDispatcher  # noqa: E402
from tests.support.service import PostgresDatabases  # noqa: E402

BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser):
    parser.addoption(
        "--backends",
        default=",".join(BACKENDS),
        help="database backends for service tests (comma-separated: sqlite,postgresql)",
    )


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        chosen = [b for b in metafunc.config.getoption("--backends").split(",") if b]
        if metafunc.definition.get_closest_marker("one_backend"):
            chosen = chosen[:1]
        metafunc.parametrize("backend", chosen, scope="session")


@pytest.fixture(scope="session")
def postgres():
    databases = PostgresDatabases()
    yield databases
    databases.engine.dispose()


@pytest.fixture(scope="session")
def migrated_template(backend, tmp_path_factory, request):
    """A database migrated once per backend; each test gets a copy of it."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()
        yield path
        return
    databases = request.getfixturevalue("postgres")
    name = databases.create()
    engine = make_engine(databases.url(name))
    upgrade(engine)
    engine.dispose()
    yield name
    databases.drop(name)


@pytest.fixture
def database_url(backend, migrated_template, tmp_path, request):
    if backend == "sqlite":
        copy = tmp_path / "reunite.db"
        shutil.copy(migrated_template, copy)
        yield f"sqlite:///{copy}"
        return
    databases = request.getfixturevalue("postgres")
    name = databases.create(template=migrated_template)
    yield databases.url(name)
    databases.drop(name)


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    return Settings(
        environment="test",
        secret_key="t" * 48,
        database_url=database_url,
        master_key=base64.b64encode(os.urandom(32)).decode(),
        data_dir=tmp_path / "data",
        audit_key_path=tmp_path / "audit-key.pem",
    )


@pytest.fixture
def app(settings):
    """The app with a dispatcher that records tasks instead of sending them to a broker."""
    application = create_app(settings)
    application.state.dispatcher = RecordingDispatcher()
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def db(app, database_url):
    """A session on the app's database, for arranging and inspecting state.

    On SQLite its transactions are deferred, unlike the app's, so a test that
    reads between two requests does not hold the write lock the app then needs.
    """
    engine = make_engine(database_url, serialise_sqlite=False)
    session = make_session_factory(engine)()
    yield session
    session.close()
    engine.dispose()
