"""Exactly-once submission on a net whose FL API is FLIP's own: it ignores the submit token, so before submitting
again the hub looks the training's job up in the net's ``/list_jobs`` and adopts it — on a real server answering
as FLIP's NVFlare FL API does, in front of the session's real NVFlare server."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from sqlmodel import select

from flip_pipelines.db.models import FLJob, Model
from flip_pipelines.domain.enums import FLBackend, JobStatus, ModelStatus
from flip_pipelines.local.nvflare import LocalNVFlare
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines_tests.conftest import RunningFLApi
from flip_pipelines_tests.fl_api.helpers import with_config
from flip_pipelines_tests.flaky_proxy import FlakyProxy
from flip_pipelines_tests.flip_hub.flip_fl_api import FlipFLApi
from flip_pipelines_tests.flip_hub.training import flip_net_options
from flip_pipelines_tests.jobs.in_process import (
    NVFLARE_FILES,
    make_hub,
    run_config,
    run_resources,
    train_model,
    upload_model,
)


@pytest.fixture
def flip_nvflare_api(nvflare_deployment: LocalNVFlare, s3_server: LocalS3, tmp_path: Path) -> Iterator[FlipFLApi]:
    server = FlipFLApi(nvflare=nvflare_deployment, upload_dir=tmp_path / "uploads").start()
    try:
        yield server
    finally:
        server.stop()


def _server_jobs(nvflare_fl_api: RunningFLApi) -> set[str]:
    """Every job on the session's NVFlare server, read through this project's FL API in front of it."""
    with nvflare_fl_api.client() as client:
        return {job.job_id for job in client.list_jobs()}


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_lost_submit_answer_on_a_flip_net_adopts_the_job_the_server_took(
        database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi, flip_nvflare_api: FlipFLApi,
        flip_job_templates: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real proxy forwards the submission to FLIP's FL API and answers 503: the op's retry finds the job in
    ``/list_jobs`` instead of submitting a second one; the NVFlare server runs exactly one job for the training
    and the hub records that job's id."""
    monkeypatch.setenv("FLIP_NET_OPTIONS", flip_net_options(flip_job_templates))
    # this FL server uploads its result (FLIP's job templates declare the component that does) but pushes nothing,
    # having no hub API to push to: the results bucket ends the training after the grace
    monkeypatch.setenv("FLIP_PUSHED_STATUS_GRACE_SECONDS", "1")
    before = _server_jobs(nvflare_fl_api)
    proxy = FlakyProxy(flip_nvflare_api.base_url, "/submit_job/", failures=1, forward_first=True)
    with proxy.running():
        hub = make_hub(database_url, s3_server, {"net-flip": (proxy.url, FLBackend.NVFLARE)})
        flip_nvflare_api.results = (s3_server.client(), hub.storage.results_bucket)
        model_id = upload_model(hub, s3_server, with_config(NVFLARE_FILES, GLOBAL_ROUNDS=1))
        with dg.instance_for_test() as instance:
            result = train_model.execute_in_process(
                run_config=run_config(model_id, trusts=["Trust_1", "Trust_2"]),
                resources=run_resources(hub, nvflare_fl_api), instance=instance, raise_on_error=False)
    assert result.success, result.get_run_failure_event()
    retries = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert proxy.failed == [f"/submit_job/{model_id}"] and retries == ["submit"]
    new_jobs = _server_jobs(nvflare_fl_api) - before
    with hub.session() as session:
        job = session.exec(select(FLJob).where(FLJob.model_id == model_id)).one()
        assert (job.status, session.get(Model, model_id).status) == (JobStatus.COMPLETED,
                                                                      ModelStatus.RESULTS_UPLOADED)
    assert new_jobs == {job.fl_backend_job_id}, "exactly one FL job on the NVFlare server, the one recorded"
    assert list(flip_nvflare_api.job_models.values()) == [str(model_id)], "FLIP's FL API submitted once"
    assert [k.split("/")[0] for k in flip_nvflare_api.uploaded] == [str(model_id)], "one result, in the bucket"
