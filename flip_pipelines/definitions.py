"""The code location: every job, sensor and resource of flip_pipelines, assembled in one place."""

import os

import dagster as dg

from flip_pipelines.assets.checks import global_model_is_usable
from flip_pipelines.assets.training import TRAINING_ASSETS
from flip_pipelines.jobs.abort import abort_training
from flip_pipelines.jobs.maintenance import queue_watchdog
from flip_pipelines.jobs.training import resume_training, train_model
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.heartbeat import RunHeartbeat
from flip_pipelines.resources.s3 import s3_resource_from_env
from flip_pipelines.resources.storage import FlipStorage
from flip_pipelines.sensors.alerts import training_failure_alert_sensor
from flip_pipelines.sensors.queue import training_queue_sensor
from flip_pipelines.sensors.recovery import training_failure_sensor, training_reconcile_sensor


def build_resources() -> dict[str, object]:
    """Resources from the environment; the FL-API token is an EnvVar and the database URL is read at run time,
    so the Launchpad never shows a secret."""
    s3 = s3_resource_from_env()
    return {
        "io_manager": dg.mem_io_manager,  # op outputs (presigned URLs among them) stay in the run's memory
        "queue_db": QueueDatabase(),
        # a hub whose nets are all FLIP's own FL APIs has no token to send
        "fl_api": FLApiResource(token=dg.EnvVar("FLIP_FL_API_TOKEN") if os.environ.get("FLIP_FL_API_TOKEN") else None),
        "storage": FlipStorage(s3=s3),
        "heartbeat": RunHeartbeat(),
    }


defs = dg.Definitions(
    assets=TRAINING_ASSETS,
    asset_checks=[global_model_is_usable],
    jobs=[train_model, resume_training, abort_training, queue_watchdog],
    sensors=[training_queue_sensor, training_failure_sensor, training_reconcile_sensor,
             training_failure_alert_sensor],
    resources=build_resources(),
)
