"""A real HTTP server that answers as FLIP's own NVFlare FL API does (fl-services/nvflare/fl-api-base): no
authentication, ``/health/`` with a trailing slash (``/health`` redirects there), client statuses without
``online``, job statuses that may be UNKNOWN, 422 bodies whose ``detail`` is a string, and FLIP's upload: bundle
URLs mapped to app folders by their path, then every app folder checked for ``custom/config.json``,
``config/config_fed_client.json`` and ``config/config_fed_server.json`` (404 naming the model when one is missing).

The job folder is written to ``upload_dir`` and configured as FLIP's upload configures it (``flip_job_folder``);
``/download_job`` answers, as FLIP's does, the path of the job's result on the FL API's own disk (JSON, not a zip).
With ``nvflare`` (a running ``LocalNVFlare``) the jobs are submitted to, listed from and aborted on that real
NVFlare deployment through the FLARE API, as FLIP's ``FLIP_Session`` does; without it, the jobs train nothing and
are listed as ``job_statuses`` scripts them. Either way ``/submit_job`` takes no submit token (each call is one more
job) and ``/list_jobs`` filters and orders as NVFlare lists (``limit``, ``id_prefix``, ``name_prefix`` — a job's
name is its model id, as FLIP's ``configure_meta`` writes it —, ``reverse``; oldest submission first), answering
FLIP's ``{job_id, status, status_details: null}``.

It also acts as FLIP's FL server does through the ``flip`` package's components (``flip_fl_server``), for a job
whose ``config_fed_server.json`` declares them, as FLIP's job templates do: ``ServerEventHandler`` pushes RUNNING
when the job is submitted and, once it is listed FINISHED, each client's metric from the run's folder and the final
status to the hub API at ``push_to`` (with ``X-Internal-Service-Key``); ``PersistToS3AndCleanup`` first zips the run
into ``results`` (FLIP's UPLOADED_FEDERATED_DATA_BUCKET) — either of the last two left out by ``upload_results`` /
``push_final_status``. A job declaring neither gets no upload and no push. In front of NVFlare, which cannot import
the ``flip`` package, those two declarations are removed from the job folder before it is submitted.
"""

import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from nvflare.fuel.flare_api import api_spec
from pydantic import BaseModel

from flip_pipelines.local.nvflare import LocalNVFlare
from flip_pipelines.local.processes import free_port, wait_until
from flip_pipelines_tests.flip_hub.flip_fl_server import (
    FlipComponents,
    FlipFLServerPushes,
    remove_flip_components,
    write_scripted_run,
)
from flip_pipelines_tests.flip_hub.flip_job_folder import configure_job_folder

T = TypeVar("T")
FLIP_NVFLARE_STATUSES = {  # FLIP's fl_api.utils.schemas._NVFLARE_STATUS_MAP; anything else is UNKNOWN
    "SUBMITTED": "PENDING", "APPROVED": "PENDING", "DISPATCHED": "PENDING", "RUNNING": "RUNNING",
    "FINISHED:COMPLETED": "FINISHED", "FINISHED:ABORTED": "STOPPED", "FINISHED:EXECUTION_EXCEPTION": "FAILED",
    "FINISHED:ABNORMAL": "FAILED", "FINISHED:CAN_NOT_SCHEDULE": "FAILED", "FINISHED:FAILED_TO_RUN": "FAILED",
    "FINISHED:ABANDONED": "FAILED",
}


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
    job_components: dict[str, FlipComponents] = field(default_factory=dict)  # job id -> flip components declared
    upload_dir: Path | None = None  # FLIP's session upload dir (a temporary one when unset)
    nvflare: LocalNVFlare | None = None
    results: tuple[Any, str] | None = None  # (S3 client, bucket) the FL server uploads results to
    upload_results: bool = True
    push_final_status: bool = True
    uploaded: list[str] = field(default_factory=list)  # result keys the FL server uploaded
    pushed: list[str] = field(default_factory=list)  # "<METHOD> <path>" of every push the FL server sent
    ended: set[str] = field(default_factory=set)  # NVFlare jobs whose end the FL server has handled

    def _fl_server(self) -> FlipFLServerPushes:
        return FlipFLServerPushes(self.push_to, self.push_key, self.results, self.upload_results,
                                  self.push_final_status, self.pushed)

    def job_folder(self, model_id: str) -> Path:
        assert self.upload_dir is not None, "start() sets it"
        return self.upload_dir / model_id

    def result_folder(self, job_id: str) -> Path:
        """Where ``/download_job`` says the job's result is: FLIP's admin download dir, ``transfer/<job id>``."""
        assert self.upload_dir is not None, "start() sets it"
        return self.upload_dir.parent / "transfer" / job_id

    def _finished(self, job_id: str, run_folder: Path | None = None) -> None:
        """The FL server's end of a run: its metrics, result and final status (``flip_fl_server``)."""
        if run_folder is None:
            run_folder = write_scripted_run(self.result_folder(job_id) / "workspace", [c["name"] for c in self.clients])
        key = self._fl_server().run_ended(self.job_models[job_id], run_folder, self.job_components[job_id])
        if key:
            self.uploaded.append(key)

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

        @app.exception_handler(ValueError)
        async def bad_request(_: Request, exc: ValueError) -> JSONResponse:
            return JSONResponse(status_code=400, content={"detail": str(exc)})

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
            job_dir = self.job_folder(str(model_id))
            shutil.rmtree(job_dir, ignore_errors=True)
            (job_dir / "app").mkdir(parents=True)
            for rel, content in files.items():
                (job_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (job_dir / rel).write_bytes(content)
            configure_job_folder(job_dir, str(model_id), folders, body.project_id, body.cohort_query, body.trusts)
            self.uploads[str(model_id)] = files
            return {"message": f"Application uploaded successfully to: {job_dir}"}

        @app.post("/submit_job/{job_folder}")
        def submit_job(job_folder: str) -> str:
            if self.nvflare is not None:
                return self._submit_to_nvflare(job_folder)
            if job_folder not in self.uploads:
                raise FileNotFoundError(f"job folder {job_folder} not found")
            job_id = str(uuid.uuid4())
            self.jobs[job_id] = 0
            self._started(job_id, job_folder, FlipComponents.declared_in(self.job_folder(job_folder)))
            return job_id

        @app.get("/list_jobs")
        def list_jobs(detailed: bool = False, limit: int | None = None, id_prefix: str | None = None,
                      name_prefix: str | None = None, reverse: bool = False) -> list[dict[str, Any]]:
            if self.nvflare is not None:
                return self._nvflare_jobs(detailed=detailed, limit=limit, id_prefix=id_prefix,
                                          name_prefix=name_prefix, reverse=reverse)
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
                listed.append({"job_id": job_id, "status": status, "status_details": None})
            return listed

        @app.delete("/abort_job/{job_id}")
        def abort_job(job_id: str) -> dict[str, Any]:
            if self.nvflare is not None:
                self._on_nvflare(lambda session: session.abort_job(job_id))
            elif job_id not in self.jobs:
                raise FileNotFoundError(f"Job {job_id} not found")
            return {"job_id": job_id, "status": "STOPPED", "status_details": None}

        @app.get("/download_job/{job_id}")
        def download_job(job_id: str) -> str:
            """FLIP's: ``FLIP_Session.download_job_result`` — where the result now is on this FL API's disk."""
            if self.nvflare is not None:
                return str(self._on_nvflare(lambda session: session.download_job_result(job_id)))
            if not self.result_folder(job_id).is_dir():
                raise FileNotFoundError(f"Job {job_id} not found")
            return str(self.result_folder(job_id))

        return app

    # --- the real NVFlare deployment behind it, through the FLARE API as FLIP_Session uses it ------------------

    def _on_nvflare(self, operation: Callable[[Any], T]) -> T:
        with self._nvflare_lock:
            try:
                return operation(self._session)
            except api_spec.JobNotFound as exc:
                raise FileNotFoundError(f"Job not found: {exc}") from None

    def _started(self, job_id: str, model_id: str, components: FlipComponents) -> None:
        self.job_models[job_id], self.job_components[job_id] = model_id, components
        self._fl_server().run_started(model_id, components)

    def _submit_to_nvflare(self, job_folder: str) -> str:
        folder = self.job_folder(job_folder)
        components = FlipComponents.declared_in(folder)
        remove_flip_components(folder)
        job_id = str(self._on_nvflare(lambda session: session.submit_job(str(folder))))
        self._started(job_id, job_folder, components)
        return job_id

    def _nvflare_jobs(self, **filters: Any) -> list[dict[str, Any]]:
        """FLIP's ``/list_jobs``: NVFlare's listing with FLIP's query filters, statuses normalised, no details; a run
        of ours seen FINISHED for the first time gets its FL server's end (pushes, result upload) first, as FLIP's
        END_RUN comes before it."""
        listed = []
        with self._ending_lock:
            for job in self._on_nvflare(lambda session: session.list_jobs(**filters)):
                job_id, status = str(job["job_id"]), FLIP_NVFLARE_STATUSES.get(str(job["status"]).upper(), "UNKNOWN")
                if status == "FINISHED" and job_id in self.job_models and job_id not in self.ended:
                    self.ended.add(job_id)
                    with tempfile.TemporaryDirectory() as tmp:
                        result = self._on_nvflare(lambda session, j=job_id, t=tmp: session.download_job_result(j, t))
                        self._finished(job_id, Path(result) / "workspace")
                listed.append({"job_id": job_id, "status": status, "status_details": None})
        return listed

    def start(self) -> "FlipFLApi":
        self._own_dir = Path(tempfile.mkdtemp(prefix="flip-fl-api-")) if self.upload_dir is None else None
        if self._own_dir is not None:
            self.upload_dir = self._own_dir / "uploads"
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self._nvflare_lock, self._ending_lock = threading.Lock(), threading.Lock()
        self._session = self.nvflare.session() if self.nvflare is not None else None
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
        if self._session is not None:
            self._session.close()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
