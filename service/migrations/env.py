"""Alembic environment: the URL comes from the caller (service.migrate) or from settings."""

from alembic import context
import service.models  # noqa: F401  (registers every table on Base.metadata)
from service.db import Base, make_engine
from service.settings import Settings

config = context.config


def database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings().sqlalchemy_url


def run_offline() -> None:
    context.configure(url=database_url(), target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = make_engine(database_url())
        try:
            with engine.connect() as connection:
                _migrate(connection)
        finally:
            engine.dispose()
    else:
        _migrate(connectable)


def _migrate(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
