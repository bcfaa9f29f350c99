"""`flip-pipelines enqueue` starting the run itself: the installed command against a real queue database and S3,
and a stand-in for Dagster's GraphQL endpoint that records what it is sent and answers as told (a real Dagster
starts such a run in jobs/test_daemon.py). Whatever Dagster does, no job is lost or left holding a net for a run
that was never created, and none is claimed twice."""

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from flip_pipelines.db import claims, lifecycle, registry
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.migrate import upgrade_database
from flip_pipelines.db.models import FLJob, FLLogs
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, JobStatus
from flip_pipelines.local.processes import free_port
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines_tests.factories import fits

EXE = str(Path(sys.executable).parent / "flip-pipelines")


class FakeDagster(ThreadingHTTPServer):
    """POST /graphql: the workspace lists `train_model` in location `flip_pipelines`; ``launch`` decides how the
    launch is answered: "ok", "refuse" (a PythonError, as Dagster reports a failed launch) or "drop" (the request
    arrives and the connection closes without an answer)."""

    def __init__(self, launch: str) -> None:
        self.launch, self.requests = launch, []  # type: ignore[var-annotated]
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeDagster

    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802  (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        if "repositoriesOrError" in body["query"]:
            data: dict[str, Any] = {"repositoriesOrError": {"__typename": "RepositoryConnection", "nodes": [
                {"name": "__repository__", "location": {"name": "flip_pipelines"}, "jobs": [{"name": "train_model"}]}]}}
        elif self.server.launch == "drop":
            self.close_connection = True
            return
        elif self.server.launch == "refuse":
            data = {"addDynamicPartition": {"__typename": "AddDynamicPartitionSuccess"},
                    "launchRun": {"__typename": "PythonError", "message": "the code server is gone"}}
        else:
            data = {"addDynamicPartition": {"__typename": "AddDynamicPartitionSuccess"},
                    "launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": "run-1"}}}
        answer = json.dumps({"data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def dagster(request: pytest.FixtureRequest) -> Iterator[FakeDagster]:
    server = FakeDagster(getattr(request, "param", "ok"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hub(tmp_path: Path, s3_server: LocalS3) -> Iterator[tuple[dict[str, str], Any, uuid.UUID]]:
    """(environment of the command, a session factory, an NVFlare-only model with its files on S3) on a hub with
    net-nvflare and net-flower free."""
    url = f"sqlite:///{tmp_path / 'flip.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    with new_session(engine) as session:
        registry.add_project(session, "proj", "SELECT 1")
        for i in (1, 2):
            registry.add_trust(session, f"Trust_{i}", f"site-{i}")
        registry.add_net(session, "net-flower", "http://127.0.0.1:18101", FLBackend.FLOWER)
        registry.add_net(session, "net-nvflare", "http://127.0.0.1:18102", FLBackend.NVFLARE)
        model = registry.add_model(session, "demo", "proj")
    for rel, body in demo_model_files("nvflare_logreg").items():
        s3_server.client().put_object(Bucket=bucket, Key=f"{model.id}/{rel}", Body=body)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLIP_", "DAGSTER_"))}
    env.update(FLIP_DATA_DIR=str(tmp_path / "data"), FLIP_DATABASE_URL=url, FLIP_MODEL_BUCKET=bucket,
               FLIP_S3_ENDPOINT_URL=s3_server.endpoint_url, AWS_ACCESS_KEY_ID=s3_server.access_key,
               AWS_SECRET_ACCESS_KEY=s3_server.secret_key)
    try:
        yield env, lambda: new_session(engine), model.id
    finally:
        engine.dispose()


def enqueue(env: dict[str, str], model_id: uuid.UUID, *extra: str) -> dict[str, Any]:
    result = subprocess.run([EXE, "enqueue", str(model_id), "--trust", "Trust_1", "--trust", "Trust_2", "--json",
                             *extra], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def state(sessions: Any, fl_job_id: str) -> tuple[JobStatus, dict[str, str]]:
    """The job's status and every net's status."""
    with sessions() as session:
        job = session.get(FLJob, uuid.UUID(fl_job_id))
        return job.status, {n.name: n.status.value for n in registry.list_nets(session)}


def test_enqueue_claims_a_free_net_and_starts_the_run_the_sensor_would(hub: Any, dagster: FakeDagster) -> None:
    env, sessions, model_id = hub
    out = enqueue(env, model_id, "--dagster-url", dagster.url)
    assert (out["dispatch"], out["run_id"], out["net"], out["position"]) == ("launched", "run-1", "net-nvflare", None)
    assert state(sessions, out["fl_job_id"]) == (JobStatus.IN_PROGRESS, {"net-flower": "AVAILABLE",
                                                                        "net-nvflare": "BUSY"})
    variables = dagster.requests[-1]["variables"]
    assert variables["selector"] == {"repositoryLocationName": "flip_pipelines", "repositoryName": "__repository__"}
    assert (variables["partitions"], variables["key"]) == ("flip_models", "demo")
    params = variables["params"]
    assert params["selector"] == {**variables["selector"], "jobName": "train_model"}
    assert params["runConfigData"] == {"ops": {"resolve_backend": {"config": {
        "model_id": str(model_id), "fl_job_id": out["fl_job_id"], "net": "net-nvflare"}}}}
    assert {t["key"]: t["value"] for t in params["executionMetadata"]["tags"]} == {
        "flip/net": "net-nvflare", "flip/model_id": str(model_id), "flip/fl_job_id": out["fl_job_id"],
        "flip/model": "demo", "dagster/partition": "demo", "flip/launched_by": "enqueue",
        "flip/run_key": f"fl_job:{out['fl_job_id']}"}


def test_unreachable_dagster_leaves_the_job_queued_for_the_sensor(hub: Any) -> None:
    env, sessions, model_id = hub
    out = enqueue(env, model_id, "--dagster-url", f"http://127.0.0.1:{free_port()}")
    assert (out["dispatch"], out["run_id"], out["net"], out["position"]) == ("queued", None, None, 1)
    assert "not reachable" in out["note"]
    assert state(sessions, out["fl_job_id"]) == (JobStatus.QUEUED, {"net-flower": "AVAILABLE",
                                                                   "net-nvflare": "AVAILABLE"})
    with sessions() as session:
        logs = session.exec(select(FLLogs.log).where(FLLogs.model_id == model_id, FLLogs.log.is_not(None))).all()
        assert logs[-1].startswith("Training queued again: its run could not be started at once (Dagster is not")
        claim = claims.claim_next_job(session, {model_id: fits(FLBackend.NVFLARE).backends})
    assert claim is not None and str(claim.fl_job_id) == out["fl_job_id"], "the sensor takes it as any other"


@pytest.mark.parametrize("dagster", ["refuse"], indirect=True)
def test_a_launch_dagster_refuses_gives_the_net_back(hub: Any, dagster: FakeDagster) -> None:
    env, sessions, model_id = hub
    out = enqueue(env, model_id, "--dagster-url", dagster.url)
    assert (out["dispatch"], out["run_id"], out["position"]) == ("queued", None, 1)
    assert "the code server is gone" in out["note"]
    assert state(sessions, out["fl_job_id"]) == (JobStatus.QUEUED, {"net-flower": "AVAILABLE",
                                                                   "net-nvflare": "AVAILABLE"})


@pytest.mark.parametrize("dagster", ["drop"], indirect=True)
def test_a_launch_without_an_answer_keeps_the_claim_for_reconciliation(hub: Any, dagster: FakeDagster) -> None:
    """Dagster may have created the run: giving the net back would let the sensor start a second one."""
    env, sessions, model_id = hub
    out = enqueue(env, model_id, "--dagster-url", dagster.url)
    assert (out["dispatch"], out["run_id"], out["net"]) == ("claimed", None, "net-nvflare")
    assert "reconciliation" in out["note"]
    assert state(sessions, out["fl_job_id"]) == (JobStatus.IN_PROGRESS, {"net-flower": "AVAILABLE",
                                                                        "net-nvflare": "BUSY"})


def test_no_launch_while_another_job_waits_or_without_a_dagster_url(hub: Any, dagster: FakeDagster) -> None:
    env, sessions, model_id = hub
    first = enqueue(env, model_id, "--no-launch", "--dagster-url", dagster.url)
    second = enqueue(env, model_id, "--dagster-url", dagster.url)
    assert [(o["dispatch"], o["position"]) for o in (first, second)] == [("queued", 1), ("queued", 2)]
    assert dagster.requests == [], "the older job is the sensor's to place first"
    with sessions() as session:
        lifecycle.abort_model(session, model_id, "test")
    third = enqueue(env, model_id)  # no --dagster-url, no FLIP_DAGSTER_UI_URL: queue only, as before
    assert (third["dispatch"], third["position"]) == ("queued", 1)
    assert state(sessions, third["fl_job_id"])[1] == {"net-flower": "AVAILABLE", "net-nvflare": "AVAILABLE"}
