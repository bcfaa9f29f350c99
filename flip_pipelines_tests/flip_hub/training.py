"""A FLIP-saved demo model queued and claimed as the hub does it, for the tests that train on a FLIP hub."""

import uuid

import dagster as dg

from flip_pipelines.db import lifecycle
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.storage import FlipStorage
from flip_pipelines.sensors.queue import training_queue_sensor
from flip_pipelines_tests.fl_api.helpers import with_config
from flip_pipelines_tests.flip_hub.hub import FlipHub
from flip_pipelines_tests.jobs.test_train_model import _storage


def queue_demo_model(hub: FlipHub, s3: LocalS3, name: str) -> tuple[FlipStorage, uuid.UUID, uuid.UUID]:
    """The NVFlare demo model (one round) saved as FLIP saves a model, its files on S3, queued on every trust by
    the lifecycle call ``enqueue`` makes: (storage, model id, fl_job id)."""
    storage, model_bucket = _storage(s3)
    model_id = hub.save_model(name)
    client = s3.client()
    for rel, body in with_config(demo_model_files("nvflare_logreg"), GLOBAL_ROUNDS=1).items():
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
