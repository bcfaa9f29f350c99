"""Timestamps as each database's columns hold them. FLIP's head declares them ``timestamp without time zone``
holding UTC; FLIP's timestamptz_columns revision (b7e3c1d94a20) made them ``timestamptz``. A naive value bound to a
``timestamptz`` column, or an aware one to a ``timestamp`` column, is converted in the session's ``TimeZone`` —
hours away from its instant on a server not set to UTC. So each engine reads, when it first connects, which of the
columns it will write are ``timestamptz``, and every value is bound as its column expects: timezone-aware UTC there,
naive UTC elsewhere. Values read back are naive UTC whatever the column, which is what the code compares with
``utcnow()``."""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

TIMESTAMPTZ_ATTRIBUTE = "flip_timestamptz_columns"  # set on an engine's dialect: {"table.column", ...}

TIMESTAMPTZ_COLUMNS_SQL = ("SELECT table_name || '.' || column_name FROM information_schema.columns "
                           "WHERE table_schema = current_schema() AND data_type = 'timestamp with time zone'")


def utcnow() -> datetime:
    """Now in UTC, without a zone: how the code holds every timestamp."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(value: datetime) -> datetime:
    """A timestamp as the code holds it: aware values converted to UTC and their zone dropped; naive ones are UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def epoch_seconds(value: datetime) -> float:
    """Seconds since the epoch of a timestamp held as naive UTC (``datetime.timestamp`` would take local time)."""
    return naive_utc(value).replace(tzinfo=UTC).timestamp()


class UTCTimestamp(sa.types.TypeDecorator[datetime]):
    """A timestamp column bound as its database declares it (``timestamptz``: aware UTC; otherwise naive UTC), read
    back as naive UTC. ``column`` (``table.column``) is filled in by ``name_timestamp_columns``."""

    impl = sa.DateTime
    cache_ok = True

    def __init__(self, column: str = "") -> None:
        super().__init__()
        self.column = column

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = naive_utc(value)
        aware = self.column in getattr(dialect, TIMESTAMPTZ_ATTRIBUTE, frozenset())
        return value.replace(tzinfo=UTC) if aware else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else naive_utc(value)


def name_timestamp_columns(metadata: sa.MetaData) -> None:
    """Tell every ``UTCTimestamp`` column which column it is, so binding can ask whether it is ``timestamptz``."""
    for table in metadata.tables.values():
        for column in table.columns:
            if isinstance(column.type, UTCTimestamp):
                column.type.column = f"{table.name}.{column.name}"


def read_timestamp_kinds_on_first_connect(engine: sa.Engine) -> None:
    """PostgreSQL: when the engine first connects, record which columns of its database are ``timestamptz``.

    Once per engine: a database whose columns change kind under a running process (FLIP migrating its hub) is
    written as it was found until the process restarts."""

    @sa.event.listens_for(engine, "first_connect")
    def _read(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(TIMESTAMPTZ_COLUMNS_SQL)
            setattr(engine.dialect, TIMESTAMPTZ_ATTRIBUTE, frozenset(row[0] for row in cursor.fetchall()))
        finally:
            cursor.close()
            dbapi_connection.rollback()
