"""Which database ``db upgrade`` is looking at, from its Alembic revision: one this project migrates, a FLIP hub
database it leaves exactly as it is, or one it refuses to touch."""

from dataclasses import dataclass
from enum import Enum

from flip_pipelines.domain.errors import FlipError

FLIP_HEAD = "f5ad2a562fad"
"""FLIP's hub schema (flip-api Alembic head) whose definitions this project's tables follow."""

FLIP_REVISIONS: frozenset[str] = frozenset({
    "75c871e682a4", "23aff57898a0", "8c41d0f2ab5e", "8c4f2b9d31e7", "01af591a5cfc", "ee61ab95ef2b",
    "292f04be92c4", "2a462371f3c5", "6b786e4503f8", "ffacf260ebc8", "46edb903e4d1", "40f7934c6419",
    "b7e3a1c95d20", "c3a7f1eb9402", "e8c4a2f71b36", FLIP_HEAD,
})
"""FLIP's revisions from its baseline to ``FLIP_HEAD`` (merges included)."""

RETIRED_REVISIONS: frozenset[str] = frozenset({"0001"})
"""This project's own earlier schema, whose definitions differ from FLIP's."""


class UnsupportedSchemaError(FlipError):
    """The database holds a schema this project must not alter; nothing was changed."""


class SchemaAction(Enum):
    MIGRATE = "migrate"  # empty, or this project's own schema: apply its migrations
    LEAVE_FLIP_HUB = "leave"  # a FLIP hub database at FLIP_HEAD: use as it is, change nothing


@dataclass(frozen=True)
class SchemaDecision:
    action: SchemaAction
    description: str


def decide_schema_action(heads: tuple[str, ...], has_hub_tables: bool,
                         own_revisions: frozenset[str]) -> SchemaDecision:
    """What ``db upgrade`` does with a database whose Alembic version table holds ``heads`` (none: no revision
    recorded; several: a database between two of FLIP's branches and their merge).

    Raises:
        UnsupportedSchemaError: an older or unknown FLIP revision, this project's retired schema, an unknown
            revision, or hub tables without any revision — each named, with what to do.
    """
    if len(heads) > 1:
        named = ", ".join(sorted(heads))
        if set(heads) <= FLIP_REVISIONS:
            raise UnsupportedSchemaError(
                f"FLIP hub database at FLIP revisions {named}, older than {FLIP_HEAD}: upgrade it with FLIP's own "
                f"migrations (flip-api: alembic upgrade {FLIP_HEAD}) first; nothing was changed")
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
        return SchemaDecision(SchemaAction.LEAVE_FLIP_HUB, f"FLIP hub database at FLIP revision {revision}")
    if revision in FLIP_REVISIONS:
        raise UnsupportedSchemaError(
            f"FLIP hub database at FLIP revision {revision}, older than {FLIP_HEAD}: upgrade it with FLIP's own "
            f"migrations (flip-api: alembic upgrade {FLIP_HEAD}) first; nothing was changed")
    if revision in RETIRED_REVISIONS:
        raise UnsupportedSchemaError(
            f"the database was created by an earlier flip_pipelines schema (revision {revision}) whose tables "
            "differ from FLIP's: move it aside and run 'flip-pipelines db upgrade' on a new database; "
            "nothing was changed")
    raise UnsupportedSchemaError(
        f"unknown Alembic revision {revision!r}: not a FLIP revision this project knows (FLIP head {FLIP_HEAD}) "
        "nor one of its own; nothing was changed")
