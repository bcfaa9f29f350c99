"""FLIP's hub tables at its Alembic head (``domain.schema.FLIP_HEAD``), with FLIP's definitions — names, types,
enums, nullability, foreign keys — so one code path serves a FLIP hub database and one ``db upgrade`` created.

As in FLIP: enums are stored by member name (``NVFLARE``, ``QUEUED``); timestamps are ``timestamp without time
zone`` holding UTC, and are written timezone-aware into a FLIP hub whose columns are ``timestamptz``
(``db.timestamps``); trust references are UUID foreign keys; trust, project and scheduler rows carry no unique
constraint on their names or net (the code checks, and relies on none FLIP lacks). The only additions are indexes
(``EXTRA_INDEXES``) that make claims and log reads fast; FLIP's own databases work without them.
"""

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

from flip_pipelines.db.timestamps import UTCTimestamp, name_timestamp_columns, utcnow
from flip_pipelines.domain.enums import (
    FLBackend,
    JobStatus,
    ModelAuditAction,
    ModelStatus,
    NetStatus,
    ProjectStatus,
    TrustIntersectStatus,
)

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
DEFAULT_X_LABEL = "Global Round"

# indexes FLIP's schema lacks: for the claim's scan of queued jobs, a net's free slot and a model's logs
EXTRA_INDEXES = frozenset({"ix_fl_job_status_created_id", "ix_fl_scheduler_status", "ix_fl_logs_model_id",
                           "ix_fl_metrics_model_id"})


class UUIDList(sa.types.TypeDecorator):
    """``uuid[]`` on PostgreSQL (FLIP's ``queries.queried_trust_ids``), a JSON list of strings elsewhere."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(sa.Uuid()))
        return dialect.type_descriptor(sa.JSON())

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return [str(v) for v in value]

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        return None if value is None else [v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)) for v in value]


def _enum(enum: type, name: str) -> sa.Enum:
    return sa.Enum(enum, name=name)


class Project(SQLModel, table=True):
    __tablename__ = "projects"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str
    description: str
    owner_id: uuid.UUID
    deleted: bool = False
    creation_timestamp: datetime = Field(default_factory=utcnow, sa_type=UTCTimestamp())
    status: ProjectStatus = Field(default=ProjectStatus.UNSTAGED, sa_type=_enum(ProjectStatus, "projectstatus"),
                                  nullable=False)
    dicom_to_nifti: bool = True
    has_imaging: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})


class Query(SQLModel, table=True):
    """A project's cohort query; the newest one is the query training runs against."""

    __tablename__ = "queries"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str
    query: str
    created: datetime = Field(default_factory=utcnow, sa_type=UTCTimestamp())
    created_by: uuid.UUID = Field(index=True)
    project_id: uuid.UUID | None = Field(default=None, foreign_key="projects.id", index=True)
    queried_trust_ids: list[uuid.UUID] = Field(default_factory=list, sa_type=UUIDList(), nullable=False)


class Model(SQLModel, table=True):
    __tablename__ = "model"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str
    description: str
    status: ModelStatus = Field(sa_type=_enum(ModelStatus, "modelstatus"), nullable=False)
    deleted: bool = False
    project_id: uuid.UUID | None = Field(default=None, foreign_key="projects.id")
    owner_id: uuid.UUID
    creation_timestamp: datetime = Field(default_factory=utcnow, sa_type=UTCTimestamp())


class Trust(SQLModel, table=True):
    """A hospital site. The FL protocol addresses it by its kit slot name, not by ``name``."""

    __tablename__ = "trust"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str
    last_heartbeat: datetime | None = Field(default=None, sa_type=UTCTimestamp())
    code: str | None = None
    region: str | None = None
    api_key_hash: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCTimestamp())
    services_health: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    services_health_at: datetime | None = Field(default=None, sa_type=UTCTimestamp())


class FLKitSlot(SQLModel, table=True):
    """A provisioned FL client identity (certificate CN, e.g. ``site-1``) and the trust it is assigned to."""

    __tablename__ = "fl_kit_slot"

    slot_name: str = Field(primary_key=True)
    slot_number: int
    assigned_to_trust_id: uuid.UUID | None = Field(default=None, foreign_key="trust.id", index=True)
    assigned_at: datetime | None = Field(default=None, sa_type=UTCTimestamp())


class ModelTrustIntersect(SQLModel, table=True):
    """A trust approved for a model (FLIP's ``validate_trust_ids`` asks only that the row exists)."""

    __tablename__ = "model_trust_intersect"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    status: TrustIntersectStatus = Field(sa_type=_enum(TrustIntersectStatus, "trustintersectstatus"),
                                         nullable=False)
    model_id: uuid.UUID | None = Field(default=None, foreign_key="model.id")
    trust_id: uuid.UUID | None = Field(default=None, foreign_key="trust.id")
    fl_client_endpoint: str | None = None


class SiteConfig(SQLModel, table=True):
    """Hub-wide switches; ``DeploymentMode`` true pauses scheduling."""

    __tablename__ = "site_config"

    key: str = Field(primary_key=True, index=True)
    value: bool


class FLNets(SQLModel, table=True):
    """An FL server deployment, reached through the FL API at ``endpoint``."""

    __tablename__ = "fl_nets"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(unique=True)
    endpoint: str = Field(unique=True)
    fl_backend: FLBackend = Field(sa_type=_enum(FLBackend, "flbackend"), nullable=False)


class FLJob(SQLModel, table=True):
    """One training attempt of a model. Retries add rows, so ``model_id`` is not unique."""

    __tablename__ = "fl_job"
    __table_args__ = (sa.Index("ix_fl_job_status_created_id", "status", "created", "id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    model_id: uuid.UUID = Field(foreign_key="model.id")
    status: JobStatus = Field(default=JobStatus.QUEUED, sa_type=_enum(JobStatus, "jobstatus"), nullable=False)
    created: datetime = Field(default_factory=utcnow, sa_type=UTCTimestamp())
    started: datetime | None = Field(default=None, sa_type=UTCTimestamp())
    completed: datetime | None = Field(default=None, sa_type=UTCTimestamp())
    fl_backend_job_id: str | None = None
    num_gpus: int | None = None
    mem_per_gpu_gib: int | None = None


class FLJobTrust(SQLModel, table=True):
    __tablename__ = "fl_job_trust"

    fl_job_id: uuid.UUID = Field(foreign_key="fl_job.id", primary_key=True)
    trust_id: uuid.UUID = Field(foreign_key="trust.id", primary_key=True)


class FLScheduler(SQLModel, table=True):
    """A net's single training slot: one row per net, so each net runs one job at a time."""

    __tablename__ = "fl_scheduler"
    __table_args__ = (sa.Index("ix_fl_scheduler_status", "status"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    net_id: uuid.UUID = Field(foreign_key="fl_nets.id")
    status: NetStatus = Field(default=NetStatus.AVAILABLE, sa_type=_enum(NetStatus, "netstatus"), nullable=False)
    job_id: uuid.UUID | None = Field(default=None, foreign_key="fl_job.id")


class FLLogs(SQLModel, table=True):
    """What a model's owner reads about its training. A row holds ``log`` text or an ``event_type``, never both
    (FLIP enforces this where rows come in; ``db.transaction.write_log`` does here)."""

    __tablename__ = "fl_logs"
    __table_args__ = (sa.Index("ix_fl_logs_model_id", "model_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    model_id: uuid.UUID = Field(foreign_key="model.id")
    log_date: datetime | None = Field(default_factory=utcnow, sa_type=UTCTimestamp())
    success: bool = True
    trust: uuid.UUID | None = Field(default=None, foreign_key="trust.id")
    fl_client_name: str | None = None
    log: str | None = None
    event_type: str | None = None
    global_round: int | None = None
    details: dict[str, Any] | None = Field(default=None, sa_type=JSONType)


class FLMetrics(SQLModel, table=True):
    """One metric of one FL client in one round; ``trust`` is the client's trust, ``x_value`` the plot's x."""

    __tablename__ = "fl_metrics"
    __table_args__ = (sa.Index("ix_fl_metrics_model_id", "model_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    trust: uuid.UUID = Field(foreign_key="trust.id")
    fl_client_name: str
    model_id: uuid.UUID = Field(foreign_key="model.id")
    global_round: int
    timestamp: datetime | None = Field(default_factory=utcnow, sa_type=UTCTimestamp())
    label: str
    result: float
    x_label: str = Field(default=DEFAULT_X_LABEL, sa_column_kwargs={"server_default": DEFAULT_X_LABEL})
    x_value: float


class ModelsAudit(SQLModel, table=True):
    __tablename__ = "models_audit"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    model_id: uuid.UUID | None = Field(default=None, foreign_key="model.id", index=True)
    action: ModelAuditAction = Field(sa_type=_enum(ModelAuditAction, "modelauditaction"), nullable=False)
    user_id: uuid.UUID | None = None
    audit_date: datetime = Field(default_factory=utcnow, sa_type=UTCTimestamp())


name_timestamp_columns(SQLModel.metadata)
