"""Which database ``db upgrade`` is looking at, decided from its Alembic heads and, for a FLIP hub database, from
the columns it holds; and FLIP's revision history as this project knows it."""

import pytest

from flip_pipelines.domain.schema import (
    FLIP_HEAD,
    FLIP_HISTORY,
    HubColumns,
    SchemaAction,
    UnsupportedSchemaError,
    branch_revisions,
    decide_schema_action,
    flip_line,
    fork_point,
)

OURS = frozenset({"0002"})
TIMESTAMPS = frozenset({"fl_job.created", "fl_job.started", "fl_logs.log_date"})
COMPLETE = HubColumns(missing=frozenset(), timestamp_columns=TIMESTAMPS, timestamptz=frozenset())


def test_flips_history_is_one_line_to_its_head_with_four_branches_off_it() -> None:
    assert all(set(r.down) <= set(FLIP_HISTORY) for r in FLIP_HISTORY.values()), "every down revision is known"
    assert [r.revision for r in FLIP_HISTORY.values() if not r.down] == ["75c871e682a4"], "one baseline"
    assert FLIP_HEAD not in {d for r in FLIP_HISTORY.values() for d in r.down}, "nothing revises the head"
    assert {r.revision for r in FLIP_HISTORY.values() if len(r.down) == 2} == {
        "01af591a5cfc", "292f04be92c4", "46edb903e4d1"}, "FLIP's three merges"
    assert branch_revisions() == frozenset({"e3b1a7c4d2f8", "b7e3c1d94a20", "b3f1c857a001", "d5b2c8f04a17"})
    assert flip_line() | branch_revisions() == set(FLIP_HISTORY) and len(flip_line()) == 16
    assert {b: fork_point(b) for b in branch_revisions()} == {
        "e3b1a7c4d2f8": "75c871e682a4", "b7e3c1d94a20": "292f04be92c4", "b3f1c857a001": "46edb903e4d1",
        "d5b2c8f04a17": "c3a7f1eb9402"}
    heads = set(FLIP_HISTORY) - {d for r in FLIP_HISTORY.values() for d in r.down}
    assert heads == branch_revisions() | {FLIP_HEAD}, "each branch ends in a head no merge joins"


@pytest.mark.parametrize(("heads", "tables", "action"), [
    ((), False, SchemaAction.MIGRATE),
    (("0002",), True, SchemaAction.MIGRATE),
    ((FLIP_HEAD,), True, SchemaAction.LEAVE_FLIP_HUB),
])
def test_what_is_migrated_and_what_is_left_alone(heads: tuple[str, ...], tables: bool, action: SchemaAction) -> None:
    assert decide_schema_action(heads, tables, OURS, COMPLETE).action is action


@pytest.mark.parametrize(("timestamptz", "said"), [
    (frozenset(), "timestamps naive UTC (timestamp without time zone)"),
    (TIMESTAMPS, "timestamps timezone-aware UTC (timestamptz)"),
    (frozenset({"fl_job.created"}),
     "timestamps timezone-aware UTC in its 1 timestamptz column of 3, naive UTC in the rest"),
])
def test_the_head_is_used_as_it_is_and_says_how_its_timestamps_are_written(timestamptz: frozenset[str],
                                                                             said: str) -> None:
    columns = HubColumns(missing=frozenset(), timestamp_columns=TIMESTAMPS, timestamptz=timestamptz)
    decision = decide_schema_action((FLIP_HEAD,), True, OURS, columns)
    assert decision.action is SchemaAction.LEAVE_FLIP_HUB
    assert decision.description == f"FLIP hub database at FLIP revision {FLIP_HEAD}, {said}"


@pytest.mark.parametrize("revision", sorted(set(FLIP_HISTORY) - {FLIP_HEAD}))
def test_every_other_flip_revision_is_recognised_and_refused_with_what_to_do(revision: str) -> None:
    lacking = HubColumns(missing=frozenset({"fl_job.num_gpus", "fl_job.mem_per_gpu_gib"}),
                         timestamp_columns=TIMESTAMPS, timestamptz=frozenset())
    with pytest.raises(UnsupportedSchemaError, match="nothing was changed") as refused:
        decide_schema_action((revision,), True, OURS, lacking)
    message = str(refused.value)
    assert f"FLIP hub database at FLIP revision {revision} ({FLIP_HISTORY[revision].name})" in message
    assert "it lacks fl_job.mem_per_gpu_gib, fl_job.num_gpus" in message and "unknown" not in message
    if revision in branch_revisions():
        assert f"on a branch of FLIP's history that its head {FLIP_HEAD} does not contain" in message
        assert f"it forks at {fork_point(revision)}" in message
    else:
        assert f"older than {FLIP_HEAD}: upgrade it with FLIP's own migrations" in message


@pytest.mark.parametrize(("revision", "advice"), [
    ("b7e3c1d94a20", "alembic stamp 292f04be92c4 && alembic upgrade f5ad2a562fad"),
    ("e3b1a7c4d2f8", "alembic stamp 75c871e682a4 && alembic upgrade f5ad2a562fad"),
    ("b3f1c857a001", "alembic stamp 46edb903e4d1 && alembic upgrade f5ad2a562fad"),
    ("d5b2c8f04a17", "FLIP's migrations cannot bring it onto that line as they are"),
])
def test_a_branch_revision_is_told_how_to_rejoin_flips_line(revision: str, advice: str) -> None:
    with pytest.raises(UnsupportedSchemaError) as refused:
        decide_schema_action((revision,), True, OURS, COMPLETE)
    assert advice in str(refused.value) and "it lacks" not in str(refused.value)


@pytest.mark.parametrize(("heads", "tables", "columns", "message"), [
    ((), True, None, "hub tables (fl_job, ...) but no Alembic revision"),
    (("e8c4a2f71b36",), True, None, "older than f5ad2a562fad: upgrade it with FLIP's own migrations"),
    (("01af591a5cfc", "ee61ab95ef2b"), True, None, "FLIP revisions 01af591a5cfc, ee61ab95ef2b, older than"),
    ((FLIP_HEAD,), True, HubColumns(frozenset({"projects.has_imaging"}), TIMESTAMPS, frozenset()),
     f"recorded at FLIP revision {FLIP_HEAD} but lacks projects.has_imaging"),
    (("0002", "abc"), True, None, "unknown Alembic revisions 0002, abc"),
    (("0001",), True, None, "earlier flip_pipelines schema (revision 0001)"),
    (("123456789abc",), True, None, "unknown Alembic revision '123456789abc'"),
])
def test_what_is_refused_says_why_and_what_to_do(heads: tuple[str, ...], tables: bool, columns: HubColumns | None,
                                                  message: str) -> None:
    with pytest.raises(UnsupportedSchemaError, match="nothing was changed") as refused:
        decide_schema_action(heads, tables, OURS, columns)
    assert message in str(refused.value)
