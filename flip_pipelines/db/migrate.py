"""Apply the Alembic migrations shipped inside the package (no alembic.ini needed) — or recognise a FLIP hub
database by its revision and leave it as it is (``domain.schema``)."""

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from flip_pipelines.db.engine import make_engine, normalise_url
from flip_pipelines.domain.schema import SchemaAction, SchemaDecision, decide_schema_action

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def own_revisions() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions())


def inspect_schema(url: str) -> SchemaDecision:
    """What ``upgrade_database`` would do with the database at ``url``; changes nothing.

    Raises:
        UnsupportedSchemaError: a schema this project must not alter (``domain.schema.decide_schema_action``).
    """
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            heads = tuple(MigrationContext.configure(connection).get_current_heads())
            has_hub_tables = sa.inspect(connection).has_table("fl_job")
    finally:
        engine.dispose()
    return decide_schema_action(heads, has_hub_tables, own_revisions())


def upgrade_database(url: str, revision: str = "head") -> SchemaDecision:
    """Create or upgrade every queue table at ``url`` to ``revision``; a FLIP hub database is left untouched.

    Raises:
        UnsupportedSchemaError: the database holds a schema this project must not alter (nothing was changed).
    """
    decision = inspect_schema(url)
    if decision.action is SchemaAction.MIGRATE:
        command.upgrade(alembic_config(url), revision)
    return decision


def current_revision(url: str) -> str | None:
    """The database's Alembic heads, None for a database without tables — or, for SQLite, without a file: looking
    must not create one (a command run from the wrong folder would leave an empty ``.flip/flip.db`` behind)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).exists():
        return None
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return ", ".join(MigrationContext.configure(connection).get_current_heads()) or None
    finally:
        engine.dispose()
