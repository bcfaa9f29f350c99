"""Crash drills: SIGKILL a training's run worker at each boundary (``faults.CRASH_POINTS``), or the Dagster daemon
mid-run, on a real stack, and check the hub recovers on its own.

After each drill: the FL server ran at most one job for the training, the job ended exactly once with the right
final status, its net is AVAILABLE, the model's status is the last one its audit trail records (FLIP audits
RUNNING and RESULTS_UPLOADED), and the result is stored. The daemon drill also checks that the training never
stopped: its run worker lived through the daemon's death, and that same run (no restart, no resume) ended it.
``benchmarks/drills.py`` prints the table; the daemon tests assert it.
"""

import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from flip_pipelines.db import lifecycle, registry
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.models import FLJob, FLLogs, Model, ModelsAudit
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import AUDITED_MODEL_STATUSES, FLBackend, JobStatus, ModelStatus, NetStatus
from flip_pipelines.domain.model_check import ModelCheck
from flip_pipelines.domain.net_options import NetOptions, parse_net_options
from flip_pipelines.faults import arm, fired_at
from flip_pipelines.fl_api.client import FLApiClient
from flip_pipelines.launcher.workers import HostProcess, RunWorker
from flip_pipelines.local.dagster import LocalDagster
from flip_pipelines.local.processes import parent_pid, wait_until
from flip_pipelines.settings import NET_OPTIONS_ENV

DEMO_FILES = {FLBackend.NVFLARE: "nvflare_logreg", FLBackend.FLOWER: "flower_logreg"}
DAEMON = "daemon"
DAEMON_DOWN_SECONDS = 5.0
# 10 local steps of 1 s: the daemon drill's training outlasts the daemon's time down, so its worker must live through it
DAEMON_DRILL_CONFIG = {"STEP_SLEEP_SECONDS": 1.0}
ENDED_RUN_STATUSES = ("SUCCESS", "FAILURE", "CANCELED")
RUNS_OF_JOB = ("query($t: [ExecutionTag!]) { runsOrError(filter: {tags: $t}) { ... on Runs { results { runId status "
               "tags { key value } } } } }")


@dataclass(frozen=True)
class Drill:
    name: str
    crash_point: str  # a faults.CRASH_POINTS name, or DAEMON
    backend: FLBackend


DRILLS = (
    Drill("a) worker killed right after the claim", "after_claim", FLBackend.NVFLARE),
    Drill("b) worker killed mid-bundle", "mid_bundle", FLBackend.FLOWER),
    Drill("c) worker killed after upload, before submit", "after_upload", FLBackend.NVFLARE),
    Drill("d) worker killed after the FL server accepted the job, before it was recorded", "after_submit",
          FLBackend.FLOWER),
    Drill("e) worker killed mid-monitor", "mid_monitor", FLBackend.NVFLARE),
    Drill("f) worker killed after FINISHED, before the result was stored", "after_finished", FLBackend.FLOWER),
    Drill("daemon killed mid-run and restarted", DAEMON, FLBackend.NVFLARE),
)
# drill d on an NVFlare net whose FL API is FLIP's own (FLIP_NET_OPTIONS "flip"), which ignores the submit token
FLIP_FL_API_DRILL = Drill("d) on FLIP's FL API: worker killed after the FL server accepted the job, before it was "
                          "recorded", "after_submit", FLBackend.NVFLARE)


@dataclass
class DrillHub:
    """A running hub to drill on: its queue database, Dagster processes, S3 buckets and one net per backend."""

    url: str
    dagster: LocalDagster
    s3: Any  # a boto3 S3 client
    model_bucket: str
    results_bucket: str
    token: str
    crash_file: Path
    project: str = "proj"
    trusts: tuple[str, ...] = ("Trust_1", "Trust_2")
    rounds: int = 1
    _engine: Any = None

    def session(self) -> Session:
        if self._engine is None:
            self._engine = make_engine(self.url)
        return new_session(self._engine)

    def net(self, backend: FLBackend) -> tuple[str, str]:
        """(name, endpoint) of the first net of ``backend``."""
        with self.session() as session:
            net = next(n for n in registry.list_nets(session) if n.fl_backend == backend)
        return net.name, net.endpoint

    def backend_jobs(self, backend: FLBackend) -> set[str]:
        with FLApiClient(self.net(backend)[1], self.token) as client:
            return {job.job_id for job in client.list_jobs()}

    def new_model(self, backend: FLBackend, name: str, **config: object) -> uuid.UUID:
        """A model whose files suit ``backend`` only, uploaded; ``rounds`` global rounds, ``config`` on top."""
        files = demo_model_files(DEMO_FILES[backend])
        config = json.loads(files["config.json"]) | {"GLOBAL_ROUNDS": self.rounds} | config
        files["config.json"] = json.dumps(config).encode()
        with self.session() as session:
            model_id = registry.add_model(session, name, self.project).id
        for rel, body in files.items():
            self.s3.put_object(Bucket=self.model_bucket, Key=f"{model_id}/{rel}", Body=body)
        return model_id

    def enqueue(self, model_id: uuid.UUID, check: ModelCheck) -> uuid.UUID:
        with self.session() as session:
            trust_ids = registry.get_trust_ids_by_names(session, list(self.trusts))
            return lifecycle.enqueue_training(session, model_id, trust_ids, check).id

    def runs_of(self, fl_job_id: uuid.UUID) -> list[dict[str, Any]]:
        """The Dagster runs of a training (``runId``, ``status``, ``tags``), newest first."""
        data = self.dagster.graphql(RUNS_OF_JOB, {"t": [{"key": "flip/fl_job_id", "value": str(fl_job_id)}]})
        return data["runsOrError"]["results"]


@dataclass
class DrillResult:
    drill: Drill
    model_id: uuid.UUID | None = None
    backend_jobs: int = 0
    job_status: str = "-"
    model_status: str = "-"
    seconds_to_recover: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def recovered(self) -> bool:
        return not self.problems

    @property
    def outcome(self) -> str:
        return "recovered" if self.recovered else "FAILED: " + "; ".join(self.problems)


def _ended(hub: DrillHub, fl_job_id: uuid.UUID) -> FLJob | None:
    with hub.session() as session:
        job = session.get(FLJob, fl_job_id)
        return job if job is not None and job.status in (JobStatus.COMPLETED, JobStatus.DELETED) else None


def _submitted_and_running(hub: DrillHub, fl_job_id: uuid.UUID) -> bool:
    with hub.session() as session:
        job = session.get(FLJob, fl_job_id)
        return job is not None and job.fl_backend_job_id is not None


@dataclass
class DaemonCrash:
    """What the daemon drill saw of the training's run: its id and worker, and the template the worker was forked
    from."""

    killed: float
    run_id: str
    worker: RunWorker
    template: HostProcess


def _kill_daemon_mid_run(hub: DrillHub, fl_job_id: uuid.UUID, result: DrillResult, timeout: float) -> DaemonCrash:
    """Kill the daemon (with every process of its tree) once the training is submitted, keep it down for a while,
    start it again; the training's run worker must live through it."""
    wait_until(lambda: _submitted_and_running(hub, fl_job_id), timeout=timeout, interval=0.2,
               what="the training to be submitted")
    [run] = hub.runs_of(fl_job_id)
    worker = RunWorker.from_tags({t["key"]: t["value"] for t in run["tags"]})
    assert worker is not None and worker.alive(), f"run {run['runId']} has no live run worker: {run['tags']}"
    template = HostProcess.of(parent_pid(worker.pid))
    hub.dagster.kill_daemon()
    killed = time.time()
    time.sleep(DAEMON_DOWN_SECONDS)  # down across sensor ticks and run dequeues: what a crashed daemon looks like
    if not worker.alive():
        result.problems.append(f"run worker pid {worker.pid} died with the daemon")
    hub.dagster.start_daemon()
    return DaemonCrash(killed, run["runId"], worker, template)


def _check_daemon_crash(hub: DrillHub, fl_job_id: uuid.UUID, crash: DaemonCrash, result: DrillResult) -> None:
    """The run that was running when the daemon died finished the training, and its template left with it."""
    try:
        runs = wait_until(lambda: _runs_once_ended(hub, fl_job_id), timeout=30, interval=0.2,
                          what="the training's runs to end")
        if runs != [(crash.run_id, "SUCCESS")]:
            result.problems.append(f"the training's runs were {runs}, not its run {crash.run_id} alone, SUCCESS")
        wait_until(lambda: not crash.worker.alive() and not crash.template.alive(), timeout=15, interval=0.2,
                   what=f"run worker {crash.worker.pid} and its template {crash.template.pid} to exit")
    except TimeoutError as exc:
        result.problems.append(str(exc))


def _runs_once_ended(hub: DrillHub, fl_job_id: uuid.UUID) -> list[tuple[str, str]] | None:
    runs = [(r["runId"], r["status"]) for r in hub.runs_of(fl_job_id)]
    return runs if all(status in ENDED_RUN_STATUSES for _, status in runs) else None


def run_drill(hub: DrillHub, drill: Drill, *, timeout: float = 240.0) -> DrillResult:
    """Run one drill to its end and check the hub's state afterwards."""
    from flip_pipelines.resources.bundles import BundleStore

    result = DrillResult(drill)
    try:
        before = hub.backend_jobs(drill.backend)
        config = DAEMON_DRILL_CONFIG if drill.crash_point == DAEMON else {}
        model_id = result.model_id = hub.new_model(drill.backend, f"drill-{drill.crash_point}-{uuid.uuid4().hex[:4]}",
                                                   **config)
        if drill.crash_point != DAEMON:
            arm(hub.crash_file, drill.crash_point, str(model_id))
        store = BundleStore(hub.s3, model_bucket=hub.model_bucket, bundle_bucket=hub.model_bucket)
        fl_job_id = hub.enqueue(model_id, store.check(str(model_id)))
        daemon_crash = None
        if drill.crash_point == DAEMON:
            daemon_crash = _kill_daemon_mid_run(hub, fl_job_id, result, timeout)
            crashed: float | None = daemon_crash.killed
        else:
            crashed = wait_until(lambda: fired_at(hub.crash_file, drill.crash_point, str(model_id)),
                                 timeout=timeout, interval=0.2, what=f"crash point {drill.crash_point}")
        wait_until(lambda: _ended(hub, fl_job_id), timeout=timeout, interval=0.5, what="the training to end")
        result.seconds_to_recover = time.time() - crashed if crashed else None
        result.backend_jobs = len(hub.backend_jobs(drill.backend) - before)
        _check(hub, drill, model_id, fl_job_id, result)
        if daemon_crash is not None:
            _check_daemon_crash(hub, fl_job_id, daemon_crash, result)
    except Exception as exc:  # a drill that cannot finish is a failed drill, reported in its row
        result.problems.append(f"{type(exc).__name__}: {exc}")
    return result


def _check(hub: DrillHub, drill: Drill, model_id: uuid.UUID, fl_job_id: uuid.UUID, result: DrillResult) -> None:
    with hub.session() as session:
        job = session.get(FLJob, fl_job_id)
        model = session.get(Model, model_id)
        assert job is not None and model is not None
        result.job_status, result.model_status = job.status.value, model.status.value
        endings = [row for row in session.exec(select(FLLogs).where(FLLogs.model_id == model_id))
                   if (row.details or {}).get("fl_job_id") == str(fl_job_id) and "outcome" in (row.details or {})]
        audit = session.exec(select(ModelsAudit.action).where(ModelsAudit.model_id == model_id)
                             .order_by(col(ModelsAudit.audit_date))).all()
        net = next(n for n in registry.list_nets(session) if n.name == hub.net(drill.backend)[0])
    problems = result.problems
    if result.backend_jobs != 1:
        problems.append(f"the FL server ran {result.backend_jobs} jobs for the training")
    if (job.status, model.status) != (JobStatus.COMPLETED, ModelStatus.RESULTS_UPLOADED):
        problems.append(f"ended {job.status.value}/{model.status.value}, not COMPLETED/RESULTS_UPLOADED")
    if len(endings) != 1:
        problems.append(f"the training was ended {len(endings)} times")
    audited = [a.value for a in audit]  # FLIP audits moves into PREPARED, RUNNING and RESULTS_UPLOADED only
    if model.status in AUDITED_MODEL_STATUSES and audited[-1:] != [model.status.value]:
        problems.append(f"the audit trail ends {audited[-1:]} but the model is {model.status.value}")
    if audited.count(ModelStatus.RESULTS_UPLOADED.value) > 1:
        problems.append(f"the audit trail records the results {audited.count('RESULTS_UPLOADED')} times")
    if net.status != NetStatus.AVAILABLE:
        problems.append(f"net {net.name} is {net.status.value}")
    result_key = f"{model_id}/{fl_job_id}.zip"
    stored_by_hub = not parse_net_options(hub.dagster.env.get(NET_OPTIONS_ENV, "")).get(net.name,
                                                                                         NetOptions()).results_pushed
    if stored_by_hub and "Contents" not in hub.s3.list_objects_v2(Bucket=hub.results_bucket, Prefix=result_key):
        problems.append(f"no result at s3://{hub.results_bucket}/{result_key}")


def run_drills(hub: DrillHub, drills: Sequence[Drill] = DRILLS, *,
               on_result: Callable[[DrillResult], None] | None = None) -> list[DrillResult]:
    """Run the drills, one NVFlare drill and one Flower drill at a time side by side (each net trains one job at
    a time, so a drill can count the FL jobs of its own net); the daemon drill runs alone."""
    results: dict[str, DrillResult] = {}

    def lane(queue: list[Drill]) -> None:
        for drill in queue:
            results[drill.name] = run_drill(hub, drill)
            if on_result:
                on_result(results[drill.name])

    alone = [d for d in drills if d.crash_point == DAEMON]
    lanes = [[d for d in drills if d.backend == b and d not in alone] for b in FLBackend]
    threads = [threading.Thread(target=lane, args=(q,), name=f"drills-{i}") for i, q in enumerate(lanes) if q]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lane(alone)
    return [results[d.name] for d in drills]


def format_results(results: Sequence[DrillResult]) -> str:
    from flip_pipelines.cli.common import format_table

    rows = [(r.drill.name, r.drill.backend.value, r.outcome, r.backend_jobs, f"{r.job_status}/{r.model_status}",
             f"{r.seconds_to_recover:.1f}" if r.seconds_to_recover is not None else "-") for r in results]
    return format_table(["drill", "net", "outcome", "FL jobs", "job/model", "s to recover"], rows)
