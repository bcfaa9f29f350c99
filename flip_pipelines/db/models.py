"""FLIP's hub tables, with FLIP's table and column names so a FLIP database can be pointed at.

Enums are stored by member name (``NVFLARE``, ``QUEUED``) as FLIP does. ``fl_job_trust.trust_id`` carries no
foreign key on purpose: trusts can be deregistered while a job naming them waits, and such a job must be
retired at claim time (FLIP #894) rather than block the trust's removal or wedge the queue.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

from flip_pipelines.domain.enums import FLBackend, JobStatus, ModelStatus, NetStatus

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

def utcnow() -> datetime:
    return datetime.now(UTC)

class Project(SQLModel, table=True):
    __tablename__ = "projects"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(unique=True)
    description: str | None = None
    owner_id: uuid.UUID | None = None
    creation_timestamp: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    deleted: bool = False

class Query(SQLModel, table=True):
    """A project's cohort query; the newest one is the query training runs against."""

    __tablename__ = "queries"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str | None = None
    project_id: uuid.UUID = Field(foreign_key="projects.id", index=True)
    query: str = Field(sa_type=sa.Text)
    created: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))

class Model(SQLModel, table=True):
    __tablename__ = "model"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str
    description: str | None = None
    status: ModelStatus = Field(
        default=ModelStatus.PENDING, sa_type=sa.Enum(ModelStatus, name="modelstatus"), nullable=False
    )
    deleted: bool = False
    project_id: uuid.UUID = Field(foreign_key="projects.id", index=True)
    owner_id: uuid.UUID | None = None
    creation_timestamp: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))

class Trust(SQLModel, table=True):
    """A hospital site. The FL protocol addresses it by its kit slot name, not by ``name``."""

    __tablename__ = "trust"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(unique=True)
    last_heartbeat: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    code: str | None = None
    region: str | None = None
    api_key_hash: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))

class FLKitSlot(SQLModel, table=True):
    """A provisioned FL client identity (certificate CN, e.g. ``site-1``) and the trust it is assigned to."""

    __tablename__ = "fl_kit_slot"

    slot_name: str = Field(primary_key=True)
    slot_number: int
    assigned_to_trust_id: uuid.UUID | None = Field(default=None, foreign_key="trust.id", index=True)
    assigned_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))

class FLNets(SQLModel, table=True):
    """An FL server deployment, reached through the FL API at ``endpoint``."""

    __tablename__ = "fl_nets"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(unique=True)
    endpoint: str = Field(unique=True)
    fl_backend: FLBackend = Field(sa_type=sa.Enum(FLBackend, name="flbackend"), nullable=False)

class FLJob(SQLModel, table=True):
    """One training attempt of a model. Retries add rows, so ``model_id`` is not unique."""

    __tablename__ = "fl_job"
    __table_args__ = (sa.Index("ix_fl_job_status_created_id", "status", "created", "id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    model_id: uuid.UUID = Field(foreign_key="model.id", index=True)
    status: JobStatus = Field(default=JobStatus.QUEUED, sa_type=sa.Enum(JobStatus, name="jobstatus"), nullable=False)
    created: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    started: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    completed: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    fl_backend_job_id: str | None = None
    num_gpus: int | None = None
    mem_per_gpu_gib: float | None = None

class FLJobTrust(SQLModel, table=True):
    __tablename__ = "fl_job_trust"

    fl_job_id: uuid.UUID = Field(foreign_key="fl_job.id", primary_key=True)
    trust_id: uuid.UUID = Field(primary_key=True, index=True)

class FLScheduler(SQLModel, table=True):
    """A net's single training slot: one row per net, so each net runs one job at a time."""

    __tablename__ = "fl_scheduler"
    __table_args__ = (sa.Index("ix_fl_scheduler_status", "status"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    net_id: uuid.UUID = Field(foreign_key="fl_nets.id", unique=True)
    status: NetStatus = Field(
        default=NetStatus.AVAILABLE, sa_type=sa.Enum(NetStatus, name="netstatus"), nullable=False
    )
    job_id: uuid.UUID | None = Field(default=None, foreign_key="fl_job.id")

class FLLogs(SQLModel, table=True):
    __tablename__ = "fl_logs"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    model_id: uuid.UUID = Field(index=True)
    log_date: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    success: bool = True
    trust: str | None = None
    fl_client_name: str | None = None
    log: str | None = Field(default=None, sa_type=sa.Text)
    event_type: str | None = None
    global_round: int | None = None
    details: dict[str, Any] | None = Field(default=None, sa_type=JSONType)

class FLMetrics(SQLModel, table=True):
    __tablename__ = "fl_metrics"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    trust: str | None = None
    fl_client_name: str | None = None
    model_id: uuid.UUID = Field(index=True)
    global_round: int
    timestamp: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    label: str
    result: float

class ModelsAudit(SQLModel, table=True):
    __tablename__ = "models_audit"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    model_id: uuid.UUID = Field(index=True)
    action: str
    user_id: uuid.UUID | None = None
    audit_date: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
