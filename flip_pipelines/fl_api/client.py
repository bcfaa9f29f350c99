"""Typed client of the FL-API contract, used by the pipeline's resource.

Every response is parsed into the shared pydantic models; one that does not fit raises ``FLApiContractError``
naming the route. Errors are split by what a caller should do: ``FLApiUnavailableError`` (connection failures,
502/503/504) may be retried; ``FLApiRequestError`` (4xx) will fail the same way again.
"""

from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from flip_pipelines.domain.errors import FlipError, TransientError
from flip_pipelines.domain.redact import install_log_redaction, redact_text
from flip_pipelines.fl_api.schemas import (
    AbortResponse,
    ClientStatusItem,
    Health,
    JobMetadata,
    RoundMetric,
    RunLogs,
    ServerStatus,
    UploadAppRequest,
    UploadAppResponse,
    unknown_job_detail,
)

M = TypeVar("M")


class FLApiError(FlipError):
    """``detail`` is the error body's ``detail`` (redacted), for callers that branch on the server's answer."""

    def __init__(self, message: str, status_code: int | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class FLApiUnavailableError(FLApiError, TransientError):
    """The FL API or its FL server is unreachable or failing right now: worth retrying."""


class FLApiRequestError(FLApiError):
    """The FL API refused the request (4xx): retrying will not help."""


class FLApiNotFoundError(FLApiRequestError):
    pass


class FLApiContractError(FLApiError):
    """The FL API answered with something the contract does not allow."""


class FLApiClient:
    """``token`` None sends no Authorization header (FLIP's own FL APIs authenticate nobody)."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0,
                 upload_timeout: float = 900.0) -> None:
        install_log_redaction()
        self.base_url = base_url.rstrip("/")
        self.upload_timeout = upload_timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "FLApiClient":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise FLApiUnavailableError(f"FL API at {self.base_url} unreachable: {type(exc).__name__}") from None
        if response.status_code >= 400:
            self._raise_for(response, method, path)
        return response

    def _parse(self, response: httpx.Response, shape: type[M] | Any, path: str) -> M:
        try:
            return TypeAdapter(shape).validate_python(response.json())
        except (ValueError, ValidationError) as exc:
            raise FLApiContractError(f"{path}: response does not fit the FL-API contract: {exc}") from None

    def health(self) -> Health:
        """``/health`` (FLIP's NVFlare FL API serves ``/health/`` and redirects there)."""
        return self._parse(self._request("GET", "/health", follow_redirects=True), Health, "/health")

    def upload_app(self, model_id: str, body: UploadAppRequest) -> UploadAppResponse:
        path = f"/upload_app/{model_id}"
        response = self._request("POST", path, json=body.model_dump(), timeout=self.upload_timeout)
        return self._parse(response, UploadAppResponse, path)

    def submit_job(self, model_id: str, submit_token: str | None = None) -> str:
        """The backend job id (a non-empty string), or FLApiContractError."""
        path = f"/submit_job/{model_id}"
        params = {"submit_token": submit_token} if submit_token else None
        job_id = self._parse(self._request("POST", path, params=params), str, path)
        if not job_id.strip():
            raise FLApiContractError(f"{path}: empty job id")
        return job_id

    def list_jobs(self, name_prefix: str | None = None) -> list[JobMetadata]:
        """Every job, in the server's order; ``name_prefix``: only jobs whose name starts with it, where the FL API
        filters by name (FLIP's NVFlare FL API does; the others list every job)."""
        params = {"name_prefix": name_prefix} if name_prefix else None
        return self._parse(self._request("GET", "/list_jobs", params=params), list[JobMetadata], "/list_jobs")

    def get_job(self, job_id: str) -> JobMetadata | None:
        return next((j for j in self.list_jobs() if j.job_id == job_id), None)

    def abort_job(self, job_id: str) -> AbortResponse:
        path = f"/abort_job/{job_id}"
        return self._parse(self._request("DELETE", path), AbortResponse, path)

    def check_server_status(self) -> ServerStatus:
        return self._parse(self._request("GET", "/check_server_status"), ServerStatus, "/check_server_status")

    def check_client_status(self) -> list[ClientStatusItem]:
        path = "/check_client_status"
        return self._parse(self._request("GET", path), list[ClientStatusItem], path)

    def run_logs(self, run_id: str) -> RunLogs:
        path = f"/run_logs/{run_id}"
        return self._parse(self._request("GET", path), RunLogs, path)

    def job_metrics(self, job_id: str) -> list[RoundMetric]:
        """Per-round, per-client metrics the job has reported so far (``[]`` before its first round ends).

        FLIP's own FL APIs have no ``/job_metrics`` route: their 405, or a 404 whose detail is not this contract's
        unknown-job answer (``unknown_job_detail``), gives ``[]`` — such a net simply offers no live metrics, as
        FLIP's ``fetch_run_logs`` treats NVFlare's missing ``/run_logs``. An unknown job on an FL API that has the
        route raises ``FLApiNotFoundError``.
        """
        path = f"/job_metrics/{job_id}"
        try:
            response = self._request("GET", path)
        except FLApiRequestError as exc:
            route_missing = exc.status_code == 404 and exc.detail != unknown_job_detail(job_id)
            if exc.status_code == 405 or route_missing:
                return []
            raise
        return self._parse(response, list[RoundMetric], path)

    def download_job(self, job_id: str, destination: Path) -> Path:
        """Stream the job's result zip to ``destination`` (a file path)."""
        path = f"/download_job/{job_id}"
        try:
            with self._http.stream("GET", path, timeout=self.upload_timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response, "GET", path)
                if response.headers.get("content-type") != "application/zip":
                    kind = response.headers.get("content-type")
                    raise FLApiContractError(f"{path}: expected application/zip, got {kind}")
                with open(destination, "wb") as handle:
                    for chunk in response.iter_bytes(1024 * 1024):
                        handle.write(chunk)
        except httpx.TransportError as exc:
            raise FLApiUnavailableError(f"FL API at {self.base_url} unreachable: {type(exc).__name__}") from None
        return destination

    def _raise_for(self, response: httpx.Response, method: str, path: str) -> None:
        try:
            raw = response.json().get("detail", "")
        except (ValueError, AttributeError):
            raw = response.text[:500]
        if isinstance(raw, list):  # FastAPI's 422: one item per invalid field
            raw = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', e)}" if isinstance(e, dict)
                            else str(e) for e in raw)
        detail = redact_text(str(raw))
        message = redact_text(f"{method} {path} → HTTP {response.status_code}: {detail}")
        kind: type[FLApiError] = FLApiRequestError
        if response.status_code == 404:
            kind = FLApiNotFoundError
        elif response.status_code in (502, 503, 504):
            kind = FLApiUnavailableError
        elif response.status_code >= 500:
            kind = FLApiError
        raise kind(message, response.status_code, detail)

