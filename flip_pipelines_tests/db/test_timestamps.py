"""Timestamps bound as each column is declared and read back as naive UTC, whatever the process's time zone."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql

from flip_pipelines.db.timestamps import TIMESTAMPTZ_ATTRIBUTE, UTCTimestamp, epoch_seconds, naive_utc

NEW_YEAR = datetime(2026, 1, 1)  # naive UTC
IN_CHATHAM = datetime(2026, 1, 1, 13, 45, tzinfo=timezone(timedelta(hours=13, minutes=45)))  # the same instant


@pytest.fixture
def process_in_chatham(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Pacific/Chatham")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_naive_utc_timestamp_is_an_instant_whatever_the_process_time_zone(process_in_chatham: None) -> None:
    assert NEW_YEAR.timestamp() != 1767225600, "what datetime.timestamp makes of a naive value here"
    assert epoch_seconds(NEW_YEAR) == epoch_seconds(IN_CHATHAM) == 1767225600
    assert naive_utc(IN_CHATHAM) == NEW_YEAR and naive_utc(IN_CHATHAM).tzinfo is None


def test_each_value_is_bound_as_its_column_is_declared_and_read_back_naive_utc() -> None:
    dialect = postgresql.dialect()
    setattr(dialect, TIMESTAMPTZ_ATTRIBUTE, frozenset({"fl_job.created"}))
    aware_column, naive_column = UTCTimestamp("fl_job.created"), UTCTimestamp("fl_job.started")
    for value in (NEW_YEAR, IN_CHATHAM):
        bound = aware_column.process_bind_param(value, dialect)
        assert bound == NEW_YEAR.replace(tzinfo=UTC) and bound is not None and bound.tzinfo is UTC
        assert naive_column.process_bind_param(value, dialect) == NEW_YEAR
        assert naive_column.process_bind_param(value, postgresql.dialect()) == NEW_YEAR, "a dialect never read"
        assert aware_column.process_result_value(value, dialect) == NEW_YEAR
    assert aware_column.process_bind_param(None, dialect) is None
