"""FLIP's internal hub routes, for FL servers to push to: ``PUT /model/{id}/status/{status}``,
``POST /model/{id}/metrics`` and ``POST /model/{id}/logs``, guarded by ``X-Internal-Service-Key`` (its SHA-256
compared with the configured hash, as FLIP does), each writing through one transition of ``db.pushes``.

Bodies are FLIP's (snake_case); one that does not fit is answered 422 and changes nothing. The API's description
(``/openapi.json``) needs the key too, and no interactive docs page is served (it could not send the key).
"""

import hashlib
import hmac
import json
import uuid
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import Engine

from flip_pipelines.db import pushes
from flip_pipelines.db.engine import new_session
from flip_pipelines.db.models import DEFAULT_X_LABEL
from flip_pipelines.domain.enums import FLLogEvent, ModelStatus
from flip_pipelines.domain.errors import FlipError, InvalidInputError, NotFoundError

KEY_HEADER = "X-Internal-Service-Key"
MAX_DETAILS_BYTES = 8192
MAX_LOG_CHARS = 16_384
"""A pushed log text longer than this is refused (422): an FL client's traceback fits; a runaway one cannot
fill the hub's database."""


class TrainingMetrics(BaseModel):
    model_config = ConfigDict(extra="ignore")

    fl_client_name: str = Field(min_length=1)
    global_round: int = Field(ge=0)
    label: str = Field(min_length=1)
    result: float = Field(allow_inf_nan=False)
    x_value: float | None = Field(default=None, allow_inf_nan=False)
    x_label: str = Field(default=DEFAULT_X_LABEL, min_length=1, max_length=64)


class TrainingLog(BaseModel):
    model_config = ConfigDict(extra="ignore")

    fl_client_name: str | None = None
    log: str | None = Field(default=None, max_length=MAX_LOG_CHARS)
    event_type: str | None = Field(default=None, max_length=64)
    global_round: int | None = Field(default=None, ge=1, le=2_147_483_647)
    details: dict[str, Any] | None = None
    success: bool = True

    @field_validator("details")
    @classmethod
    def _small_details(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value).encode()) > MAX_DETAILS_BYTES:
            raise ValueError(f"details must be at most {MAX_DETAILS_BYTES} bytes of JSON")
        return value

    @model_validator(mode="after")
    def _one_of_log_and_event(self) -> "TrainingLog":
        if (self.log is None) == (self.event_type is None):
            raise ValueError("Exactly one of 'log' and 'event_type' must be set")
        if self.event_type is not None:
            if not self.event_type.strip():
                raise ValueError("event_type must not be blank")
            if self.event_type == FLLogEvent.QUEUE_POSITION.value:
                raise ValueError("'QUEUE_POSITION' is emitted by the hub's FL scheduler and cannot be ingested")
            if self.global_round is None and self.event_type != FLLogEvent.JOB_WAITING_FOR_RESOURCES.value:
                raise ValueError("global_round is required with an event_type")
        return self


def create_app(engine: Engine, key_hash: str) -> FastAPI:
    """The hub API on ``engine``'s database; callers must send the key whose SHA-256 hex is ``key_hash``."""
    app = FastAPI(title="flip_pipelines hub API", description=__doc__, docs_url=None, redoc_url=None,
                  openapi_url=None)

    def authenticate(key: str | None = Header(default=None, alias=KEY_HEADER)) -> None:
        if not key:
            raise HTTPException(401, "Not authenticated: internal service key is missing.")
        if not hmac.compare_digest(hashlib.sha256(key.encode()).hexdigest(), key_hash):
            raise HTTPException(401, "Invalid internal service key.")

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(InvalidInputError)
    async def refused(_: Request, exc: InvalidInputError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.exception_handler(FlipError)
    async def failed(_: Request, exc: FlipError) -> JSONResponse:
        return JSONResponse(status_code=500, content={"detail": str(exc)})

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authenticate)])
    def openapi() -> dict[str, Any]:
        return get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.put("/model/{model_id}/status/{model_status}", dependencies=[Depends(authenticate)])
    def put_status(model_id: uuid.UUID, model_status: ModelStatus) -> dict[str, str]:
        with new_session(engine) as session:
            pushes.record_pushed_status(session, model_id, model_status)
        return {"success": "status set"}

    @app.post("/model/{model_id}/metrics", status_code=204, dependencies=[Depends(authenticate)])
    def post_metrics(model_id: uuid.UUID, metrics: TrainingMetrics) -> None:
        x_value = float(metrics.global_round) if metrics.x_value is None else metrics.x_value  # FLIP's default
        with new_session(engine) as session:
            pushes.record_pushed_metric(session, model_id, pushes.PushedMetric(
                metrics.fl_client_name, metrics.global_round, metrics.label, metrics.result, x_value,
                metrics.x_label))

    @app.post("/model/{model_id}/logs", dependencies=[Depends(authenticate)])
    def post_logs(model_id: uuid.UUID, entry: TrainingLog) -> dict[str, str]:
        with new_session(engine) as session:
            pushes.record_pushed_log(session, model_id, pushes.PushedLog(
                entry.fl_client_name, entry.log, entry.event_type, entry.global_round, entry.details, entry.success))
        return {"detail": "Created"}

    return app
