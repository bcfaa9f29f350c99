"""A Launchpad run keeps the queue's order: with an older job waiting for the free net it queues its model's job
in its place, says why, and ends without claiming — no failure for the sensors to act on, nothing lost."""

import dagster as dg
import pytest
from sqlmodel import select

from flip_pipelines.db import lifecycle, registry
from flip_pipelines.db.models import FLJob, FLLogs, FLScheduler, Model
from flip_pipelines.domain.enums import FLBackend, JobStatus, ModelStatus, NetStatus
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.heartbeat import RunHeartbeat
from flip_pipelines.sensors.queue import training_queue_sensor
from flip_pipelines_tests.jobs.in_process import NVFLARE_FILES, make_hub, train_model, upload_model


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # both databases: db/test_claims.py
def test_a_launch_behind_an_older_job_queues_in_its_place_and_the_run_says_why(
    database_url: str, s3_server: LocalS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLIP_FL_API_TOKEN", "token-for-config-validation")
    hub = make_hub(database_url, s3_server, {"net-1": ("http://127.0.0.1:1", FLBackend.NVFLARE)})
    older, launched = upload_model(hub, s3_server, NVFLARE_FILES), upload_model(hub, s3_server, NVFLARE_FILES)
    with hub.session() as session:
        trusts = registry.get_trust_ids_by_names(session, ["Trust_1", "Trust_2"])
        older_job = lifecycle.enqueue_training(session, older, trusts,
                                               hub.storage.bundle_store().check(str(older))).id
    resources = {"queue_db": QueueDatabase(url=hub.url), "storage": hub.storage, "io_manager": dg.mem_io_manager,
                 "fl_api": FLApiResource(token="unused"), "heartbeat": RunHeartbeat()}
    with dg.instance_for_test() as instance:
        result = train_model.execute_in_process(
            run_config={"ops": {"resolve_backend": {"config": {"model_id": str(launched),
                                                               "trusts": ["Trust_1", "Trust_2"]}}}},
            resources=resources, instance=instance, raise_on_error=False)
        assert result.success, "a launch that waits its turn is no failed training (no failure sensor, no alert)"
        tags = instance.get_run_by_id(result.run_id).tags
        messages = [str(e.message) for e in instance.all_logs(result.run_id)]
        skipped = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SKIPPED}
        with hub.session() as session:
            [job] = session.exec(select(FLJob).where(FLJob.model_id == launched)).all()
        assert "flip/fl_job_id" not in tags, "reconciliation must not count this run as one of the job's"
        assert tags["flip/queued_fl_job_id"] == str(job.id)
        assert any("1 older job waits for an nvflare net; the queue sensor starts this one in turn" in m
                   for m in messages), messages
        assert skipped == {"validate_clients", "bundle", "presign", "submit", "monitor"}
        with dg.build_sensor_context(instance=instance, resources={"queue_db": QueueDatabase(url=hub.url),
                                                                   "storage": hub.storage}) as context:
            tick = training_queue_sensor(context)
        assert [r.run_key for r in tick.run_requests] == [f"fl_job:{older_job}"], "the older job goes first"
    with hub.session() as session:
        assert session.get(FLJob, job.id).status == JobStatus.QUEUED
        assert session.get(Model, launched).status == ModelStatus.INITIATED
        assert session.exec(select(FLScheduler)).one().status == NetStatus.BUSY  # the sensor's claim of the older
        assert [p.fl_job_id for p in lifecycle.queue_positions(session)] == [job.id]
        assert session.exec(select(FLLogs.log).where(FLLogs.model_id == launched, FLLogs.log.is_not(None))).all() \
            == ["Selected trusts for training: Trust_1, Trust_2"]
