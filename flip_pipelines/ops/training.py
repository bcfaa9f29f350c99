"""The ops of a training run up to its submission: resolve_backend → validate_clients → bundle → presign → submit.

Each op is thin: one lifecycle call per state change, a line in the run log for what it did, lineage metadata
that never carries a URL or a token. Every op is safe to run again for a claimed job: a job the FL server
already has is never bundled, uploaded or submitted a second time (a restarted run goes straight to monitor).
"""

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import dagster as dg

from flip_pipelines import settings
from flip_pipelines.assets.training import FL_JOB, MODEL_FILES, MODEL_PARTITIONS, TRAINING_BUNDLE
from flip_pipelines.db import claims, lifecycle, model_partitions, registry
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.errors import FlipError
from flip_pipelines.domain.queue import Claim, QueuedBehind
from flip_pipelines.domain.runs import FL_JOB_ID_TAG
from flip_pipelines.domain.submission import (
    LISTED_BEFORE_TAG,
    encode_job_ids,
    job_to_adopt,
    listed_before_first_attempt,
)
from flip_pipelines.domain.uploaded_results import flip_components_warning, missing_flip_components
from flip_pipelines.faults import crash_point
from flip_pipelines.fl_api.client import FLApiClient, FLApiNotFoundError
from flip_pipelines.fl_api.schemas import UploadAppRequest
from flip_pipelines.ops.errors import op_error, training_failure
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.heartbeat import RunHeartbeat
from flip_pipelines.resources.storage import FlipStorage
from flip_pipelines.services.model_checks import check_models


class TrainModelConfig(dg.Config):
    """Pick the model as the run's partition (the Launchpad's partition picker), or name it in ``model_id`` (its
    id or its partition key). ``fl_job_id``: a job the queue sensor already claimed. Otherwise the model's oldest
    queued job is claimed; with none queued, one is queued for ``trusts`` (trust names; default: every trust
    approved for the model) and claimed in the same step."""

    model_id: str | None = None
    fl_job_id: str | None = None
    net: str | None = None
    trusts: list[str] = []


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


def parse_uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise training_failure(f"{what} {text!r} is not a UUID") from None


def model_of_run(context: dg.OpExecutionContext, config: TrainModelConfig, queue_db: QueueDatabase) -> uuid.UUID:
    """The model a run trains: ``model_id`` (an id, or a partition key), else the run's partition."""
    named = config.model_id or (context.partition_key if context.has_partition_key else None)
    if not named:
        raise FlipError("no model chosen: pick the model's partition when launching, or set model_id")
    try:
        return uuid.UUID(named)
    except ValueError:
        with queue_db.session() as session:
            return model_partitions.model_of_partition(session, named)


def claim_for_run(log: dg.DagsterLogManager, model_id: uuid.UUID, config: TrainModelConfig, queue_db: QueueDatabase,
                  storage: FlipStorage) -> Claim | QueuedBehind:
    """The claim this run trains: the sensor's, or one taken now for a Launchpad launch (a model whose files suit
    no backend is refused with every reason, before anything is written) — unless older queued jobs wait for the
    free nets it suits, which the queue sensor starts first: then the job waits QUEUED in its place."""
    if config.fl_job_id:
        with queue_db.session() as session:
            claim = claims.claim_for_job(session, parse_uuid(config.fl_job_id, "fl_job_id"))
        if claim.model_id != model_id:
            raise FlipError(f"fl_job {config.fl_job_id} belongs to model {claim.model_id}, not {model_id}")
        return claim
    with queue_db.session() as session:
        sources = storage.base_app_sources(registry.net_backends(session))
    check = storage.bundle_store().check(str(model_id), sources=sources)
    with queue_db.session() as session:
        refusal = check.refusal(registry.registered_backends(session))
        if refusal:
            raise FlipError(f"model {registry.get_model(session, model_id).name} cannot train: {refusal}")
        free = claims.free_net_count(session).keys() & check.backends
        waiting = [m for m in claims.queued_models(session) if m != model_id] if free else []
    backends_of = {m: c.backends for m, c in check_models(storage, waiting, log, sources).items()}
    with queue_db.session() as session:
        if not config.trusts and claims.has_queued_job(session, model_id):
            return claims.claim_queued_job_of_model(session, model_id, check.backends, config.net,
                                                    backends_of=backends_of)
        trust_ids = registry.get_trust_ids_by_names(session, config.trusts or registry.approved_trust_names(
            session, model_id))
        return claims.enqueue_and_claim(session, model_id, trust_ids, check.backends, config.net,
                                        backends_of=backends_of)


def model_key(context: dg.OpExecutionContext, queue_db: QueueDatabase, model_id: uuid.UUID) -> str:
    """The model's partition key, the partition added when the queue sensor has not yet."""
    with queue_db.session() as session:
        key = model_partitions.partition_key_of_model(session, model_id)
    if not context.instance.has_dynamic_partition(MODEL_PARTITIONS.name, key):
        context.instance.add_dynamic_partitions(MODEL_PARTITIONS.name, [key])
    return key


def with_model_key(context: dg.OpExecutionContext, queue_db: QueueDatabase, claim: Claim) -> Claim:
    return replace(claim, model_key=model_key(context, queue_db, claim.model_id))


def wait_in_queue(context: dg.OpExecutionContext, queue_db: QueueDatabase, behind: QueuedBehind) -> None:
    """A launch that may not jump the queue ends here, its job QUEUED: the run succeeds without claiming, so no
    failure or reconcile sensor acts on it, and it carries no ``flip/fl_job_id`` (the job's runs are the
    sensor's)."""
    key = model_key(context, queue_db, behind.model_id)
    context.instance.add_run_tags(context.run_id, {
        "flip/model_id": str(behind.model_id), "flip/model": key, "flip/queued_fl_job_id": str(behind.fl_job_id)})
    context.log.info(f"{key} (fl_job {behind.fl_job_id}) waits in the queue: {behind.reason()}")


@dg.op(description="Claim (or look up) the net for this training: a free net of a backend the model's files suit, "
                   "unless older queued jobs wait for it (then the job waits QUEUED and the run ends here).",
       out=dg.Out(Claim, is_required=False))
def resolve_backend(context: dg.OpExecutionContext, config: TrainModelConfig, queue_db: QueueDatabase,
                    storage: FlipStorage, heartbeat: RunHeartbeat) -> Iterator[dg.Output[Claim]]:
    """``heartbeat`` beats from here to the end of the run (resources live as long as an in-process run)."""
    try:
        model_id = model_of_run(context, config, queue_db)
        taken = claim_for_run(context.log, model_id, config, queue_db, storage)
        if isinstance(taken, QueuedBehind):
            wait_in_queue(context, queue_db, taken)
            return
        claim = with_model_key(context, queue_db, taken)
    except FlipError as exc:
        raise training_failure(str(exc)) from None
    except Exception as exc:
        chosen = config.model_id or (context.partition_key if context.has_partition_key else "")
        raise op_error(context, exc, f"checking model {chosen}") from exc
    context.instance.add_run_tags(context.run_id, {
        "flip/net": claim.net_name, "flip/model_id": str(claim.model_id), "flip/fl_job_id": str(claim.fl_job_id),
        "flip/model": claim.model_key,
    })
    context.log.info(
        f"{claim.model_name} (fl_job {claim.fl_job_id}) trains on net {claim.net_name} ({claim.fl_backend.value}) "
        f"with trusts {', '.join(claim.trust_names)} (FL clients {', '.join(claim.slot_names)})"
    )
    crash_point("after_claim", str(claim.model_id))
    yield dg.Output(claim)


def _already_submitted(context: dg.OpExecutionContext, claim: Claim) -> bool:
    if claim.backend_job_id:
        context.log.info(f"the FL server already has this training as job {claim.backend_job_id}: nothing to redo")
    return bool(claim.backend_job_id)


@dg.op(description="Check the trusts' FL clients are connected: NVFlare strict, Flower a warning.")
def validate_clients(context: dg.OpExecutionContext, claim: Claim, fl_api: FLApiResource) -> Claim:
    if _already_submitted(context, claim):
        return claim
    try:
        with fl_api.client(claim.endpoint, net=claim.net_name) as client:
            statuses = {c.name: c for c in client.check_client_status()}
    except Exception as exc:
        raise op_error(context, exc, f"fetching client statuses from {claim.net_name}", claim) from exc
    missing = [s for s in claim.slot_names if s not in statuses or not statuses[s].online]
    if missing and claim.fl_backend == FLBackend.NVFLARE:
        raise training_failure(f"Clients unavailable: {', '.join(missing)}", claim)
    if missing:
        context.log.warning(f"clients not connected (Flower waits for them): {', '.join(missing)}")
    else:
        context.log.info(f"all {len(claim.slot_names)} clients connected: {', '.join(claim.slot_names)}")
    return claim


@dg.op(description="Copy the model's files and the backend's base application into the bundle prefix on S3.")
def bundle(context: dg.OpExecutionContext, claim: Claim, storage: FlipStorage) -> BundledFiles:
    if _already_submitted(context, claim):
        return BundledFiles(keys=())
    try:
        options = settings.net_options(claim.net_name)
        source = storage.base_app_source_of(claim.net_name)
        context.log.info(f"bundling from {source}" + (f" (net {claim.net_name}'s own base_app_source)"
                                                      if options.base_app_source else ""))
        store = storage.bundle_store(log=context.log.info, base_app_source=source,
                                     on_copy=lambda: crash_point("mid_bundle", str(claim.model_id)))
        result = store.bundle(str(claim.model_id), claim.fl_backend, options.nvflare_layout)
        if options.results_pushed and claim.fl_backend == FLBackend.NVFLARE:
            missing = missing_flip_components(store.server_configs(result))
            if missing:
                context.log.warning(flip_components_warning(claim.net_name, source, missing))
    except Exception as exc:
        raise op_error(context, exc, f"bundling {claim.model_key}", claim) from exc
    files = sorted(({"file": s.dest, "from": s.origin, "source": s.source} for s in result.plan.steps),
                   key=lambda row: row["file"])
    context.log_event(dg.AssetObservation(asset_key=MODEL_FILES.key, partition=claim.model_key, metadata={
        "model_id": str(claim.model_id), "location": f"s3://{storage.model_bucket}/{claim.model_id}/",
        "files": len({s.source for s in result.plan.steps if s.origin == "model"}),
    }))
    context.log_event(dg.AssetMaterialization(
        asset_key=TRAINING_BUNDLE.key, partition=claim.model_key,
        description=result.plan.summary(),
        metadata={
            "model": claim.model_name, "backend": claim.fl_backend.value, "job_type": result.plan.job_type.value,
            "net": claim.net_name, "location": f"s3://{result.bucket}/{result.prefix}",
            "objects": len(result.keys), "bytes": result.total_bytes, "duration_s": round(result.seconds, 2),
            "dropped": ", ".join(result.plan.dropped) or "none",
            "files": dg.MetadataValue.table(
                records=[dg.TableRecord(r) for r in files],
                schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in ("file", "from", "source")]),
            ),
        },
    ))
    return BundledFiles(keys=result.keys)


@dg.op(description="Presign a GET URL for every bundle object (URLs stay in memory; logs show none).")
def presign(context: dg.OpExecutionContext, bundled: BundledFiles, storage: FlipStorage) -> PresignedBundle:
    if not bundled.keys:
        return PresignedBundle(keys=(), urls=())
    try:
        urls = storage.bundle_store(log=context.log.info).presign(bundled.keys, storage.presign_ttl_seconds)
    except Exception as exc:
        raise op_error(context, exc, "presigning the bundle") from exc
    return PresignedBundle(keys=bundled.keys, urls=tuple(urls))


def raise_if_aborted(queue_db: QueueDatabase, claim: Claim) -> None:
    """The abort gate (FLIP's ``_raise_if_job_aborted``): stop before the FL server gets a job nobody wants."""
    with queue_db.session() as session:
        status = lifecycle.get_job(session, claim.fl_job_id).status
    if status.value != "IN_PROGRESS":
        raise training_failure(f"the training was aborted ({status.value}) before its submission", claim)


def _job_taken_earlier(context: dg.OpExecutionContext, client: FLApiClient, claim: Claim) -> str | None:
    """On a net whose FL API ignores the submit token (FLIP's): the job an earlier attempt of this training got
    it to take, found in its ``/list_jobs`` (``domain.submission``). The first attempt notes what the net lists
    for the model on its run, before anything is uploaded, and adopts nothing."""
    listed = [job.job_id for job in client.list_jobs(name_prefix=str(claim.model_id))]
    runs = context.instance.get_run_records(dg.RunsFilter(tags={FL_JOB_ID_TAG: str(claim.fl_job_id)}))
    before = listed_before_first_attempt([r.dagster_run.tags.get(LISTED_BEFORE_TAG) for r in reversed(runs)])
    if before is None:
        context.instance.add_run_tags(context.run_id, {LISTED_BEFORE_TAG: encode_job_ids(listed)})
        return None
    adoption = job_to_adopt(listed, before)
    if adoption.also_new:
        context.log.warning(f"{claim.net_name} also lists job(s) {', '.join(adoption.also_new)} for this model since "
                            f"the training's first attempt: left alone")
    if adoption.job_id:
        context.log.info(f"{claim.net_name} already took this training as job {adoption.job_id} (its FL API ignores "
                         "the submit token): adopted, not submitted again")
    return adoption.job_id


@dg.op(description="Upload the application to the net's FL API and submit it exactly once (fl_job id as token; "
                   "on FLIP's FL API, which ignores it, a job already taken is found in /list_jobs).")
def submit(context: dg.OpExecutionContext, claim: Claim, bundle_urls: PresignedBundle, fl_api: FLApiResource,
           queue_db: QueueDatabase) -> SubmittedJob:
    if _already_submitted(context, claim):
        return SubmittedJob(backend_job_id=str(claim.backend_job_id), submitted_at=time.time())
    with queue_db.session() as session:
        details = registry.get_required_training_details(session, claim.model_id)
    request = UploadAppRequest(project_id=str(details.project_id), cohort_query=details.cohort_query,
                               trusts=list(claim.slot_names), bundle_urls=list(bundle_urls.urls))
    try:
        with fl_api.client(claim.endpoint, net=claim.net_name) as client:
            raise_if_aborted(queue_db, claim)
            taken = None
            if not settings.net_options(claim.net_name).submit_token:
                taken = _job_taken_earlier(context, client, claim)
            if taken is None:
                uploaded = client.upload_app(str(claim.model_id), request)
                context.log.info(f"uploaded {uploaded.files} file(s) to {claim.net_name}")
                crash_point("after_upload", str(claim.model_id))
                raise_if_aborted(queue_db, claim)
            backend_job_id = taken or client.submit_job(str(claim.model_id), submit_token=f"fl_job-{claim.fl_job_id}")
    except dg.Failure:
        raise
    except Exception as exc:
        raise op_error(context, exc, f"submitting {claim.model_key} to {claim.net_name}", claim) from exc
    crash_point("after_submit", str(claim.model_id))
    try:
        with queue_db.session() as session:
            lifecycle.record_submission(session, claim.fl_job_id, backend_job_id, claim.net_name)
    except lifecycle.JobNotRunningError as exc:
        _abort_quietly(fl_api, claim, backend_job_id)
        raise training_failure(f"{exc}: FL job {backend_job_id} aborted", claim) from None
    context.log.info(f"{'adopted' if taken else 'submitted as'} {claim.fl_backend.value} job {backend_job_id}")
    context.log_event(dg.AssetMaterialization(asset_key=FL_JOB.key, partition=claim.model_key, metadata={
        "model": claim.model_name, "net": claim.net_name, "backend": claim.fl_backend.value,
        "backend_job_id": backend_job_id, "fl_job_id": str(claim.fl_job_id), "trusts": ", ".join(claim.trust_names),
        "fl_clients": ", ".join(claim.slot_names),
    }))
    return SubmittedJob(backend_job_id=backend_job_id, submitted_at=time.time())


def _abort_quietly(fl_api: FLApiResource, claim: Claim, backend_job_id: str) -> None:
    """The training was aborted while the FL server took its job: stop that job too (gone already is fine)."""
    try:
        with fl_api.client(claim.endpoint, net=claim.net_name) as client:
            client.abort_job(backend_job_id)
    except FLApiNotFoundError:
        pass
