"""Both shipped Dagster instance configs load, carry the per-net run limit, and store runs where they say."""

import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from flip_pipelines.definitions import defs
from flip_pipelines.local.postgres import create_database
from flip_pipelines.resources.database import QueueDatabase

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["dagster.yaml", "dagster.postgres.yaml"])
def test_one_run_per_net(name: str) -> None:
    config = yaml.safe_load((REPO / name).read_text())
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "flip/net", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits


def test_postgres_instance_stores_runs_in_postgres(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path
) -> None:
    dagster_url = create_database(postgres_server_url, f"dagster_{uuid.uuid4().hex[:8]}")
    assert dagster_url.startswith("postgresql+psycopg2://")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_url)
    queue_db = tmp_path / "queue.db"
    shutil.copy(sqlite_template, queue_db)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = defs.resolve_job_def("queue_watchdog").execute_in_process(
            instance=instance, resources={"queue_db": QueueDatabase(url=f"sqlite:///{queue_db}")}
        )
        assert result.success
    engine = sa.create_engine(dagster_url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(sa.text("SELECT run_id FROM runs")).scalars().all()
    finally:
        engine.dispose()
    assert stored == [result.run_id]


def test_local_instance_forks_runs_from_the_code_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make dev`'s instance starts run workers from a template that preloads the workspace's code location."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    with dg.DagsterInstance.get() as instance:
        launcher = instance.run_launcher
        assert type(launcher).__name__ == "PrewarmedRunLauncher"
        assert launcher.supports_check_run_worker_health
        assert launcher.inst_data.config_dict["preload_modules"][0] == \
            workspace["load_from"][0]["python_module"]["module_name"]
