"""The FL-API HTTP service (FLIP's contract): one process per net, in front of one FL server.

Every route but ``/health`` needs ``Authorization: Bearer <token>``. Errors are ``{"detail": "..."}`` with
400/401/404/409/502/503/500 — never a stack trace, and never a presigned URL's query string.
"""

import hmac
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.background import BackgroundTask

from flip_pipelines.domain.redact import install_log_redaction, redact_text
from flip_pipelines.fl_api.errors import ApiError, JobNotFoundError
from flip_pipelines.fl_api.schemas import (
    AbortResponse,
    ClientStatusItem,
    ErrorResponse,
    Health,
    JobMetadata,
    RegisterNodeRequest,
    RoundMetric,
    RunLogs,
    ServerStatus,
    UploadAppRequest,
    UploadAppResponse,
    unknown_job_detail,
)

logger = logging.getLogger(__name__)


class FLBackend(Protocol):
    """What a backend provides; the NVFlare and Flower backends implement it."""

    name: str

    def upload_app(self, model_id: str, request: UploadAppRequest) -> UploadAppResponse: ...
    def submit_job(self, model_id: str, submit_token: str | None = None) -> str: ...
    def list_jobs(self) -> list[JobMetadata]: ...
    def abort_job(self, job_id: str) -> AbortResponse: ...
    def server_status(self) -> ServerStatus: ...
    def client_status(self) -> list[ClientStatusItem]: ...
    def download_job(self, job_id: str, destination: Path) -> Path: ...
    def run_logs(self, run_id: str) -> RunLogs: ...
    def job_metrics(self, job_id: str) -> list[RoundMetric]: ...
    def close(self) -> None: ...


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 500, 502, 503)
}


def create_app(backend: FLBackend, token: str) -> FastAPI:
    if len(token) < 16:
        raise ValueError("the FL-API token must be at least 16 characters")
    install_log_redaction(("uvicorn.access", "uvicorn.error", "httpx", "httpcore"))
    bearer = HTTPBearer(auto_error=False)

    def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise _Unauthorized()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        backend.close()  # an open FLARE session's threads would keep the process from exiting

    app = FastAPI(title=f"flip_pipelines FL API ({backend.name})", lifespan=lifespan, responses=ERRORS)
    secured = [Depends(require_token)]

    @app.exception_handler(_Unauthorized)
    async def unauthorized(_: Request, __: Exception) -> JSONResponse:
        return JSONResponse({"detail": "missing or invalid bearer token"}, 401, {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": redact_text(str(exc))}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": redact_text(f"invalid request: {problems}")}, 400)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected %s: %s", type(exc).__name__, redact_text(str(exc)), exc_info=exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, 500)

    @app.get("/health")
    def health() -> Health:
        return Health(status="ok", backend=backend.name)

    @app.post("/upload_app/{model_id}", dependencies=secured)
    def upload_app(model_id: str, body: UploadAppRequest) -> UploadAppResponse:
        return backend.upload_app(model_id, body)

    @app.post("/submit_job/{model_id}", dependencies=secured)
    def submit_job(model_id: str, submit_token: str | None = None) -> str:
        return backend.submit_job(model_id, submit_token)

    @app.get("/list_jobs", dependencies=secured)
    def list_jobs() -> list[JobMetadata]:
        return backend.list_jobs()

    @app.delete("/abort_job/{job_id}", dependencies=secured)
    def abort_job(job_id: str) -> AbortResponse:
        return backend.abort_job(job_id)

    @app.get("/check_server_status", dependencies=secured)
    def check_server_status() -> ServerStatus:
        return backend.server_status()

    @app.get("/check_client_status", dependencies=secured)
    def check_client_status() -> list[ClientStatusItem]:
        return backend.client_status()

    @app.get("/download_job/{job_id}", dependencies=secured, response_class=FileResponse)
    def download_job(job_id: str) -> FileResponse:
        folder = Path(tempfile.mkdtemp(prefix="flip-download-"))
        try:
            archive = backend.download_job(job_id, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return FileResponse(
            archive,
            media_type="application/zip",
            filename=f"{job_id}.zip",
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )

    @app.post("/register_node", dependencies=secured)
    def register_node(body: RegisterNodeRequest) -> dict[str, str]:
        """Flower: a SuperNode announces which site it is (the Control API cannot tell)."""
        register = getattr(backend, "register_node", None)
        if register is None:
            raise JobNotFoundError(f"the {backend.name} backend does not register nodes")
        register(body.name, body.node_id)
        return {"status": "registered"}

    @app.get("/run_logs/{run_id}", dependencies=secured)
    def run_logs(run_id: str) -> RunLogs:
        return backend.run_logs(run_id)

    @app.get("/job_metrics/{job_id}", dependencies=secured)
    def job_metrics(job_id: str) -> list[RoundMetric]:
        """Per-round, per-client metrics of a running or finished job so far (``[]`` before a round ends).

        An unknown job is a 404 with ``unknown_job_detail``: the client tells it apart from an FL API without
        this route."""
        try:
            return backend.job_metrics(job_id)
        except JobNotFoundError:
            raise JobNotFoundError(unknown_job_detail(job_id)) from None

    return app


class _Unauthorized(Exception):
    pass
