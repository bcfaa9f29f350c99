"""`flip-pipelines dev` (what `make dev` runs): the whole local stack comes up, the demo model trains from a plain
`enqueue`, and Ctrl-C (SIGINT) stops every process it started, a training's run worker included."""

import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from flip_pipelines.local.dagster import TEMPLATE_MODULE
from flip_pipelines.local.processes import (
    free_port,
    pid_alive,
    processes_running,
    read_pids,
    start_process,
    stop_pid,
    wait_until,
)

REPO = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).parent / "flip-pipelines")

LOCATION_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError { __typename
      ... on PythonError { message }
      ... on RepositoryLocation { repositories { name jobs { name } sensors { name } } } } } } } }
"""

pytestmark = pytest.mark.slow


def _location(port: int) -> dict | None:
    response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": LOCATION_QUERY}, timeout=5)
    entries = response.json()["data"]["workspaceOrError"]["locationEntries"]
    entry = next((e for e in entries if e["name"] == "flip_pipelines"), None)
    return entry if entry is not None and entry["loadStatus"] == "LOADED" else None


def test_dev_runs_the_stack_and_trains_the_demo_model(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLIP_", "DAGSTER_HOME", "AWS_"))}
    env["FLIP_DATA_DIR"] = str(data)
    data.mkdir()
    left = data / "stack.env"  # left behind by a stack that was killed, readable by all
    left.write_text("export FLIP_LOCAL_STACK_PID=0\n")
    left.chmod(0o644)
    log = tmp_path / "dev.log"
    process = start_process([EXE, "dev", "--port", str(port)], log_path=log, env=env, cwd=REPO)
    dagster_home = {"DAGSTER_HOME": str((data / "dagster_home").resolve())}
    stack_pids: list[int] = []
    try:
        wait_until(lambda: "Dagster UI:" in log.read_text(), timeout=240, interval=0.2, what="the UI's address")
        assert httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=5).status_code == 200, \
            "the address is printed once the UI answers"
        entry = wait_until(lambda: _location(port), timeout=240, interval=1, what="the flip_pipelines location")
        location = entry["locationOrLoadError"]
        assert location["__typename"] == "RepositoryLocation", location
        jobs = {job["name"] for repo in location["repositories"] for job in repo["jobs"]}
        sensors = {s["name"] for repo in location["repositories"] for s in repo["sensors"]}
        assert {"train_model", "abort_training", "resume_training"} <= jobs
        assert {"training_queue_sensor", "training_failure_sensor", "training_reconcile_sensor",
                "training_failure_alert_sensor"} <= sensors
        output = log.read_text()
        assert f"Dagster UI:      http://127.0.0.1:{port}" in output
        for secret in (data / "fl_api_token", data / "stack.env"):  # the FL-API token, S3 keys
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600, f"{secret.name} is readable by others"
        model_id = re.search(r"demo model:\s+([0-9a-f-]{36})", output).group(1)  # type: ignore[union-attr]
        for part in ("nvflare", "flower", "s3"):
            stack_pids += read_pids(data / "stack" / part / "pids.json").values()
        stack_pids += read_pids(data / "stack" / "s3" / "pids.json").values()

        enqueue = subprocess.run([EXE, "enqueue", model_id, "--trust", "Trust_1", "--trust", "Trust_2"], env=env,
                                 capture_output=True, text=True, timeout=60)
        assert enqueue.returncode == 0, enqueue.stderr
        assert "training run" in enqueue.stderr and "started on net" in enqueue.stderr, \
            "a command in the dev folder starts the run through the stack's UI (stack.env), not a sensor tick later"
        engine = sa.create_engine(f"sqlite:///{data / 'flip.db'}")

        def finished() -> str | None:
            with engine.connect() as connection:
                row = connection.execute(sa.text("SELECT status FROM fl_job ORDER BY created DESC LIMIT 1")).first()
            return row.status if row and row.status in ("COMPLETED", "DELETED") else None

        assert wait_until(finished, timeout=300, interval=2, what="the demo training") == "COMPLETED"
        with engine.connect() as connection:
            status = connection.execute(sa.text("SELECT status FROM model WHERE name = 'demo-logreg'")).scalar_one()
        engine.dispose()
        assert status == "RESULTS_UPLOADED"
        nets = json.loads(subprocess.run([EXE, "nets", "list", "--json"], env=env, capture_output=True,
                                         text=True, timeout=60).stdout)
        assert {(n["name"], n["status"]) for n in nets} == {("net-nvflare", "AVAILABLE"), ("net-flower", "AVAILABLE")}

        again = subprocess.run([EXE, "enqueue", model_id, "--trust", "Trust_1", "--trust", "Trust_2"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        # Ctrl-C mid-training: the run worker lives outside the daemon's process tree, so this is what stops it
        wait_until(lambda: len(processes_running(TEMPLATE_MODULE, dagster_home)) >= 2, timeout=60, interval=0.2,
                   what="the run worker forked from the template")
    finally:
        stop_pid(process.pid, first_signal=signal.SIGINT, timeout=60)
    wait_until(lambda: not processes_running(TEMPLATE_MODULE, dagster_home), timeout=30, interval=0.2,
               what="the run-worker template and its running worker to exit after Ctrl-C")
    assert "stopping" in log.read_text()
    assert "No run requests returned" not in log.read_text(), "idle sensor ticks leave the log quiet"
    assert "superseded" not in log.read_text(), "the stack runs under dg dev, which supersedes dagster dev"
    assert stack_pids and not [p for p in stack_pids if pid_alive(p)], "every server of the stack was stopped"
