"""The queue sensor: claims free nets for the oldest queued jobs whose models suit them, one run per claim.

``flip-pipelines enqueue`` starts the same run itself when it can (``services.launch``); the sensor is the path for
everything else — jobs queued by FLIP's UI, jobs that waited for a net, and any launch that could not be made.
"""

import time
import uuid

import dagster as dg

from flip_pipelines.assets.training import MODEL_PARTITIONS
from flip_pipelines.db import claims, lifecycle, model_partitions, registry, site_config
from flip_pipelines.domain.model_check import ModelCheck
from flip_pipelines.domain.retry import is_transient
from flip_pipelines.domain.runs import run_key, run_tags, train_model_run_config
from flip_pipelines.jobs.training import train_model
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.storage import FlipStorage

CHECK_BUDGET_SECONDS = 20.0  # S3 checks per tick stop here, well inside Dagster's 60 s sensor timeout


def new_partitions(context: dg.SensorEvaluationContext, keys: dict[uuid.UUID, str]
                   ) -> list[dg.AddDynamicPartitionsRequest]:
    """Every registered model as a partition of the training assets, so it can be picked in the UI — also models
    registered outside this hub's CLI (FLIP's UI writes the same table)."""
    known = set(context.instance.get_dynamic_partitions(MODEL_PARTITIONS.name))
    missing = sorted(set(keys.values()) - known)
    return [MODEL_PARTITIONS.build_add_request(missing)] if missing else []


def skipped(context: dg.SensorEvaluationContext, keys: dict[uuid.UUID, str], reason: str) -> dg.SensorResult:
    return dg.SensorResult(skip_reason=reason, dynamic_partitions_requests=new_partitions(context, keys))


def check_models(storage: FlipStorage, model_ids: list[uuid.UUID], log: dg.DagsterLogManager
                 ) -> dict[uuid.UUID, ModelCheck]:
    """Which backends each waiting model's files suit (object listing + config.json), within the tick budget.

    A model whose check failed is left out this tick and its jobs wait: a passing S3 problem (``domain.retry``)
    is tried again next tick, a refusal is logged as an error for people to fix; neither retires a job."""
    store = storage.bundle_store()
    deadline = time.monotonic() + CHECK_BUDGET_SECONDS
    checks: dict[uuid.UUID, ModelCheck] = {}
    for model_id in model_ids:
        if time.monotonic() > deadline:
            log.warning(f"checked {len(checks)} of {len(model_ids)} waiting models within the tick budget")
            break
        try:
            checks[model_id] = store.check(str(model_id))
        except Exception as exc:  # the jobs wait either way; only people can fix a refusal
            if is_transient(exc):
                log.warning(f"could not check model {model_id} this tick, trying again next tick: {exc}")
            else:
                log.error(f"S3 refused to list model {model_id}'s files, its jobs wait until that is fixed: {exc}")
    return checks


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
    if not free:
        return skipped(context, keys, "every net is busy")
    if not waiting:
        return skipped(context, keys, "no queued job")
    checks = check_models(storage, waiting, context.log)
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
