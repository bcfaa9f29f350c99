"""A FLIP hub's rows, written as FLIP's own services write them, and the reads FLIP's code makes of what this
project writes — in plain SQL against FLIP's schema, so nothing here goes through this project's models.

Writers follow flip-api: seed_fl_nets/seed_fl_scheduler (one AVAILABLE slot per net), trust registration and
FL kit slots, a project approved for its trusts (project_trust_intersect), its cohort query, ``save_model``
(PENDING, an owner, one model_trust_intersect row per approved trust) and ``site_config``. Readers follow
model_service (audit trail, logs), fl_scheduler_service (queue positions) and get_net_by_model_id. Its own
sessions run in UTC, so FLIP's rows hold the right instants whatever the hub's ``TimeZone`` and column kinds; what
is under test is what this project writes.
"""

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flip_pipelines.db.engine import normalise_url

OWNER = uuid.UUID("6f1c2a4e-95b7-4e0d-9f3a-1c5b7d9e2f40")  # an identity provider's user id ("sub")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def instant(value: datetime) -> datetime:
    """A timestamp as FLIP's code takes it: aware from a ``timestamptz`` column, naive UTC from a ``timestamp``."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class FlipHub:
    url: str
    project_id: uuid.UUID = field(default_factory=uuid.uuid4)
    trusts: dict[str, uuid.UUID] = field(default_factory=dict)  # trust name -> id
    nets: dict[str, uuid.UUID] = field(default_factory=dict)

    def execute(self, sql: str, **params: Any) -> list[Any]:
        engine = sa.create_engine(normalise_url(self.url), connect_args={"options": "-c timezone=UTC"})
        try:
            with engine.begin() as connection:
                result = connection.execute(sa.text(sql), params)
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    def scalar(self, sql: str, **params: Any) -> Any:
        rows = self.execute(sql, **params)
        return rows[0][0] if rows else None

    # --- as FLIP writes ----------------------------------------------------------------------------------------

    def seed(self, nets: dict[str, tuple[str, str]], trusts: dict[str, str]) -> "FlipHub":
        """Nets (name -> (endpoint, NVFLARE|FLOWER)), trusts (name -> FL kit slot), an owner's profile, an
        APPROVED project with its trusts approved and a cohort query, and deployment mode off."""
        self.execute("INSERT INTO user_profile VALUES (:u, 'Hub Admin', 'Hub', :t, :t)", u=OWNER, t=_now())
        for number, (name, slot) in enumerate(trusts.items(), start=1):
            trust_id = self.trusts[name] = uuid.uuid4()
            self.execute("INSERT INTO trust (id, name, code, region, api_key_hash, created_at) "
                         "VALUES (:i, :n, :c, 'London', :h, :t)", i=trust_id, n=name, c=name.upper(),
                         h=hashlib.sha256(name.encode()).hexdigest(), t=_now())
            self.execute("INSERT INTO fl_kit_slot VALUES (:s, :n, :i, :t)", s=slot, n=number, i=trust_id, t=_now())
        for name, (endpoint, backend) in nets.items():
            net_id = self.nets[name] = uuid.uuid4()
            self.execute("INSERT INTO fl_nets VALUES (:i, :n, :e, :b)", i=net_id, n=name, e=endpoint, b=backend)
            self.execute("INSERT INTO fl_scheduler VALUES (:i, :n, 'AVAILABLE', NULL)", i=uuid.uuid4(), n=net_id)
        self.execute("INSERT INTO projects (id, name, description, owner_id, deleted, creation_timestamp, status, "
                     "dicom_to_nifti) VALUES (:i, 'flip-project', 'A FLIP project', :o, false, :t, 'APPROVED', true)",
                     i=self.project_id, o=OWNER, t=_now())
        for trust_id in self.trusts.values():
            self.execute("INSERT INTO project_trust_intersect (id, project_id, trust_id, decided_at, status, "
                         "decided_by, decided_as) VALUES (:i, :p, :t, :d, 'APPROVED', :o, 'HUB')",
                         i=uuid.uuid4(), p=self.project_id, t=trust_id, d=_now(), o=OWNER)
        self.execute("INSERT INTO queries VALUES (:i, 'cohort', 'SELECT * FROM patients', :t, :o, :p, :q)",
                     i=uuid.uuid4(), t=_now(), o=OWNER, p=self.project_id, q=list(self.trusts.values()))
        self.execute("INSERT INTO site_config VALUES ('DeploymentMode', false)")
        return self

    def save_model(self, name: str) -> uuid.UUID:
        """FLIP's ``save_model``: PENDING, owned, approved for every trust the project approved."""
        model_id = uuid.uuid4()
        self.execute("INSERT INTO model VALUES (:i, :n, 'a model', 'PENDING', false, :p, :o, :t)",
                     i=model_id, n=name, p=self.project_id, o=OWNER, t=_now())
        for trust_id in self.execute("SELECT trust_id FROM project_trust_intersect WHERE project_id = :p "
                                     "AND status = 'APPROVED'", p=self.project_id):
            self.execute("INSERT INTO model_trust_intersect VALUES (:i, 'PENDING', :m, :t, NULL)",
                         i=uuid.uuid4(), m=model_id, t=trust_id[0])
        return model_id

    # --- as FLIP reads -----------------------------------------------------------------------------------------

    def audit_trail(self, model_id: uuid.UUID) -> list[str]:
        return [r[0] for r in self.execute("SELECT action::text FROM models_audit WHERE model_id = :m "
                                           "ORDER BY audit_date", m=model_id)]

    def logs(self, model_id: uuid.UUID) -> list[dict[str, Any]]:
        """Every fl_logs row of a model, checked as FLIP's ingest schema and UI expect them: exactly one of log
        and event_type, a hub row attributed to no trust, a date of the last ten minutes."""
        rows = [dict(r._mapping) for r in self.execute(
            "SELECT log, event_type, success, trust, fl_client_name, details, log_date FROM fl_logs "
            "WHERE model_id = :m ORDER BY log_date", m=model_id)]
        for row in rows:
            assert (row["log"] is None) != (row["event_type"] is None), f"log XOR event_type broken: {row}"
            assert abs((datetime.now(UTC) - instant(row["log_date"])).total_seconds()) < 600, row
        return rows

    def queue_positions(self) -> dict[str, int]:
        """``log_queue_positions``' read: the newest QUEUE_POSITION row per job."""
        return {r[0]: int(r[1]) for r in self.execute(
            "SELECT DISTINCT ON (details->>'job_id') details->>'job_id', details->>'position' FROM fl_logs "
            "WHERE event_type = 'QUEUE_POSITION' ORDER BY details->>'job_id', log_date DESC")}

    def job(self, job_id: uuid.UUID) -> dict[str, Any]:
        return dict(self.execute("SELECT status::text AS status, started, completed, fl_backend_job_id "
                                 "FROM fl_job WHERE id = :j", j=job_id)[0]._mapping)

    def model_status(self, model_id: uuid.UUID) -> str:
        return str(self.scalar("SELECT status::text FROM model WHERE id = :m", m=model_id))

    def net_by_model_id(self, model_id: uuid.UUID) -> str | None:
        """FLIP's ``get_net_by_model_id``: the net whose slot holds the model's job."""
        return self.scalar("SELECT n.name FROM fl_nets n JOIN fl_scheduler s ON s.net_id = n.id "
                           "JOIN fl_job j ON j.id = s.job_id WHERE j.model_id = :m", m=model_id)

    def slots(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.execute("SELECT n.name, s.status::text FROM fl_nets n "
                                                  "JOIN fl_scheduler s ON s.net_id = n.id")}

    def misplaced_timestamps(self, since: datetime) -> list[str]:
        """Every timestamp of the hub tables this project writes whose instant, as FLIP reads it, is not between
        ``since`` (aware) and now: ``table.column=value`` each. A value written naive into ``timestamptz`` or aware
        into ``timestamp`` under the hub's non-UTC TimeZone lands hours away."""
        columns = self.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND data_type LIKE 'timestamp%' AND table_name IN ('projects', 'queries', 'model', 'trust', "
            "'fl_kit_slot', 'fl_job', 'fl_logs', 'fl_metrics', 'models_audit')")
        until = datetime.now(UTC) + timedelta(seconds=1)
        return [f"{table}.{column}={value}" for table, column in columns
                for (value,) in self.execute(f'SELECT "{column}" FROM {table} WHERE "{column}" IS NOT NULL')
                if not since - timedelta(seconds=1) <= instant(value) <= until]
