"""The product as users run it: `flip-pipelines dev` (Dagster webserver + daemon + code server) on a real
PostgreSQL queue database (test_dev.py runs the same on the default SQLite), real S3 and real NVFlare and Flower
nets. `flip-pipelines enqueue` alone must lead to trained models.

The stack starts with the NVFlare net only; the tests that need two nets add the Flower net, so the one-net tests
come first in this module."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient
from sqlmodel import select

from flip_pipelines.db import queue
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.models import FLJob, FLLogs, FLScheduler, Model
from flip_pipelines.definitions import defs
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, JobStatus, ModelStatus, NetStatus
from flip_pipelines.fl_api.client import FLApiClient
from flip_pipelines.local.postgres import create_database
from flip_pipelines.local.processes import free_port, start_process, stop_pid, wait_until
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.bundles import list_keys
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines_tests.conftest import FL_API_TOKEN, RunningFLApi
from flip_pipelines_tests.fl_api.helpers import presigned_bundle, upload_request, wait_for_status, with_config

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).parent / "flip-pipelines")


@dataclass
class Stack:
    url: str
    port: int
    env: dict[str, str]
    buckets: dict[str, str]
    log: Path
    pid: int
    _engine: Any = None

    def session(self):  # type: ignore[no-untyped-def]
        if self._engine is None:  # one pool for the module: the tests poll the database often
            self._engine = make_engine(self.url)
        return new_session(self._engine)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = httpx.post(f"http://127.0.0.1:{self.port}/graphql", json={"query": query, "variables": variables},
                              timeout=30)
        return response.json()["data"]

    def dagster(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.port)

    def cli(self, *args: str) -> str:
        result = subprocess.run([EXE, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, s3_server: LocalS3, nvflare_fl_api: RunningFLApi,
          postgres_server_url: str, postgres_template: str) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("stack")
    url = create_database(postgres_server_url, f"daemon_{uuid.uuid4().hex[:8]}", template=postgres_template)
    client = s3_server.client()
    buckets = {k: f"{k}-{uuid.uuid4().hex[:8]}" for k in ("models", "bundles", "results")}
    for bucket in buckets.values():
        client.create_bucket(Bucket=bucket)
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME",)}
    env.update(
        FLIP_DATA_DIR=str(work / "data"), FLIP_DATABASE_URL=url, FLIP_FL_API_TOKEN=FL_API_TOKEN,
        FLIP_S3_ENDPOINT_URL=s3_server.endpoint_url, AWS_ACCESS_KEY_ID=s3_server.access_key,
        AWS_SECRET_ACCESS_KEY=s3_server.secret_key, FLIP_MODEL_BUCKET=buckets["models"],
        FLIP_BUNDLE_BUCKET=buckets["bundles"], FLIP_RESULTS_BUCKET=buckets["results"],
        FLIP_MONITOR_STALE_SECONDS="15", FLIP_RECONCILE_INTERVAL_SECONDS="10",
    )
    with new_session(engine := make_engine(url)) as session:
        queue.add_project(session, "proj", "SELECT * FROM cohort")
        queue.add_trust(session, "Trust_1", "site-1")
        queue.add_trust(session, "Trust_2", "site-2")
        queue.add_net(session, "net-nvflare", nvflare_fl_api.base_url, FLBackend.NVFLARE)
    engine.dispose()
    port = free_port()
    log = work / "dev.log"
    process = start_process([EXE, "dev", "--no-stack", "--port", str(port)], log_path=log, env=env, cwd=REPO)
    stack = Stack(url=url, port=port, env=env, buckets=buckets, log=log, pid=process.pid)

    def loaded() -> bool:
        data = stack.graphql("{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }")
        return data["workspaceOrError"]["locationEntries"][0]["loadStatus"] == "LOADED"

    try:
        wait_until(loaded, timeout=120, interval=1, what="the Dagster code location")
        yield stack
    finally:
        stop_pid(process.pid, first_signal=signal.SIGINT, timeout=30)
        if stack._engine is not None:
            stack._engine.dispose()


def _upload_model(stack: Stack, files: dict[str, bytes]) -> uuid.UUID:
    """A new model of project `proj` whose folder is uploaded with the real `models upload` command."""
    with stack.session() as session:
        model_id = queue.add_model(session, f"m-{uuid.uuid4().hex[:6]}", "proj").id
    folder = Path(stack.log.parent / f"model-{model_id}")
    for rel, body in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(body)
    stack.cli("models", "upload", str(model_id), str(folder))
    return model_id


def _model_for_any_net(stack: Stack, rounds: int = 2, **config: object) -> uuid.UUID:
    """A model whose files satisfy both backends (the queue has no net affinity, as FLIP's)."""
    files = {**demo_model_files("nvflare_logreg"), **demo_model_files("flower_logreg")}
    return _upload_model(stack, with_config(files, GLOBAL_ROUNDS=rounds, **config))


def _enqueue(stack: Stack, model_id: uuid.UUID) -> str:
    return stack.cli("enqueue", str(model_id), "--trust", "Trust_1", "--trust", "Trust_2")


def _runs(stack: Stack, fl_job_id: str) -> list[dict]:
    data = stack.graphql(
        "query($t: [ExecutionTag!]) { runsOrError(filter: {tags: $t}) { ... on Runs { results { runId status "
        "jobName startTime endTime tags { key value } } } } }", {"t": [{"key": "flip/fl_job_id", "value": fl_job_id}]})
    return data["runsOrError"]["results"]


def _wait_for_run(client: DagsterGraphQLClient, run_id: str, timeout: float = 300) -> DagsterRunStatus:
    """The run's terminal status (SUCCESS, FAILURE or CANCELED)."""
    ended = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
    return wait_until(lambda: (s := client.get_run_status(run_id)) in ended and s, timeout=timeout, interval=1,
                      what=f"run {run_id} to end")


def _finished(stack: Stack, model_id: uuid.UUID) -> FLJob | None:
    with stack.session() as session:
        job = session.exec(select(FLJob).where(FLJob.model_id == model_id)).first()
        return job if job is not None and job.status in (JobStatus.COMPLETED, JobStatus.DELETED) else None


def _one_net(stack: Stack) -> None:
    with stack.session() as session:
        assert [n.name for n in queue.list_nets(session)] == ["net-nvflare"], "runs before the two-net tests"


def _nvflare_endpoint(stack: Stack) -> str:
    with stack.session() as session:
        return queue.get_net_by_name(session, "net-nvflare").endpoint


def _backend_job_in(stack: Stack, fl_job_id: str, status: str) -> str | None:
    """The backend job id of ``fl_job_id`` once the FL server reports it in ``status``."""
    with stack.session() as session:
        backend_job_id = session.get(FLJob, uuid.UUID(fl_job_id)).fl_backend_job_id
    if backend_job_id is None:
        return None
    with FLApiClient(_nvflare_endpoint(stack), FL_API_TOKEN) as client:
        return backend_job_id if client.get_job(backend_job_id).status.value == status else None


def _wait_until_stopped(stack: Stack, backend_job_id: str) -> str:
    with FLApiClient(_nvflare_endpoint(stack), FL_API_TOKEN) as api:
        job = wait_for_status(api, backend_job_id, lambda s: s.value not in ("RUNNING", "PENDING"), timeout=60,
                              what="the FL job to stop")
    return job.status.value


def test_missing_required_file_fails_the_run_and_frees_the_net(stack: Stack) -> None:
    _one_net(stack)
    files = {k: v for k, v in demo_model_files("nvflare_logreg").items() if k != "validator.py"}
    model_id = _upload_model(stack, files)
    fl_job_id = _enqueue(stack, model_id)
    job = wait_until(lambda: _finished(stack, model_id), timeout=120, interval=1, what="the failure path")
    assert job.status == JobStatus.DELETED
    with stack.session() as session:
        assert session.get(Model, model_id).status == ModelStatus.ERROR
        assert {s.status for s in session.exec(select(FLScheduler))} == {NetStatus.AVAILABLE}
        reasons = [r.log for r in session.exec(select(FLLogs).where(FLLogs.model_id == model_id,
                                                                    FLLogs.success.is_(False)))]
    assert any("bundle failed" in r and "validator.py" in r for r in reasons), reasons
    assert [r["status"] for r in _runs(stack, fl_job_id)] == ["FAILURE"]


def test_three_queued_jobs_on_one_net_run_one_after_another(stack: Stack) -> None:
    _one_net(stack)
    models = [_model_for_any_net(stack, rounds=1) for _ in range(3)]
    fl_jobs = [_enqueue(stack, m) for m in models]
    for model_id in models:
        job = wait_until(lambda m=model_id: _finished(stack, m), timeout=300, interval=2, what="the queue to drain")
        assert job.status == JobStatus.COMPLETED
    runs = [_runs(stack, fl_job_id) for fl_job_id in fl_jobs]
    assert all(len(r) == 1 and r[0]["status"] == "SUCCESS" for r in runs), runs
    windows = [(r[0]["startTime"], r[0]["endTime"]) for r in runs]
    assert windows == sorted(windows), "first queued, first trained"
    for (_, previous_end), (next_start, _) in zip(windows, windows[1:], strict=False):
        assert next_start >= previous_end, f"runs on one net overlapped: {windows}"
    with stack.session() as session:
        assert {session.get(Model, m).status for m in models} == {ModelStatus.RESULTS_UPLOADED}


def test_abort_training_launched_like_the_launchpad_stops_a_running_job(stack: Stack) -> None:
    _one_net(stack)
    model_id = _model_for_any_net(stack, rounds=50, STEP_SLEEP_SECONDS=0.2)
    first = _enqueue(stack, model_id)
    second = _enqueue(stack, model_id)  # waits behind the first: the abort dequeues it
    backend_job_id = wait_until(lambda: _backend_job_in(stack, first, "RUNNING"), timeout=180, interval=1,
                                what="the FL job to run")
    client = stack.dagster()
    run_id = client.submit_job_execution(
        "abort_training", run_config={"ops": {"abort_model": {"config": {"model_id": str(model_id)}}}})
    assert _wait_for_run(client, run_id) == DagsterRunStatus.SUCCESS, stack.log.read_text()[-3000:]
    assert _wait_until_stopped(stack, backend_job_id) == "STOPPED"
    _wait_for_run(client, _runs(stack, first)[0]["runId"], timeout=60)
    with stack.session() as session:
        assert session.get(Model, model_id).status == ModelStatus.STOPPED
        assert {session.get(FLJob, uuid.UUID(j)).status for j in (first, second)} == {JobStatus.DELETED}
        assert {s.status for s in session.exec(select(FLScheduler))} == {NetStatus.AVAILABLE}
    assert _runs(stack, second) == [], "the dequeued job never started a run"


def test_abort_command_stops_a_job_still_pending_on_the_fl_server(stack: Stack, s3_server: LocalS3) -> None:
    """The FL server runs two jobs at a time (the session's deployment) and both slots are taken by jobs another
    client submitted directly, so ours waits SUBMITTED (PENDING) on it."""
    _one_net(stack)
    files = with_config(demo_model_files("nvflare_logreg"), GLOBAL_ROUNDS=50, STEP_SLEEP_SECONDS=0.2)
    blockers = []
    with FLApiClient(_nvflare_endpoint(stack), FL_API_TOKEN) as api:
        try:
            for _ in range(2):
                other, urls = presigned_bundle(s3_server, FLBackend.NVFLARE, files)
                api.upload_app(other, upload_request(urls, ["site-1", "site-2"]))
                blockers.append(api.submit_job(other))
            for job in blockers:
                wait_for_status(api, job, lambda s: s.value == "RUNNING", timeout=90, what="the other jobs")
            model_id = _model_for_any_net(stack, rounds=1)
            fl_job_id = _enqueue(stack, model_id)
            backend_job_id = wait_until(lambda: _backend_job_in(stack, fl_job_id, "PENDING"), timeout=120,
                                        interval=0.5, what="our FL job to be pending")
            assert "STOPPED" in stack.cli("abort", str(model_id))
            assert _wait_until_stopped(stack, backend_job_id) == "STOPPED"
        finally:
            for job in blockers:
                api.abort_job(job)
        assert [_wait_until_stopped(stack, job) for job in blockers] == ["STOPPED", "STOPPED"]
    client = stack.dagster()
    _wait_for_run(client, _runs(stack, fl_job_id)[0]["runId"], timeout=60)
    with stack.session() as session:
        assert session.get(Model, model_id).status == ModelStatus.STOPPED
        assert session.get(FLJob, uuid.UUID(fl_job_id)).status == JobStatus.DELETED
        assert {s.status for s in session.exec(select(FLScheduler))} == {NetStatus.AVAILABLE}


def test_enqueue_alone_trains_on_both_nets_at_once(stack: Stack, s3_server: LocalS3,
                                                   flower_fl_api: RunningFLApi) -> None:
    with stack.session() as session:
        queue.upsert_net(session, "net-flower", flower_fl_api.base_url, FLBackend.FLOWER)
    models = [_model_for_any_net(stack), _model_for_any_net(stack)]
    for model_id in models:
        _enqueue(stack, model_id)
    jobs = [wait_until(lambda m=m: _finished(stack, m), timeout=300, interval=2, what=f"model {m} to finish")
            for m in models]
    with stack.session() as session:
        for model_id, job in zip(models, jobs, strict=True):
            assert job.status == JobStatus.COMPLETED, job
            assert session.get(Model, model_id).status == ModelStatus.RESULTS_UPLOADED
        assert {s.status for s in session.exec(select(FLScheduler))} == {NetStatus.AVAILABLE}
    for model_id, job in zip(models, jobs, strict=True):
        assert f"{model_id}/{job.id}.zip" in list_keys(s3_server.client(), stack.buckets["results"], f"{model_id}/")
    runs = stack.graphql('{ runsOrError { ... on Runs { results { status tags { key value } } } } }')
    nets = {t["value"] for r in runs["runsOrError"]["results"] for t in r["tags"] if t["key"] == "flip/net"}
    assert nets == {"net-flower", "net-nvflare"}, "two queued jobs on two free nets ran side by side"
    assets = stack.graphql('{ assetsOrError { ... on AssetConnection { nodes { key { path } } } } }')
    paths = {tuple(n["key"]["path"]) for n in assets["assetsOrError"]["nodes"]}
    for model_id in models:
        for kind in ("bundle", "fl_job", "global_model"):
            assert ("flip", "model", str(model_id), kind) in paths


def _sensor_selector(sensor: str) -> dict[str, str]:
    return {"repositoryLocationName": "flip_pipelines", "repositoryName": "__repository__", "sensorName": sensor}


def _sensor_ticks(stack: Stack, sensor: str, since: float, statuses: list[str]) -> list[dict]:
    found = stack.graphql(
        "query($s: SensorSelector!, $after: Float, $statuses: [InstigationTickStatus!]) { sensorOrError("
        "sensorSelector: $s) { ... on Sensor { sensorState { ticks(afterTimestamp: $after, statuses: $statuses) "
        "{ timestamp status } } } } }", {"s": _sensor_selector(sensor), "after": since, "statuses": statuses})
    return found["sensorOrError"]["sensorState"]["ticks"]


def _wait_for_sensor_iteration_after(stack: Stack, since: float) -> None:
    """Wait until a sensor stopped before ``since`` can no longer tick. The daemon reads which sensors run once
    per iteration, so an iteration that read them just before the stop may still evaluate the stopped sensor (seen
    once: it claimed the job this test enqueued). Two finished ticks of the 5 s failure sensor after ``since``
    mean a whole iteration has begun since; and no queue sensor tick may still be in flight."""

    def settled() -> bool:
        done = _sensor_ticks(stack, "training_failure_sensor", since, ["SKIPPED", "SUCCESS", "FAILURE"])
        return len(done) >= 2 and not _sensor_ticks(stack, "training_queue_sensor", since - 60, ["STARTED"])

    wait_until(settled, timeout=60, interval=1, what="a sensor daemon iteration after the stop")


def test_graphql_launch_with_only_a_model_id(stack: Stack) -> None:
    selector = _sensor_selector("training_queue_sensor")
    sensor = stack.graphql("query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor { id } } }",
                           {"s": selector})["sensorOrError"]
    stop = stack.graphql("mutation($id: String!) { stopSensor(id: $id) { __typename ... on StopSensorMutationResult "
                         "{ instigationState { status } } } }", {"id": sensor["id"]})["stopSensor"]
    assert stop["instigationState"]["status"] == "STOPPED", stop
    try:
        _wait_for_sensor_iteration_after(stack, time.time())
        model_id = _model_for_any_net(stack)
        _enqueue(stack, model_id)
        client = stack.dagster()
        run_id = client.submit_job_execution(
            "train_model", run_config={"ops": {"resolve_backend": {"config": {"model_id": str(model_id)}}}})
        assert _wait_for_run(client, run_id) == DagsterRunStatus.SUCCESS, stack.log.read_text()[-3000:]
        assert _finished(stack, model_id).status == JobStatus.COMPLETED
    finally:
        started = stack.graphql(
            "mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename } }", {"s": selector})
        assert started["startSensor"]["__typename"] == "Sensor"




def _run_worker_pid(stack: Stack) -> int | None:
    """The run worker: the code server starts it with multiprocessing, so it is the one `spawn_main` descendant
    of `flip-pipelines dev` that is not the resource tracker (the test has a single run in flight)."""
    from flip_pipelines.local.processes import descendants

    workers = []
    for pid in descendants(stack.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "spawn_main" in command and "resource_tracker" not in command:
            workers.append(pid)
    return workers[0] if len(workers) == 1 else None


def test_killed_run_worker_resumes_monitoring_and_completes(stack: Stack) -> None:
    from flip_pipelines.local.processes import kill_tree

    model_id = _model_for_any_net(stack, rounds=8, STEP_SLEEP_SECONDS=0.3)
    _enqueue(stack, model_id)

    def monitoring() -> tuple[FLJob, dict] | None:
        with stack.session() as session:
            job = session.exec(select(FLJob).where(FLJob.model_id == model_id)).first()
        if job is None or not job.fl_backend_job_id:
            return None
        runs = [r for r in _runs(stack, str(job.id)) if any(t["key"] == "flip/heartbeat" for t in r["tags"])]
        return (job, runs[0]) if runs else None

    job, run = wait_until(monitoring, timeout=180, interval=1, what="the run to be monitoring")
    pid = wait_until(lambda: _run_worker_pid(stack), timeout=30, what="the run worker process")
    kill_tree(pid)
    with stack.session() as session:
        net = next(n for n in queue.list_nets(session) if n.fl_job_id == job.id)
    with FLApiClient(net.endpoint, FL_API_TOKEN) as client:
        backend = client.get_job(job.fl_backend_job_id)
        assert backend is not None and backend.status.value in ("PENDING", "RUNNING"), "training goes on"
        jobs_before = len(client.list_jobs())
    done = wait_until(lambda: _finished(stack, model_id), timeout=300, interval=2, what="the resumed training")
    assert done.status == JobStatus.COMPLETED and done.fl_backend_job_id == job.fl_backend_job_id
    runs = {r["runId"]: r for r in _runs(stack, str(job.id))}
    assert runs[run["runId"]]["status"] == "FAILURE"
    resumed = [r for r in runs.values() if r["jobName"] == "resume_training"]
    assert len(resumed) == 1, runs
    # the job is recorded COMPLETED a moment before the run itself ends
    client = stack.dagster()
    assert _wait_for_run(client, resumed[0]["runId"], timeout=60) == DagsterRunStatus.SUCCESS
    with stack.session() as session:
        assert session.get(Model, model_id).status == ModelStatus.RESULTS_UPLOADED
        assert {s.status for s in session.exec(select(FLScheduler))} == {NetStatus.AVAILABLE}
    # re-executing the killed run's config finds the job done and submits nothing
    with dg.instance_for_test() as instance:
        again = defs.resolve_job_def("train_model").execute_in_process(
            run_config={"ops": {"resolve_backend": {"config": {"model_id": str(model_id), "fl_job_id": str(job.id)}}}},
            resources={"queue_db": QueueDatabase(url=stack.url), "fl_api": FLApiResource(token=FL_API_TOKEN)},
            instance=instance, raise_on_error=False)
    assert not again.success
    with FLApiClient(net.endpoint, FL_API_TOKEN) as client:
        assert len(client.list_jobs()) == jobs_before, "no second FL job"
