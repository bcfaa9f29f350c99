"""A hub for running ``train_model`` in process: a queue database with a project, two trusts and nets, fresh
buckets on the test S3 server, models uploaded to it, and the resources and run config of one run."""

import uuid
from dataclasses import dataclass

import dagster as dg

from flip_pipelines.db import registry
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.definitions import defs
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.heartbeat import RunHeartbeat
from flip_pipelines.resources.storage import FlipStorage
from flip_pipelines_tests.conftest import RunningFLApi

NVFLARE_FILES = demo_model_files("nvflare_logreg")
FLOWER_FILES = demo_model_files("flower_logreg")

train_model = defs.resolve_job_def("train_model")


@dataclass
class Hub:
    url: str
    storage: FlipStorage
    model_bucket: str

    def session(self):  # type: ignore[no-untyped-def]
        return new_session(make_engine(self.url))


def hub_storage(s3: LocalS3) -> tuple[FlipStorage, str]:
    client = s3.client()
    buckets = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("models", "bundles", "results")}
    for bucket in buckets.values():
        client.create_bucket(Bucket=bucket)
    return FlipStorage(s3=s3.resource(), model_bucket=buckets["models"], bundle_bucket=buckets["bundles"],
                       results_bucket=buckets["results"]), buckets["models"]


def make_hub(url: str, s3: LocalS3, nets: dict[str, tuple[str, FLBackend]]) -> Hub:
    storage, model_bucket = hub_storage(s3)
    hub = Hub(url=url, storage=storage, model_bucket=model_bucket)
    with hub.session() as session:
        registry.add_project(session, "proj", "SELECT * FROM cohort")
        for i in (1, 2):
            registry.add_trust(session, f"Trust_{i}", f"site-{i}")
        for name, (endpoint, backend) in nets.items():
            registry.add_net(session, name, endpoint, backend)
    return hub


def upload_model(hub: Hub, s3: LocalS3, files: dict[str, bytes]) -> uuid.UUID:
    with hub.session() as session:
        model_id = registry.add_model(session, f"m-{uuid.uuid4().hex[:6]}", "proj").id
    client = s3.client()
    for rel, body in files.items():
        client.put_object(Bucket=hub.model_bucket, Key=f"{model_id}/{rel}", Body=body)
    return model_id


def run_resources(hub: Hub, api: RunningFLApi) -> dict[str, object]:
    return {"queue_db": QueueDatabase(url=hub.url), "fl_api": FLApiResource(token=api.token),
            "storage": hub.storage, "io_manager": dg.mem_io_manager, "heartbeat": RunHeartbeat()}


def run_config(model_id: uuid.UUID, **resolve: object) -> dict[str, object]:
    return {"ops": {"resolve_backend": {"config": {"model_id": str(model_id), **resolve}},
                    "monitor": {"config": {"poll_interval_seconds": 1.0, "deadline_seconds": 300.0}}}}
