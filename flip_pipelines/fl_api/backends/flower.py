"""The Flower backend of the FL API, over the SuperLink's Control API (flwr 1.41).

The uploaded bundle is the flat FAB (base ``pyproject.toml`` and ``server_app.py`` plus the model's files); FAB
rules are enforced at upload (Flower would drop such files silently). Submitting builds the FAB in memory and
starts a run whose config carries the model id, project, cohort query, trusts and rounds; the ServerApp writes
the final global model to a path this service chose, which is why the service runs beside the SuperLink.

A watchdog stops runs that wait for SuperNodes longer than ``stall_seconds`` (a dead node makes Flower wait
forever) and reports them FAILED with the reason. Submissions, tokens and such failures are kept in
``<upload dir>/.runs.json`` so a restarted service still knows them.

Each run gets a results folder, ``output-path`` (the final model) is ``global_model.npz`` in it, and the ServerApp
appends every client's metrics per round to ``round_metrics.jsonl`` next to it while the run is live; the service
reads that file for ``/job_metrics``, naming nodes by site, and puts it in the run's result.
"""

import json
import logging
import re
import shutil
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx

from flip_pipelines.domain.enums import TERMINAL_FL_JOB_STATUSES, FLJobStatus
from flip_pipelines.domain.fl_status import normalise_flower_status
from flip_pipelines.fl_api.backends.flower_control import FlowerControl, FlowerRun, RunNotFoundError
from flip_pipelines.fl_api.downloads import check_model_id, download_bundle, plan_downloads
from flip_pipelines.fl_api.errors import (
    BackendUnavailableError,
    BadRequestError,
    ConflictingRequestError,
    JobNotFoundError,
)
from flip_pipelines.fl_api.metrics import METRICS_FILE, parse_round_metrics, rename_clients
from flip_pipelines.fl_api.model_config import validate_model_config
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

FAB_SUFFIXES = {".py", ".toml", ".md", ".yaml", ".yml", ".json", ".jsonl"}
FAB_NAMES = {"LICENSE", ".gitignore"}
FAB_MAX_BYTES = 10 * 1024 * 1024
FAB_MAX_DEPTH = 10
RUN_SETTINGS = "flip_run.json"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
LOG_TAIL_CHARS = 64_000


def fab_rule_violations(files: dict[str, int]) -> list[str]:
    """Files (relative path → size) a FAB cannot carry, each with the reason; empty when all is well."""
    problems = []
    for path, _ in sorted(files.items()):
        parts = path.split("/")
        name = parts[-1]
        if any(p in ("__pycache__", ".venv", "build") for p in parts[:-1]):
            problems.append(f"{path} (in an excluded folder)")
        elif name.startswith("test_") and name.endswith(".py") or name.endswith("_test.py"):
            problems.append(f"{path} (test files are excluded from FABs)")
        elif name not in FAB_NAMES and Path(name).suffix not in FAB_SUFFIXES:
            problems.append(f"{path} (FABs carry only {', '.join(sorted(FAB_SUFFIXES))}, LICENSE, .gitignore)")
        elif len(parts) - 1 > FAB_MAX_DEPTH:
            problems.append(f"{path} (deeper than {FAB_MAX_DEPTH} folders)")
    total = sum(files.values())
    if total > FAB_MAX_BYTES:
        largest = sorted(files.items(), key=lambda kv: -kv[1])[:5]
        problems.append(
            f"total {total} bytes is over the {FAB_MAX_BYTES}-byte FAB limit; largest: "
            + ", ".join(f"{p} ({s} bytes)" for p, s in largest)
        )
    return problems


class FlowerBackend:
    name = "flower"

    def __init__(
        self,
        *,
        superlink: str,
        upload_dir: Path,
        allowed_origins: frozenset[str],
        node_names_file: Path | None = None,
        stall_seconds: float = 120.0,
        watch_interval: float = 2.0,
        download_timeout: float = 60.0,
        default_rounds: int = 1,
    ) -> None:
        self.control = FlowerControl(superlink)
        self.upload_dir = upload_dir.resolve()
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self.results_dir = self.upload_dir / ".results"
        self.results_dir.mkdir(exist_ok=True)
        self.allowed_origins = allowed_origins
        self.node_names_file = node_names_file
        self.stall_seconds = stall_seconds
        self.download_timeout = download_timeout
        self.default_rounds = default_rounds
        self._lock = threading.RLock()
        self._index_file = self.upload_dir / ".runs.json"
        self._index: dict[str, Any] = self._load_index()
        self._waiting_since: dict[int, float] = {}
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, args=(watch_interval,), daemon=True,
                                          name="flower-stall-watchdog")
        self._watchdog.start()

    # --- persistence ----------------------------------------------------------------------------------------

    def _load_index(self) -> dict[str, Any]:
        if self._index_file.exists():
            return json.loads(self._index_file.read_text())
        return {"runs": {}, "tokens": {}, "nodes": {}}

    def _save_index(self) -> None:
        temporary = self._index_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._index, indent=2))
        temporary.replace(self._index_file)

    # --- upload and submit ----------------------------------------------------------------------------------

    def job_folder(self, model_id: str) -> Path:
        return self.upload_dir / check_model_id(model_id)

    def upload_app(self, model_id: str, request: UploadAppRequest) -> UploadAppResponse:
        target = self.job_folder(model_id)
        planned = plan_downloads(request.bundle_urls, model_id, self.allowed_origins)
        staging = self.upload_dir / f".staging-{model_id}-{uuid.uuid4().hex[:8]}"
        with httpx.Client(timeout=self.download_timeout, follow_redirects=False) as client:
            download_bundle(planned, staging, client)
        try:
            files = {p.relative_to(staging).as_posix(): p.stat().st_size for p in staging.rglob("*") if p.is_file()}
            problems = fab_rule_violations(files)
            if problems:
                raise BadRequestError(f"the bundle breaks Flower's FAB rules: {'; '.join(problems)}")
            for required in ("pyproject.toml", "server_app.py", "client_app.py", "config.json"):
                if required not in files:
                    raise BadRequestError(f"the bundle has no {required} at its root")
            try:
                config = json.loads((staging / "config.json").read_text())
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BadRequestError(f"config.json is not valid JSON: {exc}") from None
            config = validate_model_config(config, default_rounds=self.default_rounds)
            settings = {
                "model_id": model_id,
                "project_id": request.project_id,
                "cohort_query": request.cohort_query,
                "trusts": list(request.trusts),
                "rounds": config["GLOBAL_ROUNDS"],
            }
            (staging / RUN_SETTINGS).write_text(json.dumps(settings, indent=2))
            with self._lock:
                if target.exists():
                    shutil.rmtree(target)
                staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return UploadAppResponse(message=f"Application uploaded successfully to: {target}", files=len(files))

    def submit_job(self, model_id: str, submit_token: str | None = None) -> str:
        folder = self.job_folder(model_id)
        settings_file = folder / RUN_SETTINGS
        if not settings_file.exists():
            raise JobNotFoundError(f"no uploaded application for model {model_id}: call upload_app first")
        with self._lock:
            if submit_token and submit_token in self._index["tokens"]:
                return self._index["tokens"][submit_token]
            settings = json.loads(settings_file.read_text())
            # the ServerApp writes the model to output-path and its metrics to METRICS_FILE beside it
            output = self.results_dir / model_id / uuid.uuid4().hex / "global_model.npz"
            output.parent.mkdir(parents=True, exist_ok=True)
            files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*")
                     if p.is_file() and p.name != RUN_SETTINGS}
            run_config = {
                "num-server-rounds": int(settings["rounds"]),
                "min-nodes": len(settings["trusts"]),
                "output-path": str(output),
                "flip-model-id": model_id,
                "flip-project-id": settings["project_id"],
                "flip-cohort-query": settings["cohort_query"],
                "flip-trusts": ",".join(settings["trusts"]),
            }
            try:
                run_id = str(self.control.start_run(FlowerControl.build_fab(files), run_config))
            except httpx.TransportError as exc:
                raise BackendUnavailableError(f"SuperLink unreachable: {type(exc).__name__}") from None
            except httpx.HTTPStatusError as exc:
                raise ConflictingRequestError(f"the SuperLink refused the run: {exc.response.text[:300]}") from None
            self._index["runs"][run_id] = {
                "model_id": model_id, "output": str(output), "metrics": str(output.parent / METRICS_FILE),
                "min_nodes": len(settings["trusts"]),
                "trusts": settings["trusts"], "failure": None,
            }
            if submit_token:
                self._index["tokens"][submit_token] = run_id
            self._save_index()
        return run_id

    # --- runs -----------------------------------------------------------------------------------------------

    def _metadata(self, run: FlowerRun) -> JobMetadata:
        failure = self._index["runs"].get(str(run.run_id), {}).get("failure")
        if failure:
            return JobMetadata(job_id=str(run.run_id), status=FLJobStatus.FAILED, status_details=failure)
        details = run.status if not run.details or run.details == "N/A" else f"{run.status}: {run.details}"
        return JobMetadata(job_id=str(run.run_id), status=normalise_flower_status(run.status), status_details=details)

    def _runs(self, run_id: int | None = None) -> list[FlowerRun]:
        try:
            return self.control.list_runs(run_id)
        except httpx.TransportError as exc:
            raise BackendUnavailableError(f"SuperLink unreachable: {type(exc).__name__}") from None

    def list_jobs(self) -> list[JobMetadata]:
        return [self._metadata(run) for run in self._runs()]

    def _run(self, job_id: str) -> FlowerRun:
        if not job_id.isdigit():
            raise JobNotFoundError(f"run {job_id} not found")
        try:
            runs = self._runs(int(job_id))
        except RunNotFoundError:
            raise JobNotFoundError(f"run {job_id} not found") from None
        if not runs:
            raise JobNotFoundError(f"run {job_id} not found")
        return runs[0]

    def abort_job(self, job_id: str) -> AbortResponse:
        current = self._metadata(self._run(job_id))
        if current.status in TERMINAL_FL_JOB_STATUSES:
            return AbortResponse(job_id=job_id, status=current.status)
        self.control.stop_run(int(job_id))
        self._waiting_since.pop(int(job_id), None)
        return AbortResponse(job_id=job_id, status=FLJobStatus.STOPPED)

    # --- system ---------------------------------------------------------------------------------------------

    def server_status(self) -> ServerStatus:
        return ServerStatus(status="RUNNING" if self.control.health() else "STOPPED")

    def register_node(self, name: str, node_id: int) -> None:
        with self._lock:
            self._index["nodes"][str(node_id)] = name
            self._save_index()

    def _node_names(self) -> dict[int, str]:
        names = {int(k): v for k, v in self._index["nodes"].items()}
        if self.node_names_file and self.node_names_file.exists():
            names.update({int(k): v for k, v in json.loads(self.node_names_file.read_text()).items()})
        return names

    def _client_names(self) -> dict[str, str]:
        """How the ServerApp names clients (``node-<id>``, as ``client_status`` names unnamed nodes) → site."""
        return {f"node-{node_id}": name for node_id, name in self._node_names().items()}

    def client_status(self) -> list[ClientStatusItem]:
        try:
            nodes = self.control.list_nodes()
        except httpx.TransportError as exc:
            raise BackendUnavailableError(f"SuperLink unreachable: {type(exc).__name__}") from None
        names = self._node_names()
        by_name: dict[str, bool] = {}
        for node in nodes:
            online = node.status == "online"
            name = names.get(node.node_id)
            if name is None and not online:
                continue  # a stale, unnamed entry of a node that restarted with a new id
            name = name or f"node-{node.node_id}"
            by_name[name] = by_name.get(name, False) or online
        return [
            ClientStatusItem(name=n, status="CONNECTED" if up else "DISCONNECTED", online=up)
            for n, up in sorted(by_name.items())
        ]

    def _online_count(self) -> int:
        return sum(1 for n in self.control.list_nodes() if n.status == "online")

    # --- stall watchdog -------------------------------------------------------------------------------------

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.check_stalls()
            except Exception as exc:  # the SuperLink may be down; the next tick tries again
                logger.debug("stall check skipped: %s", exc)

    def check_stalls(self) -> None:
        """Stop and fail our runs that have waited for SuperNodes longer than the deadline."""
        with self._lock:
            ours = {int(k): v for k, v in self._index["runs"].items() if not v.get("failure")}
        if not ours:
            return
        active = {r.run_id: r for r in self.control.list_runs()
                  if r.run_id in ours and normalise_flower_status(r.status) not in TERMINAL_FL_JOB_STATUSES}
        online = self._online_count() if active else 0
        now = time.monotonic()
        for run_id, record in ((rid, ours[rid]) for rid in active):
            if online >= record["min_nodes"]:
                self._waiting_since.pop(run_id, None)
                continue
            since = self._waiting_since.setdefault(run_id, now)
            if now - since >= self.stall_seconds:
                reason = (f"stalled: waiting for SuperNodes ({online} online, {record['min_nodes']} required) "
                          f"for more than {self.stall_seconds:.0f}s; the run was stopped")
                logger.warning("run %s %s", run_id, reason)
                self.control.stop_run(run_id)
                with self._lock:
                    self._index["runs"][str(run_id)]["failure"] = reason
                    self._save_index()
                self._waiting_since.pop(run_id, None)

    # --- results --------------------------------------------------------------------------------------------

    def run_logs(self, run_id: str) -> RunLogs:
        run = self._run(run_id)
        finished = normalise_flower_status(run.status) in TERMINAL_FL_JOB_STATUSES
        text = ANSI.sub("", self.control.logs(int(run_id), wait_seconds=10.0 if finished else 2.0))
        return RunLogs(run_id=run_id, log=text[-LOG_TAIL_CHARS:], truncated=len(text) > LOG_TAIL_CHARS)

    def _metrics_text(self, job_id: str) -> str:
        record = self._index["runs"].get(job_id) or {}
        try:
            return Path(record["metrics"]).read_text(errors="replace") if record.get("metrics") else ""
        except FileNotFoundError:  # the ServerApp has not started yet
            return ""

    def job_metrics(self, job_id: str) -> list[RoundMetric]:
        """Metrics so far, from the file the ServerApp appends to after each round (``[]`` for runs not ours)."""
        self._run(job_id)  # 404 for an unknown run
        return parse_round_metrics(self._metrics_text(job_id), client_names=self._client_names())

    def download_job(self, job_id: str, destination: Path) -> Path:
        """The final global model (``global_model.npz``), the run settings, the ServerApp log and the per-round
        metrics (``metrics/round_metrics.jsonl``, clients named by site), as a zip."""
        run = self._run(job_id)
        if normalise_flower_status(run.status) != FLJobStatus.FINISHED:
            raise ConflictingRequestError(f"run {job_id} has not finished successfully ({run.status})")
        record = self._index["runs"].get(job_id)
        if record is None or not Path(record["output"]).exists():
            raise JobNotFoundError(f"no global model was saved for run {job_id}")
        archive = destination / f"{job_id}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
            out.write(record["output"], "global_model.npz")
            out.writestr(RUN_SETTINGS, json.dumps({"run_id": job_id, **record}, indent=2))
            out.writestr("server_app.log", self.run_logs(job_id).log)
            out.writestr(f"metrics/{METRICS_FILE}", rename_clients(self._metrics_text(job_id), self._client_names()))
        return archive

    def close(self) -> None:
        self._stop.set()
        self._watchdog.join(timeout=5)


