"""Sensors that drive training from the queue table, and repair what failed runs leave behind."""

import time
import uuid
from datetime import UTC, timedelta

import dagster as dg

from flip_pipelines import settings
from flip_pipelines.db import queue
from flip_pipelines.db.models import utcnow
from flip_pipelines.domain.enums import FLJobStatus, ModelStatus
from flip_pipelines.fl_api.client import FLApiError
from flip_pipelines.jobs.training import resume_training, train_model
from flip_pipelines.ops.training import HEARTBEAT_TAG
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource

ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
UNSUBMITTED_GRACE = timedelta(minutes=2)


def _dead_monitoring_runs(instance: dg.DagsterInstance, records: list[dg.RunRecord]) -> list[dg.RunRecord]:
    """Started runs whose monitor heartbeat (or start, before the first beat) is older than the threshold."""
    now = time.time()
    dead = []
    for record in records:
        if record.dagster_run.status != dg.DagsterRunStatus.STARTED:
            continue
        beat = record.dagster_run.tags.get(HEARTBEAT_TAG)
        last = float(beat) if beat else (record.start_time or now)
        if now - last > settings.stale_heartbeat_seconds():
            dead.append(record)
    return dead


def _tags(net: str, model_id: str, fl_job_id: str) -> dict[str, str]:
    return {"flip/net": net, "flip/model_id": model_id, "flip/fl_job_id": fl_job_id}


@dg.sensor(
    job=train_model,
    minimum_interval_seconds=5,  # the daemon's own loop period; a tick is one indexed claim query
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Claims a free net for each of the oldest queued jobs and starts one train_model run per claim.",
)
def training_queue_sensor(context: dg.SensorEvaluationContext, queue_db: QueueDatabase) -> dg.SensorResult:
    with queue_db.session() as session:
        free = queue.count_available_nets(session)
        claims = queue.claim_available_nets(session, free) if free else []
        if claims:
            queue.log_queue_positions(session)
    if not claims:
        return dg.SensorResult(skip_reason="every net is busy" if not free else "no queued job")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"fl_job:{c.fl_job_id}",
                run_config={"ops": {"resolve_backend": {"config": {
                    "model_id": str(c.model_id), "fl_job_id": str(c.fl_job_id), "net": c.net_name}}}},
                tags=_tags(c.net_name, str(c.model_id), str(c.fl_job_id)),
            )
            for c in claims
        ]
    )


def _failure_reason(context: dg.RunFailureSensorContext) -> str:
    for event in context.get_step_failure_events():
        data = event.event_specific_data
        error = getattr(data, "error", None)
        user = getattr(data, "user_failure_data", None)
        text = (getattr(user, "description", None) or (error.message if error else "") or "").strip()
        if text:
            return f"{event.step_key} failed: {text.splitlines()[0]}"
    return (context.failure_event.message or "the run failed").splitlines()[0]


@dg.run_failure_sensor(
    monitored_jobs=[train_model],
    minimum_interval_seconds=5,  # a failed run's net goes back to the queue within a daemon loop, not 30 s
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A training run failed before submitting: the job is DELETED, the model ERROR, the net freed.",
)
def training_failure_sensor(context: dg.RunFailureSensorContext, queue_db: QueueDatabase) -> None:
    tags = context.dagster_run.tags
    fl_job_id = tags.get("flip/fl_job_id")
    if not fl_job_id:
        context.log.info(f"run {context.dagster_run.run_id} failed before claiming a net: nothing to free")
        return
    reason = _failure_reason(context)
    with queue_db.session() as session:
        job = queue.get_job(session, uuid.UUID(fl_job_id))
        if job.status.value != "IN_PROGRESS":
            return  # the run recorded its outcome itself (the backend job ended FAILED or STOPPED)
        if job.fl_backend_job_id:
            context.log.info(f"fl_job {fl_job_id} was submitted ({job.fl_backend_job_id}): left to reconciliation")
            return
        queue.remove_job(session, job.id)
        queue.update_model_status(session, job.model_id, ModelStatus.ERROR)
        queue.add_log(session, job.model_id, f"Training failed before submission: {reason}", success=False,
                      details={"fl_job_id": fl_job_id, "dagster_run_id": context.dagster_run.run_id})
        freed = queue.release_nets_for_model(session, job.model_id)
    context.log.info(f"fl_job {fl_job_id}: DELETED, model ERROR, {freed} net(s) freed ({reason})")


@dg.sensor(
    jobs=[resume_training],
    minimum_interval_seconds=settings.reconcile_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Frees stale nets; resumes monitoring submitted jobs whose run died; ends jobs whose backend "
                "run failed, was stopped outside us, or vanished.",
)
def training_reconcile_sensor(
    context: dg.SensorEvaluationContext, queue_db: QueueDatabase, fl_api: FLApiResource
) -> dg.SensorResult:
    requests: list[dg.RunRequest] = []
    notes: list[str] = []
    with queue_db.session() as session:
        notes += [f"freed stale net {r.net_name}" for r in queue.recover_stale_busy_nets(session)]
        jobs = queue.in_progress_jobs(session)
    for job, net in jobs:
        active = context.instance.get_run_records(
            dg.RunsFilter(tags={"flip/fl_job_id": str(job.id)}, statuses=ACTIVE_RUN_STATUSES)
        )
        if job.fl_backend_job_id:
            for record in _dead_monitoring_runs(context.instance, active):
                silence = settings.stale_heartbeat_seconds()
                context.instance.report_run_failed(
                    record.dagster_run, f"no monitoring heartbeat for {silence:.0f}s: run worker lost"
                )
                notes.append(f"run {record.dagster_run.run_id} of fl_job {job.id} lost its worker: marked failed")
                active = [r for r in active if r.dagster_run.run_id != record.dagster_run.run_id]
        if active or net is None:
            continue
        if not job.fl_backend_job_id:
            started = job.started.replace(tzinfo=job.started.tzinfo or UTC) if job.started else utcnow()
            if utcnow() - started > UNSUBMITTED_GRACE:
                with queue_db.session() as session:
                    queue.revert_pickup(session, job.id)
                notes.append(f"fl_job {job.id} had no run and was never submitted: queued again")
            continue
        try:
            with fl_api.client(net.endpoint) as client:
                backend_job = client.get_job(job.fl_backend_job_id)
        except FLApiError as exc:
            notes.append(f"{net.name} unreachable for fl_job {job.id}: {exc}")
            continue
        if backend_job is None or backend_job.status in (FLJobStatus.FAILED, FLJobStatus.STOPPED):
            reason = (
                "vanished from the FL server" if backend_job is None
                else f"ended {backend_job.status.value} outside a monitoring run: {backend_job.status_details}"
            )
            with queue_db.session() as session:
                queue.complete_job(session, job.id)
                queue.update_model_status(session, job.model_id, ModelStatus.ERROR)
                queue.add_log(session, job.model_id, f"Training failed: FL job {job.fl_backend_job_id} {reason}",
                              success=False)
            notes.append(f"fl_job {job.id}: {reason}; net {net.name} freed")
            continue
        attempt = len(context.instance.get_run_records(dg.RunsFilter(tags={"flip/fl_job_id": str(job.id)})))
        requests.append(dg.RunRequest(
            run_key=f"resume:{job.id}:{attempt}",
            job_name=resume_training.name,
            run_config={"ops": {"load_submitted_training": {"config": {"fl_job_id": str(job.id)}}}},
            tags=_tags(net.name, str(job.model_id), str(job.id)),
        ))
        notes.append(f"fl_job {job.id} is {backend_job.status.value} on {net.name} with no run: resuming monitoring")
    for note in notes:
        context.log.info(note)
    skip = None if requests else ("; ".join(notes) or "queue and FL servers agree")
    return dg.SensorResult(run_requests=requests, skip_reason=skip)
