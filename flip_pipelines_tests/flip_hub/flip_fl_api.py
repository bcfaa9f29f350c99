"""A real HTTP server that answers as FLIP's own NVFlare FL API does (fl-services/nvflare/fl-api-base): no
authentication, ``/health/`` with a trailing slash (``/health`` redirects there), client statuses without
``online``, job statuses that may be UNKNOWN, 422 bodies whose ``detail`` is a string, and FLIP's upload: bundle
URLs mapped to app folders by their path, then every app folder checked for ``custom/config.json``,
``config/config_fed_client.json`` and ``config/config_fed_server.json`` (404 naming the model when one is missing).

It trains nothing: it is the other side of the contract, for the hub's client and bundles to be tested against.
With ``push_to`` set it also acts as FLIP's FL server does through the ``flip`` package: it pushes RUNNING when a
job is submitted and, once the job is listed FINISHED, each client's metric and then RESULTS_UPLOADED to the hub
API, with ``X-Internal-Service-Key``.

With ``nvflare`` set (``in_front_of_nvflare``) it stands in front of a real NVFlare server as FLIP's does: the
upload also writes the real job folder (meta.json ``name`` = the model id, as FLIP's ``configure_meta`` writes it),
``/submit_job`` submits it there without a submit token (FLIP's takes none: each call is one more job), and
``/list_jobs`` is NVFlare's own listing (``detailed``, ``limit``, ``id_prefix``, ``name_prefix``, ``reverse``;
oldest submission first) reduced to FLIP's ``{job_id, status, status_details: null}``.
"""

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from flip_pipelines.domain.fl_status import normalise_nvflare_status
from flip_pipelines.fl_api.schemas import UploadAppRequest as ContractUploadRequest
from flip_pipelines.local.processes import free_port, wait_until

if TYPE_CHECKING:
    from flip_pipelines.fl_api.backends.nvflare import NVFlareBackend

# FLIP's ``_NVFLARE_STATUS_MAP`` keys: any other NVFlare status is listed UNKNOWN
FLIP_KNOWN_NVFLARE_STATUSES = {"SUBMITTED", "APPROVED", "DISPATCHED", "RUNNING", "FINISHED:COMPLETED",
                               "FINISHED:ABORTED", "FINISHED:EXECUTION_EXCEPTION", "FINISHED:ABNORMAL",
                               "FINISHED:CAN_NOT_SCHEDULE", "FINISHED:FAILED_TO_RUN", "FINISHED:ABANDONED"}


class UploadAppRequest(BaseModel):
    project_id: str
    cohort_query: str
    trusts: list[str]
    bundle_urls: list[str]


def app_folder_of(model_id: str, url_path: str) -> tuple[str, str]:
    """FLIP's ``_relative_dir_for_download``: (app folder registered, destination folder) for one file."""
    folder, name = url_path.rsplit("/", 1)
    if name == "meta.json":
        return "app", ""
    in_model = folder.split(model_id)[-1]
    app = "app" if "/app" not in in_model else "app" + in_model.split("/app")[-1].split("/")[0]
    for part in ("/custom", "/config"):
        if part in folder:
            return app, f"{app}{part}{folder.split(part, 1)[1]}"
    return app, "app/custom"


@dataclass
class FlipFLApi:
    """Start with ``start()``; ``clients`` and ``job_statuses`` say what it answers; ``seen`` what it was sent."""

    clients: list[dict[str, Any]] = field(default_factory=lambda: [
        {"name": "site-1", "last_connect_time": 1.0, "status": "no_jobs"},
        {"name": "site-2", "last_connect_time": 1.0, "status": "no_jobs"},
    ])
    job_statuses: list[str] = field(default_factory=lambda: ["UNKNOWN", "RUNNING", "FINISHED"])
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    uploads: dict[str, dict[str, bytes]] = field(default_factory=dict)  # model id -> job folder files
    jobs: dict[str, int] = field(default_factory=dict)  # job id -> polls so far
    base_url: str = ""
    push_to: str | None = None  # the hub API's base URL
    push_key: str = ""
    job_models: dict[str, str] = field(default_factory=dict)  # job id -> model id
    nvflare: "NVFlareBackend | None" = None  # the real NVFlare server it stands in front of
    pushed_ends: set[str] = field(default_factory=set)

    @classmethod
    def in_front_of_nvflare(cls, admin_kit: Path, upload_dir: Path, allowed_origin: str,
                            **kwargs: Any) -> "FlipFLApi":
        """One in front of the real NVFlare server whose admin startup kit is ``admin_kit``."""
        from flip_pipelines.fl_api.backends.nvflare import NVFlareBackend
        from flip_pipelines.fl_api.downloads import normalise_origin
        from flip_pipelines.local.nvflare import ADMIN_USER

        backend = NVFlareBackend(admin_kit=admin_kit, username=ADMIN_USER, upload_dir=upload_dir,
                                 allowed_origins=frozenset({normalise_origin(allowed_origin)}))
        return cls(nvflare=backend, **kwargs)

    def _push(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        if self.push_to:
            httpx.request(method, f"{self.push_to}{path}", json=body, timeout=10,
                          headers={"X-Internal-Service-Key": self.push_key}).raise_for_status()

    def _finished(self, job_id: str) -> None:
        model_id = self.job_models[job_id]
        for round_number in (1, 2):
            for index, client in enumerate(self.clients):
                self._push("POST", f"/model/{model_id}/metrics", {
                    "fl_client_name": client["name"], "global_round": round_number, "label": "val_loss",
                    "result": 1.0 / round_number + 0.1 * index})
        self._push("PUT", f"/model/{model_id}/status/RESULTS_UPLOADED")

    def _list_real(self, detailed: bool, limit: int | None, id_prefix: str | None, name_prefix: str | None,
                   reverse: bool) -> list[tuple[str, str]]:
        """NVFlare's listing as FLIP's route maps it; a job of its own listed FINISHED pushes its end once."""
        assert self.nvflare is not None
        raw = self.nvflare.call(lambda s: s.list_jobs(detailed=detailed, limit=limit, id_prefix=id_prefix,
                                                      name_prefix=name_prefix, reverse=reverse))
        listed = []
        for job in raw:
            native = str(job["status"]).strip().upper()
            status = normalise_nvflare_status(native).value if native in FLIP_KNOWN_NVFLARE_STATUSES else "UNKNOWN"
            job_id = str(job["job_id"])
            if status == "FINISHED" and job_id in self.job_models and job_id not in self.pushed_ends:
                self.pushed_ends.add(job_id)
                self._finished(job_id)
            listed.append((job_id, status))
        return listed

    def _list_simulated(self, limit: int | None, id_prefix: str | None, name_prefix: str | None,
                        reverse: bool) -> list[tuple[str, str]]:
        """The jobs submitted here, filtered and ordered as NVFlare lists them; each listing moves a listed job one
        step along ``job_statuses``."""
        ids = [j for j in self.jobs if j.startswith(id_prefix or "")
               and self.job_models.get(j, "").startswith(name_prefix or "")]
        ids = ids[::-1][:limit] if reverse else ids[-limit:] if limit else ids
        listed = []
        for job_id in ids:
            polls = self.jobs[job_id]
            status = self.job_statuses[min(polls, len(self.job_statuses) - 1)]
            self.jobs[job_id] = polls + 1
            if status == "FINISHED" and polls + 1 == len(self.job_statuses):
                self._finished(job_id)
            listed.append((job_id, status))
        return listed

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next):  # type: ignore[no-untyped-def]
            self.seen_headers.append({k.lower(): v for k, v in request.headers.items()})
            return await call_next(request)

        @app.exception_handler(RequestValidationError)
        async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
            return JSONResponse(status_code=422, content={"detail": str(exc)})

        @app.exception_handler(FileNotFoundError)
        async def not_found(_: Request, exc: FileNotFoundError) -> JSONResponse:
            return JSONResponse(status_code=404, content={"detail": str(exc)})

        @app.get("/health/")
        def health() -> dict[str, str]:
            return {"status": "This service is healthy ✅", "version": "test"}

        @app.get("/check_server_status")
        def server_status() -> dict[str, Any]:
            return {"status": "started", "start_time": 1.0}

        @app.get("/check_client_status")
        def client_status() -> list[dict[str, Any]]:
            return self.clients

        @app.post("/upload_app/{model_id}")
        def upload_app(model_id: uuid.UUID, body: UploadAppRequest) -> dict[str, str]:
            files: dict[str, bytes] = {}
            folders: set[str] = set()
            for url in body.bundle_urls:
                response = httpx.get(url, timeout=60)
                response.raise_for_status()
                path = httpx.URL(url).path
                app, dest = app_folder_of(str(model_id), path)
                folders.add(app)
                files[f"{dest}/{path.rsplit('/', 1)[1]}".lstrip("/")] = response.content
            if len(folders) > 1 and "meta.json" not in files:
                raise FileNotFoundError(f"meta.json is required for a job with several apps ({model_id})")
            for app in sorted(folders):  # read_config, then configure_client, then configure_server
                if f"{app}/custom/config.json" not in files:
                    raise FileNotFoundError(f"[Errno 2] No such file or directory: '/uploads/{model_id}/{app}/custom/"
                                            "config.json'")
                for needed in ("config_fed_client.json", "config_fed_server.json"):
                    if f"{app}/config/{needed}" not in files:
                        raise FileNotFoundError(f"No {needed} found in app '{model_id}'")
            self.uploads[str(model_id)] = files
            if self.nvflare is not None:  # the job folder FLIP's configure_* steps write, on the real server's side
                self.nvflare.upload_app(str(model_id), ContractUploadRequest(**body.model_dump()))
            return {"message": f"Application uploaded successfully to: /uploads/{model_id}"}

        @app.post("/submit_job/{job_folder}")
        def submit_job(job_folder: str) -> str:
            """FLIP's ``session.submit_job(job_folder)``: no submit token, so every call is one more job."""
            if job_folder not in self.uploads:
                raise FileNotFoundError(f"job folder {job_folder} not found")
            job_id = self.nvflare.submit_job(job_folder) if self.nvflare is not None else str(uuid.uuid4())
            self.jobs[job_id] = 0
            self.job_models[job_id] = job_folder
            self._push("PUT", f"/model/{job_folder}/status/RUNNING")
            return job_id

        @app.get("/list_jobs")
        def list_jobs(detailed: bool = False, limit: int | None = None, id_prefix: str | None = None,
                      name_prefix: str | None = None, reverse: bool = False) -> list[dict[str, Any]]:
            if self.nvflare is not None:
                listed = self._list_real(detailed, limit, id_prefix, name_prefix, reverse)
            else:
                listed = self._list_simulated(limit, id_prefix, name_prefix, reverse)
            return [{"job_id": job_id, "status": status, "status_details": None} for job_id, status in listed]

        @app.delete("/abort_job/{job_id}")
        def abort_job(job_id: str) -> dict[str, Any]:
            if self.nvflare is not None:
                from flip_pipelines.fl_api.errors import JobNotFoundError

                try:
                    self.nvflare.abort_job(job_id)
                except JobNotFoundError as exc:
                    raise FileNotFoundError(str(exc)) from None
            elif job_id not in self.jobs:
                raise FileNotFoundError(f"Job {job_id} not found")
            return {"job_id": job_id, "status": "STOPPED", "status_details": None}

        return app

    def start(self) -> "FlipFLApi":
        port = free_port()
        self._server = uvicorn.Server(uvicorn.Config(self._app(), host="127.0.0.1", port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: self._server.started, timeout=20, interval=0.05, what="the FLIP-style FL API")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self.nvflare is not None:
            self.nvflare.close()
