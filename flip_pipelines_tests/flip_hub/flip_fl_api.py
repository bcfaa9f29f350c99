"""A real HTTP server that answers as FLIP's own NVFlare FL API does (fl-services/nvflare/fl-api-base): no
authentication, ``/health/`` with a trailing slash (``/health`` redirects there), client statuses without
``online``, job statuses that may be UNKNOWN, 422 bodies whose ``detail`` is a string, and FLIP's upload: bundle
URLs mapped to app folders by their path, then every app folder checked for ``custom/config.json``,
``config/config_fed_client.json`` and ``config/config_fed_server.json`` (404 naming the model when one is missing).

It trains nothing: it is the other side of the contract, for the hub's client and bundles to be tested against.
With ``push_to`` set it also acts as FLIP's FL server does through the ``flip`` package: it pushes RUNNING when a
job is submitted and, once the job is listed FINISHED, each client's metric and then RESULTS_UPLOADED to the hub
API, with ``X-Internal-Service-Key``.
"""

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from flip_pipelines.local.processes import free_port, wait_until


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
            return {"message": f"Application uploaded successfully to: /uploads/{model_id}"}

        @app.post("/submit_job/{job_folder}")
        def submit_job(job_folder: str) -> str:
            if job_folder not in self.uploads:
                raise FileNotFoundError(f"job folder {job_folder} not found")
            job_id = str(uuid.uuid4())
            self.jobs[job_id] = 0
            self.job_models[job_id] = job_folder
            self._push("PUT", f"/model/{job_folder}/status/RUNNING")
            return job_id

        @app.get("/list_jobs")
        def list_jobs() -> list[dict[str, Any]]:
            listed = []
            for job_id, polls in self.jobs.items():
                status = self.job_statuses[min(polls, len(self.job_statuses) - 1)]
                self.jobs[job_id] = polls + 1
                if status == "FINISHED" and polls + 1 == len(self.job_statuses):
                    self._finished(job_id)
                listed.append({"job_id": job_id, "status": status, "status_details": None})
            return listed

        @app.delete("/abort_job/{job_id}")
        def abort_job(job_id: str) -> dict[str, Any]:
            if job_id not in self.jobs:
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
