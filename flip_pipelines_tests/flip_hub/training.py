"""A FLIP-saved demo model queued and claimed as the hub does it, for the tests that train on a FLIP hub."""

import json
import logging
import uuid

import dagster as dg

from flip_pipelines.db import lifecycle
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.heartbeat import RunHeartbeat
from flip_pipelines.resources.storage import FlipStorage
from flip_pipelines.sensors.queue import training_queue_sensor
from flip_pipelines_tests.fl_api.helpers import with_config
from flip_pipelines_tests.flip_hub.hub import FlipHub
from flip_pipelines_tests.jobs.in_process import hub_storage, train_model


def queue_demo_model(hub: FlipHub, s3: LocalS3, name: str, rounds: int = 1,
                     storage: FlipStorage | None = None) -> tuple[FlipStorage, uuid.UUID, uuid.UUID]:
    """The NVFlare demo model (``rounds`` global rounds) saved as FLIP saves a model, its files on S3 (``storage``'s
    buckets, new ones when unset), queued on every trust by the lifecycle call ``enqueue`` makes: (storage, model
    id, fl_job id)."""
    if storage is None:
        storage, model_bucket = hub_storage(s3)
    else:
        model_bucket = storage.model_bucket
    model_id = hub.save_model(name)
    client = s3.client()
    for rel, body in with_config(demo_model_files("nvflare_logreg"), GLOBAL_ROUNDS=rounds).items():
        client.put_object(Bucket=model_bucket, Key=f"{model_id}/{rel}", Body=body)
    engine = make_engine(hub.url)
    try:
        with new_session(engine) as session:
            job_id = lifecycle.enqueue_training(session, model_id, list(hub.trusts.values()),
                                                storage.bundle_store().check(str(model_id))).id
    finally:
        engine.dispose()
    return storage, model_id, job_id


def claimed_run_request(hub: FlipHub, storage: FlipStorage, instance: dg.DagsterInstance) -> dg.RunRequest:
    """One tick of the queue sensor on the hub: the one run it requests, its monitor polling every half second."""
    resources = {"queue_db": QueueDatabase(url=hub.url), "storage": storage}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        [request] = training_queue_sensor(context).run_requests
    request.run_config["ops"]["monitor"] = {"config": {"poll_interval_seconds": 0.5, "deadline_seconds": 300.0}}
    return request


def add_flip_net(hub: FlipHub, endpoint: str, name: str = "net-flip") -> None:
    """A net whose FL API is FLIP's own (``FLIP_NET_OPTIONS`` must name it ``"flip"``), its slot AVAILABLE."""
    hub.execute("INSERT INTO fl_nets VALUES (:i, :n, :e, 'NVFLARE')", i=(net := uuid.uuid4()), n=name, e=endpoint)
    hub.execute("INSERT INTO fl_scheduler VALUES (:i, :n, 'AVAILABLE', NULL)", i=uuid.uuid4(), n=net)


def flip_net_options(base_app_source: str, net: str = "net-flip") -> str:
    """``FLIP_NET_OPTIONS`` naming ``net`` FLIP's FL API whose jobs are bundled from ``base_app_source``."""
    return json.dumps({net: {"preset": "flip", "base_app_source": base_app_source}})


def train_on_the_net_claimed(hub: FlipHub, storage: FlipStorage, net: str = "net-flip",
                             log: list[str] | None = None) -> dg.ExecuteInProcessResult:
    """The queue sensor's one run request, on ``net``, executed by train_model in process; ``log`` receives the
    run log's lines as ``<step> <LEVEL> <message>``."""
    with dg.instance_for_test() as instance:
        request = claimed_run_request(hub, storage, instance)
        assert request.tags["flip/net"] == net
        resources = {"queue_db": QueueDatabase(url=hub.url), "storage": storage,
                     "fl_api": FLApiResource(token="hub-secret"), "io_manager": dg.mem_io_manager,
                     "heartbeat": RunHeartbeat()}
        result = train_model.execute_in_process(run_config=request.run_config, tags=request.tags,
                                                instance=instance, resources=resources, raise_on_error=False)
        if log is not None:
            log += [f"{e.step_key} {logging.getLevelName(e.level)} {e.user_message}"
                    for e in instance.all_logs(result.run_id) if not e.is_dagster_event]
        return result


def global_model_events(result: dg.ExecuteInProcessResult) -> list[dg.AssetMaterialization]:
    return [m.event_specific_data.materialization for m in result.get_asset_materialization_events()
            if m.event_specific_data.materialization.asset_key.path[-1] == "global_model"]
