"""The product as production runs it: a gRPC code server, the Dagster daemon and the webserver as separate
processes (``local.dagster.LocalDagster``) on a PostgreSQL queue database (test_dev.py runs ``flip-pipelines dev``
on the default SQLite), real S3 and real NVFlare and Flower nets. ``enqueue`` alone must lead to trained models,
every failure path must free the net, and every crash drill must recover on its own.

Each test is independent of the others: models are claimed only onto nets their files suit, so a test pins its
trainings to a net by the files it uploads."""

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient
from sqlmodel import select

from flip_pipelines.db import registry
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.models import FLJob, FLLogs, FLNets, FLScheduler, Model
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, JobStatus, ModelStatus, NetStatus
from flip_pipelines.faults import CRASH_POINTS_ENV
from flip_pipelines.fl_api.client import FLApiClient
from flip_pipelines.local.dagster import LocalDagster
from flip_pipelines.local.drills import DAEMON, DRILLS, FLIP_FL_API_DRILL, DrillHub, format_results, run_drills
from flip_pipelines.local.nvflare import LocalNVFlare
from flip_pipelines.local.postgres import create_database
from flip_pipelines.local.processes import wait_until
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.bundles import list_keys
from flip_pipelines_tests.conftest import FL_API_TOKEN, RunningFLApi, hub_environment
from flip_pipelines_tests.fl_api.helpers import presigned_bundle, upload_request, wait_for_status, with_config
from flip_pipelines_tests.flip_hub.flip_fl_api import FlipFLApi
from flip_pipelines_tests.flip_hub.training import flip_net_options
from flip_pipelines_tests.webhook_receiver import Receiver

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).parent / "flip-pipelines")
FILES = {FLBackend.NVFLARE: demo_model_files("nvflare_logreg"), FLBackend.FLOWER: demo_model_files("flower_logreg")}
FLIP_NET = "net-flip"


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    buckets: dict[str, str]
    work: Path
    dagster: LocalDagster
    webhook: Receiver
    _engine: Any = None

    def session(self):  # type: ignore[no-untyped-def]
        if self._engine is None:  # one pool for the module: the tests poll the database often
            self._engine = make_engine(self.url)
        return new_session(self._engine)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return self.dagster.graphql(query, variables)

    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient(self.dagster.host, port_number=self.dagster.web_port)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([EXE, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert not check or result.returncode == 0, result.stderr
        return result

    def endpoint(self, backend: FLBackend) -> str:
        with self.session() as session:
            return next(n.endpoint for n in registry.list_nets(session) if n.fl_backend == backend)


@pytest.fixture(scope="module")
def webhook() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.open()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, s3_server: LocalS3, nvflare_fl_api: RunningFLApi,
          flower_fl_api: RunningFLApi, postgres_server_url: str, postgres_template: str,
          webhook: Receiver, flip_job_templates: str) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("daemon")
    url = create_database(postgres_server_url, f"daemon_{uuid.uuid4().hex[:8]}", template=postgres_template)
    env, buckets = hub_environment(work, url, s3_server, "daemon")
    env.update(
        # recovery within seconds: a silent run is lost after 10 s, reconciliation looks every 5 s
        FLIP_MONITOR_STALE_SECONDS="10", FLIP_RECONCILE_INTERVAL_SECONDS="5", FLIP_MONITOR_POLL_SECONDS="1",
        FLIP_CLAIM_GRACE_SECONDS="20", **{CRASH_POINTS_ENV: str(work / "crash_points")},
        FLIP_ALERT_WEBHOOK_URL=webhook.url,
        # the NVFlare net goes behind FLIP's FL API as "net-flip" for one drill, its jobs bundled with FLIP's job
        # templates; that FL server uploads its result but pushes nothing (no hub API here), so the results bucket
        # decides after the grace
        FLIP_NET_OPTIONS=flip_net_options(flip_job_templates, FLIP_NET), FLIP_PUSHED_STATUS_GRACE_SECONDS="1",
    )
    (work / "crash_points").touch()
    with new_session(engine := make_engine(url)) as session:
        registry.add_project(session, "proj", "SELECT * FROM cohort")
        for trust, slot in (("Trust_1", "site-1"), ("Trust_2", "site-2"), ("Trust_3", "site-3")):
            registry.add_trust(session, trust, slot)  # site-3 is provisioned on NVFlare but never connects
        registry.add_net(session, "net-nvflare", nvflare_fl_api.base_url, FLBackend.NVFLARE)
        registry.add_net(session, "net-flower", flower_fl_api.base_url, FLBackend.FLOWER)
    engine.dispose()
    dagster = LocalDagster(workdir=work, env=env, instance_config=REPO / "dagster.yaml")
    stack = Stack(url=url, env=env, buckets=buckets, work=work, dagster=dagster, webhook=webhook)
    try:
        dagster.start()
        yield stack
    finally:
        left = dagster.stop()
        if stack._engine is not None:
            stack._engine.dispose()
    assert not left, f"run launcher processes {left} outlived the daemon's shutdown"


def _upload_model(stack: Stack, files: dict[str, bytes]) -> uuid.UUID:
    """A new model of project `proj` whose folder is uploaded with the real `models upload` command."""
    with stack.session() as session:
        model_id = registry.add_model(session, f"m-{uuid.uuid4().hex[:6]}", "proj").id
    folder = stack.work / f"model-{model_id}"
    for rel, body in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(body)
    stack.cli("models", "upload", str(model_id), str(folder))
    return model_id


def _model(stack: Stack, *backends: FLBackend, rounds: int = 1, **config: object) -> uuid.UUID:
    """A model whose files suit ``backends`` (both when none are given)."""
    files = {k: v for b in (backends or tuple(FLBackend)) for k, v in FILES[b].items()}
    return _upload_model(stack, with_config(files, GLOBAL_ROUNDS=rounds, **config))


def _enqueue(stack: Stack, model_id: uuid.UUID, *trusts: str) -> str:
    args = [a for t in (trusts or ("Trust_1", "Trust_2")) for a in ("--trust", t)]
    return stack.cli("enqueue", str(model_id), *args).stdout.strip()


def _runs(stack: Stack, fl_job_id: str) -> list[dict]:
    data = stack.graphql(
        "query($t: [ExecutionTag!]) { runsOrError(filter: {tags: $t}) { ... on Runs { results { runId status "
        "jobName startTime endTime tags { key value } } } } }", {"t": [{"key": "flip/fl_job_id", "value": fl_job_id}]})
    return data["runsOrError"]["results"]


def _wait_for_run(stack: Stack, run_id: str, timeout: float = 300) -> DagsterRunStatus:
    """The run's terminal status (SUCCESS, FAILURE or CANCELED)."""
    ended = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
    client = stack.client()
    return wait_until(lambda: (s := client.get_run_status(run_id)) in ended and s, timeout=timeout, interval=1,
                      what=f"run {run_id} to end")


def _finished(stack: Stack, fl_job_id: str) -> FLJob | None:
    with stack.session() as session:
        job = session.get(FLJob, uuid.UUID(fl_job_id))
        return job if job is not None and job.status in (JobStatus.COMPLETED, JobStatus.DELETED) else None


def _wait_finished(stack: Stack, fl_job_id: str, timeout: float = 300) -> FLJob:
    return wait_until(lambda: _finished(stack, fl_job_id), timeout=timeout, interval=1, what=f"fl_job {fl_job_id}")


def _nets_free(stack: Stack) -> bool:
    with stack.session() as session:
        return {s.status for s in session.exec(select(FLScheduler))} == {NetStatus.AVAILABLE}


def _backend_job_in(stack: Stack, fl_job_id: str, status: str) -> str | None:
    """The backend job id of ``fl_job_id`` once the NVFlare server reports it in ``status``."""
    with stack.session() as session:
        backend_job_id = session.get(FLJob, uuid.UUID(fl_job_id)).fl_backend_job_id
    if backend_job_id is None:
        return None
    with FLApiClient(stack.endpoint(FLBackend.NVFLARE), FL_API_TOKEN) as client:
        return backend_job_id if client.get_job(backend_job_id).status.value == status else None


def _wait_until_stopped(stack: Stack, backend_job_id: str) -> str:
    with FLApiClient(stack.endpoint(FLBackend.NVFLARE), FL_API_TOKEN) as api:
        job = wait_for_status(api, backend_job_id, lambda s: s.value not in ("RUNNING", "PENDING"), timeout=60,
                              what="the FL job to stop")
    return job.status.value


def test_a_busy_hub_trains_in_fifo_order_per_net_and_both_nets_at_once(stack: Stack, s3_server: LocalS3) -> None:
    """Three NVFlare-only models and a Flower-only one, enqueued together: the NVFlare three train one after
    another on net-nvflare (run windows in FIFO order, never overlapping) while the Flower one trains beside them
    on net-flower. `enqueue` alone does it all."""
    nvflare = [_model(stack, FLBackend.NVFLARE) for _ in range(3)]
    flower = _model(stack, FLBackend.FLOWER)
    flower_job = _enqueue(stack, flower)
    fl_jobs = [*[_enqueue(stack, m) for m in nvflare], flower_job]
    jobs = [_wait_finished(stack, j) for j in fl_jobs]
    runs = [_runs(stack, j) for j in fl_jobs]
    assert all(len(r) == 1 and r[0]["status"] == "SUCCESS" for r in runs), runs
    nets = [next(t["value"] for t in r[0]["tags"] if t["key"] == "flip/net") for r in runs]
    assert nets == ["net-nvflare"] * 3 + ["net-flower"]
    windows = [(r[0]["startTime"], r[0]["endTime"]) for r in runs]
    assert windows[:3] == sorted(windows[:3]), "first queued, first trained"
    for (_, previous_end), (next_start, _) in zip(windows[:3], windows[1:3], strict=False):
        assert next_start >= previous_end, f"runs on one net overlapped: {windows}"
    flower_start, flower_end = windows[3]
    assert any(start < flower_end and flower_start < end for start, end in windows[:3]), \
        f"the Flower training ran beside an NVFlare one: {windows}"
    with stack.session() as session:
        for model_id, job in zip([*nvflare, flower], jobs, strict=True):
            assert job.status == JobStatus.COMPLETED, job
            assert session.get(Model, model_id).status == ModelStatus.RESULTS_UPLOADED
            assert f"{model_id}/{job.id}.zip" in list_keys(s3_server.client(), stack.buckets["results"],
                                                           f"{model_id}/")
        names = {session.get(Model, model_id).name for model_id in [*nvflare, flower]}
    lineage = stack.graphql('{ assetNodes { assetKey { path } dependencyKeys { path } } }')["assetNodes"]
    edges = {"/".join(n["assetKey"]["path"]): ["/".join(d["path"]) for d in n["dependencyKeys"]] for n in lineage}
    assert edges["flip/global_model"] == ["flip/fl_job"] and edges["flip/fl_job"] == ["flip/training_bundle"]
    assert edges["flip/training_bundle"] == ["flip/model_files"]
    for kind in ("training_bundle", "fl_job", "global_model"):
        events = stack.graphql('query($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset '
                               '{ assetMaterializations(limit: 20) { partition } } } }', {"path": ["flip", kind]})
        partitions = {m["partition"] for m in events["assetOrError"]["assetMaterializations"]}
        assert partitions == names, (kind, partitions)
    wait_until(lambda: _nets_free(stack), timeout=30, what="both nets to be free")


def test_a_model_missing_a_required_file_is_refused_at_enqueue(stack: Stack) -> None:
    model_id = _upload_model(stack, {k: v for k, v in FILES[FLBackend.NVFLARE].items() if k != "validator.py"})
    result = stack.cli("enqueue", str(model_id), "--trust", "Trust_1", check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "nvflare: Missing required files for job type standard on nvflare: validator.py" in result.stderr
    assert "flower: Missing required files for job type standard on flower: client_app.py" in result.stderr
    with stack.session() as session:
        assert session.exec(select(FLJob).where(FLJob.model_id == model_id)).all() == []


def test_a_run_failing_before_submission_frees_the_net(stack: Stack) -> None:
    model_id = _model(stack, FLBackend.NVFLARE)
    fl_job_id = _enqueue(stack, model_id, "Trust_1", "Trust_3")  # site-3 never connects: NVFlare is strict
    job = _wait_finished(stack, fl_job_id, timeout=120)
    assert job.status == JobStatus.DELETED
    with stack.session() as session:
        assert session.get(Model, model_id).status == ModelStatus.ERROR
        reasons = [r.log for r in session.exec(select(FLLogs).where(FLLogs.model_id == model_id,
                                                                    FLLogs.success.is_(False)))]
    assert reasons == ["Training failed before submission: validate_clients failed: Clients unavailable: site-3"]
    [run] = _runs(stack, fl_job_id)
    assert run["status"] == "FAILURE"
    wait_until(lambda: _nets_free(stack), timeout=30, what="the net to be free")
    wait_until(lambda: stack.webhook.answered(200)[run["runId"]], timeout=30, interval=0.5,
               what="the failure alert, posted by the daemon's alert sensor")
    [alert] = [p for p in stack.webhook.posts if p["run_id"] == run["runId"]]
    assert "validate_clients failed: Clients unavailable: site-3" in alert["json"]["text"]


def test_abort_training_launched_like_the_launchpad_stops_a_running_job(stack: Stack) -> None:
    model_id = _model(stack, FLBackend.NVFLARE, rounds=50, STEP_SLEEP_SECONDS=0.2)
    first = _enqueue(stack, model_id)
    second = _enqueue(stack, model_id)  # waits behind the first: the abort dequeues it
    backend_job_id = wait_until(lambda: _backend_job_in(stack, first, "RUNNING"), timeout=180, interval=1,
                                what="the FL job to run")
    run_id = stack.client().submit_job_execution(
        "abort_training", run_config={"ops": {"abort_model": {"config": {"model_id": str(model_id)}}}})
    assert _wait_for_run(stack, run_id) == DagsterRunStatus.SUCCESS
    assert _wait_until_stopped(stack, backend_job_id) == "STOPPED"
    _wait_for_run(stack, _runs(stack, first)[0]["runId"], timeout=60)
    with stack.session() as session:
        assert session.get(Model, model_id).status == ModelStatus.STOPPED
        assert {session.get(FLJob, uuid.UUID(j)).status for j in (first, second)} == {JobStatus.DELETED}
    assert _runs(stack, second) == [], "the dequeued job never started a run"
    wait_until(lambda: _nets_free(stack), timeout=30, what="the net to be free")


def test_abort_command_stops_a_job_still_pending_on_the_fl_server(stack: Stack, s3_server: LocalS3) -> None:
    """The FL server runs two jobs at a time (the session's deployment) and both slots are taken by jobs another
    client submitted directly, so ours waits SUBMITTED (PENDING) on it."""
    files = with_config(FILES[FLBackend.NVFLARE], GLOBAL_ROUNDS=50, STEP_SLEEP_SECONDS=0.2)
    blockers = []
    with FLApiClient(stack.endpoint(FLBackend.NVFLARE), FL_API_TOKEN) as api:
        try:
            for _ in range(2):
                other, urls = presigned_bundle(s3_server, FLBackend.NVFLARE, files)
                api.upload_app(other, upload_request(urls, ["site-1", "site-2"]))
                blockers.append(api.submit_job(other))
            for job in blockers:
                wait_for_status(api, job, lambda s: s.value == "RUNNING", timeout=90, what="the other jobs")
            model_id = _model(stack, FLBackend.NVFLARE)
            fl_job_id = _enqueue(stack, model_id)
            backend_job_id = wait_until(lambda: _backend_job_in(stack, fl_job_id, "PENDING"), timeout=120,
                                        interval=0.5, what="our FL job to be pending")
            assert "STOPPED" in stack.cli("abort", str(model_id)).stdout
            assert _wait_until_stopped(stack, backend_job_id) == "STOPPED"
        finally:
            for job in blockers:
                api.abort_job(job)
        assert [_wait_until_stopped(stack, job) for job in blockers] == ["STOPPED", "STOPPED"]
    _wait_for_run(stack, _runs(stack, fl_job_id)[0]["runId"], timeout=60)
    with stack.session() as session:
        assert session.get(Model, model_id).status == ModelStatus.STOPPED
        assert session.get(FLJob, uuid.UUID(fl_job_id)).status == JobStatus.DELETED
    wait_until(lambda: _nets_free(stack), timeout=30, what="the net to be free")


def test_graphql_launch_like_the_launchpad(stack: Stack) -> None:
    """A run launched through the webserver with a model id and trusts queues and claims in one step (a model id
    alone claims the model's queued job: test_train_model.py, in-process, where no sensor competes)."""
    model_id = _model(stack, FLBackend.NVFLARE)
    run_id = stack.client().submit_job_execution("train_model", run_config={"ops": {"resolve_backend": {"config": {
        "model_id": str(model_id), "trusts": ["Trust_1", "Trust_2"]}}}})
    assert _wait_for_run(stack, run_id) == DagsterRunStatus.SUCCESS
    with stack.session() as session:
        job = session.exec(select(FLJob).where(FLJob.model_id == model_id)).one()
        assert job.status == JobStatus.COMPLETED and session.get(Model, model_id).status == ModelStatus.RESULTS_UPLOADED


def test_enqueue_starts_the_run_itself_through_dagster(stack: Stack) -> None:
    """With the Dagster UI given and a net free, `enqueue` claims the net and launches the run: it exists when the
    command returns, looks like the sensor's (tags, partition), trains to the end, and no second run follows."""
    model_id = _model(stack, FLBackend.FLOWER)
    with stack.session() as session:
        name = session.get(Model, model_id).name
    wait_until(lambda: _nets_free(stack) and _no_queued_job(stack), timeout=300, what="an idle queue")
    out = json.loads(stack.cli("enqueue", str(model_id), "--trust", "Trust_1", "--trust", "Trust_2", "--json",
                               "--dagster-url", stack.dagster.url).stdout)
    assert (out["dispatch"], out["net"]) == ("launched", "net-flower"), out
    runs = _runs(stack, out["fl_job_id"])
    assert [r["runId"] for r in runs] == [out["run_id"]]
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert {k: tags[k] for k in ("flip/net", "flip/model", "flip/launched_by", "dagster/partition")} == {
        "flip/net": "net-flower", "flip/model": name, "flip/launched_by": "enqueue", "dagster/partition": name}
    assert "dagster/sensor_name" not in tags
    assert _wait_for_run(stack, out["run_id"]) == DagsterRunStatus.SUCCESS
    assert _wait_finished(stack, out["fl_job_id"]).status == JobStatus.COMPLETED
    assert [r["runId"] for r in _runs(stack, out["fl_job_id"])] == [out["run_id"]], "the sensor started none"


def _no_queued_job(stack: Stack) -> bool:
    with stack.session() as session:
        return session.exec(select(FLJob).where(FLJob.status == JobStatus.QUEUED)).first() is None


@contextmanager
def _nvflare_net_behind_flips_fl_api(stack: Stack, deployment: LocalNVFlare, s3: LocalS3) -> Iterator[None]:
    """The NVFlare net, free, re-registered as ``net-flip`` behind a real server answering as FLIP's NVFlare FL API
    does in front of the same NVFlare server (its only NVFlare net meanwhile, so the queue claims it); then back."""
    flip = FlipFLApi(nvflare=deployment, upload_dir=stack.work / "flip-fl-api" / "uploads",
                     results=(s3.client(), stack.buckets["results"])).start()

    def point_net(name: str, endpoint: str) -> None:
        with stack.session() as session:
            net = session.exec(select(FLNets).where(FLNets.fl_backend == FLBackend.NVFLARE)).one()
            net.name, net.endpoint = name, endpoint
            session.add(net)
            session.commit()

    original = stack.endpoint(FLBackend.NVFLARE)
    try:
        wait_until(lambda: _nets_free(stack), timeout=60, what="every net to be free")
        point_net(FLIP_NET, flip.base_url)
        yield
    finally:
        point_net("net-nvflare", original)
        flip.stop()


def _drill_hub(stack: Stack, s3_server: LocalS3) -> DrillHub:
    return DrillHub(url=stack.url, dagster=stack.dagster, s3=s3_server.client(),
                    model_bucket=stack.buckets["models"], results_bucket=stack.buckets["results"],
                    token=FL_API_TOKEN, crash_file=stack.work / "crash_points")


def test_crash_drills_recover_without_a_manual_step(stack: Stack, s3_server: LocalS3,
                                                    nvflare_deployment: LocalNVFlare) -> None:
    """SIGKILL the run worker at every boundary of a training: each training still ends exactly once, trained by
    exactly one FL job, with its net free and its audit trail agreeing — drill d also on a net whose FL API is
    FLIP's, which ignores the submit token."""
    hub = _drill_hub(stack, s3_server)
    results = run_drills(hub, [d for d in DRILLS if d.crash_point != DAEMON])
    with _nvflare_net_behind_flips_fl_api(stack, nvflare_deployment, s3_server):
        results += run_drills(hub, [FLIP_FL_API_DRILL])
    table = format_results(results)
    (stack.work / "drills.txt").write_text(table + "\n")
    assert all(r.recovered for r in results), table
    wait_until(lambda: _nets_free(stack), timeout=30, what="every net to be free")


def test_a_daemon_crash_leaves_the_training_running(stack: Stack, s3_server: LocalS3) -> None:
    """SIGKILL the daemon and every process of its tree mid-training, start it again 5 s later: the run worker
    lives on (it is forked from a template outside the daemon's tree), and that same run finishes the training
    with its one FL job — no restart, no resume — as the other drills' checks say."""
    [result] = run_drills(_drill_hub(stack, s3_server), [d for d in DRILLS if d.crash_point == DAEMON])
    assert result.recovered, format_results([result])
    wait_until(lambda: _nets_free(stack), timeout=30, what="every net to be free")
