"""The FL-API contract (FLIP's), as pydantic models shared by the service and the client.

Responses are parsed strictly on the client side: a response that does not fit raises, loudly.
"""

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flip_pipelines.domain.enums import OFFLINE_CLIENT_STATUSES, FLJobStatus


class UploadAppRequest(BaseModel):
    """``POST /upload_app/{model_id}``. ``trusts`` are FL client (kit slot) names; ``bundle_urls`` presigned GETs."""

    model_config = ConfigDict(extra="forbid")

    project_id: str
    cohort_query: str
    trusts: list[str] = Field(min_length=1)
    bundle_urls: list[str] = Field(min_length=1)


class UploadAppResponse(BaseModel):
    message: str
    files: int = 0


class JobMetadata(BaseModel):
    """One ``GET /list_jobs`` item; ``status`` is normalised (FLIP #490)."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    status: FLJobStatus
    status_details: str | None = None


class AbortResponse(BaseModel):
    job_id: str
    status: FLJobStatus


class ServerStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: str
    start_time: float | None = None


class ClientStatusItem(BaseModel):
    """A client the server knows of; ``online`` is False for ``no_reply``/``DISCONNECTED`` (FLIP's rule). FLIP's
    FL APIs send no ``online``: it is computed from ``status`` as FLIP's hub computes it."""

    model_config = ConfigDict(extra="ignore")

    name: str
    status: str
    online: bool | None = None  # computed from status when absent
    last_connect_time: float | None = None

    @model_validator(mode="after")
    def _online_from_status(self) -> "ClientStatusItem":
        if self.online is None:
            self.online = self.status not in OFFLINE_CLIENT_STATUSES
        return self


class Health(BaseModel):
    """``backend`` is this project's FL API's; FLIP's sends a ``version`` instead."""

    model_config = ConfigDict(extra="ignore")

    status: str
    backend: str | None = None


class RunLogs(BaseModel):
    run_id: str
    log: str
    truncated: bool = False


class RoundMetric(BaseModel):
    """One ``GET /job_metrics/{job_id}`` point: the value of metric ``label`` that FL client ``client`` reported in
    global round ``round`` (counted from 1 on every backend). FLIP's hub stores the same as ``fl_metrics`` rows."""

    model_config = ConfigDict(extra="ignore")

    round: int
    client: str
    label: str
    value: float


def unknown_job_detail(job_id: str) -> str:
    """The 404 detail ``/job_metrics`` gives for a job the FL server does not know. The client tells it apart from
    the 404 of an FL API that has no such route (FLIP's), which means "no metrics to offer", not "no such job"."""
    return f"unknown job {job_id}"


class ErrorResponse(BaseModel):
    detail: str


class RegisterNodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    node_id: int
