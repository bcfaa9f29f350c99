"""Which database ``db upgrade`` is looking at, decided from its Alembic heads alone."""

import pytest

from flip_pipelines.domain.schema import (
    FLIP_HEAD,
    SchemaAction,
    UnsupportedSchemaError,
    decide_schema_action,
)

OURS = frozenset({"0002"})


@pytest.mark.parametrize(("heads", "tables", "action"), [
    ((), False, SchemaAction.MIGRATE),
    (("0002",), True, SchemaAction.MIGRATE),
    ((FLIP_HEAD,), True, SchemaAction.LEAVE_FLIP_HUB),
])
def test_what_is_migrated_and_what_is_left_alone(heads: tuple[str, ...], tables: bool, action: SchemaAction) -> None:
    assert decide_schema_action(heads, tables, OURS).action is action


@pytest.mark.parametrize(("heads", "tables", "message"), [
    ((), True, "hub tables (fl_job, ...) but no Alembic revision"),
    (("e8c4a2f71b36",), True, "older than f5ad2a562fad: upgrade it with FLIP's own migrations"),
    (("01af591a5cfc", "ee61ab95ef2b"), True, "FLIP revisions 01af591a5cfc, ee61ab95ef2b, older than"),
    (("0002", "abc"), True, "unknown Alembic revisions 0002, abc"),
    (("0001",), True, "earlier flip_pipelines schema (revision 0001)"),
    (("123456789abc",), True, "unknown Alembic revision '123456789abc'"),
])
def test_what_is_refused_says_why_and_what_to_do(heads: tuple[str, ...], tables: bool, message: str) -> None:
    with pytest.raises(UnsupportedSchemaError, match="nothing was changed") as refused:
        decide_schema_action(heads, tables, OURS)
    assert message in str(refused.value)
