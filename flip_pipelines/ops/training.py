"""The ops of a training run: resolve_backend → validate_clients → bundle → presign → submit → monitor.

Each op is thin: it calls the queue, bundle or FL-API code, says what it did in the run log, and emits lineage
(model files → bundle → FL job → global model) with metadata that never carries a URL or a token.
"""

import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from flip_pipelines import settings
from flip_pipelines.db import queue
from flip_pipelines.domain.enums import FLBackend, FLJobStatus, ModelStatus
from flip_pipelines.domain.errors import FlipError
from flip_pipelines.domain.queue import Claim
from flip_pipelines.fl_api.client import FLApiError, FLApiUnavailableError
from flip_pipelines.fl_api.schemas import UploadAppRequest
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.storage import FlipStorage

HEARTBEAT_TAG = "flip/heartbeat"
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


class TrainModelConfig(dg.Config):
    """Launch with a model id. ``fl_job_id``: a job the queue sensor already claimed. Otherwise the model's oldest
    queued job is claimed, or — given ``trusts`` (trust names) — a job is queued and claimed in one step."""

    model_id: str
    fl_job_id: str | None = None
    net: str | None = None
    trusts: list[str] = []


class MonitorConfig(dg.Config):
    poll_interval_seconds: float | None = Field(
        default=None, gt=0, description="seconds between status polls; unset: FLIP_MONITOR_POLL_SECONDS (default 5)")
    deadline_seconds: float = 24 * 3600.0


@dataclass(frozen=True)
class TrainingTarget:
    claim: Claim
    slot_names: tuple[str, ...]
    trust_names: tuple[str, ...]

    @property
    def backend(self) -> FLBackend:
        return self.claim.fl_backend


@dataclass(frozen=True)
class BundledFiles:
    keys: tuple[str, ...]


@dataclass(frozen=True)
class PresignedBundle:
    keys: tuple[str, ...]
    urls: tuple[str, ...]  # secrets: kept in memory (mem_io_manager), never logged

    def __repr__(self) -> str:
        return f"PresignedBundle({len(self.keys)} objects, URLs redacted)"


@dataclass(frozen=True)
class SubmittedJob:
    backend_job_id: str
    submitted_at: float


TRANSIENT_S3_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed",
                      "500", "502", "503", "504"}


def s3_failure(exc: Exception, doing: str) -> Exception:
    """An S3 error as the op should raise it: transient ones retried, permanent ones (403, 404, bad key) not."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in TRANSIENT_S3_CODES:
            return dg.Failure(f"{doing} failed: S3 refused it ({code}): {exc}", allow_retries=False)
        return dg.RetryRequested(max_retries=3, seconds_to_wait=2)
    if isinstance(exc, BotoCoreError):  # connection errors and the like: the store may come back
        return dg.RetryRequested(max_retries=3, seconds_to_wait=2)
    return exc


def model_asset(target: TrainingTarget, kind: str) -> dg.AssetKey:
    return dg.AssetKey(["flip", "model", str(target.claim.model_id), kind])


def _uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise dg.Failure(f"{what} {text!r} is not a UUID", allow_retries=False) from None


def claim_for_run(config: TrainModelConfig, queue_db: QueueDatabase) -> Claim:
    model_id = _uuid(config.model_id, "model_id")
    with queue_db.session() as session:
        if config.fl_job_id:
            claim = queue.claim_for_job(session, _uuid(config.fl_job_id, "fl_job_id"))
            if claim.model_id != model_id:
                raise FlipError(f"fl_job {config.fl_job_id} belongs to model {claim.model_id}, not {model_id}")
            return claim
        if config.trusts:
            trust_ids = queue.get_trust_ids_by_names(session, config.trusts)
            return queue.enqueue_and_claim(session, model_id, trust_ids, config.net)
        return queue.claim_queued_job_of_model(session, model_id, config.net)


@dg.op(description="Claim (or look up) the net for this training and read its FL backend from fl_nets.")
def resolve_backend(
    context: dg.OpExecutionContext, config: TrainModelConfig, queue_db: QueueDatabase
) -> TrainingTarget:
    try:
        claim = claim_for_run(config, queue_db)
        with queue_db.session() as session:
            backend = queue.resolve_backend(session, claim.net_name)
            slots = queue.get_slot_names_by_trust_ids(session, claim.trust_ids)
            names = queue.get_trust_names_by_ids(session, claim.trust_ids)
    except FlipError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    context.instance.add_run_tags(
        context.run_id,
        {"flip/net": claim.net_name, "flip/model_id": str(claim.model_id), "flip/fl_job_id": str(claim.fl_job_id)},
    )
    target = TrainingTarget(claim=claim, slot_names=tuple(slots[t] for t in claim.trust_ids),
                            trust_names=tuple(names.get(t, str(t)) for t in claim.trust_ids))
    context.log.info(
        f"fl_job {claim.fl_job_id} of model {claim.model_id} runs on net {claim.net_name} ({backend.value}) "
        f"with trusts {', '.join(target.trust_names)} (FL clients {', '.join(target.slot_names)})"
    )
    return target


@dg.op(description="Check the trusts' FL clients are connected: NVFlare strict, Flower a warning.",
       retry_policy=TRANSIENT_RETRY)
def validate_clients(context: dg.OpExecutionContext, target: TrainingTarget, fl_api: FLApiResource) -> TrainingTarget:
    try:
        with fl_api.client(target.claim.endpoint) as client:
            statuses = {c.name: c for c in client.check_client_status()}
    except FLApiUnavailableError as exc:
        raise dg.RetryRequested(max_retries=3, seconds_to_wait=5) from exc
    except FLApiError as exc:
        raise dg.Failure(f"Unable to fetch client statuses from {target.claim.net_name}: {exc}") from exc
    missing = [s for s in target.slot_names if s not in statuses or not statuses[s].online]
    if missing and target.backend == FLBackend.NVFLARE:
        raise dg.Failure(f"Clients unavailable: {', '.join(missing)}", allow_retries=False)
    if missing:
        context.log.warning(f"clients not connected (Flower waits for them): {', '.join(missing)}")
    else:
        context.log.info(f"all {len(target.slot_names)} clients connected: {', '.join(target.slot_names)}")
    return target


@dg.op(description="Copy the model's files and the backend's base application into the bundle prefix on S3.")
def bundle(context: dg.OpExecutionContext, target: TrainingTarget, storage: FlipStorage) -> BundledFiles:
    store = storage.bundle_store(log=context.log.info)
    model_id = str(target.claim.model_id)
    try:
        result = store.bundle(model_id, target.backend)
    except FlipError as exc:
        raise dg.Failure(f"bundling model {model_id} failed: {exc}", allow_retries=False) from exc
    except Exception as exc:
        raise s3_failure(exc, f"bundling model {model_id}") from exc
    table = pd.DataFrame(
        [{"file": s.dest, "from": s.origin, "source": s.source} for s in result.plan.steps]
    ).sort_values("file")
    context.log_event(dg.AssetObservation(asset_key=model_asset(target, "files"), metadata={
        "bucket": storage.model_bucket, "files": len({s.source for s in result.plan.steps if s.origin == "model"}),
    }))
    context.log_event(dg.AssetMaterialization(
        asset_key=model_asset(target, "bundle"),
        description=result.plan.summary(),
        metadata={
            "backend": target.backend.value, "job_type": result.plan.job_type.value, "net": target.claim.net_name,
            "location": f"s3://{result.bucket}/{result.prefix}", "objects": len(result.keys),
            "bytes": result.total_bytes, "duration_s": round(result.seconds, 2),
            "dropped": ", ".join(result.plan.dropped) or "none",
            "files": dg.MetadataValue.table(
                records=[dg.TableRecord(r) for r in table.to_dict("records")],
                schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in table.columns]),
            ),
        },
    ))
    return BundledFiles(keys=result.keys)


@dg.op(description="Presign a GET URL for every bundle object (URLs stay in memory; logs show none).")
def presign(context: dg.OpExecutionContext, bundled: BundledFiles, storage: FlipStorage) -> PresignedBundle:
    try:
        urls = storage.bundle_store(log=context.log.info).presign(bundled.keys, storage.presign_ttl_seconds)
    except FlipError as exc:
        raise dg.Failure(f"presigning failed: {exc}", allow_retries=False) from exc
    except Exception as exc:
        raise s3_failure(exc, "presigning") from exc
    return PresignedBundle(keys=bundled.keys, urls=tuple(urls))


def raise_if_aborted(queue_db: QueueDatabase, claim: Claim) -> None:
    """The abort gate (FLIP's ``_raise_if_job_aborted``): stop before the FL server gets a job nobody wants."""
    with queue_db.session() as session:
        status = queue.get_job(session, claim.fl_job_id).status
    if status.value != "IN_PROGRESS":
        raise dg.Failure(f"fl_job {claim.fl_job_id} was aborted ({status.value}) before submission",
                         allow_retries=False)


@dg.op(description="Upload the application to the net's FL API and submit it exactly once (fl_job id as token).",
       retry_policy=TRANSIENT_RETRY)
def submit(context: dg.OpExecutionContext, target: TrainingTarget, bundle_urls: PresignedBundle,
           fl_api: FLApiResource, queue_db: QueueDatabase) -> SubmittedJob:
    claim = target.claim
    with queue_db.session() as session:
        details = queue.get_required_training_details(session, claim.model_id)
    request = UploadAppRequest(project_id=str(details.project_id), cohort_query=details.cohort_query,
                               trusts=list(target.slot_names), bundle_urls=list(bundle_urls.urls))
    try:
        with fl_api.client(claim.endpoint) as client:
            raise_if_aborted(queue_db, claim)
            uploaded = client.upload_app(str(claim.model_id), request)
            context.log.info(f"uploaded {uploaded.files} file(s) to {claim.net_name}")
            raise_if_aborted(queue_db, claim)
            backend_job_id = client.submit_job(str(claim.model_id), submit_token=f"fl_job-{claim.fl_job_id}")
    except FLApiUnavailableError as exc:
        raise dg.RetryRequested(max_retries=3, seconds_to_wait=5) from exc
    except FLApiError as exc:
        raise dg.Failure(f"the FL API of {claim.net_name} refused the job: {exc}", allow_retries=False) from exc
    with queue_db.session() as session:
        queue.record_backend_job_id(session, claim.fl_job_id, backend_job_id)
        queue.update_model_status(session, claim.model_id, ModelStatus.RUNNING)
        queue.add_log(session, claim.model_id, f"Model training assigned to '{claim.net_name}'",
                      details={"fl_job_id": str(claim.fl_job_id), "backend_job_id": backend_job_id})
    context.log.info(f"submitted as {target.backend.value} job {backend_job_id}")
    context.log_event(dg.AssetMaterialization(asset_key=model_asset(target, "fl_job"), metadata={
        "net": claim.net_name, "backend": target.backend.value, "backend_job_id": backend_job_id,
        "fl_job_id": str(claim.fl_job_id), "trusts": ", ".join(target.trust_names),
        "fl_clients": ", ".join(target.slot_names),
    }))
    return SubmittedJob(backend_job_id=backend_job_id, submitted_at=time.time())


def finish_training(context: dg.OpExecutionContext, target: TrainingTarget, submitted: SubmittedJob,
                    status: FLJobStatus, details: str | None, fl_api: FLApiResource, queue_db: QueueDatabase,
                    storage: FlipStorage) -> None:
    """Record the backend's terminal status: results stored and model RESULTS_UPLOADED, or ERROR/STOPPED."""
    claim = target.claim
    if status == FLJobStatus.FINISHED:
        key = f"{claim.model_id}/{claim.fl_job_id}.zip"
        with tempfile.TemporaryDirectory() as tmp, fl_api.client(claim.endpoint) as client:
            archive = client.download_job(submitted.backend_job_id, Path(tmp) / "result.zip")
            size = archive.stat().st_size
            storage.s3.get_client().upload_file(str(archive), storage.results_bucket, key)
        with queue_db.session() as session:
            queue.complete_job(session, claim.fl_job_id)
            queue.update_model_status(session, claim.model_id, ModelStatus.RESULTS_UPLOADED)
            queue.add_log(session, claim.model_id, f"Training finished; results at s3://{storage.results_bucket}/{key}")
        context.log_event(dg.AssetMaterialization(asset_key=model_asset(target, "global_model"), metadata={
            "location": f"s3://{storage.results_bucket}/{key}", "bytes": size, "net": claim.net_name,
            "backend_job_id": submitted.backend_job_id, "final_status": status.value,
            "training_s": round(time.time() - submitted.submitted_at, 1),
        }))
        context.log.info(f"results stored at s3://{storage.results_bucket}/{key}; net {claim.net_name} is free")
        return
    model_status = ModelStatus.STOPPED if status == FLJobStatus.STOPPED else ModelStatus.ERROR
    with queue_db.session() as session:
        if queue.get_job(session, claim.fl_job_id).status.value == "DELETED":
            context.log.info(f"fl_job {claim.fl_job_id} was aborted by request; the net is already free")
            return
        queue.complete_job(session, claim.fl_job_id)
        queue.update_model_status(session, claim.model_id, model_status)
        queue.add_log(session, claim.model_id, f"Training {status.value.lower()}: {details or 'no details'}",
                      success=False, details={"backend_job_id": submitted.backend_job_id})
    raise dg.Failure(f"FL job {submitted.backend_job_id} ended {status.value}: {details or 'no details'}",
                     allow_retries=False)


@dg.op(description="Poll the FL API until the job ends; store results or record the failure; free the net.")
def monitor(context: dg.OpExecutionContext, config: MonitorConfig, target: TrainingTarget, submitted: SubmittedJob,
            fl_api: FLApiResource, queue_db: QueueDatabase, storage: FlipStorage) -> str:
    deadline = time.monotonic() + config.deadline_seconds
    interval = settings.monitor_poll_seconds(config.poll_interval_seconds)
    if config.poll_interval_seconds and interval < config.poll_interval_seconds:
        context.log.warning(f"poll interval {config.poll_interval_seconds:g}s shortened to {interval:g}s, a third of "
                            "FLIP_MONITOR_STALE_SECONDS")
    context.log.info(f"polling {target.backend.value} job {submitted.backend_job_id} every {interval:g}s")
    last: FLJobStatus | None = None
    with fl_api.client(target.claim.endpoint) as client:
        while True:
            # the reconcile sensor reads this: a stale heartbeat means this run's worker died
            context.instance.add_run_tags(context.run_id, {HEARTBEAT_TAG: str(int(time.time()))})
            try:
                job = client.get_job(submitted.backend_job_id)
            except FLApiUnavailableError as exc:
                context.log.warning(f"FL API unavailable, still polling: {exc}")
                job = None
            if job is not None and job.status != last:
                context.log.info(f"{target.backend.value} job {submitted.backend_job_id}: {job.status.value}"
                                 + (f" ({job.status_details})" if job.status_details else ""))
                last = job.status
            if job is not None and job.status in (FLJobStatus.FINISHED, FLJobStatus.FAILED, FLJobStatus.STOPPED):
                finish_training(context, target, submitted, job.status, job.status_details, fl_api, queue_db,
                                storage)
                return job.status.value
            if time.monotonic() > deadline:
                client.abort_job(submitted.backend_job_id)
                finish_training(context, target, submitted, FLJobStatus.FAILED,
                                f"no result within {config.deadline_seconds:.0f}s; the job was aborted",
                                fl_api, queue_db, storage)
            time.sleep(interval)




class ResumeConfig(dg.Config):
    fl_job_id: str


@dg.op(
    description="Pick up a submitted job whose run died: its net, trusts and backend job id, for monitor.",
    out={"target": dg.Out(TrainingTarget), "submitted": dg.Out(SubmittedJob)},
)
def load_submitted_training(
    context: dg.OpExecutionContext, config: ResumeConfig, queue_db: QueueDatabase
) -> tuple[TrainingTarget, SubmittedJob]:
    fl_job_id = _uuid(config.fl_job_id, "fl_job_id")
    try:
        with queue_db.session() as session:
            claim = queue.claim_for_job(session, fl_job_id)
            job = queue.get_job(session, fl_job_id)
            slots = queue.get_slot_names_by_trust_ids(session, claim.trust_ids)
            names = queue.get_trust_names_by_ids(session, claim.trust_ids)
    except FlipError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    if not job.fl_backend_job_id:
        raise dg.Failure(f"fl_job {fl_job_id} was never submitted: nothing to monitor", allow_retries=False)
    context.log.info(f"resuming monitoring of {claim.fl_backend.value} job {job.fl_backend_job_id} on {claim.net_name}")
    target = TrainingTarget(claim=claim, slot_names=tuple(slots[t] for t in claim.trust_ids),
                            trust_names=tuple(names.get(t, str(t)) for t in claim.trust_ids))
    started = job.started.timestamp() if job.started else time.time()
    return target, SubmittedJob(backend_job_id=job.fl_backend_job_id, submitted_at=started)
