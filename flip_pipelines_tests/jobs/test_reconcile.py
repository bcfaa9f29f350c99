"""The reconcile sensor keeps to its tick whatever the FL APIs do: one that hangs costs a short timeout, never
Dagster's 60 s sensor timeout, and the other nets' jobs are handled in the same tick."""

import time
import uuid

import dagster as dg
import pytest
from sqlmodel import select

from flip_pipelines.db import claims, lifecycle, registry
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.models import FLJob, FLLogs
from flip_pipelines.domain.enums import FLBackend, JobStatus
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.sensors import recovery
from flip_pipelines_tests.conftest import RunningFLApi
from flip_pipelines_tests.flaky_proxy import hanging_server


def _submitted(url: str, nets: dict[str, str]) -> dict[str, uuid.UUID]:
    """One submitted training per net (backend job ids the FL servers do not know): net name → fl_job id."""
    engine = make_engine(url)
    jobs = {}
    try:
        with new_session(engine) as session:
            registry.add_project(session, "proj", "SELECT 1")
            trusts = [registry.add_trust(session, "Trust_1", "site-1").id]
            for name, endpoint in nets.items():
                registry.add_net(session, name, endpoint, FLBackend.NVFLARE)
                model = registry.add_model(session, f"model-on-{name}", "proj")
                claim = claims.enqueue_and_claim(session, model.id, trusts, frozenset(FLBackend), net_name=name)
                lifecycle.record_submission(session, claim.fl_job_id, f"job-on-{name}", name)
                jobs[name] = claim.fl_job_id
    finally:
        engine.dispose()
    return jobs


def _tick(url: str, token: str) -> tuple[dg.SensorResult, float]:
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={
            "queue_db": QueueDatabase(url=url), "fl_api": FLApiResource(token=token)})
        started = time.monotonic()
        result = recovery.training_reconcile_sensor(context)
        return result, time.monotonic() - started


@pytest.mark.parametrize("database_url", ["sqlite", "flip-hub"], indirect=True)  # the reconcile sensor on FLIP's
def test_a_hanging_fl_api_costs_one_short_timeout_and_the_other_nets_are_handled(
    database_url: str, nvflare_fl_api: RunningFLApi
) -> None:
    with hanging_server() as hanging:
        jobs = _submitted(database_url, {"net-hangs": hanging, "net-answers": nvflare_fl_api.base_url})
        result, seconds = _tick(database_url, nvflare_fl_api.token)
    assert seconds < recovery.FL_API_CALL_TIMEOUT_SECONDS + 5, f"the tick took {seconds:.1f}s"
    assert f"fl_job {jobs['net-hangs']}: its FL API did not answer" in result.skip_reason.skip_message
    engine = make_engine(database_url)
    with new_session(engine) as session:
        assert session.get(FLJob, jobs["net-hangs"]).status == JobStatus.IN_PROGRESS, "asked again next tick"
        assert session.get(FLJob, jobs["net-answers"]).status == JobStatus.COMPLETED
        reasons = session.exec(select(FLLogs.log).where(FLLogs.success.is_(False))).all()
    engine.dispose()
    assert reasons == ["Training failed: FL job job-on-net-answers vanished from the FL server"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_tick_budget_bounds_the_tick_even_when_calls_may_wait_long(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery, "FL_API_BUDGET_SECONDS", 1.0)
    monkeypatch.setattr(recovery, "FL_API_CALL_TIMEOUT_SECONDS", 120.0)
    with hanging_server() as first, hanging_server() as second:
        jobs = _submitted(database_url, {"net-1": first, "net-2": second})
        result, seconds = _tick(database_url, "token-token-token-token")
    assert seconds < 5, f"the tick took {seconds:.1f}s with a 1 s budget"
    for fl_job_id in jobs.values():
        assert f"fl_job {fl_job_id}: its FL API did not answer" in result.skip_reason.skip_message
