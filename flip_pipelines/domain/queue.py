"""Value types the queue functions return: plain, immutable, free of database sessions."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from flip_pipelines.domain.enums import FLBackend, NetStatus


@dataclass(frozen=True)
class Claim:
    """A net's slot taken for a queued job: what a training run needs, with the names people read."""

    scheduler_id: uuid.UUID
    net_id: uuid.UUID
    net_name: str
    endpoint: str
    fl_backend: FLBackend
    fl_job_id: uuid.UUID
    model_id: uuid.UUID
    model_name: str
    trust_ids: tuple[uuid.UUID, ...]
    trust_names: tuple[str, ...]
    slot_names: tuple[str, ...]  # the FL client names of the trusts, in the same order
    backend_job_id: str | None = None  # set once the FL server accepted the job
    model_key: str = ""  # the model's readable key: its partition of the training assets


ARTICLES = {FLBackend.NVFLARE: "an", FLBackend.FLOWER: "a"}  # as the names are read: "en-vee-flare", "flower"


@dataclass(frozen=True)
class QueuedBehind:
    """A launch that may not take a free net ahead of older queued jobs waiting for it: its job waits QUEUED in
    its place, for the queue sensor to start in turn."""

    fl_job_id: uuid.UUID
    model_id: uuid.UUID
    older_jobs: int  # queued before it, waiting for a free net of ``backends``
    backends: tuple[FLBackend, ...]  # the free nets' backends the model suits

    def reason(self) -> str:
        jobs = "1 older job waits" if self.older_jobs == 1 else f"{self.older_jobs} older jobs wait"
        nets = " or ".join(b.value for b in self.backends)
        return f"{jobs} for {ARTICLES[self.backends[0]]} {nets} net; the queue sensor starts this one in turn"


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
class ActiveJob:
    """An IN_PROGRESS job with the net holding it (None when no net does): what reconciliation looks at."""

    fl_job_id: uuid.UUID
    model_id: uuid.UUID
    model_name: str
    backend_job_id: str | None
    started: datetime | None
    net: NetDetails | None


@dataclass(frozen=True)
class AbortedTraining:
    """What ``abort_model`` took off the queue, and the submitted FL jobs to stop on their nets."""

    dequeued: int
    stopped_jobs: tuple[uuid.UUID, ...]  # claimed jobs ended ABORTED
    backend_jobs: tuple[tuple[NetDetails, str], ...]  # (net, backend job id) to abort on the FL servers


@dataclass(frozen=True)
class RecoveredNet:
    net_name: str
    stale_fl_job_id: uuid.UUID | None
