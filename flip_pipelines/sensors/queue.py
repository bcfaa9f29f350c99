"""The queue sensor: claims free nets for the oldest queued jobs whose models suit them, one run per claim.

``flip-pipelines enqueue`` starts the same run itself when it can (``services.launch``); the sensor is the path for
everything else — jobs queued by FLIP's UI, jobs that waited for a net, and any launch that could not be made.
"""

import uuid

import dagster as dg

from flip_pipelines.assets.training import MODEL_PARTITIONS
from flip_pipelines.db import claims, lifecycle, model_partitions, registry, site_config
from flip_pipelines.domain.errors import InvalidInputError
from flip_pipelines.domain.runs import run_key, run_tags, train_model_run_config
from flip_pipelines.jobs.training import train_model
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.storage import FlipStorage
from flip_pipelines.services.model_checks import check_models


def new_partitions(context: dg.SensorEvaluationContext, keys: dict[uuid.UUID, str]
                   ) -> list[dg.AddDynamicPartitionsRequest]:
    """Every registered model as a partition of the training assets, so it can be picked in the UI — also models
    registered outside this hub's CLI (FLIP's UI writes the same table)."""
    known = set(context.instance.get_dynamic_partitions(MODEL_PARTITIONS.name))
    missing = sorted(set(keys.values()) - known)
    return [MODEL_PARTITIONS.build_add_request(missing)] if missing else []


def skipped(context: dg.SensorEvaluationContext, keys: dict[uuid.UUID, str], reason: str) -> dg.SensorResult:
    return dg.SensorResult(skip_reason=reason, dynamic_partitions_requests=new_partitions(context, keys))


@dg.sensor(
    job=train_model,
    minimum_interval_seconds=5,  # the daemon's own loop period
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Claims, for each free net, the oldest queued job whose model's files suit the net's backend, and "
                "starts one train_model run per claim.",
)
def training_queue_sensor(context: dg.SensorEvaluationContext, queue_db: QueueDatabase,
                          storage: FlipStorage) -> dg.SensorResult:
    with queue_db.session() as session:
        keys = model_partitions.partition_keys_of_models(session)
        if site_config.deployment_mode(session):
            return skipped(context, keys, "the hub is in deployment mode: scheduling paused")
        free = claims.free_net_count(session)
        waiting = claims.queued_models(session) if free else []
        nets = registry.net_backends(session) if waiting else {}
    if not free:
        return skipped(context, keys, "every net is busy")
    if not waiting:
        return skipped(context, keys, "no queued job")
    try:
        sources = storage.base_app_sources(nets)
    except InvalidInputError as exc:  # the jobs wait, no net is taken, until the setting is fixed
        return skipped(context, keys, str(exc))
    checks = check_models(storage, waiting, context.log, sources)
    with queue_db.session() as session:
        registered = registry.registered_backends(session)
        for model_id, check in checks.items():
            refusal = check.refusal(registered)
            if refusal:
                retired = lifecycle.retire_model_jobs(session, model_id, f"the model's files changed: {refusal}")
                context.log.warning(f"model {model_id}: {retired} queued job(s) retired: {refusal}")
        taken = claims.claim_available_nets(session, {m: c.backends for m, c in checks.items()}, sum(free.values()))
        if taken:
            lifecycle.log_queue_positions(session)
            keys = model_partitions.partition_keys_of_models(session)  # a model may be newer than the tick
    if not taken:
        return skipped(context, keys, "no queued job suits a free net")
    return dg.SensorResult(dynamic_partitions_requests=new_partitions(context, keys), run_requests=[
        dg.RunRequest(
            run_key=run_key(c),
            run_config=train_model_run_config(c),
            tags=run_tags(c.net_name, c.model_id, c.fl_job_id, keys[c.model_id]),
            partition_key=keys[c.model_id],
        )
        for c in taken
    ])
