"""``flip-pipelines dev`` (what ``make dev`` runs): the Dagster UI comes up with our code location loaded."""

import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from flip_pipelines.local.processes import free_port, start_process, stop_pid, wait_until

REPO = Path(__file__).resolve().parents[1]

LOCATION_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError { __typename
      ... on PythonError { message }
      ... on RepositoryLocation { repositories { name jobs { name } } } } } } } }
"""

pytestmark = pytest.mark.slow


def _location(port: int) -> dict | None:
    response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": LOCATION_QUERY}, timeout=5)
    entries = response.json()["data"]["workspaceOrError"]["locationEntries"]
    entry = next((e for e in entries if e["name"] == "flip_pipelines"), None)
    if entry is None or entry["loadStatus"] != "LOADED":
        return None
    return entry


def test_dev_starts_ui_with_code_location_loaded(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("FLIP_DATABASE_URL", "DAGSTER_HOME")}
    env["FLIP_DATA_DIR"] = str(tmp_path / "data")
    log = tmp_path / "dev.log"
    process = start_process(
        [str(Path(sys.executable).parent / "flip-pipelines"), "dev", "--port", str(port)], log_path=log, env=env,
        cwd=REPO,
    )
    try:
        entry = wait_until(lambda: _location(port), timeout=120, interval=1, what="the flip_pipelines location")
        output = log.read_text()
        assert f"Dagster UI:     http://127.0.0.1:{port}" in output
        location = entry["locationOrLoadError"]
        assert location["__typename"] == "RepositoryLocation", location
        jobs = {job["name"] for repo in location["repositories"] for job in repo["jobs"]}
        assert "queue_watchdog" in jobs
        assert (tmp_path / "data" / "flip.db").exists(), "dev migrates the embedded SQLite database"
        assert (tmp_path / "data" / "dagster_home" / "dagster.yaml").exists()
    finally:
        stop_pid(process.pid, first_signal=signal.SIGINT, timeout=30)
    assert process.poll() is not None
