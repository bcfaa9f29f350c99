"""Bundles on the real S3 server, built by the real bundling code, for FL-API tests."""

import io
import json
import time
import uuid
import zipfile
from collections.abc import Callable

import numpy as np

from flip_pipelines.domain.enums import FLBackend, FLJobStatus
from flip_pipelines.fl_api.client import FLApiClient
from flip_pipelines.fl_api.schemas import JobMetadata, UploadAppRequest
from flip_pipelines.local.processes import wait_until
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.bundles import BundleStore

MODEL_BUCKET = "fl-api-models"
BUNDLE_BUCKET = "fl-api-bundles"


def ensure_buckets(s3: LocalS3) -> None:
    client = s3.client()
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for bucket in (MODEL_BUCKET, BUNDLE_BUCKET):
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)


def presigned_bundle(
    s3: LocalS3, backend: FLBackend, files: dict[str, bytes], *, ttl: int = 600, model_id: str | None = None
) -> tuple[str, list[str]]:
    """Upload ``files`` as a new model, bundle it for ``backend`` and presign: (model_id, urls)."""
    ensure_buckets(s3)
    model_id = model_id or str(uuid.uuid4())
    store = BundleStore(s3.client(), model_bucket=MODEL_BUCKET, bundle_bucket=BUNDLE_BUCKET)
    for rel, body in files.items():
        store.client.put_object(Bucket=MODEL_BUCKET, Key=f"{model_id}/{rel}", Body=body)
    result = store.bundle(model_id, backend)
    return model_id, store.presign(result.keys, ttl_seconds=ttl)


def with_config(files: dict[str, bytes], **changes: object) -> dict[str, bytes]:
    config = json.loads(files["config.json"])
    config.update(changes)
    return {**files, "config.json": json.dumps(config).encode()}


def upload_request(urls: list[str], trusts: list[str]) -> UploadAppRequest:
    return UploadAppRequest(project_id="project-1", cohort_query="SELECT * FROM cohort", trusts=trusts,
                            bundle_urls=urls)


def wait_for_status(
    client: FLApiClient, job_id: str, accept: Callable[[FLJobStatus], bool], *, timeout: float, what: str
) -> JobMetadata:
    seen: list[str] = []

    def check() -> JobMetadata | None:
        job = client.get_job(job_id)
        if job is not None and (not seen or seen[-1] != job.status.value):
            seen.append(job.status.value)
        return job if job is not None and accept(job.status) else None

    try:
        return wait_until(check, timeout=timeout, interval=0.5, what=what)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; statuses seen: {seen}") from None


def result_archive(zip_bytes: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


def npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as loaded:
        return {k: loaded[k] for k in loaded.files}


def elapsed(start: float) -> float:
    return time.monotonic() - start
