"""Following a submitted FL job to its end: poll, store the result, end the training once."""

import tempfile
import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from flip_pipelines import settings
from flip_pipelines.db import claims, lifecycle, pushes, registry
from flip_pipelines.domain.enums import TERMINAL_FL_JOB_STATUSES, FLJobStatus, JobStatus, ModelStatus
from flip_pipelines.domain.errors import FlipError
from flip_pipelines.domain.lifecycle import Outcome, outcome_of_backend_status
from flip_pipelines.domain.queue import Claim
from flip_pipelines.domain.retry import is_transient
from flip_pipelines.faults import crash_point
from flip_pipelines.ops.errors import op_error
from flip_pipelines.ops.training import SubmittedJob, model_asset, parse_uuid
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.heartbeat import RunHeartbeat
from flip_pipelines.resources.storage import FlipStorage


class MonitorConfig(dg.Config):
    poll_interval_seconds: float | None = Field(
        default=None, gt=0, description="seconds between status polls; unset: FLIP_MONITOR_POLL_SECONDS (default 5)")
    deadline_seconds: float = 24 * 3600.0


def _store_result(claim: Claim, submitted: SubmittedJob, fl_api: FLApiResource,
                  storage: FlipStorage) -> tuple[str, int]:
    """Download the finished job's result zip and put it at ``<results-bucket>/<model_id>/<fl_job_id>.zip``."""
    key = f"{claim.model_id}/{claim.fl_job_id}.zip"
    with tempfile.TemporaryDirectory() as tmp, fl_api.client(claim.endpoint, net=claim.net_name) as client:
        archive = client.download_job(submitted.backend_job_id, Path(tmp) / "result.zip")
        size = archive.stat().st_size
        storage.s3.get_client().upload_file(str(archive), storage.results_bucket, key)
    return f"s3://{storage.results_bucket}/{key}", size


def _metrics_metadata(queue_db: QueueDatabase, claim: Claim) -> dict[str, object]:
    """The metrics the FL side pushed for the model (``fl_metrics``): a per-round table, and each label's last-round
    mean over clients as a number, so Dagster plots it across trainings."""
    with queue_db.session() as session:
        points = pushes.model_metrics(session, claim.model_id)
    if not points:
        return {}
    last = max(p.global_round for p in points)
    finals = {}
    for label in sorted({p.label for p in points}):
        values = [p.result for p in points if p.label == label and p.global_round == last]
        finals[f"final_{label}"] = dg.MetadataValue.float(sum(values) / len(values))
    columns = {"round": "int", "client": "string", "metric": "string", "value": "float"}
    return {**finals, "rounds": last, "metrics": dg.MetadataValue.table(
        records=[dg.TableRecord({"round": p.global_round, "client": p.fl_client_name, "metric": p.label,
                                 "value": p.result}) for p in points],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns.items()]))}


def _end(queue_db: QueueDatabase, claim: Claim, outcome: Outcome, reason: str) -> bool:
    with queue_db.session() as session:
        return lifecycle.end_training(session, claim.fl_job_id, outcome, reason)


def _ended_meanwhile(queue_db: QueueDatabase, claim: Claim) -> str | None:
    """The model's status when its training was ended by someone else (a pushed final status, an abort)."""
    with queue_db.session() as session:
        if lifecycle.get_job(session, claim.fl_job_id).status == JobStatus.IN_PROGRESS:
            return None
        return registry.get_model(session, claim.model_id).status.value


def finish_training(context: dg.OpExecutionContext, claim: Claim, submitted: SubmittedJob, status: FLJobStatus,
                    details: str | None, fl_api: FLApiResource, queue_db: QueueDatabase,
                    storage: FlipStorage) -> str:
    """Store the result of a FINISHED job and end the training; end it FAILED/STOPPED otherwise (and fail the run)."""
    outcome = outcome_of_backend_status(status) or Outcome.FAILED
    if outcome == Outcome.FINISHED and settings.net_options(claim.net_name).results_pushed:
        return _await_pushed_end(context, claim, submitted, queue_db)
    if outcome == Outcome.FINISHED:
        crash_point("after_finished", str(claim.model_id))
        try:
            location, size = _store_result(claim, submitted, fl_api, storage)
        except Exception as exc:
            raise op_error(context, exc, f"storing the result of FL job {submitted.backend_job_id}") from exc
        if _end(queue_db, claim, outcome, f"Training finished; results at {location}"):
            context.log_event(dg.AssetMaterialization(asset_key=model_asset(claim, "global_model"), metadata={
                "model": claim.model_name, "location": location, "bytes": size, "net": claim.net_name,
                "backend_job_id": submitted.backend_job_id, "final_status": status.value,
                "training_s": round(time.time() - submitted.submitted_at, 1), **_metrics_metadata(queue_db, claim),
            }))
        context.log.info(f"results stored at {location}; net {claim.net_name} is free")
        return status.value
    reason = f"FL job {submitted.backend_job_id} ended {status.value}: {details or 'no details'}"
    if not _end(queue_db, claim, outcome, f"Training {status.value.lower()}: {details or 'no details'}"):
        context.log.info(f"fl_job {claim.fl_job_id} was already ended (aborted by request); the net is free")
        return status.value
    raise dg.Failure(reason, allow_retries=False)


def _await_pushed_end(context: dg.OpExecutionContext, claim: Claim, submitted: SubmittedJob,
                      queue_db: QueueDatabase) -> str:
    """A net whose FL server uploads its results and pushes the final status (FLIP's): wait for that push (the hub
    API ends the training), then end it FINISHED ourselves if none came within the grace."""
    deadline = time.monotonic() + settings.pushed_status_grace_seconds()
    context.log.info(f"FL job finished on {claim.net_name}; waiting for its FL server to push the final status")
    while (ended := _ended_meanwhile(queue_db, claim)) is None and time.monotonic() < deadline:
        time.sleep(1.0)
    if ended is None:
        _end(queue_db, claim, Outcome.FINISHED, "Training finished; its FL server pushed no final status "
                                                f"within {settings.pushed_status_grace_seconds():.0f}s")
        ended = ModelStatus.RESULTS_UPLOADED.value
    return _ended_by_push(context, claim, submitted, queue_db, ended)


def _ended_by_push(context: dg.OpExecutionContext, claim: Claim, submitted: SubmittedJob, queue_db: QueueDatabase,
                   ended: str) -> str:
    """The FL server's pushed final status ended the training: the global model with the pushed metrics when its
    results were uploaded; a failed run otherwise."""
    context.log.info(f"the FL server reported {ended}; net {claim.net_name} is free")
    if ended != ModelStatus.RESULTS_UPLOADED.value:
        raise dg.Failure(f"the FL server of {claim.net_name} reported {ended} for FL job {submitted.backend_job_id}",
                         allow_retries=False)
    context.log_event(dg.AssetMaterialization(asset_key=model_asset(claim, "global_model"), metadata={
        "model": claim.model_name, "location": "uploaded by the net's FL server", "net": claim.net_name,
        "backend_job_id": submitted.backend_job_id, "final_status": ended,
        "training_s": round(time.time() - submitted.submitted_at, 1), **_metrics_metadata(queue_db, claim),
    }))
    return ended


@dg.op(description="Poll the FL API until the job ends; store results or record the failure; free the net.")
def monitor(context: dg.OpExecutionContext, config: MonitorConfig, claim: Claim, submitted: SubmittedJob,
            fl_api: FLApiResource, queue_db: QueueDatabase, storage: FlipStorage, heartbeat: RunHeartbeat) -> str:
    deadline = time.monotonic() + config.deadline_seconds
    interval = settings.monitor_poll_seconds(config.poll_interval_seconds)
    context.log.info(f"polling {claim.fl_backend.value} job {submitted.backend_job_id} every {interval:g}s")
    last: FLJobStatus | None = None
    with fl_api.client(claim.endpoint, net=claim.net_name) as client:
        while True:
            try:
                job = client.get_job(submitted.backend_job_id)
            except Exception as exc:
                if not is_transient(exc):
                    raise op_error(context, exc, f"following FL job {submitted.backend_job_id}") from exc
                context.log.warning(f"FL API unavailable, still polling: {exc}")
                job = None
            if job is not None and job.status != last:
                context.log.info(f"{claim.fl_backend.value} job {submitted.backend_job_id}: {job.status.value}"
                                 + (f" ({job.status_details})" if job.status_details else ""))
                last = job.status
                if job.status == FLJobStatus.RUNNING:
                    crash_point("mid_monitor", str(claim.model_id))
            if (ended := _ended_meanwhile(queue_db, claim)) is not None:
                if settings.net_options(claim.net_name).results_pushed and ended != ModelStatus.STOPPED.value:
                    return _ended_by_push(context, claim, submitted, queue_db, ended)
                context.log.info(f"fl_job {claim.fl_job_id} was ended meanwhile (model {ended}); net is free")
                return ended
            if job is not None and job.status in TERMINAL_FL_JOB_STATUSES:
                return finish_training(context, claim, submitted, job.status, job.status_details, fl_api, queue_db,
                                       storage)
            if time.monotonic() > deadline:
                client.abort_job(submitted.backend_job_id)
                return finish_training(context, claim, submitted, FLJobStatus.FAILED,
                                       f"no result within {config.deadline_seconds:.0f}s; the job was aborted",
                                       fl_api, queue_db, storage)
            time.sleep(interval)


class ResumeConfig(dg.Config):
    fl_job_id: str


@dg.op(
    description="Pick up a submitted job whose run died: its net, trusts and backend job id, for monitor.",
    out={"claim": dg.Out(Claim), "submitted": dg.Out(SubmittedJob)},
)
def load_submitted_training(context: dg.OpExecutionContext, config: ResumeConfig,
                            queue_db: QueueDatabase) -> tuple[Claim, SubmittedJob]:
    fl_job_id = parse_uuid(config.fl_job_id, "fl_job_id")
    try:
        with queue_db.session() as session:
            claim = claims.claim_for_job(session, fl_job_id)
            started = lifecycle.get_job(session, fl_job_id).started
    except FlipError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    if not claim.backend_job_id:
        raise dg.Failure(f"fl_job {fl_job_id} was never submitted: nothing to monitor", allow_retries=False)
    context.instance.add_run_tags(context.run_id, {"flip/model": claim.model_name})
    context.log.info(f"resuming monitoring of {claim.model_name}: {claim.fl_backend.value} job "
                     f"{claim.backend_job_id} on {claim.net_name}")
    submitted_at = started.timestamp() if started else time.time()
    return claim, SubmittedJob(backend_job_id=claim.backend_job_id, submitted_at=submitted_at)
