"""Sensors that repair what failed or lost runs leave behind: every claimed job ends, or is followed, once.

What to do is decided in ``domain.lifecycle`` (``after_run_failure``, ``reconcile_action``); these sensors
gather the facts — the job row, its runs, what its FL server says — and call one lifecycle function per change.
"""

import time
import uuid
from dataclasses import dataclass

import dagster as dg

from flip_pipelines import settings
from flip_pipelines.db import lifecycle
from flip_pipelines.db.timestamps import epoch_seconds
from flip_pipelines.domain.lifecycle import (
    Action,
    AfterFailure,
    Backend,
    Outcome,
    ReconcileFacts,
    RunFact,
    RunPhase,
    RunsSeen,
    after_run_failure,
    backend_needed,
    classify_runs,
    reconcile_action,
    worker_was_lost,
)
from flip_pipelines.domain.queue import ActiveJob
from flip_pipelines.domain.runs import run_tags
from flip_pipelines.fl_api.client import FLApiError
from flip_pipelines.jobs.training import resume_training, train_model
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.heartbeat import heartbeat_age
from flip_pipelines.services.fl_status import backend_statuses

WORKER_LOST_TAG = "flip/worker_lost"
RUN_FAILURE_REASON_TAG = "dagster/failure_reason"  # set by Dagster on a run that failed in a step, init, ...
ACTIVE_RUN_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                       dg.DagsterRunStatus.STARTED]
FL_API_BUDGET_SECONDS = 20.0  # all FL-API calls of a reconcile tick, well inside Dagster's 60 s sensor timeout
FL_API_CALL_TIMEOUT_SECONDS = 5.0
ENDED_BY = {Backend.FAILED: Outcome.FAILED, Backend.STOPPED: Outcome.STOPPED, Backend.MISSING: Outcome.FAILED}


def run_failure_reason(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first line of what made a run fail: its first failed step and that step's message."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        event = record.event_log_entry.dagster_event
        data = event.event_specific_data if event else None
        user = getattr(data, "user_failure_data", None)
        error = getattr(data, "error", None)
        text = (getattr(user, "description", None) or (error.message if error else "") or "").strip()
        if text and event is not None:
            return f"{event.step_key} failed: {text.splitlines()[0]}"
    run = instance.get_run_by_id(run_id)
    return f"run {run_id} ended {run.status.value if run else 'unknown'}"


def lost_worker(run: dg.DagsterRun) -> bool:
    return worker_was_lost(run.tags.get(RUN_FAILURE_REASON_TAG), run.tags.get(WORKER_LOST_TAG) == "true")


@dg.run_failure_sensor(
    monitored_jobs=[train_model],
    minimum_interval_seconds=5,  # a failed run's net goes back to the queue within a daemon loop
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A training run failed before submitting: the job is DELETED, the model ERROR, the net freed.",
)
def training_failure_sensor(context: dg.RunFailureSensorContext, queue_db: QueueDatabase) -> None:
    run = context.dagster_run
    fl_job_id = run.tags.get("flip/fl_job_id")
    if not fl_job_id:
        context.log.info(f"run {run.run_id} failed before claiming a net: nothing to free")
        return
    with queue_db.session() as session:
        job = lifecycle.get_job(session, uuid.UUID(fl_job_id))
        decision = after_run_failure(job.status, job.fl_backend_job_id is not None, lost_worker(run))
        if decision == AfterFailure.NOTHING:
            context.log.info(f"fl_job {fl_job_id} is {job.status.value}: left to its own run or reconciliation")
            return
        reason = run_failure_reason(context.instance, run.run_id)
        lifecycle.fail_before_submission(session, job.id, reason)
    context.log.info(f"fl_job {fl_job_id}: DELETED, model ERROR, net freed ({reason})")


PHASES = {
    dg.DagsterRunStatus.QUEUED: RunPhase.WAITING, dg.DagsterRunStatus.NOT_STARTED: RunPhase.WAITING,
    dg.DagsterRunStatus.STARTING: RunPhase.WAITING, dg.DagsterRunStatus.STARTED: RunPhase.STARTED,
    dg.DagsterRunStatus.SUCCESS: RunPhase.SUCCEEDED, dg.DagsterRunStatus.FAILURE: RunPhase.FAILED,
    dg.DagsterRunStatus.CANCELING: RunPhase.CANCELED, dg.DagsterRunStatus.CANCELED: RunPhase.CANCELED,
}


@dataclass(frozen=True)
class RunsOfJob:
    seen: RunsSeen
    lost: tuple[dg.DagsterRun, ...]  # started runs whose heartbeat stopped
    attempts: int  # every run of the job
    last_run_id: str | None


def runs_of_job(instance: dg.DagsterInstance, fl_job_id: uuid.UUID, now: float) -> RunsOfJob:
    """The job's runs, newest first, as facts for ``domain.lifecycle.classify_runs``."""
    records = instance.get_run_records(dg.RunsFilter(tags={"flip/fl_job_id": str(fl_job_id)}))
    runs = [r.dagster_run for r in records]
    facts = [RunFact(phase=PHASES.get(r.dagster_run.status, RunPhase.CANCELED),
                     silent_seconds=heartbeat_age(r.dagster_run.tags, r.start_time, now),
                     failure_reason=r.dagster_run.tags.get(RUN_FAILURE_REASON_TAG),
                     marked_lost=r.dagster_run.tags.get(WORKER_LOST_TAG) == "true") for r in records]
    seen = classify_runs(facts, settings.stale_heartbeat_seconds())
    return RunsOfJob(seen, tuple(runs[i] for i in seen.lost), len(runs), runs[0].run_id if runs else None)


def _past_grace(job: ActiveJob) -> bool:
    if job.started is None:
        return True
    return time.time() - epoch_seconds(job.started) > settings.claim_grace_seconds()


@dg.sensor(
    jobs=[train_model, resume_training],
    minimum_interval_seconds=settings.reconcile_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Frees stale nets; restarts or resumes trainings whose run worker died; ends trainings whose FL "
                "job failed, was stopped outside the hub, or vanished.",
)
def training_reconcile_sensor(context: dg.SensorEvaluationContext, queue_db: QueueDatabase,
                              fl_api: FLApiResource) -> dg.SensorResult:
    with queue_db.session() as session:
        notes = [f"freed stale net {r.net_name}" for r in lifecycle.recover_stale_busy_nets(session)]
        jobs = lifecycle.in_progress_jobs(session)
    now = time.time()
    runs = {job.fl_job_id: runs_of_job(context.instance, job.fl_job_id, now) for job in jobs}
    for job in jobs:
        for run in runs[job.fl_job_id].lost:
            context.instance.add_run_tags(run.run_id, {WORKER_LOST_TAG: "true"})
            context.instance.report_run_failed(
                run, f"no heartbeat for {settings.stale_heartbeat_seconds():.0f}s: the run worker was lost")
            notes.append(f"run {run.run_id} of fl_job {job.fl_job_id} lost its worker: marked failed")
    asked = [j for j in jobs if backend_needed(j.backend_job_id is not None, j.net is not None,
                                               runs[j.fl_job_id].seen.state)]
    net_at = {j.net.endpoint: j.net.name for j in asked if j.net}
    statuses = backend_statuses(
        [(j.net.endpoint, j.backend_job_id) for j in asked if j.net and j.backend_job_id],
        lambda endpoint: fl_api.client(endpoint, net=net_at[endpoint], timeout=FL_API_CALL_TIMEOUT_SECONDS),
        budget_seconds=FL_API_BUDGET_SECONDS,
    )
    requests = []
    notes += [f"the FL API at {endpoint} {problem}" for endpoint, problem in statuses.problems.items()]
    for job in jobs:
        of_job = runs[job.fl_job_id]
        backend = (statuses.jobs.get((job.net.endpoint, job.backend_job_id), Backend.NOT_ASKED)
                   if job.net and job.backend_job_id else Backend.NOT_ASKED)
        action = reconcile_action(ReconcileFacts(
            submitted=job.backend_job_id is not None, holds_net=job.net is not None, run=of_job.seen.state,
            backend=backend, past_grace=_past_grace(job), failed_runs=of_job.seen.failed,
        ))
        note, request = _act(context, queue_db, fl_api, job, of_job, backend, action)
        notes += [note] if note else []
        requests += [request] if request else []
    for note in notes:
        context.log.info(note)
    return dg.SensorResult(run_requests=requests,
                           skip_reason=None if requests else ("; ".join(notes) or "queue and FL servers agree"))


def _act(context: dg.SensorEvaluationContext, queue_db: QueueDatabase, fl_api: FLApiResource, job: ActiveJob,
         of_job: RunsOfJob, backend: Backend, action: Action) -> tuple[str | None, dg.RunRequest | None]:
    """Carry out one decision: at most one lifecycle call or one run request."""
    if action == Action.LEAVE:
        return None, None
    if action == Action.WAIT:
        return f"fl_job {job.fl_job_id}: its FL API did not answer; asking again next tick", None
    if action in (Action.RESTART, Action.RESUME):
        assert job.net is not None
        resume = action == Action.RESUME
        return (f"fl_job {job.fl_job_id}: {'resuming monitoring' if resume else 'restarting its training'} on "
                f"{job.net.name}", dg.RunRequest(
            run_key=f"{'resume' if resume else 'restart'}:{job.fl_job_id}:{of_job.attempts}",
            job_name=(resume_training if resume else train_model).name,
            run_config=({"ops": {"load_submitted_training": {"config": {"fl_job_id": str(job.fl_job_id)}}}} if resume
                        else {"ops": {"resolve_backend": {"config": {"model_id": str(job.model_id),
                                                                     "fl_job_id": str(job.fl_job_id)}}}}),
            tags=run_tags(job.net.name, job.model_id, job.fl_job_id, job.model_name),
        ))
    reason = run_failure_reason(context.instance, of_job.last_run_id) if of_job.last_run_id else "no run"
    with queue_db.session() as session:
        if action == Action.REQUEUE:
            lifecycle.requeue(session, job.fl_job_id, "its claim was never picked up by a run")
            return f"fl_job {job.fl_job_id}: no run ever started; queued again", None
        if action == Action.FAIL:
            lifecycle.fail_before_submission(session, job.fl_job_id, reason)
            return f"fl_job {job.fl_job_id}: its run failed before submitting ({reason})", None
        if action == Action.END:
            what = ("vanished from the FL server" if backend == Backend.MISSING
                    else f"ended {backend.value} outside a monitoring run")
            lifecycle.end_training(session, job.fl_job_id, ENDED_BY[backend],
                                   f"Training failed: FL job {job.backend_job_id} {what}")
            return f"fl_job {job.fl_job_id}: FL job {what}; net freed", None
    return _give_up(queue_db, fl_api, job, of_job, reason), None


def _give_up(queue_db: QueueDatabase, fl_api: FLApiResource, job: ActiveJob, of_job: RunsOfJob,
             reason: str) -> str:
    why = ("no net holds it any more" if job.net is None
           else f"{of_job.seen.failed} runs failed or lost their worker (last: {reason})")
    if job.backend_job_id and job.net is not None:
        try:
            with fl_api.client(job.net.endpoint, net=job.net.name, timeout=FL_API_CALL_TIMEOUT_SECONDS) as client:
                client.abort_job(job.backend_job_id)
        except FLApiError as exc:
            why += f"; its FL job could not be aborted: {exc}"
    with queue_db.session() as session:
        if job.backend_job_id:
            lifecycle.end_training(session, job.fl_job_id, Outcome.FAILED, f"Training given up: {why}")
        else:
            lifecycle.fail_before_submission(session, job.fl_job_id, f"given up: {why}")
    return f"fl_job {job.fl_job_id}: given up ({why})"
