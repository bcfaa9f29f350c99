"""Engines for the queue database, with SQLite made safe for several writing processes."""

from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlmodel import Session

from flip_pipelines.db.timestamps import read_timestamp_kinds_on_first_connect

SQLITE_BUSY_TIMEOUT_MS = 30_000


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def normalise_url(url: str) -> str:
    """Pin PostgreSQL URLs to psycopg2: under SQLAlchemy 2.1 bare ``postgresql://`` means psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def _make_sqlite_engine(url: str) -> sa.Engine:
    """SQLite with WAL and every transaction opened by ``BEGIN IMMEDIATE``.

    An immediate transaction takes the write lock up front, so a claim (read the free net and the oldest job,
    then update both) cannot interleave with another process's claim, and a deferred transaction can never
    fail half-way with SQLITE_BUSY when it upgrades from reading to writing.
    """
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # let the "begin" hook below emit BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection):  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_engine(url: str) -> sa.Engine:
    """A new engine for ``url`` (SQLite or PostgreSQL); on PostgreSQL it writes each timestamp as its column
    expects (``db.timestamps``)."""
    if is_sqlite(url):
        return _make_sqlite_engine(url)
    engine = sa.create_engine(normalise_url(url), pool_pre_ping=True)
    read_timestamp_kinds_on_first_connect(engine)
    return engine


@lru_cache(maxsize=8)
def cached_engine(url: str) -> sa.Engine:
    """One engine per URL per process, so resources and CLI commands share a connection pool."""
    return make_engine(url)


def new_session(engine: sa.Engine) -> Session:
    """A session whose objects stay readable after commit (results are returned to callers)."""
    return Session(engine, expire_on_commit=False)
