"""The queue database as a Dagster resource."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field
from sqlmodel import Session

from flip_pipelines import settings
from flip_pipelines.db.engine import cached_engine, new_session


class QueueDatabase(dg.ConfigurableResource):
    """FLIP's hub database (queue, nets, models, logs).

    ``url`` is left unset in the definitions so the Launchpad never shows a URL that may carry a password: it is
    then read from ``FLIP_DATABASE_URL`` at run time, falling back to the embedded SQLite file.
    """

    url: str | None = Field(default=None, description="SQLAlchemy URL; unset: FLIP_DATABASE_URL or embedded SQLite")

    def resolved_url(self) -> str:
        return self.url or settings.database_url()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with new_session(cached_engine(self.resolved_url())) as session:
            yield session
