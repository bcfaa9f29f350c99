"""The train_model pipeline on real FL servers, S3 and queue databases; its sensors on real instances."""

import json
from pathlib import Path

import dagster as dg
import pytest
from sqlmodel import select

from flip_pipelines.db import claims, lifecycle, registry
from flip_pipelines.db.models import FLJob, FLLogs, FLScheduler, Model
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, JobStatus, ModelStatus, NetStatus
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.bundles import list_keys
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.heartbeat import HEARTBEAT_TAG
from flip_pipelines.resources.s3 import FlipS3Resource
from flip_pipelines.resources.storage import FlipStorage
from flip_pipelines.sensors.queue import training_queue_sensor
from flip_pipelines.sensors.recovery import training_failure_sensor, training_reconcile_sensor
from flip_pipelines_tests.conftest import RunningFLApi
from flip_pipelines_tests.factories import fits
from flip_pipelines_tests.fl_api.helpers import with_config
from flip_pipelines_tests.flip_hub.flip_job_templates import flip_shaped_templates, write_templates
from flip_pipelines_tests.jobs.in_process import (
    FLOWER_FILES,
    NVFLARE_FILES,
    make_hub,
    run_config,
    run_resources,
    train_model,
    upload_model,
)

FL_SERVER_ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: daemon tests
@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: the daemon tests train on it
@pytest.mark.parametrize(("backend", "launch"), [(FLBackend.FLOWER, "model id of a queued model")])
def test_launchpad_run_trains_to_completion(
    backend: FLBackend, launch: str, database_url: str, s3_server: LocalS3, request: pytest.FixtureRequest
) -> None:
    """With only a model id the run claims the model's queued job (here no sensor competes for it, as none runs);
    with trusts it queues and claims in one step (through the daemon on NVFlare: test_daemon.py)."""
    api: RunningFLApi = request.getfixturevalue(f"{backend.value}_fl_api")
    hub = make_hub(database_url, s3_server, {"net-1": (api.base_url, backend)})
    demo = "nvflare_logreg" if backend == FLBackend.NVFLARE else "flower_logreg"
    model_id = upload_model(hub, s3_server, with_config(demo_model_files(demo), GLOBAL_ROUNDS=1))
    resolve: dict[str, object] = {"trusts": ["Trust_1", "Trust_2"]}
    if launch == "model id of a queued model":
        with hub.session() as session:
            trusts = registry.get_trust_ids_by_names(session, ["Trust_1", "Trust_2"])
            lifecycle.enqueue_training(session, model_id, trusts, hub.storage.bundle_store().check(str(model_id)))
        resolve = {}
    with dg.instance_for_test() as instance:
        result = train_model.execute_in_process(
            run_config=run_config(model_id, **resolve),
            resources=run_resources(hub, api), instance=instance, raise_on_error=False,
        )
        assert result.success, result.get_run_failure_event()
        tags = instance.get_run_by_id(result.run_id).tags
        logs = "\n".join(str(e.message) + str(getattr(e, "dagster_event", "")) for e in
                         instance.all_logs(result.run_id))
    assert result.output_for_node("monitor") == "FINISHED"
    assert tags["flip/net"] == "net-1" and tags["flip/model_id"] == str(model_id) and HEARTBEAT_TAG in tags
    with hub.session() as session:
        model_name = session.get(Model, model_id).name
    assert tags["flip/model"] == model_name
    materializations = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    assert [(m.asset_key.path[-1], m.partition) for m in materializations] == [
        ("training_bundle", model_name), ("fl_job", model_name), ("global_model", model_name)]
    global_model = materializations[-1].metadata
    assert global_model["rounds"].value == 1 and global_model["metrics"].value.records
    assert all(name in global_model for name in ("trusts", "backend", "final_train_loss"))
    check = next(e.event_specific_data for e in result.all_events
                 if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    assert check.passed and check.partition == model_name, check.description
    assert "X-Amz-Signature" not in logs and api.token not in logs
    with hub.session() as session:
        job = session.exec(select(FLJob).where(FLJob.model_id == model_id)).one()
        assert job.status == JobStatus.COMPLETED and job.fl_backend_job_id
        assert session.get(Model, model_id).status == ModelStatus.RESULTS_UPLOADED
        assert session.exec(select(FLScheduler)).one().status == NetStatus.AVAILABLE
    results = list_keys(s3_server.client(), hub.storage.results_bucket, f"{model_id}/")
    assert list(results) == [f"{model_id}/{job.id}.zip"] and next(iter(results.values())) > 0


def test_queue_sensor_claims_a_net_each_model_suits_and_retires_what_suits_none(
    database_url: str, s3_server: LocalS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both nets free: the oldest NVFlare-only job takes net-a, a younger Flower-only job is not blocked by the
    second NVFlare job waiting, and a job whose files no longer suit any net is retired with the reasons."""
    monkeypatch.setenv("FLIP_FL_API_TOKEN", "token-for-config-validation")
    hub = make_hub(database_url, s3_server, {"net-a": ("http://127.0.0.1:1", FLBackend.NVFLARE),
                                          "net-b": ("http://127.0.0.1:2", FLBackend.FLOWER)})
    files = [NVFLARE_FILES, {"models.py": b""}, NVFLARE_FILES, FLOWER_FILES]  # the second lost files after enqueue
    models = [upload_model(hub, s3_server, f) for f in files]
    with hub.session() as session:
        trusts = registry.get_trust_ids_by_names(session, ["Trust_1", "Trust_2"])
        jobs = [lifecycle.enqueue_training(session, m, trusts, fits()).id for m in models]
    resources = {"queue_db": QueueDatabase(url=hub.url), "storage": hub.storage}
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = training_queue_sensor(context)
        assert [r.run_key for r in result.run_requests] == [f"fl_job:{jobs[0]}", f"fl_job:{jobs[3]}"]
        assert [r.tags["flip/net"] for r in result.run_requests] == ["net-a", "net-b"]
        with hub.session() as session:
            names = {m: session.get(Model, m).name for m in models}
        for run_request, model_id in zip(result.run_requests, [models[0], models[3]], strict=True):
            assert dg.validate_run_config(train_model, run_request.run_config)
            assert run_request.tags["flip/fl_job_id"] in run_request.run_key
            assert run_request.partition_key == run_request.tags["flip/model"] == names[model_id]
        added = [key for request in result.dynamic_partitions_requests for key in request.partition_keys]
        assert sorted(added) == sorted(names.values()), "every registered model becomes a partition to pick"
        instance.add_dynamic_partitions("flip_models", added)
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            again = training_queue_sensor(context)
        assert again.run_requests == [] and again.skip_reason.skip_message == "every net is busy"
        assert again.dynamic_partitions_requests == [], "a partition is added once"
    with hub.session() as session:
        assert session.get(FLJob, jobs[2]).status == JobStatus.QUEUED, "it waits for the NVFlare net"
        assert session.get(FLJob, jobs[1]).status == JobStatus.DELETED
        assert session.get(Model, models[1]).status == ModelStatus.ERROR
        reason = session.exec(select(FLLogs.log).where(FLLogs.model_id == models[1],
                                                       FLLogs.success.is_(False))).one()
        assert reason.startswith("Training could not start: ")
        assert "validator.py" in reason and "client_app.py" in reason


@FL_SERVER_ON_SQLITE
def test_the_queue_waits_while_a_nets_base_application_source_is_unusable(
    database_url: str, s3_server: LocalS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed FLIP_NET_OPTIONS skips the tick with its one line; a net whose own base application folder is
    missing makes the check impossible, which refuses no model: the job stays QUEUED, nothing is claimed. Once the
    folder is there, the job takes the net."""
    hub = make_hub(database_url, s3_server, {"net-a": ("http://127.0.0.1:1", FLBackend.NVFLARE)})
    model_id = upload_model(hub, s3_server, NVFLARE_FILES)
    with hub.session() as session:
        job_id = lifecycle.enqueue_training(session, model_id, registry.get_trust_ids_by_names(
            session, ["Trust_1", "Trust_2"]), fits()).id
    resources = {"queue_db": QueueDatabase(url=hub.url), "storage": hub.storage}

    def tick() -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            return training_queue_sensor(context)

    with dg.instance_for_test() as instance:
        monkeypatch.setenv("FLIP_NET_OPTIONS", '{"net-a": {"base_app_source": "fl-apps"}}')
        refused = tick()
        assert refused.run_requests == [] and refused.skip_reason.skip_message == (
            "FLIP_NET_OPTIONS: net 'net-a': base_app_source must be package, s3://bucket/prefix or an absolute "
            "folder path, not 'fl-apps'")
        monkeypatch.setenv("FLIP_NET_OPTIONS", json.dumps({"net-a": {"base_app_source": str(tmp_path / "apps")}}))
        assert tick().run_requests == []
        with hub.session() as session:
            assert session.get(FLJob, job_id).status == JobStatus.QUEUED, "not retired: the model is not at fault"
        write_templates(tmp_path / "apps", flip_shaped_templates())
        [request] = tick().run_requests
        assert request.tags["flip/net"] == "net-a" and request.tags["flip/fl_job_id"] == str(job_id)


@FL_SERVER_ON_SQLITE
def test_a_model_missing_a_required_file_is_refused_before_anything_is_written(
    database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi
) -> None:
    hub = make_hub(database_url, s3_server, {"net-1": (nvflare_fl_api.base_url, FLBackend.NVFLARE)})
    model_id = upload_model(hub, s3_server, {k: v for k, v in NVFLARE_FILES.items() if k != "validator.py"})
    with dg.instance_for_test() as instance:
        result = train_model.execute_in_process(
            run_config=run_config(model_id, trusts=["Trust_1", "Trust_2"]),
            resources=run_resources(hub, nvflare_fl_api), instance=instance, raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    reason = failure.event_specific_data.user_failure_data.description
    assert failure.step_key == "resolve_backend" and "its files suit no registered backend" in reason
    assert "nvflare: Missing required files for job type standard on nvflare: validator.py" in reason
    with hub.session() as session:
        assert session.exec(select(FLJob)).all() == []
        assert session.get(Model, model_id).status == ModelStatus.PENDING


@FL_SERVER_ON_SQLITE
def test_launch_without_a_free_net_fails_clearly_and_writes_nothing(
    database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi
) -> None:
    hub = make_hub(database_url, s3_server, {"net-1": (nvflare_fl_api.base_url, FLBackend.NVFLARE)})
    busy = upload_model(hub, s3_server, {})
    with hub.session() as session:
        claims.enqueue_and_claim(session, busy, registry.get_trust_ids_by_names(session, ["Trust_1"]),
                                 frozenset(FLBackend))
    model_id = upload_model(hub, s3_server, NVFLARE_FILES)
    with dg.instance_for_test() as instance:
        result = train_model.execute_in_process(
            run_config=run_config(model_id, trusts=["Trust_1"]), resources=run_resources(hub, nvflare_fl_api),
            instance=instance, raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "No nvflare net is free right now" in failure.event_specific_data.user_failure_data.description
    with hub.session() as session:
        assert session.exec(select(FLJob).where(FLJob.model_id == model_id)).all() == []


@FL_SERVER_ON_SQLITE
def test_nvflare_client_validation_is_strict_and_names_missing_clients(
    database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi
) -> None:
    hub = make_hub(database_url, s3_server, {"net-1": (nvflare_fl_api.base_url, FLBackend.NVFLARE)})
    with hub.session() as session:
        registry.add_trust(session, "Trust_3", "site-3")  # provisioned on the FL server, never connected
    model_id = upload_model(hub, s3_server, NVFLARE_FILES)
    with dg.instance_for_test() as instance:
        result = train_model.execute_in_process(
            run_config=run_config(model_id, trusts=["Trust_1", "Trust_3"]),
            resources=run_resources(hub, nvflare_fl_api), instance=instance, raise_on_error=False,
        )
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
        assert failure.step_key == "validate_clients"
        failure_data = failure.event_specific_data.user_failure_data
        assert failure_data.description == "Clients unavailable: site-3"
        assert {k: v.value for k, v in failure_data.metadata.items() if k in ("net", "backend", "trusts")} == {
            "net": "net-1", "backend": "nvflare", "trusts": "Trust_1, Trust_3"}
        training_failure_sensor(dg.build_run_status_sensor_context(
            sensor_name="training_failure_sensor", dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(), resources={"queue_db": QueueDatabase(url=hub.url)},
        ).for_run_failure())
    with hub.session() as session:
        assert session.exec(select(FLScheduler)).one().status == NetStatus.AVAILABLE
        assert session.get(Model, model_id).status == ModelStatus.ERROR
        assert session.exec(select(FLJob)).one().status == JobStatus.DELETED
        reason = session.exec(select(FLLogs.log).where(FLLogs.success.is_(False))).one()
        assert reason == "Training failed before submission: validate_clients failed: Clients unavailable: site-3"


@pytest.mark.slow
@FL_SERVER_ON_SQLITE
def test_reconcile_ends_jobs_stopped_outside_us_or_vanished(
    database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi
) -> None:
    """FLIP #1001/#727: a submitted job with no run, whose backend run was stopped outside us or is gone."""
    from flip_pipelines_tests.fl_api.helpers import presigned_bundle, upload_request, wait_for_status

    hub = make_hub(database_url, s3_server, {"net-a": (nvflare_fl_api.base_url, FLBackend.NVFLARE),
                                          "net-b": (nvflare_fl_api.base_url.replace("127.0.0.1", "localhost"),
                                                    FLBackend.NVFLARE)})
    files = with_config(demo_model_files("nvflare_logreg"), GLOBAL_ROUNDS=50, STEP_SLEEP_SECONDS=0.2)
    with hub.session() as session:
        trusts = registry.get_trust_ids_by_names(session, ["Trust_1", "Trust_2"])
        stopped_model = registry.add_model(session, "stopped-outside", "proj").id
        vanished_model = registry.add_model(session, "vanished", "proj").id
        stopped = claims.enqueue_and_claim(session, stopped_model, trusts, frozenset(FLBackend))
        vanished = claims.enqueue_and_claim(session, vanished_model, trusts, frozenset(FLBackend))
    _, urls = presigned_bundle(s3_server, FLBackend.NVFLARE, files, model_id=str(stopped_model))
    with nvflare_fl_api.client() as client:
        client.upload_app(str(stopped_model), upload_request(urls, ["site-1", "site-2"]))
        backend_job = client.submit_job(str(stopped_model))
        wait_for_status(client, backend_job, lambda s: s.value == "RUNNING", timeout=60, what="RUNNING")
        client.abort_job(backend_job)  # someone stops it on the FL server directly
        wait_for_status(client, backend_job, lambda s: s.value == "STOPPED", timeout=60, what="STOPPED")
    with hub.session() as session:
        lifecycle.record_submission(session, stopped.fl_job_id, backend_job, stopped.net_name)
        lifecycle.record_submission(session, vanished.fl_job_id, "job-that-never-existed", vanished.net_name)
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


@FL_SERVER_ON_SQLITE
@pytest.mark.parametrize("problem", ["bad-credentials", "unreachable"])
def test_s3_errors_permanent_fail_at_once_transient_are_retried(
    problem: str, database_url: str, s3_server: LocalS3, nvflare_fl_api: RunningFLApi
) -> None:
    from flip_pipelines.local.processes import free_port

    hub = make_hub(database_url, s3_server, {"net-1": (nvflare_fl_api.base_url, FLBackend.NVFLARE)})
    model_id = upload_model(hub, s3_server, NVFLARE_FILES)
    endpoint = s3_server.endpoint_url if problem == "bad-credentials" else f"http://127.0.0.1:{free_port()}"
    broken = FlipS3Resource(endpoint_url=endpoint, region_name=s3_server.region, max_attempts=1,
                            aws_access_key_id=s3_server.access_key, aws_secret_access_key="not-the-secret")
    storage = FlipStorage(s3=broken, model_bucket=hub.storage.model_bucket, bundle_bucket=hub.storage.bundle_bucket,
                          results_bucket=hub.storage.results_bucket)
    resources = {**run_resources(hub, nvflare_fl_api), "storage": storage}
    with dg.instance_for_test() as instance:
        result = train_model.execute_in_process(run_config=run_config(model_id, trusts=["Trust_1", "Trust_2"]),
                                                resources=resources, instance=instance, raise_on_error=False)
    assert not result.success
    retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert failure.step_key == "resolve_backend", "the model check reads S3 first"
    if problem == "bad-credentials":
        reason = failure.event_specific_data.user_failure_data.description
        assert retries == [] and reason.startswith(f"Checking model {model_id} failed: An error occurred")
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
        hub = make_hub(database_url, s3_server, {"net-1": (proxy.url, FLBackend.NVFLARE)})
        model_id = upload_model(hub, s3_server, with_config(demo_model_files("nvflare_logreg"), GLOBAL_ROUNDS=1))
        with dg.instance_for_test() as instance:
            result = train_model.execute_in_process(
                run_config=run_config(model_id, trusts=["Trust_1", "Trust_2"]),
                resources=run_resources(hub, nvflare_fl_api), instance=instance, raise_on_error=False,
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


@pytest.mark.slow
@FL_SERVER_ON_SQLITE
def test_an_fl_job_that_fails_on_the_server_shows_its_reason_and_the_servers_log_tail(
    database_url: str, s3_server: LocalS3, flower_fl_api: RunningFLApi
) -> None:
    hub = make_hub(database_url, s3_server, {"net-1": (flower_fl_api.base_url, FLBackend.FLOWER)})
    model_id = upload_model(hub, s3_server, with_config(FLOWER_FILES, GLOBAL_ROUNDS=1, FAIL_ON_SITE="site-2"))
    with dg.instance_for_test() as instance:
        result = train_model.execute_in_process(
            run_config=run_config(model_id, trusts=["Trust_1", "Trust_2"]),
            resources=run_resources(hub, flower_fl_api), instance=instance, raise_on_error=False,
        )
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    data = failure.event_specific_data.user_failure_data
    assert failure.step_key == "monitor" and data.description.startswith("FL job ")
    assert "ended FAILED" in data.description
    assert data.metadata["net"].value == "net-1" and data.metadata["trusts"].value == "Trust_1, Trust_2"
    assert "deliberate failure on site-2" in data.metadata["fl_server_log"].value, "the FL server's own words"
    assert failure.event_specific_data.error.message.startswith("Training failed: FL job ")
    with hub.session() as session:
        assert session.get(Model, model_id).status == ModelStatus.ERROR
        assert session.exec(select(FLScheduler)).one().status == NetStatus.AVAILABLE
