"""Database engine, sessions and the declarative base shared by every domain's models.

The same code runs on SQLite (embedded default) and PostgreSQL (production). On
SQLite the service starts every transaction with BEGIN IMMEDIATE, so concurrent
writers queue instead of failing half-way (a deferred transaction that read
before another commit cannot write); keep transactions short, as each one holds
SQLite's single write lock. Foreign keys are enforced. The schema is built only by
Alembic (`service.migrate`), never by `create_all`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, DateTime, Engine, MetaData, Result, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from service import effects

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE touched (its Result is a CursorResult; the type says less)."""
    return cast(CursorResult[Any], result).rowcount or 0


def make_engine(url: str, *, serialise_sqlite: bool = True) -> Engine:
    """An engine for `url`; on SQLite, `serialise_sqlite` starts every transaction IMMEDIATE.

    Bound parameters are kept out of error messages: they can be face vectors,
    labels or names, and error messages end up in logs.
    """
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        _configure_sqlite(engine, serialise=serialise_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def _configure_sqlite(engine: Engine, *, serialise: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below open transactions
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted or overwritten content (an erased label, a deleted face vector) is zeroed on
        # disk instead of lingering in free pages until the space is reused.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if serialise else "BEGIN")


def checkpoint_after_erasure(session: Session) -> None:
    """On SQLite, copy the WAL into the database file and truncate it to zero bytes.

    Call after an erasure has committed: until a checkpoint, the pages that still held the
    erased content stay in the write-ahead log file. With `secure_delete` on, the checkpoint
    writes pages whose freed space is zeroed. A connection reading at the same moment can keep
    part of the log alive; the next checkpoint (SQLite's automatic one, or the next erasure)
    finishes the job. PostgreSQL needs no call here: see docs/security.md on VACUUM.
    """
    engine = session.get_bind().engine
    if engine.dialect.name != "sqlite":
        return
    raw = engine.raw_connection()  # autocommit (isolation_level None): no transaction is opened
    try:
        driver = raw.driver_connection
        assert driver is not None  # a pooled connection that is checked out is always open
        driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        raw.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for `engine`, whose after-commit effects (service.effects) run when they commit."""
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    effects.install(factory)
    return factory


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits together or not at all."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
