"""The train_model pipeline on real FL servers, S3 and queue databases; its sensors on real instances."""

import uuid
from dataclasses import dataclass

import dagster as dg
import pytest
from sqlmodel import select

from flip_pipelines.db import queue
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.models import FLJob, FLLogs, FLScheduler, Model
from flip_pipelines.definitions import defs
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, JobStatus, ModelStatus, NetStatus
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.bundles import list_keys
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.s3 import FlipS3Resource
from flip_pipelines.resources.storage import FlipStorage
from flip_pipelines.sensors.training import training_failure_sensor, training_queue_sensor
from flip_pipelines_tests.conftest import RunningFLApi
from flip_pipelines_tests.fl_api.helpers import with_config

train_model = defs.resolve_job_def("train_model")


@dataclass
class Hub:
    url: str
    storage: FlipStorage
    model_bucket: str

    def session(self):  # type: ignore[no-untyped-def]
        return new_session(make_engine(self.url))


def _storage(s3: LocalS3) -> tuple[FlipStorage, str]:
    client = s3.client()
    buckets = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("models", "bundles", "results")}
    for bucket in buckets.values():
        client.create_bucket(Bucket=bucket)
    return FlipStorage(s3=s3.resource(), model_bucket=buckets["models"], bundle_bucket=buckets["bundles"],
                       results_bucket=buckets["results"]), buckets["models"]


def _hub(url: str, s3: LocalS3, nets: dict[str, tuple[str, FLBackend]]) -> Hub:
    storage, model_bucket = _storage(s3)
    hub = Hub(url=url, storage=storage, model_bucket=model_bucket)
    with hub.session() as session:
        queue.add_project(session, "proj", "SELECT * FROM cohort")
        for i in (1, 2):
            queue.add_trust(session, f"Trust_{i}", f"site-{i}")
        for name, (endpoint, backend) in nets.items():
            queue.add_net(session, name, endpoint, backend)
    return hub


def _model(hub: Hub, s3: LocalS3, files: dict[str, bytes]) -> uuid.UUID:
    with hub.session() as session:
        model_id = queue.add_model(session, f"m-{uuid.uuid4().hex[:6]}", "proj").id
    client = s3.client()
    for rel, body in files.items():
        client.put_object(Bucket=hub.model_bucket, Key=f"{model_id}/{rel}", Body=body)
    return model_id


def _resources(hub: Hub, api: RunningFLApi) -> dict[str, object]:
    return {"queue_db": QueueDatabase(url=hub.url), "fl_api": FLApiResource(token=api.token),
            "storage": hub.storage, "io_manager": dg.mem_io_manager}


def _run_config(model_id: uuid.UUID, **resolve: object) -> dict[str, object]:
    return {"ops": {"resolve_backend": {"config": {"model_id": str(model_id), **resolve}},
                    "monitor": {"config": {"poll_interval_seconds": 1.0, "deadline_seconds": 300.0}}}}


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: the daemon tests train on it
@pytest.mark.parametrize("backend", [FLBackend.NVFLARE, FLBackend.FLOWER])
def test_launchpad_run_with_model_id_and_trusts_trains_to_completion(
    backend: FLBackend, database_url: str, s3_server: LocalS3, request: pytest.FixtureRequest
) -> None:
    api: RunningFLApi = request.getfixturevalue(f"{backend.value}_fl_api")
    hub = _hub(database_url, s3_server, {"net-1": (api.base_url, backend)})
    demo = "nvflare_logreg" if backend == FLBackend.NVFLARE else "flower_logreg"
    model_id = _model(hub, s3_server, with_config(demo_model_files(demo), GLOBAL_ROUNDS=2))
    with dg.instance_for_test() as instance:
        result = train_model.execute_in_process(
            run_config=_run_config(model_id, trusts=["Trust_1", "Trust_2"]),
            resources=_resources(hub, api), instance=instance, raise_on_error=False,
        )
        assert result.success, result.get_run_failure_event()
        tags = instance.get_run_by_id(result.run_id).tags
        logs = "\n".join(str(e.message) + str(getattr(e, "dagster_event", "")) for e in
                         instance.all_logs(result.run_id))
    assert result.output_for_node("monitor") == "FINISHED"
    assert tags["flip/net"] == "net-1" and tags["flip/model_id"] == str(model_id)
    kinds = [m.asset_key.path[-1] for m in result.get_asset_materialization_events() for m in
             [m.event_specific_data.materialization]]
    assert kinds == ["bundle", "fl_job", "global_model"]
    assert "X-Amz-Signature" not in logs and api.token not in logs
    with hub.session() as session:
        job = session.exec(select(FLJob).where(FLJob.model_id == model_id)).one()
        assert job.status == JobStatus.COMPLETED and job.fl_backend_job_id
        assert session.get(Model, model_id).status == ModelStatus.RESULTS_UPLOADED
        assert session.exec(select(FLScheduler)).one().status == NetStatus.AVAILABLE
    results = list_keys(s3_server.client(), hub.storage.results_bucket, f"{model_id}/")
    assert list(results) == [f"{model_id}/{job.id}.zip"] and next(iter(results.values())) > 0


def test_queue_sensor_claims_one_run_per_free_net(
    database_url: str, s3_server: LocalS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLIP_FL_API_TOKEN", "token-for-config-validation")
    hub = _hub(database_url, s3_server, {"net-a": ("http://127.0.0.1:1", FLBackend.NVFLARE),
                                          "net-b": ("http://127.0.0.1:2", FLBackend.FLOWER)})
    with hub.session() as session:
        trusts = queue.get_trust_ids_by_names(session, ["Trust_1", "Trust_2"])
        jobs = []
        for _ in range(3):
            model = queue.add_model(session, f"m-{uuid.uuid4().hex[:6]}", "proj")
            jobs.append(queue.add_fl_job(session, model.id, trusts).id)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"queue_db": QueueDatabase(url=hub.url)})
        result = training_queue_sensor(context)
        assert [r.run_key for r in result.run_requests] == [f"fl_job:{jobs[0]}", f"fl_job:{jobs[1]}"]
        assert {r.tags["flip/net"] for r in result.run_requests} == {"net-a", "net-b"}
        for run_request in result.run_requests:
            assert dg.validate_run_config(train_model, run_request.run_config)
            assert run_request.tags["flip/fl_job_id"] in run_request.run_key
        again = training_queue_sensor(dg.build_sensor_context(instance=instance,
                                                              resources={"queue_db": QueueDatabase(url=hub.url)}))
        assert again.run_requests == [] and again.skip_reason.skip_message == "every net is busy"
    with hub.session() as session:
        assert session.get(FLJob, jobs[2]).status == JobStatus.QUEUED


def test_missing_required_file_fails_the_run_and_frees_the_net(
    database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi
) -> None:
    hub = _hub(database_url, s3_server, {"net-1": (nvflare_fl_api.base_url, FLBackend.NVFLARE)})
    files = {k: v for k, v in demo_model_files("nvflare_logreg").items() if k != "validator.py"}
    model_id = _model(hub, s3_server, files)
    with dg.instance_for_test() as instance:
        result = train_model.execute_in_process(
            run_config=_run_config(model_id, trusts=["Trust_1", "Trust_2"]),
            resources=_resources(hub, nvflare_fl_api), instance=instance, raise_on_error=False,
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
        assert failure.step_key == "bundle" and "validator.py" in failure.event_specific_data.error.message
        context = dg.build_run_status_sensor_context(
            sensor_name="training_failure_sensor", dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(), resources={"queue_db": QueueDatabase(url=hub.url)},
        ).for_run_failure()
        training_failure_sensor(context)
    with hub.session() as session:
        job = session.exec(select(FLJob).where(FLJob.model_id == model_id)).one()
        assert job.status == JobStatus.DELETED
        assert session.get(Model, model_id).status == ModelStatus.ERROR
        assert session.exec(select(FLScheduler)).one().status == NetStatus.AVAILABLE
        reason = session.exec(select(FLLogs).where(FLLogs.model_id == model_id, FLLogs.success.is_(False))).one()
        assert "bundle failed" in reason.log and "validator.py" in reason.log


def test_launch_without_a_free_net_fails_clearly_and_writes_nothing(
    database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi
) -> None:
    hub = _hub(database_url, s3_server, {"net-1": (nvflare_fl_api.base_url, FLBackend.NVFLARE)})
    busy = _model(hub, s3_server, {})
    with hub.session() as session:
        queue.enqueue_and_claim(session, busy, queue.get_trust_ids_by_names(session, ["Trust_1"]))
    model_id = _model(hub, s3_server, {})
    with dg.instance_for_test() as instance:
        result = train_model.execute_in_process(
            run_config=_run_config(model_id, trusts=["Trust_1"]), resources=_resources(hub, nvflare_fl_api),
            instance=instance, raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "no net is free right now" in failure.event_specific_data.user_failure_data.description
    with hub.session() as session:
        assert session.exec(select(FLJob).where(FLJob.model_id == model_id)).all() == []


def test_nvflare_client_validation_is_strict_and_names_missing_clients(
    database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi
) -> None:
    hub = _hub(database_url, s3_server, {"net-1": (nvflare_fl_api.base_url, FLBackend.NVFLARE)})
    with hub.session() as session:
        queue.add_trust(session, "Trust_3", "site-3")  # provisioned on the FL server, never connected
    model_id = _model(hub, s3_server, demo_model_files("nvflare_logreg"))
    with dg.instance_for_test() as instance:
        result = train_model.execute_in_process(
            run_config=_run_config(model_id, trusts=["Trust_1", "Trust_3"]),
            resources=_resources(hub, nvflare_fl_api), instance=instance, raise_on_error=False,
        )
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
        assert failure.step_key == "validate_clients"
        assert failure.event_specific_data.user_failure_data.description == "Clients unavailable: site-3"
        training_failure_sensor(dg.build_run_status_sensor_context(
            sensor_name="training_failure_sensor", dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(), resources={"queue_db": QueueDatabase(url=hub.url)},
        ).for_run_failure())
    with hub.session() as session:
        assert session.exec(select(FLScheduler)).one().status == NetStatus.AVAILABLE
        assert session.get(Model, model_id).status == ModelStatus.ERROR


@pytest.mark.slow
def test_reconcile_ends_jobs_stopped_outside_us_or_vanished(
    database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi
) -> None:
    """FLIP #1001/#727: a submitted job with no run, whose backend run was stopped outside us or is gone."""
    from flip_pipelines.sensors.training import training_reconcile_sensor
    from flip_pipelines_tests.fl_api.helpers import presigned_bundle, upload_request, wait_for_status

    hub = _hub(database_url, s3_server, {"net-a": (nvflare_fl_api.base_url, FLBackend.NVFLARE),
                                          "net-b": (nvflare_fl_api.base_url.replace("127.0.0.1", "localhost"),
                                                    FLBackend.NVFLARE)})
    files = with_config(demo_model_files("nvflare_logreg"), GLOBAL_ROUNDS=50, STEP_SLEEP_SECONDS=0.2)
    with hub.session() as session:
        trusts = queue.get_trust_ids_by_names(session, ["Trust_1", "Trust_2"])
        stopped_model = queue.add_model(session, "stopped-outside", "proj").id
        vanished_model = queue.add_model(session, "vanished", "proj").id
        stopped = queue.enqueue_and_claim(session, stopped_model, trusts)
        vanished = queue.enqueue_and_claim(session, vanished_model, trusts)
    _, urls = presigned_bundle(s3_server, FLBackend.NVFLARE, files, model_id=str(stopped_model))
    with nvflare_fl_api.client() as client:
        client.upload_app(str(stopped_model), upload_request(urls, ["site-1", "site-2"]))
        backend_job = client.submit_job(str(stopped_model))
        client.abort_job(backend_job)  # someone stops it on the FL server directly
        wait_for_status(client, backend_job, lambda s: s.value == "STOPPED", timeout=60, what="STOPPED")
    with hub.session() as session:
        queue.record_backend_job_id(session, stopped.fl_job_id, backend_job)
        queue.record_backend_job_id(session, vanished.fl_job_id, "job-that-never-existed")
    with dg.instance_for_test() as instance:
        result = training_reconcile_sensor(dg.build_sensor_context(
            instance=instance,
            resources={"queue_db": QueueDatabase(url=hub.url), "fl_api": FLApiResource(token=nvflare_fl_api.token)},
        ))
    assert result.run_requests == []
    with hub.session() as session:
        for model_id in (stopped_model, vanished_model):
            assert session.get(Model, model_id).status == ModelStatus.ERROR
            job = session.exec(select(FLJob).where(FLJob.model_id == model_id)).one()
            assert job.status == JobStatus.COMPLETED
        assert {s.status for s in session.exec(select(FLScheduler))} == {NetStatus.AVAILABLE}
        reasons = [r.log for r in session.exec(select(FLLogs).where(FLLogs.success.is_(False)))]
    assert any("STOPPED outside a monitoring run" in r for r in reasons)
    assert any("vanished from the FL server" in r for r in reasons)


@pytest.mark.parametrize("problem", ["bad-credentials", "unreachable"])
def test_s3_errors_permanent_fail_at_once_transient_are_retried(
    problem: str, database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi
) -> None:
    from flip_pipelines.local.processes import free_port

    hub = _hub(database_url, s3_server, {"net-1": (nvflare_fl_api.base_url, FLBackend.NVFLARE)})
    model_id = _model(hub, s3_server, demo_model_files("nvflare_logreg"))
    endpoint = s3_server.endpoint_url if problem == "bad-credentials" else f"http://127.0.0.1:{free_port()}"
    broken = FlipS3Resource(endpoint_url=endpoint, region_name=s3_server.region, max_attempts=1,
                            aws_access_key_id=s3_server.access_key, aws_secret_access_key="not-the-secret")
    storage = FlipStorage(s3=broken, model_bucket=hub.storage.model_bucket, bundle_bucket=hub.storage.bundle_bucket,
                          results_bucket=hub.storage.results_bucket)
    resources = {**_resources(hub, nvflare_fl_api), "storage": storage}
    with dg.instance_for_test() as instance:
        result = train_model.execute_in_process(run_config=_run_config(model_id, trusts=["Trust_1", "Trust_2"]),
                                                resources=resources, instance=instance, raise_on_error=False)
    assert not result.success
    retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert failure.step_key == "bundle"
    if problem == "bad-credentials":
        assert retries == [] and "S3 refused it" in failure.event_specific_data.user_failure_data.description
    else:
        assert len(retries) == 3, "a store that cannot be reached is retried"


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("fault", ["fl-api-down-at-upload", "submit-answer-lost"])
def test_transient_fl_api_failures_are_retried_and_submit_once(
    fault: str, database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi
) -> None:
    """A real proxy in front of the real FL API answers 503: before the upload reaches it (the service was
    down), or after the submission did (the answer was lost). The op retries; the FL server runs one job."""
    from flip_pipelines_tests.flaky_proxy import FlakyProxy

    proxy = (FlakyProxy(nvflare_fl_api.base_url, "/upload_app/", failures=1) if fault == "fl-api-down-at-upload"
             else FlakyProxy(nvflare_fl_api.base_url, "/submit_job/", failures=1, forward_first=True))
    with nvflare_fl_api.client() as client:
        jobs_before = {j.job_id for j in client.list_jobs()}
    with proxy.running():
        hub = _hub(database_url, s3_server, {"net-1": (proxy.url, FLBackend.NVFLARE)})
        model_id = _model(hub, s3_server, with_config(demo_model_files("nvflare_logreg"), GLOBAL_ROUNDS=1))
        with dg.instance_for_test() as instance:
            result = train_model.execute_in_process(
                run_config=_run_config(model_id, trusts=["Trust_1", "Trust_2"]),
                resources=_resources(hub, nvflare_fl_api), instance=instance, raise_on_error=False,
            )
    assert result.success, result.get_run_failure_event()
    retries = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(proxy.failed) == proxy.failures and retries == ["submit"] * proxy.failures
    with nvflare_fl_api.client() as client:
        new_jobs = [j for j in client.list_jobs() if j.job_id not in jobs_before]
    with hub.session() as session:
        job = session.exec(select(FLJob).where(FLJob.model_id == model_id)).one()
        assert job.status == JobStatus.COMPLETED
        assert session.get(Model, model_id).status == ModelStatus.RESULTS_UPLOADED
    assert [j.job_id for j in new_jobs] == [job.fl_backend_job_id], "exactly one FL job on the server"
