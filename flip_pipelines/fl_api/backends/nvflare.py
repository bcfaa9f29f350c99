"""The NVFlare backend of the FL API, over the FLARE API (``nvflare.fuel.flare_api``).

One admin session per service, used by one call at a time. A call that fails because the session is gone
(``NoConnection``, ``SessionClosed``, ``SessionExpired`` — e.g. the FL server restarted, FLIP #1035) drops the
session and is retried once on a new one; if the server is still down the caller gets 503 and the next call
tries again, so the service recovers by itself once the server is back.

Live metrics: the server's aggregator appends to ``<server workspace>/<job id>/metrics/round_metrics.jsonl``
while the job runs. The FLARE API cannot read a running job's files, so the service reads that file directly when
given the server's workspace (the folder ``server_train -m`` points at; the service runs beside the server). When
the job ends NVFlare archives the run folder into its job store and deletes it, so a finished job's metrics come
from its downloaded result instead (and are cached: they no longer change).
"""

import contextlib
import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from nvflare.fuel.flare_api import api_spec
from nvflare.fuel.flare_api.flare_api import Session, new_secure_session

from flip_pipelines.domain.enums import OFFLINE_CLIENT_STATUSES, TERMINAL_FL_JOB_STATUSES, FLJobStatus
from flip_pipelines.domain.fl_status import normalise_nvflare_status
from flip_pipelines.fl_api.backends.nvflare_job import prepare_job_folder
from flip_pipelines.fl_api.downloads import check_model_id, download_bundle, plan_downloads
from flip_pipelines.fl_api.errors import (
    BackendUnavailableError,
    ConflictingRequestError,
    JobNotFoundError,
)
from flip_pipelines.fl_api.metrics import METRICS_FILE, parse_round_metrics
from flip_pipelines.fl_api.schemas import (
    AbortResponse,
    ClientStatusItem,
    JobMetadata,
    RoundMetric,
    RunLogs,
    ServerStatus,
    UploadAppRequest,
    UploadAppResponse,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

SESSION_LOST = (api_spec.NoConnection, api_spec.SessionClosed, ConnectionError)
LOG_TAIL_CHARS = 64_000
SAFE_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # NVFlare job ids are uuids
NVFLARE_FIRST_ROUND = 0  # ScatterAndGather's start_round in the base apps
FINISHED_METRICS_CACHED = 256


class NVFlareBackend:
    name = "nvflare"

    def __init__(
        self,
        *,
        admin_kit: Path,
        username: str,
        upload_dir: Path,
        allowed_origins: frozenset[str],
        connect_timeout: float = 10.0,
        download_timeout: float = 60.0,
        default_rounds: int = 1,
        server_workspace: Path | None = None,
    ) -> None:
        self.admin_kit = admin_kit.resolve()
        self.server_workspace = server_workspace.resolve() if server_workspace else None
        self.username = username
        self.upload_dir = upload_dir.resolve()
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self.allowed_origins = allowed_origins
        self.connect_timeout = connect_timeout
        self.download_timeout = download_timeout
        self.default_rounds = default_rounds
        self._session: Session | None = None
        self._lock = threading.RLock()
        self._upload_locks: dict[str, threading.Lock] = {}
        self._known_clients: dict[str, float | None] = {}
        self._finished_metrics: dict[str, list[RoundMetric]] = {}

    # --- the session --------------------------------------------------------------------------------------

    def _connect(self) -> Session:
        try:
            return new_secure_session(self.username, str(self.admin_kit), timeout=self.connect_timeout)
        except SESSION_LOST as exc:
            raise BackendUnavailableError(f"NVFlare server unreachable: {type(exc).__name__}: {exc}") from None

    def _drop_session(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):  # closing a dead session can fail; it is discarded either way
                self._session.close()
            self._session = None

    def call(self, operation: Callable[[Session], T]) -> T:
        """Run ``operation`` on the shared session, reconnecting once if the session was lost."""
        with self._lock:
            for attempt in (1, 2):
                if self._session is None:
                    self._session = self._connect()
                try:
                    return operation(self._session)
                except SESSION_LOST as exc:
                    logger.warning("NVFlare session lost (%s: %s); reconnecting", type(exc).__name__, exc)
                    self._drop_session()
                    if attempt == 2:
                        raise BackendUnavailableError(f"NVFlare server unreachable: {type(exc).__name__}") from None
                except api_spec.InternalError as exc:
                    if "session_inactive" not in str(exc) or attempt == 2:
                        raise
                    self._drop_session()
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._drop_session()

    # --- upload and submit --------------------------------------------------------------------------------

    def job_folder(self, model_id: str) -> Path:
        return self.upload_dir / check_model_id(model_id)

    def upload_app(self, model_id: str, request: UploadAppRequest) -> UploadAppResponse:
        """Download the bundle, build and validate the job folder, then swap it in for the previous one."""
        target = self.job_folder(model_id)
        planned = plan_downloads(request.bundle_urls, model_id, self.allowed_origins)
        lock = self._upload_locks.setdefault(model_id, threading.Lock())
        with lock:
            staging = self.upload_dir / f".staging-{model_id}-{uuid.uuid4().hex[:8]}"
            with httpx.Client(timeout=self.download_timeout, follow_redirects=False) as client:
                download_bundle(planned, staging, client)
            try:
                files = prepare_job_folder(staging, model_id, request, default_rounds=self.default_rounds)
                if target.exists():
                    shutil.rmtree(target)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return UploadAppResponse(message=f"Application uploaded successfully to: {target}", files=files)

    def submit_job(self, model_id: str, submit_token: str | None = None) -> str:
        """Submit the uploaded job from a temporary copy (NVFlare signs folders in place).

        The same ``submit_token`` returns the same job id instead of creating a second job.
        """
        folder = self.job_folder(model_id)
        if not (folder / "meta.json").exists():
            raise JobNotFoundError(f"no uploaded application for model {model_id}: call upload_app first")
        with tempfile.TemporaryDirectory(prefix="flip-submit-") as tmp:
            copy = Path(tmp) / model_id
            shutil.copytree(folder, copy)
            try:
                return self.call(lambda s: s.submit_job(str(copy), submit_token=submit_token))
            except api_spec.SubmitTokenConflict as exc:
                raise ConflictingRequestError(f"submit token already used for different content: {exc}") from None
            except api_spec.SubmitTokenJobDeleted as exc:
                raise ConflictingRequestError(f"the job for this submit token was deleted: {exc}") from None
            except api_spec.InvalidJobDefinition as exc:
                raise ConflictingRequestError(f"NVFlare refused the job definition: {exc}") from None

    # --- jobs -----------------------------------------------------------------------------------------------

    @staticmethod
    def _metadata(job: dict[str, Any]) -> JobMetadata:
        raw = str(job.get("status", ""))
        status = normalise_nvflare_status(raw)
        details = raw
        history = job.get("schedule_history") or []
        if status in (FLJobStatus.FAILED, FLJobStatus.PENDING) and history:
            details = f"{raw}: {history[-1]}"
        return JobMetadata(job_id=str(job["job_id"]), status=status, status_details=details)

    def list_jobs(self) -> list[JobMetadata]:
        return [self._metadata(job) for job in self.call(lambda s: s.list_jobs(detailed=True))]

    def _job_meta(self, job_id: str) -> dict[str, Any]:
        try:
            return self.call(lambda s: s.get_job_meta(job_id))
        except api_spec.JobNotFound:
            raise JobNotFoundError(f"job {job_id} not found") from None

    def abort_job(self, job_id: str) -> AbortResponse:
        """Abort a pending or running job; a finished job's status is returned unchanged (idempotent)."""
        meta = self._job_meta(job_id)
        current = self._metadata(meta)
        if current.status in TERMINAL_FL_JOB_STATUSES:
            return AbortResponse(job_id=job_id, status=current.status)
        try:
            self.call(lambda s: s.abort_job(job_id))
        except api_spec.JobNotFound:
            raise JobNotFoundError(f"job {job_id} not found") from None
        return AbortResponse(job_id=job_id, status=FLJobStatus.STOPPED)

    # --- system ---------------------------------------------------------------------------------------------

    def server_status(self) -> ServerStatus:
        info = self.call(lambda s: s.get_system_info())
        return ServerStatus(status=str(info.server_info.status), start_time=float(info.server_info.start_time))

    def client_status(self) -> list[ClientStatusItem]:
        """Every client seen since the service started: connected ones with their job status, the others
        ``no_reply`` (NVFlare forgets a dead client after its heartbeat timeout; we do not)."""
        info = self.call(lambda s: s.get_system_info())
        connected = {c.name: float(c.last_connect_time) for c in info.client_info}
        self._known_clients.update(connected)
        statuses: dict[str, str] = {}
        if connected:
            try:
                replies = self.call(lambda s: s.get_client_job_status(list(connected)))
                statuses = {r["client_name"]: str(r.get("status", "")) for r in replies}
            except (api_spec.NoReply, api_spec.CommandError, BackendUnavailableError) as exc:
                logger.warning("client job status unavailable: %s", exc)
        items = []
        for name in sorted(self._known_clients):
            status = statuses.get(name, "no_jobs" if name in connected else "no_reply")
            items.append(
                ClientStatusItem(
                    name=name,
                    status=status,
                    online=name in connected and status not in OFFLINE_CLIENT_STATUSES,
                    last_connect_time=self._known_clients[name],
                )
            )
        return items

    # --- results --------------------------------------------------------------------------------------------

    def download_job(self, job_id: str, destination: Path) -> Path:
        """Write the job's result (server workspace: models, metrics, logs) as a zip into ``destination``."""
        meta = self._job_meta(job_id)
        if not str(meta.get("status", "")).startswith("FINISHED"):
            raise ConflictingRequestError(f"job {job_id} has not finished ({meta.get('status')})")
        with tempfile.TemporaryDirectory(prefix="flip-result-") as tmp:
            try:
                folder = self.call(lambda s: s.download_job_result(job_id, destination=tmp))
            except api_spec.JobNotFound:
                raise JobNotFoundError(f"job {job_id} not found") from None
            archive = shutil.make_archive(str(destination / job_id), "zip", root_dir=folder)
        return Path(archive)

    def job_metrics(self, job_id: str) -> list[RoundMetric]:
        """Metrics so far: the live file of a running job (``[]`` without a server workspace), a finished job's
        from its result."""
        if not SAFE_JOB_ID.match(job_id):
            raise JobNotFoundError(f"job {job_id} not found")
        if job_id in self._finished_metrics:
            return self._finished_metrics[job_id]
        if not self._finished(job_id):
            live = self._live_metrics(job_id)
            if live is not None:
                return parse_round_metrics(live, first_round=NVFLARE_FIRST_ROUND)
            if not self._finished(job_id):  # no run folder: not started yet, or archived since we asked
                return []
        with tempfile.TemporaryDirectory(prefix="flip-metrics-") as tmp:
            try:
                folder = Path(self.call(lambda s: s.download_job_result(job_id, destination=tmp)))
            except api_spec.JobNotFound:
                raise JobNotFoundError(f"job {job_id} not found") from None
            found = sorted(folder.rglob(METRICS_FILE))
            text = found[0].read_text(errors="replace") if found else ""
        points = parse_round_metrics(text, first_round=NVFLARE_FIRST_ROUND)
        with self._lock:
            if len(self._finished_metrics) >= FINISHED_METRICS_CACHED:
                self._finished_metrics.pop(next(iter(self._finished_metrics)))
            self._finished_metrics[job_id] = points
        return points

    def _finished(self, job_id: str) -> bool:
        return str(self._job_meta(job_id).get("status", "")).startswith("FINISHED")

    def _live_metrics(self, job_id: str) -> str | None:
        """The running job's metrics file ("" before its first result), or None when its run folder is absent."""
        if self.server_workspace is None:
            return ""
        run_dir = self.server_workspace / job_id
        try:
            return (run_dir / "metrics" / METRICS_FILE).read_text(errors="replace")
        except FileNotFoundError:
            return "" if run_dir.is_dir() else None

    def run_logs(self, run_id: str) -> RunLogs:
        """The server log of a finished job (its tail, if long)."""
        with tempfile.TemporaryDirectory(prefix="flip-logs-") as tmp:
            meta = self._job_meta(run_id)
            if not str(meta.get("status", "")).startswith("FINISHED"):
                return RunLogs(run_id=run_id, log="", truncated=False)
            folder = Path(self.call(lambda s: s.download_job_result(run_id, destination=tmp)))
            log_file = next(iter(sorted(folder.rglob("log.txt"))), None)
            text = log_file.read_text(errors="replace") if log_file else ""
        return RunLogs(run_id=run_id, log=text[-LOG_TAIL_CHARS:], truncated=len(text) > LOG_TAIL_CHARS)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.server_status()
                return
            except BackendUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
