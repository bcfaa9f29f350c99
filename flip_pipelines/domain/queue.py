"""Value types the queue functions return: plain, immutable, free of database sessions."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from flip_pipelines.domain.enums import FLBackend, NetStatus


@dataclass(frozen=True)
class Claim:
    """A net's slot taken for the oldest queued job: what a training run needs to start."""

    scheduler_id: uuid.UUID
    net_id: uuid.UUID
    net_name: str
    endpoint: str
    fl_backend: FLBackend
    fl_job_id: uuid.UUID
    model_id: uuid.UUID
    trust_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True)
class NetDetails:
    name: str
    endpoint: str
    fl_backend: FLBackend


@dataclass(frozen=True)
class NetState:
    """A net with its slot: what ``flip-pipelines nets list`` and ``queue`` show."""

    net_id: uuid.UUID
    name: str
    endpoint: str
    fl_backend: FLBackend
    status: NetStatus
    fl_job_id: uuid.UUID | None
    model_id: uuid.UUID | None


@dataclass(frozen=True)
class QueuePosition:
    position: int
    fl_job_id: uuid.UUID
    model_id: uuid.UUID
    created: datetime


@dataclass(frozen=True)
class TrainingDetails:
    """What the FL API needs besides the bundle: the project and its newest cohort query."""

    project_id: uuid.UUID
    cohort_query: str


@dataclass(frozen=True)
class RecoveredNet:
    net_name: str
    stale_fl_job_id: uuid.UUID | None
