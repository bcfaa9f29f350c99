"""Which database ``db upgrade`` is looking at, from its Alembic revision: one this project migrates, a FLIP hub
database it leaves exactly as it is, or one it refuses to touch.

FLIP's history (flip-api's Alembic versions: every revision the stored copies of londonaicentre/FLIP hold or name)
is one line from its baseline to ``FLIP_HEAD`` with three merges, and four branches off it that no merge joins:
revisions FLIP wrote and later dropped or never merged (each file's own ``down_revision``). A FLIP database can
sit at any of them; only ``FLIP_HEAD`` holds every column this project's tables map, so only it is used."""

from dataclasses import dataclass
from enum import Enum
from functools import cache

from flip_pipelines.domain.errors import FlipError

FLIP_HEAD = "f5ad2a562fad"
"""FLIP's hub schema (flip-api Alembic head) whose definitions this project's tables follow."""


@dataclass(frozen=True)
class FlipRevision:
    revision: str
    name: str  # the migration file's slug
    down: tuple[str, ...]
    rejoin_at: str | None = None
    """For a branch revision: the revision of FLIP's line to ``alembic stamp`` so that FLIP's ``alembic upgrade``
    brings the database onto its line; None when no stamp does."""


FLIP_HISTORY: dict[str, FlipRevision] = {r.revision: r for r in (
    FlipRevision("75c871e682a4", "baseline_schema", ()),
    # written against the baseline's first version, which lacked what it adds; the baseline later took it in
    FlipRevision("e3b1a7c4d2f8", "sync_develop_schema_changes", ("75c871e682a4",), rejoin_at="75c871e682a4"),
    FlipRevision("23aff57898a0", "add_access_request_table", ("75c871e682a4",)),
    FlipRevision("8c4f2b9d31e7", "fl_log_round_events", ("23aff57898a0",)),
    FlipRevision("ee61ab95ef2b", "add_x_label_and_x_value_to_fl_metrics", ("23aff57898a0",)),
    FlipRevision("8c41d0f2ab5e", "rename_training_started_to_running", ("23aff57898a0",)),
    FlipRevision("01af591a5cfc", "merge_fl_logs_and_running_rename_heads", ("8c41d0f2ab5e", "8c4f2b9d31e7")),
    FlipRevision("292f04be92c4", "merge_x_axis_and_running_rename_heads", ("01af591a5cfc", "ee61ab95ef2b")),
    # every timestamp column made timestamptz (values kept as the same UTC instants)
    FlipRevision("b7e3c1d94a20", "timestamptz_columns", ("292f04be92c4",), rejoin_at="292f04be92c4"),
    FlipRevision("2a462371f3c5", "add_infected_file_status_and_uploaded_", ("292f04be92c4",)),
    FlipRevision("6b786e4503f8", "add_bandit_findings_to_uploaded_files", ("2a462371f3c5",)),
    # its file is not among the stored copies; named after what the merge below says it adds
    FlipRevision("ffacf260ebc8", "trust_services_health", ("2a462371f3c5",)),
    FlipRevision("46edb903e4d1", "merge_trust_services_health_and_bandit_findings_heads",
                 ("6b786e4503f8", "ffacf260ebc8")),
    FlipRevision("b3f1c857a001", "persist_cohort_task_and_snapshot_status", ("46edb903e4d1",),
                 rejoin_at="46edb903e4d1"),
    FlipRevision("40f7934c6419", "add_has_imaging_to_projects", ("46edb903e4d1",)),
    FlipRevision("b7e3a1c95d20", "record_per_trust_project_decisions", ("40f7934c6419",)),
    FlipRevision("c3a7f1eb9402", "trust_scoped_user_roles", ("b7e3a1c95d20",)),
    # ran when c3a7f1eb9402 still revised 40f7934c6419: stamping either would skip or repeat a revision
    FlipRevision("d5b2c8f04a17", "grant_trust_owner_to_existing_admins", ("c3a7f1eb9402",)),
    FlipRevision("e8c4a2f71b36", "trust_admin_decisions", ("c3a7f1eb9402",)),
    FlipRevision(FLIP_HEAD, "fl_job_gpu_request", ("e8c4a2f71b36",)),
)}
"""Every revision of FLIP's Alembic history, with its down revisions (merges have two)."""

RETIRED_REVISIONS: frozenset[str] = frozenset({"0001"})
"""This project's own earlier schema, whose definitions differ from FLIP's."""


@cache
def flip_line() -> frozenset[str]:
    """``FLIP_HEAD`` and every revision it descends from: what FLIP's ``alembic upgrade`` knows."""
    line: set[str] = set()
    pending = [FLIP_HEAD]
    while pending:
        revision = pending.pop()
        if revision not in line:
            line.add(revision)
            pending.extend(FLIP_HISTORY[revision].down)
    return frozenset(line)


def branch_revisions() -> frozenset[str]:
    """FLIP's revisions off its line: none of them can be upgraded to ``FLIP_HEAD`` by FLIP's migrations."""
    return frozenset(FLIP_HISTORY) - flip_line()


def fork_point(revision: str) -> str:
    """The revision of FLIP's line a branch revision descends from."""
    while revision not in flip_line():
        revision = FLIP_HISTORY[revision].down[0]
    return revision


@dataclass(frozen=True)
class HubColumns:
    """What a FLIP hub database holds of the columns this project's tables map (each ``table.column``)."""

    missing: frozenset[str]
    timestamp_columns: frozenset[str]  # the project's timestamp columns
    timestamptz: frozenset[str]  # those of them the database declares ``timestamp with time zone``

    def lacks(self) -> str:
        return f"lacks {', '.join(sorted(self.missing))}" if self.missing else ""

    def timestamps(self) -> str:
        aware = self.timestamptz & self.timestamp_columns
        if not aware:
            return "timestamps naive UTC (timestamp without time zone)"
        if aware == self.timestamp_columns:
            return "timestamps timezone-aware UTC (timestamptz)"
        return (f"timestamps timezone-aware UTC in its {len(aware)} timestamptz column"
                f"{'s' if len(aware) > 1 else ''} of {len(self.timestamp_columns)}, naive UTC in the rest")


class UnsupportedSchemaError(FlipError):
    """The database holds a schema this project must not alter; nothing was changed."""


class SchemaAction(Enum):
    MIGRATE = "migrate"  # empty, or this project's own schema: apply its migrations
    LEAVE_FLIP_HUB = "leave"  # a FLIP hub database at FLIP_HEAD: use as it is, change nothing


@dataclass(frozen=True)
class SchemaDecision:
    action: SchemaAction
    description: str


UPGRADE_WITH_FLIP = f"upgrade it with FLIP's own migrations (flip-api: alembic upgrade {FLIP_HEAD}) first"


def _refuse_flip_revision(revision: str, lacking: str) -> UnsupportedSchemaError:
    at = f"FLIP hub database at FLIP revision {revision} ({FLIP_HISTORY[revision].name})"
    if revision in flip_line():
        return UnsupportedSchemaError(f"{at}, older than {FLIP_HEAD}: {UPGRADE_WITH_FLIP}{lacking}; "
                                      "nothing was changed")
    rejoin = FLIP_HISTORY[revision].rejoin_at
    advice = (f"bring it onto FLIP's line first (flip-api: alembic stamp {rejoin} && alembic upgrade {FLIP_HEAD})"
              if rejoin else "FLIP's migrations cannot bring it onto that line as they are")
    return UnsupportedSchemaError(
        f"{at}, on a branch of FLIP's history that its head {FLIP_HEAD} does not contain "
        f"(it forks at {fork_point(revision)}){lacking}: {advice}; nothing was changed")


def decide_schema_action(heads: tuple[str, ...], has_hub_tables: bool, own_revisions: frozenset[str],
                         hub_columns: HubColumns | None = None) -> SchemaDecision:
    """What ``db upgrade`` does with a database whose Alembic version table holds ``heads`` (none: no revision
    recorded; several: a database between two of FLIP's branches and their merge) and, when read, which of the
    columns this project maps it lacks and which of its timestamps are timestamptz.

    Raises:
        UnsupportedSchemaError: a FLIP revision other than FLIP_HEAD (older, or on a branch), FLIP_HEAD without a
            column this project maps, this project's retired schema, an unknown revision, or hub tables without
            any revision — each named, with what to do.
    """
    lacks = hub_columns.lacks() if hub_columns else ""
    lacking = f" (it {lacks})" if lacks else ""
    if len(heads) > 1:
        named = ", ".join(sorted(heads))
        if set(heads) <= set(FLIP_HISTORY):
            raise UnsupportedSchemaError(f"FLIP hub database at FLIP revisions {named}, older than {FLIP_HEAD}: "
                                         f"{UPGRADE_WITH_FLIP}{lacking}; nothing was changed")
        raise UnsupportedSchemaError(f"unknown Alembic revisions {named}; nothing was changed")
    revision = heads[0] if heads else None
    if revision is None:
        if has_hub_tables:
            raise UnsupportedSchemaError(
                "the database has hub tables (fl_job, ...) but no Alembic revision: it is neither a FLIP hub "
                "database nor one this project created; nothing was changed")
        return SchemaDecision(SchemaAction.MIGRATE, "empty database")
    if revision in own_revisions:
        return SchemaDecision(SchemaAction.MIGRATE, f"flip_pipelines schema at revision {revision}")
    if revision == FLIP_HEAD:
        if lacks:
            raise UnsupportedSchemaError(
                f"FLIP hub database recorded at FLIP revision {FLIP_HEAD} but {lacks}: not the schema "
                f"FLIP's migrations build; nothing was changed")
        timestamps = f", {hub_columns.timestamps()}" if hub_columns else ""
        return SchemaDecision(SchemaAction.LEAVE_FLIP_HUB,
                              f"FLIP hub database at FLIP revision {revision}{timestamps}")
    if revision in FLIP_HISTORY:
        raise _refuse_flip_revision(revision, lacking)
    if revision in RETIRED_REVISIONS:
        raise UnsupportedSchemaError(
            f"the database was created by an earlier flip_pipelines schema (revision {revision}) whose tables "
            "differ from FLIP's: move it aside and run 'flip-pipelines db upgrade' on a new database; "
            "nothing was changed")
    raise UnsupportedSchemaError(
        f"unknown Alembic revision {revision!r}: not a FLIP revision this project knows (FLIP head {FLIP_HEAD}) "
        "nor one of its own; nothing was changed")
