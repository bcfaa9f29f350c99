"""Following a submitted FL job to its end: poll, store the result, end the training once."""

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from pydantic import Field

from flip_pipelines import settings
from flip_pipelines.assets.checks import check_evaluation, evaluate_global_model
from flip_pipelines.assets.training import GLOBAL_MODEL
from flip_pipelines.db import claims, lifecycle, registry
from flip_pipelines.db.timestamps import epoch_seconds
from flip_pipelines.domain.enums import TERMINAL_FL_JOB_STATUSES, FLJobStatus, JobStatus, ModelStatus
from flip_pipelines.domain.errors import FlipError
from flip_pipelines.domain.lifecycle import Outcome, outcome_of_backend_status
from flip_pipelines.domain.queue import Claim
from flip_pipelines.domain.redact import redact_text
from flip_pipelines.domain.result_check import ResultCheck
from flip_pipelines.domain.retry import is_transient
from flip_pipelines.domain.uploaded_results import (
    StoredObject,
    finished_without_pushed_status,
    no_pushed_status_nor_result,
    results_prefix,
    uploaded_result,
)
from flip_pipelines.faults import crash_point
from flip_pipelines.ops.errors import op_error, training_failure
from flip_pipelines.ops.round_metrics import follow_round_metrics, metrics_metadata
from flip_pipelines.ops.training import SubmittedJob, parse_uuid, with_model_key
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.heartbeat import RunHeartbeat
from flip_pipelines.resources.storage import FlipStorage


class MonitorConfig(dg.Config):
    poll_interval_seconds: float | None = Field(
        default=None, gt=0, description="seconds between status polls; unset: FLIP_MONITOR_POLL_SECONDS (default 5)")
    deadline_seconds: float = 24 * 3600.0


def _store_result(claim: Claim, submitted: SubmittedJob, fl_api: FLApiResource, storage: FlipStorage,
                  queue_db: QueueDatabase) -> tuple[str, int, ResultCheck]:
    """Download the finished job's result zip, put it at ``<results-bucket>/<model_id>/<fl_job_id>.zip``, and
    judge it while it is at hand (the global model's asset check)."""
    key = f"{claim.model_id}/{claim.fl_job_id}.zip"
    with tempfile.TemporaryDirectory() as tmp, fl_api.client(claim.endpoint, net=claim.net_name) as client:
        archive = client.download_job(submitted.backend_job_id, Path(tmp) / "result.zip")
        size = archive.stat().st_size
        storage.s3.get_client().upload_file(str(archive), storage.results_bucket, key)
        check = _judge(queue_db, storage, claim, archive)
    return storage.results_uri(key), size, check


def _judge(queue_db: QueueDatabase, storage: FlipStorage, claim: Claim, archive: Path | None) -> ResultCheck:
    try:
        return evaluate_global_model(queue_db, storage, claim.model_id, claim.fl_job_id, archive)
    except Exception as exc:  # the training's outcome stands; only its check could not be made
        return ResultCheck((f"the check could not be made: {exc}",), None, 0, 0, None)


def _materialize_global_model(context: dg.OpExecutionContext, claim: Claim, submitted: SubmittedJob,
                              queue_db: QueueDatabase, check: ResultCheck, metadata: dict[str, object]) -> None:
    context.log_event(dg.AssetMaterialization(asset_key=GLOBAL_MODEL.key, partition=claim.model_key, metadata={
        "model": claim.model_name, "model_id": str(claim.model_id), "fl_job_id": str(claim.fl_job_id),
        "net": claim.net_name, "backend": claim.fl_backend.value, "backend_job_id": submitted.backend_job_id,
        "trusts": ", ".join(claim.trust_names), "training_s": round(time.time() - submitted.submitted_at, 1),
        **metadata, **metrics_metadata(queue_db, claim),
    }))
    context.log_event(check_evaluation(check, claim.model_key))
    (context.log.info if check.passed else context.log.warning)(f"global model check: {check.summary()}")


def _fl_server_log_tail(fl_api: FLApiResource, claim: Claim, backend_job_id: str, lines: int = 15) -> str | None:
    """The last lines of the FL server's log for a failed job, redacted; None when the FL API cannot give it."""
    try:
        with fl_api.client(claim.endpoint, net=claim.net_name, timeout=15.0) as client:
            text = client.run_logs(backend_job_id).log
    except Exception:
        return None
    tail = "\n".join(text.strip().splitlines()[-lines:])
    return redact_text(tail) if tail else None


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
        return _await_pushed_end(context, claim, submitted, queue_db, storage)
    if outcome == Outcome.FINISHED:
        crash_point("after_finished", str(claim.model_id))
        try:
            location, size, check = _store_result(claim, submitted, fl_api, storage, queue_db)
        except Exception as exc:
            raise op_error(context, exc, f"storing the result of FL job {submitted.backend_job_id}", claim) from exc
        if _end(queue_db, claim, outcome, f"Training finished; results at {location}"):
            _materialize_global_model(context, claim, submitted, queue_db, check,
                                      {"location": location, "bytes": size, "final_status": status.value})
        context.log.info(f"results stored at {location}; net {claim.net_name} is free")
        return status.value
    reason = f"FL job {submitted.backend_job_id} ended {status.value}: {details or 'no details'}"
    if not _end(queue_db, claim, outcome, f"Training {status.value.lower()}: {details or 'no details'}"):
        context.log.info(f"fl_job {claim.fl_job_id} was already ended (aborted by request); the net is free")
        return status.value
    log_tail = _fl_server_log_tail(fl_api, claim, submitted.backend_job_id)
    raise training_failure(reason, claim, {"fl_server_log": dg.MetadataValue.md(f"```\n{log_tail}\n```")}
                           if log_tail else None)


def _uploaded_result(storage: FlipStorage, claim: Claim, submitted: SubmittedJob) -> StoredObject | None:
    """The result the net's FL server uploaded to the results bucket for this training (FLIP's naming), if any."""
    started = datetime.fromtimestamp(submitted.submitted_at, UTC)
    return uploaded_result(storage.results_under(results_prefix(claim.model_id)), claim.model_id, started)


def _judge_uploaded(queue_db: QueueDatabase, storage: FlipStorage, claim: Claim,
                    found: StoredObject | None) -> ResultCheck:
    if found is None:
        return _judge(queue_db, storage, claim, None)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "result.zip"
        try:
            storage.s3.get_client().download_file(storage.results_bucket, found.key, str(archive))
        except Exception as exc:  # the training's outcome stands; only its check could not be made
            return ResultCheck((f"the check could not be made: {exc}",), None, 0, 0, None)
        return _judge(queue_db, storage, claim, archive)


def _materialize_uploaded(context: dg.OpExecutionContext, claim: Claim, submitted: SubmittedJob,
                          queue_db: QueueDatabase, storage: FlipStorage, found: StoredObject | None) -> None:
    prefix = storage.results_uri(results_prefix(claim.model_id))
    location = {"location": storage.results_uri(found.key), "bytes": found.size} if found else \
        {"location": f"not found under {prefix}"}
    if found is None:
        context.log.warning(f"the FL server of {claim.net_name} reported its results uploaded, but none is in {prefix}")
    _materialize_global_model(context, claim, submitted, queue_db, _judge_uploaded(queue_db, storage, claim, found),
                              {**location, "final_status": ModelStatus.RESULTS_UPLOADED.value})


def _await_pushed_end(context: dg.OpExecutionContext, claim: Claim, submitted: SubmittedJob,
                      queue_db: QueueDatabase, storage: FlipStorage) -> str:
    """A net whose FL server uploads its results and pushes the final status (FLIP's): wait for that push (the hub
    API ends the training). Without one within the grace, the results bucket decides: the training ends FINISHED on
    the result the FL server uploaded, and as an ERROR when there is none — a finished FL job is no evidence."""
    grace = settings.pushed_status_grace_seconds()
    deadline = time.monotonic() + grace
    context.log.info(f"FL job finished on {claim.net_name}; waiting for its FL server to push the final status")
    while (ended := _ended_meanwhile(queue_db, claim)) is None and time.monotonic() < deadline:
        time.sleep(1.0)
    if ended is None:
        found = _uploaded_result(storage, claim, submitted)
        if found is None:
            reason = no_pushed_status_nor_result(submitted.backend_job_id, grace,
                                                 storage.results_uri(results_prefix(claim.model_id)))
            if _end(queue_db, claim, Outcome.FAILED, reason):
                raise training_failure(reason, claim)
        elif _end(queue_db, claim, Outcome.FINISHED,
                  finished_without_pushed_status(storage.results_uri(found.key), grace)):
            context.log.info(f"results found at {storage.results_uri(found.key)}; net {claim.net_name} is free")
            _materialize_uploaded(context, claim, submitted, queue_db, storage, found)
            return ModelStatus.RESULTS_UPLOADED.value
        ended = _ended_meanwhile(queue_db, claim) or ModelStatus.ERROR.value  # a push or an abort came first
    return _ended_by_push(context, claim, submitted, queue_db, storage, ended)


def _ended_by_push(context: dg.OpExecutionContext, claim: Claim, submitted: SubmittedJob, queue_db: QueueDatabase,
                   storage: FlipStorage, ended: str) -> str:
    """The FL server's pushed final status ended the training: the global model with the pushed metrics, at the
    result the FL server uploaded, when its results were uploaded; a failed run otherwise (an abort is no failure)."""
    if ended == ModelStatus.STOPPED.value:
        context.log.info(f"fl_job {claim.fl_job_id} was ended meanwhile (model {ended}); net is free")
        return ended
    context.log.info(f"the FL server reported {ended}; net {claim.net_name} is free")
    if ended != ModelStatus.RESULTS_UPLOADED.value:
        raise training_failure(f"the FL server of {claim.net_name} reported {ended} for FL job "
                               f"{submitted.backend_job_id}", claim)
    _materialize_uploaded(context, claim, submitted, queue_db, storage, _uploaded_result(storage, claim, submitted))
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
                    raise op_error(context, exc, f"following FL job {submitted.backend_job_id}", claim) from exc
                context.log.warning(f"FL API unavailable, still polling: {exc}")
                job = None
            if job is not None and job.status != last:
                context.log.info(f"{claim.fl_backend.value} job {submitted.backend_job_id}: {job.status.value}"
                                 + (f" ({job.status_details})" if job.status_details else ""))
                last = job.status
                if job.status == FLJobStatus.RUNNING:
                    crash_point("mid_monitor", str(claim.model_id))
            if job is not None and job.status not in (FLJobStatus.PENDING, FLJobStatus.UNKNOWN):
                follow_round_metrics(context, client, claim, submitted.backend_job_id, queue_db)
            if (ended := _ended_meanwhile(queue_db, claim)) is not None:
                if settings.net_options(claim.net_name).results_pushed:
                    return _ended_by_push(context, claim, submitted, queue_db, storage, ended)
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
        raise training_failure(str(exc)) from None
    if not claim.backend_job_id:
        raise training_failure(f"fl_job {fl_job_id} was never submitted: nothing to monitor", claim)
    claim = with_model_key(context, queue_db, claim)
    context.instance.add_run_tags(context.run_id, {"flip/model": claim.model_key})
    context.log.info(f"resuming monitoring of {claim.model_name}: {claim.fl_backend.value} job "
                     f"{claim.backend_job_id} on {claim.net_name}")
    submitted_at = epoch_seconds(started) if started else time.time()
    return claim, SubmittedJob(backend_job_id=claim.backend_job_id, submitted_at=submitted_at)
