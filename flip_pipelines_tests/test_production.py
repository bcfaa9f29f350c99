"""deploy/ run for real, without Docker: the compose file's services as local processes with their own commands
and environment (``local.production.ComposeDagster``) — PostgreSQL set up by deploy/postgres-init.sql, the
``migrate`` service, the gRPC code server, the daemon and the webserver over the workspace of deploy/workspace.yaml
— on deploy/dagster.production.yaml with only its run launcher swapped (DockerRunLauncher → PrewarmedRunLauncher:
each run a local process, its health reported to run monitoring).
Both session nets train end to end, and a SIGKILLed run worker is detected and its training recovered."""

import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest
import yaml
from dagster import DagsterRunStatus
from sqlalchemy.engine import make_url
from sqlmodel import select

from flip_pipelines.db import registry
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.models import FLJob, FLScheduler, Model
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, JobStatus, ModelStatus, NetStatus
from flip_pipelines.fl_api.client import FLApiClient
from flip_pipelines.local.processes import kill_tree, parent_pid, wait_until
from flip_pipelines.local.production import DEPLOY, ComposeDagster, start_compose_postgres
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.bundles import list_keys
from flip_pipelines_tests.conftest import FL_API_TOKEN, RunningFLApi
from flip_pipelines_tests.fl_api.helpers import with_config

pytestmark = pytest.mark.slow
FILES = {FLBackend.NVFLARE: demo_model_files("nvflare_logreg"), FLBackend.FLOWER: demo_model_files("flower_logreg")}
ENDED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
WORKER_PID = re.compile(r"Started process for run \(pid: (\d+)\)")
# test settings on top of the compose environment: the reconcile sensor looks every 5 s (production: 30 s) and
# a run polls its FL job every second (production: 5 s), so a recovery shows within the test's deadline
TEST_ENV = {"FLIP_RECONCILE_INTERVAL_SECONDS": "5", "FLIP_MONITOR_POLL_SECONDS": "1"}


@dataclass
class Production:
    dagster: ComposeDagster
    buckets: dict[str, str]
    s3: Any
    _engine: Any = None

    @property
    def queue_url(self) -> str:
        return self.dagster.service_env("code")["FLIP_DATABASE_URL"]

    def session(self):  # type: ignore[no-untyped-def]
        if self._engine is None:
            self._engine = make_engine(self.queue_url)
        return new_session(self._engine)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory, s3_server: LocalS3, nvflare_fl_api: RunningFLApi,
               flower_fl_api: RunningFLApi) -> Iterator[Production]:
    work = tmp_path_factory.mktemp("production")
    s3 = s3_server.client()
    buckets = {k: f"{k.split('_')[1].lower()}-{uuid.uuid4().hex[:8]}" for k in (
        "FLIP_MODEL_BUCKET", "FLIP_BUNDLE_BUCKET", "FLIP_RESULTS_BUCKET", "DAGSTER_COMPUTE_LOG_BUCKET")}
    for bucket in buckets.values():
        s3.create_bucket(Bucket=bucket)
    password = secrets.token_hex(12)
    postgres = start_compose_postgres(work / "postgres", password)  # the `postgres` service, its init script run
    try:
        dagster = ComposeDagster(
            workdir=work / "dagster", env=TEST_ENV, instance_config=DEPLOY / "dagster.production.yaml",
            addresses={"postgres:5432": f"127.0.0.1:{postgres.port}"},
            variables={"POSTGRES_PASSWORD": password, "FLIP_FL_API_TOKEN": FL_API_TOKEN,
                       "FLIP_S3_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ACCESS_KEY_ID": s3_server.access_key,
                       "AWS_SECRET_ACCESS_KEY": s3_server.secret_key, **buckets},
        )
        dagster.variables["FLIP_DAGSTER_UI_URL"] = dagster.url
        dagster.workdir.mkdir(parents=True)
        prod = Production(dagster=dagster, buckets=buckets, s3=s3)
        try:
            dagster.run_service("migrate")  # `flip-pipelines db upgrade` on the compose file's queue database
            with prod.session() as session:
                registry.add_project(session, "proj", "SELECT * FROM cohort")
                for trust, slot in (("Trust_1", "site-1"), ("Trust_2", "site-2")):
                    registry.add_trust(session, trust, slot)
                registry.add_net(session, "net-nvflare", nvflare_fl_api.base_url, FLBackend.NVFLARE)
                registry.add_net(session, "net-flower", flower_fl_api.base_url, FLBackend.FLOWER)
            dagster.start()
            yield prod
        finally:
            if prod._engine is not None:
                prod._engine.dispose()
            dagster.stop()
    finally:
        postgres.stop()


def _model(prod: Production, backend: FLBackend, **config: object) -> uuid.UUID:
    with prod.session() as session:
        model_id = registry.add_model(session, f"m-{uuid.uuid4().hex[:6]}", "proj").id
    for rel, body in with_config(FILES[backend], **config).items():
        prod.s3.put_object(Bucket=prod.buckets["FLIP_MODEL_BUCKET"], Key=f"{model_id}/{rel}", Body=body)
    return model_id


def _enqueue(prod: Production, model_id: uuid.UUID) -> uuid.UUID:
    """`flip-pipelines enqueue` as an operator runs it in the image: the compose file's environment."""
    import subprocess

    from flip_pipelines.local.dagster import BIN

    # the compose default (http://localhost:3000) may be any local process here: point it at this webserver
    env = {**prod.dagster.service_env("migrate"), "FLIP_DAGSTER_UI_URL": prod.dagster.url}
    result = subprocess.run([str(BIN / "flip-pipelines"), "enqueue", str(model_id), "--trust", "Trust_1",
                             "--trust", "Trust_2"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return uuid.UUID(result.stdout.strip())


def _job(prod: Production, fl_job_id: uuid.UUID) -> FLJob:
    with prod.session() as session:
        return session.get(FLJob, fl_job_id)


def _ended(prod: Production, fl_job_id: uuid.UUID) -> FLJob | None:
    job = _job(prod, fl_job_id)
    return job if job.status in (JobStatus.COMPLETED, JobStatus.DELETED) else None


def _runs(prod: Production, fl_job_id: uuid.UUID) -> list[dict]:
    """The job's runs, oldest first."""
    data = prod.dagster.graphql(
        "query($t: [ExecutionTag!]) { runsOrError(filter: {tags: $t}) { ... on Runs { results { runId status "
        "jobName parentRunId startTime endTime } } } }", {"t": [{"key": "flip/fl_job_id", "value": str(fl_job_id)}]})
    return data["runsOrError"]["results"][::-1]


def _run_end(prod: Production, run_id: str, timeout: float = 60) -> DagsterRunStatus:
    def ended() -> DagsterRunStatus | None:
        data = prod.dagster.graphql("query($r: ID!) { runOrError(runId: $r) { ... on Run { status } } }",
                                    {"r": run_id})
        status = DagsterRunStatus(data["runOrError"]["status"])
        return status if status in ENDED else None

    return wait_until(ended, timeout=timeout, interval=0.5, what=f"run {run_id} to end")


def _messages(prod: Production, run_id: str) -> list[str]:
    data = prod.dagster.graphql(
        "query($r: ID!) { logsForRun(runId: $r) { ... on EventConnection { events { ... on MessageEvent { "
        "message } } } } }", {"r": run_id})
    return [e["message"] for e in data["logsForRun"]["events"] if e.get("message")]


def _captured_stderr(prod: Production, run_id: str) -> str:
    """The run's captured stderr as the webserver serves it, after checking that it is stored in the compute-log
    bucket: the run worker (a container, in compose) deleted its own copy once it uploaded it."""
    data = prod.dagster.graphql(
        "query($r: ID!) { logsForRun(runId: $r) { ... on EventConnection { events { __typename "
        "... on LogsCapturedEvent { fileKey } } } } }", {"r": run_id})
    [file_key] = {e["fileKey"] for e in data["logsForRun"]["events"] if e["__typename"] == "LogsCapturedEvent"}
    stored = list_keys(prod.s3, prod.buckets["DAGSTER_COMPUTE_LOG_BUCKET"], "")
    assert any(k.endswith(f"/{run_id}/compute_logs/{file_key}.err") for k in stored), stored
    logs = prod.dagster.graphql("query($k: [String!]!) { capturedLogs(logKey: $k) { stderr } }",
                                {"k": [run_id, "compute_logs", file_key]})
    return logs["capturedLogs"]["stderr"] or ""


def _backend_jobs(endpoint: str) -> set[str]:
    with FLApiClient(endpoint, FL_API_TOKEN) as client:
        return {job.job_id for job in client.list_jobs()}


def _nets_free(prod: Production) -> bool:
    with prod.session() as session:
        return {s.status for s in session.exec(select(FLScheduler))} == {NetStatus.AVAILABLE}


def _storage_runs(prod: Production) -> dict[str, str]:
    """run id → status, read from the `runs` table of the compose file's `dagster` database."""
    url = make_url(prod.dagster.service_env("code")["DAGSTER_PG_URL"])
    with psycopg2.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                          dbname=url.database) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT run_id, status FROM runs")
        return dict(cursor.fetchall())


def test_the_compose_services_run_the_production_instance(production: Production) -> None:
    """The processes are the compose file's, on its instance: PostgreSQL storage, the production run queue, and
    every daemon it needs healthy, run monitoring included."""
    dagster = production.dagster
    code = dagster.compose["services"]["code"]["command"]
    assert dagster.command("code")[1:] == [*code[1:3], "-h", "127.0.0.1", "-p", str(dagster.code_port), *code[7:]]
    data = dagster.graphql("{ instance { runLauncher { name } runQueueConfig { maxConcurrentRuns } } }")["instance"]
    assert data == {"runLauncher": {"name": "PrewarmedRunLauncher"}, "runQueueConfig": {"maxConcurrentRuns": 20}}
    production_yaml = yaml.safe_load((DEPLOY / "dagster.production.yaml").read_text())
    assert {k: v for k, v in dagster.instance.items() if k != "run_launcher"} == \
        {k: v for k, v in production_yaml.items() if k != "run_launcher"}
    statuses = wait_until(lambda: (s := dagster.daemon_statuses()) and all(s.values()) and s, timeout=60,
                          interval=1, what="every daemon to be healthy")
    assert {"SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING"} <= set(statuses)


def test_both_nets_train_end_to_end(production: Production) -> None:
    """One NVFlare-only and one Flower-only model, queued with `enqueue`: each trains on its net to stored
    results, and each run is recorded SUCCESS in Dagster's PostgreSQL storage."""
    models = {backend: _model(production, backend) for backend in FLBackend}
    fl_jobs = {backend: _enqueue(production, model_id) for backend, model_id in models.items()}
    for backend, fl_job_id in fl_jobs.items():
        job = wait_until(lambda j=fl_job_id: _ended(production, j), timeout=180, interval=1, what=f"{backend}")
        assert job.status == JobStatus.COMPLETED, job
        with production.session() as session:
            assert session.get(Model, models[backend]).status == ModelStatus.RESULTS_UPLOADED
        assert f"{models[backend]}/{fl_job_id}.zip" in list_keys(
            production.s3, production.buckets["FLIP_RESULTS_BUCKET"], f"{models[backend]}/")
        [run] = _runs(production, fl_job_id)  # it ends just after the op that completed the job
        assert (run["jobName"], _run_end(production, run["runId"])) == ("train_model", DagsterRunStatus.SUCCESS)
        assert _storage_runs(production)[run["runId"]] == "SUCCESS"
        assert "monitor" in _captured_stderr(production, run["runId"]), "the run's logs, read back from S3"
    wait_until(lambda: _nets_free(production), timeout=30, what="both nets to be free")


def test_a_killed_run_worker_is_detected_and_its_training_recovered(production: Production) -> None:
    """SIGKILL the run worker of a submitted training, found by the pid its run logged and checked to be forked from
    the template the daemon's launcher started, together with that template (which would otherwise report its
    death at once): as when a container dies, nothing but run monitoring's worker health check — what, in compose,
    asks Docker about each run's container — can notice, and it marks the run FAILURE within its poll interval.
    Then the reconcile sensor resumes the training, the FL job the server already runs ends it COMPLETED, with no
    second FL job, no Dagster retry and the net free."""
    dagster = production.dagster
    model_id = _model(production, FLBackend.NVFLARE, GLOBAL_ROUNDS=8, STEP_SLEEP_SECONDS=0.1)
    with production.session() as session:
        endpoint = next(n.endpoint for n in registry.list_nets(session) if n.fl_backend == FLBackend.NVFLARE)
    before = _backend_jobs(endpoint)
    fl_job_id = _enqueue(production, model_id)
    backend_job_id = wait_until(lambda: _job(production, fl_job_id).fl_backend_job_id, timeout=120, interval=0.5,
                                what="the training to be submitted")
    [run] = _runs(production, fl_job_id)
    pid = int(next(m.group(1) for m in map(WORKER_PID.search, _messages(production, run["runId"])) if m))
    tree, template = dagster.process_tree(), parent_pid(pid)
    assert template in dagster.launcher_processes() and template not in tree["daemon"], \
        f"run worker {pid} is not forked from the template the daemon's launcher started: {tree}"
    kill_tree(template)  # the template, the worker and its log-capturing `tail`
    killed = time.monotonic()
    poll_interval = dagster.instance["run_monitoring"]["poll_interval_seconds"]
    status = _run_end(production, run["runId"], timeout=poll_interval + 60)
    detected = time.monotonic() - killed
    assert status == DagsterRunStatus.FAILURE, status
    assert detected < poll_interval + 15, detected
    assert any(f"Detected run worker status FAILED: 'run worker pid {pid} is no longer running'" in m
               for m in _messages(production, run["runId"]))
    job = wait_until(lambda: _ended(production, fl_job_id), timeout=180, interval=1, what="the training to end")
    assert (job.status, job.fl_backend_job_id) == (JobStatus.COMPLETED, backend_job_id), job
    with production.session() as session:
        assert session.get(Model, model_id).status == ModelStatus.RESULTS_UPLOADED
    assert _backend_jobs(endpoint) - before == {backend_job_id}, "the FL server ran one job for the training"
    runs = _runs(production, fl_job_id)
    _run_end(production, runs[-1]["runId"])
    runs = _runs(production, fl_job_id)
    assert [(r["jobName"], r["status"], r["parentRunId"]) for r in runs] == \
        [("train_model", "FAILURE", None), ("resume_training", "SUCCESS", None)], "no Dagster retry competes"
    wait_until(lambda: _nets_free(production), timeout=30, what="the net to be free")
