"""abort_training on RUNNING and PENDING backend jobs: both end STOPPED with the net free; nothing → a no-op."""

import uuid

import dagster as dg
import pytest
from sqlmodel import select

from flip_pipelines.cli import main
from flip_pipelines.db import claims, lifecycle, registry
from flip_pipelines.db.models import FLJob, FLScheduler, Model
from flip_pipelines.definitions import defs
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, FLJobStatus, JobStatus, ModelStatus, NetStatus
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines_tests.conftest import RunningFLApi
from flip_pipelines_tests.factories import fits
from flip_pipelines_tests.fl_api.helpers import presigned_bundle, upload_request, wait_for_status, with_config
from flip_pipelines_tests.jobs.in_process import make_hub

abort_training = defs.resolve_job_def("abort_training")
pytestmark = pytest.mark.slow


def _submitted_job(hub, s3: LocalS3, api: RunningFLApi, files: dict[str, bytes], slots: list[str]):  # type: ignore[no-untyped-def]
    """A model whose job holds the net and was submitted to the real FL server: (model_id, backend job id)."""
    with hub.session() as session:
        model = registry.add_model(session, f"m-{uuid.uuid4().hex[:6]}", "proj")
        trusts = registry.get_trust_ids_by_names(session, ["Trust_1"])
        claim = claims.enqueue_and_claim(session, model.id, trusts, frozenset(FLBackend))
        second = lifecycle.enqueue_training(session, model.id, trusts, fits())
    _, urls = presigned_bundle(s3, FLBackend.NVFLARE, files, model_id=str(model.id))
    with api.client() as client:
        client.upload_app(str(model.id), upload_request(urls, slots))
        backend_job_id = client.submit_job(str(model.id), submit_token=f"fl_job-{claim.fl_job_id}")
    with hub.session() as session:
        lifecycle.record_submission(session, claim.fl_job_id, backend_job_id, claim.net_name)
    return model.id, backend_job_id, second.id


# RUNNING and PENDING are also aborted through the real daemon on PostgreSQL in test_daemon.py
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: the daemon tests abort on it
@pytest.mark.parametrize("phase", ["PENDING"])
def test_abort_training_stops_backend_job_and_frees_the_net(
    phase: str, database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi
) -> None:
    hub = make_hub(database_url, s3_server, {"net-1": (nvflare_fl_api.base_url, FLBackend.NVFLARE)})
    files = with_config(demo_model_files("nvflare_logreg"), GLOBAL_ROUNDS=50, STEP_SLEEP_SECONDS=0.2)
    slots = ["site-1", "site-2"] if phase == "RUNNING" else ["site-1", "site-3"]  # site-3 never connects
    model_id, backend_job_id, queued_job = _submitted_job(hub, s3_server, nvflare_fl_api, files, slots)
    with nvflare_fl_api.client() as client:
        wait_for_status(client, backend_job_id, lambda s: s == FLJobStatus(phase), timeout=60, what=phase)
    with dg.instance_for_test() as instance:
        result = abort_training.execute_in_process(
            run_config={"ops": {"abort_model": {"config": {"model_id": str(model_id)}}}},
            resources={"queue_db": QueueDatabase(url=hub.url), "fl_api": FLApiResource(token=nvflare_fl_api.token)},
            instance=instance,
        )
    assert result.success and "STOPPED" in result.output_for_node("abort_model")
    with nvflare_fl_api.client() as client:
        final = wait_for_status(client, backend_job_id, lambda s: s not in (FLJobStatus.RUNNING, FLJobStatus.PENDING),
                                timeout=60, what="the backend job to stop")
    assert final.status == FLJobStatus.STOPPED
    with hub.session() as session:
        assert session.get(Model, model_id).status == ModelStatus.STOPPED
        assert {j.status for j in session.exec(select(FLJob).where(FLJob.model_id == model_id))} == {JobStatus.DELETED}
        assert session.get(FLJob, queued_job).status == JobStatus.DELETED, "the queued job was dequeued too"
        assert session.exec(select(FLScheduler)).one().status == NetStatus.AVAILABLE


def test_abort_with_nothing_running_is_a_clear_no_op(
    database_url: str, s3_server: LocalS3, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = make_hub(database_url, s3_server, {"net-1": ("http://127.0.0.1:9", FLBackend.NVFLARE)})
    with hub.session() as session:
        model_id = registry.add_model(session, "idle", "proj").id
    monkeypatch.setenv("FLIP_DATABASE_URL", hub.url)
    monkeypatch.setenv("FLIP_FL_API_TOKEN", "token-token-token-token")
    assert main(["abort", str(model_id)]) == 0
    assert "nothing to abort" in capsys.readouterr().out
    with hub.session() as session:
        assert session.get(Model, model_id).status == ModelStatus.PENDING
