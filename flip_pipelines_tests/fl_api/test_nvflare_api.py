"""The FL API with the NVFlare backend, against a real NVFlare server + 2 sites and a real S3 server."""

from pathlib import Path

import pytest

from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, FLJobStatus
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines_tests.conftest import RunningFLApi
from flip_pipelines_tests.fl_api.helpers import (
    presigned_bundle,
    upload_request,
    wait_for_status,
)

pytestmark = pytest.mark.slow
SITES = ["site-1", "site-2"]


def test_job_needing_missing_site_fails_and_can_be_aborted_while_pending(
    nvflare_fl_api: RunningFLApi, s3_server: LocalS3
) -> None:
    """site-3 is provisioned but never started: such a job stays PENDING, then fails; aborted first, STOPPED."""
    files = demo_model_files("nvflare_logreg")
    with nvflare_fl_api.client() as client:
        model_id, urls = presigned_bundle(s3_server, FLBackend.NVFLARE, files)
        client.upload_app(model_id, upload_request(urls, [*SITES, "site-3"]))
        pending = client.submit_job(model_id, submit_token="pending-abort")
        job = client.get_job(pending)
        assert job is not None and job.status == FLJobStatus.PENDING
        assert client.abort_job(pending).status == FLJobStatus.STOPPED
        stopped = wait_for_status(client, pending, lambda s: s != FLJobStatus.PENDING, timeout=30, what="abort")
        assert stopped.status == FLJobStatus.STOPPED

        doomed = client.submit_job(model_id, submit_token="never-scheduled")
        failed = wait_for_status(client, doomed, lambda s: s != FLJobStatus.PENDING, timeout=90,
                                 what="the unschedulable job to fail")
        assert failed.status == FLJobStatus.FAILED
        assert "CAN_NOT_SCHEDULE" in (failed.status_details or ""), failed.status_details


def test_auth_unknown_ids_and_unsafe_urls(nvflare_fl_api: RunningFLApi, s3_server: LocalS3) -> None:
    import httpx

    from flip_pipelines.fl_api.client import FLApiClient, FLApiNotFoundError, FLApiRequestError

    base = nvflare_fl_api.base_url
    assert httpx.get(f"{base}/health").json() == {"status": "ok", "backend": "nvflare"}
    for method, path in [("GET", "/list_jobs"), ("GET", "/check_server_status"), ("DELETE", "/abort_job/x"),
                         ("POST", "/submit_job/m"), ("GET", "/download_job/x"), ("GET", "/check_client_status")]:
        response = httpx.request(method, f"{base}{path}")
        assert response.status_code == 401 and response.json() == {"detail": "missing or invalid bearer token"}
    with FLApiClient(base, "wrong-token-wrong-token") as wrong, pytest.raises(FLApiRequestError) as info:
        wrong.list_jobs()
    assert info.value.status_code == 401

    with nvflare_fl_api.client() as client:
        for call in (
            lambda: client.abort_job("no-such-job"),
            lambda: client.download_job("no-such-job", Path("/dev/null")),
            lambda: client.submit_job("never-uploaded"),
        ):
            with pytest.raises(FLApiNotFoundError):
                call()
        model_id, urls = presigned_bundle(s3_server, FLBackend.NVFLARE, demo_model_files("nvflare_logreg"))
        bad_cases = {
            "off-origin": [*urls[:-1], urls[-1].replace(s3_server.endpoint_url, "http://127.0.0.2:9")],
            "not http": [*urls[:-1], "file:///etc/passwd"],
            "escaping": [*urls[:-1], urls[-1].replace(f"/{model_id}/", f"/{model_id}/%2e%2e/")],
            "outside the model": [*urls[:-1], urls[-1].replace(f"/{model_id}/", "/other-model/")],
            "absolute": [*urls[:-1], urls[-1].replace(f"/{model_id}/", f"/{model_id}//")],
        }
        for name, case in bad_cases.items():
            with pytest.raises(FLApiRequestError) as info:
                client.upload_app(model_id, upload_request(case, SITES))
            assert info.value.status_code == 400, name
            assert "X-Amz-Signature" not in str(info.value), name
        assert not (nvflare_fl_api.upload_dir / model_id).exists(), "nothing was written"
        assert not any(p.name.startswith(".staging") for p in nvflare_fl_api.upload_dir.iterdir())
        expired = [*urls[:-1], urls[-1].replace("X-Amz-Signature=", "X-Amz-Signature=0")]
        with pytest.raises(FLApiRequestError, match="HTTP 403"):
            client.upload_app(model_id, upload_request(expired, SITES))
        assert not (nvflare_fl_api.upload_dir / model_id).exists(), "a failed download leaves no job folder"
