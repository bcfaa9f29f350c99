"""The code location loads, and its jobs run against a real queue database."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from sqlmodel import select

from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.models import FLJob, FLScheduler
from flip_pipelines.definitions import defs
from flip_pipelines.domain.enums import JobStatus, NetStatus
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines_tests.factories import build_world, claim_next, queue_model


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("queue_watchdog").executor_def is dg.in_process_executor


def test_dg_checks_the_project_definitions() -> None:
    """The project is a ``dg`` project (``[tool.dg]``): ``dg check defs`` loads the code location as ``dg dev``
    and deployments do."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix}
    result = subprocess.run([str(Path(sys.executable).parent / "dg"), "check", "defs", "--use-active-venv"],
                            cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully." in result.stdout + result.stderr


def test_database_url_is_not_shown_in_launchpad_config() -> None:
    resource = defs.resources["queue_db"]
    assert isinstance(resource, QueueDatabase) and resource.url is None


def test_queue_watchdog_job_frees_stale_net(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with new_session(engine) as session:
            world = build_world(session, nets=1)
            _, job_id = queue_model(session, world)
            claim_next(session)
            session.execute(sa.update(FLJob).where(FLJob.id == job_id).values(status=JobStatus.COMPLETED))
            session.commit()
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def("queue_watchdog").execute_in_process(
                instance=instance, resources={"queue_db": QueueDatabase(url=database_url)}
            )
        assert result.success and result.output_for_node("recover_stale_nets") == 1
        with new_session(engine) as session:
            assert session.exec(select(FLScheduler)).one().status == NetStatus.AVAILABLE
    finally:
        engine.dispose()
