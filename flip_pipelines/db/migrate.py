"""Apply the Alembic migrations shipped inside the package (no alembic.ini needed) — or recognise a FLIP hub
database by its revision and leave it as it is (``domain.schema``).

Alembic is imported only to change a schema: reading a database's revision is one query, and every CLI command
reads it (importing Alembic would add a fifth of a second to each)."""

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

if TYPE_CHECKING:
    from alembic.config import Config

from flip_pipelines.db.engine import is_sqlite, make_engine, normalise_url
from flip_pipelines.db.models import SQLModel
from flip_pipelines.db.timestamps import UTCTimestamp
from flip_pipelines.domain.schema import HubColumns, SchemaAction, SchemaDecision, decide_schema_action

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


VERSION_TABLE = "alembic_version"


def stored_heads(connection: Connection) -> tuple[str, ...]:
    """The Alembic revisions recorded in the database (what ``MigrationContext.get_current_heads`` reads)."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return ()
    return tuple(connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def alembic_config(url: str) -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def own_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(s.revision for s in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions())


def hub_columns(connection: Connection) -> HubColumns:
    """Which of the columns this project's tables map the database lacks, and which of their timestamps it
    declares ``timestamptz`` (PostgreSQL)."""
    tables = SQLModel.metadata.tables
    mapped = {f"{t.name}.{c.name}": c for t in tables.values() for c in t.columns}
    held = dict(connection.execute(sa.text(
        "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ANY(:tables)"), {"tables": list(tables)}).all())
    timestamps = frozenset(name for name, column in mapped.items() if isinstance(column.type, UTCTimestamp))
    return HubColumns(missing=frozenset(mapped) - set(held), timestamp_columns=timestamps,
                      timestamptz=frozenset(n for n in timestamps if held.get(n) == "timestamp with time zone"))


def inspect_schema(url: str) -> SchemaDecision:
    """What ``upgrade_database`` would do with the database at ``url``; changes nothing.

    Raises:
        UnsupportedSchemaError: a schema this project must not alter (``domain.schema.decide_schema_action``).
    """
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            heads = stored_heads(connection)
            has_hub_tables = sa.inspect(connection).has_table("fl_job")
            columns = hub_columns(connection) if has_hub_tables and not is_sqlite(url) else None
    finally:
        engine.dispose()
    return decide_schema_action(heads, has_hub_tables, own_revisions(), columns)


def upgrade_database(url: str, revision: str = "head") -> SchemaDecision:
    """Create or upgrade every queue table at ``url`` to ``revision``; a FLIP hub database is left untouched.

    Raises:
        UnsupportedSchemaError: the database holds a schema this project must not alter (nothing was changed).
    """
    decision = inspect_schema(url)
    if decision.action is SchemaAction.MIGRATE:
        from alembic import command

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
            return ", ".join(stored_heads(connection)) or None
    finally:
        engine.dispose()
