"""FLIP hub databases at any revision of FLIP's history: its line (``migrations.py``) and the four branches off it
that no merge joins, each revision written as the SQL its ``upgrade()`` runs; ``alembic_version`` is moved along
as Alembic moves it. Every database is given a non-UTC ``TimeZone`` (``HUB_TIMEZONE``), so a timestamp written
with the wrong kind for its column (naive into ``timestamptz``, aware into ``timestamp``) lands hours away from its
instant instead of passing unseen.
"""

from collections.abc import Iterable

import sqlalchemy as sa

from flip_pipelines.db.engine import normalise_url
from flip_pipelines.domain.schema import FLIP_HEAD
from flip_pipelines.local.postgres import create_database
from flip_pipelines_tests.flip_hub.migrations import BASELINE, FLIP_LINE, TRUST_SCOPED_USER_ROLES, Step

HUB_TIMEZONE = "Pacific/Chatham"  # UTC+12:45 / +13:45: a shifted instant cannot pass for the right one

# b7e3c1d94a20's TIMESTAMP_COLUMNS: every timestamp column at its parent 292f04be92c4
TIMESTAMPTZ_COLUMNS = [
    ("fl_job", "created"), ("fl_job", "started"), ("fl_job", "completed"), ("fl_metrics", "timestamp"),
    ("fl_logs", "log_date"), ("model", "creation_timestamp"), ("models_audit", "audit_date"),
    ("project_trust_intersect", "approved_at"), ("projects", "creation_timestamp"), ("projects_audit", "audit_date"),
    ("queries", "created"), ("query_stats", "stats_received"), ("trust", "last_heartbeat"), ("trust", "created_at"),
    ("trusts_audit", "audit_date"), ("fl_kit_slot", "assigned_at"), ("trust_task", "created_at"),
    ("trust_task", "updated_at"), ("xnat_project_status", "last_reimport"), ("user_profile", "created_at"),
    ("user_profile", "updated_at"), ("roles", "created_at"), ("roles", "updated_at"), ("users_audit", "timestamp"),
    ("access_request", "created_at"), ("access_request", "updated_at"),
]


TRUST_OWNER = ("Governs a single participating trust: nominates that trust's owners, decides its project approvals, "
               "and sets its governance policy. Always held with a trust_id — authority stops at the trust boundary.")
"""The description d5b2c8f04a17 gives the Trust Owner role it inserts (bound as ``:description``)."""


def _without(text: str, *cuts: tuple[str, str]) -> str:
    for old, new in cuts:
        assert old in text, old
        text = text.replace(old, new)
    return text


FIRST_BASELINE = _without(
    BASELINE,
    ("CREATE TYPE flbackend AS ENUM ('NVFLARE', 'FLOWER');\n", ""),
    ("'RESULTS_UPLOADED', 'RESULTS_UPLOAD_FAILED');", "'RESULTS_UPLOADED');"),
    (",\n    fl_backend flbackend NOT NULL, PRIMARY KEY (id)", ", PRIMARY KEY (id)"),
    ("query_id UUID NOT NULL, PRIMARY KEY (id)", "query_id UUID, PRIMARY KEY (id)"),
    ("REFERENCES queries (id), UNIQUE (query_id));", "REFERENCES queries (id));"),
)
"""75c871e682a4 as first written, before it took in what e3b1a7c4d2f8 adds."""

# each branch: the revision of FLIP's line it starts from (None: from its own first baseline), and its steps
BRANCHES: dict[str, tuple[str | None, list[Step]]] = {
    "e3b1a7c4d2f8": (None, [
        ("75c871e682a4", (), FIRST_BASELINE),
        ("e3b1a7c4d2f8", ("75c871e682a4",), """
            ALTER TYPE modelstatus ADD VALUE IF NOT EXISTS 'RESULTS_UPLOAD_FAILED';
            CREATE TYPE flbackend AS ENUM ('NVFLARE', 'FLOWER');
            ALTER TABLE fl_nets ADD COLUMN fl_backend flbackend NOT NULL;
            ALTER TABLE query_stats ALTER COLUMN query_id SET NOT NULL;
            ALTER TABLE query_stats ADD CONSTRAINT query_stats_query_id_key UNIQUE (query_id);"""),
    ]),
    "b7e3c1d94a20": ("292f04be92c4", [
        ("b7e3c1d94a20", ("292f04be92c4",), ";".join(
            f"ALTER TABLE {table} ALTER COLUMN {column} TYPE TIMESTAMP WITH TIME ZONE "
            f"USING {column} AT TIME ZONE 'UTC'" for table, column in TIMESTAMPTZ_COLUMNS)),
    ]),
    "b3f1c857a001": ("46edb903e4d1", [
        ("b3f1c857a001", ("46edb903e4d1",), """
            ALTER TYPE tasktype ADD VALUE IF NOT EXISTS 'PERSIST_COHORT';
            CREATE TABLE cohort_snapshot_status (id UUID NOT NULL, project_id UUID, trust_id UUID, query_id UUID,
                row_count INTEGER NOT NULL, approved_record_count INTEGER, has_accessions BOOLEAN NOT NULL,
                query_hash VARCHAR, snapshot_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
                created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, PRIMARY KEY (id),
                FOREIGN KEY(project_id) REFERENCES projects (id), FOREIGN KEY(trust_id) REFERENCES trust (id));"""),
    ]),
    "d5b2c8f04a17": ("40f7934c6419", [
        ("c3a7f1eb9402", ("40f7934c6419",), TRUST_SCOPED_USER_ROLES),
        ("d5b2c8f04a17", ("c3a7f1eb9402",), """
            ALTER TYPE trustauditaction ADD VALUE IF NOT EXISTS 'OWNER_ADDED';
            ALTER TYPE trustauditaction ADD VALUE IF NOT EXISTS 'OWNER_REMOVED';
            INSERT INTO roles (id, name, description, created_at, updated_at) VALUES (
                '8a3d6f14-9b52-4e07-a6c8-1d4f7b2e9053', 'Trust Owner', :description, now(), now())
                ON CONFLICT DO NOTHING;
            INSERT INTO user_role (id, user_id, role_id, trust_id)
            SELECT gen_random_uuid(), admin_holders.user_id, owner_role.id, t.id
            FROM (SELECT DISTINCT ur.user_id FROM user_role ur JOIN roles r ON r.id = ur.role_id
                  WHERE r.name = 'Admin' AND ur.trust_id IS NULL) AS admin_holders
            CROSS JOIN (SELECT id FROM roles WHERE name = 'Trust Owner') AS owner_role
            CROSS JOIN (SELECT id FROM trust) AS t
            ON CONFLICT (user_id, role_id, trust_id) WHERE trust_id IS NOT NULL DO NOTHING;"""),
    ]),
}


def steps_to(revision: str) -> list[Step]:
    """The steps ``alembic upgrade <revision>`` runs on an empty database, in order: the revision and every
    revision it descends from (not a sibling branch its merge has yet to join)."""
    line = [step[0] for step in FLIP_LINE]
    if revision in line:
        steps = FLIP_LINE[:line.index(revision) + 1]
    else:
        fork, own = BRANCHES[revision]
        steps = (FLIP_LINE[:line.index(fork) + 1] if fork else []) + own[:[s[0] for s in own].index(revision) + 1]
    wanted, downs = {revision}, {step[0]: step[1] for step in steps}
    for step in reversed(steps):
        if step[0] in wanted:
            wanted.update(downs[step[0]])
    return [step for step in steps if step[0] in wanted]


def _run(connection: sa.Connection, steps: Iterable[Step], heads: set[str]) -> set[str]:
    for revision, down, sql in steps:
        # ALTER TYPE ... ADD VALUE must commit before the new value is used, as FLIP's autocommit blocks do
        for statement in filter(str.strip, sql.split(";")):
            connection.execute(sa.text(statement), {"description": TRUST_OWNER} if ":description" in statement else {})
            connection.commit()
        heads = _stamp(connection, (heads - set(down)) | {revision})
    return heads


def _stamp(connection: sa.Connection, heads: set[str]) -> set[str]:
    connection.execute(sa.text("DELETE FROM alembic_version"))
    for head in sorted(heads):
        connection.execute(sa.text("INSERT INTO alembic_version VALUES (:v)"), {"v": head})
    connection.commit()
    return heads


def build_flip_hub_schema(url: str, up_to: str = FLIP_HEAD, rejoined_from: str | None = None) -> None:
    """Run FLIP's migrations up to ``up_to`` on an empty PostgreSQL database at ``url``; Alembic's version table
    ends holding ``up_to``, as FLIP's ``alembic upgrade`` leaves it.

    ``rejoined_from``: a branch revision the database ran first, then brought back onto FLIP's line as
    ``UnsupportedSchemaError`` tells operators to (``alembic stamp`` its fork point, then ``alembic upgrade``)."""
    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"))
            connection.commit()
            done: set[str] = set()
            heads: set[str] = set()
            if rejoined_from is not None:
                fork = BRANCHES[rejoined_from][0]
                assert fork is not None
                heads = _stamp(connection, _run(connection, steps_to(rejoined_from), heads) - {rejoined_from} | {fork})
                done = {step[0] for step in steps_to(fork)}
            _run(connection, [step for step in steps_to(up_to) if step[0] not in done], heads)
    finally:
        engine.dispose()


def create_hub_database(server_url: str, name: str, template: str | None = None) -> str:
    """A database on the test server (a copy of ``template``, or empty) whose sessions run in ``HUB_TIMEZONE``."""
    url = create_database(server_url, name, template=template)
    engine = sa.create_engine(normalise_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(f"ALTER DATABASE \"{name}\" SET timezone TO '{HUB_TIMEZONE}'"))
    finally:
        engine.dispose()
    return url
