"""Alembic environment: migrations run against the URL set by flip_pipelines.db.migrate."""

from alembic import context
from sqlmodel import SQLModel

from flip_pipelines.db import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from flip_pipelines.db.engine import make_engine

target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run_migrations_online()
