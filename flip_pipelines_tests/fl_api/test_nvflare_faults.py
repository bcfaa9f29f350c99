"""Faults on the real NVFlare deployment: a site dies, the server restarts. Each test restores the deployment."""

import pytest

from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, FLJobStatus
from flip_pipelines.fl_api.client import FLApiUnavailableError
from flip_pipelines.local.nvflare import LocalNVFlare
from flip_pipelines.local.processes import wait_until
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines_tests.conftest import RunningFLApi
from flip_pipelines_tests.fl_api.helpers import presigned_bundle, upload_request, wait_for_status

pytestmark = pytest.mark.slow


def test_client_status_shows_a_killed_site_offline(
    nvflare_fl_api: RunningFLApi, nvflare_deployment: LocalNVFlare
) -> None:
    with nvflare_fl_api.client() as client:
        statuses = {c.name: c for c in client.check_client_status()}
        assert {"site-1", "site-2"} <= set(statuses)
        assert statuses["site-1"].online and statuses["site-2"].online
        nvflare_deployment.kill("site-2")
        try:
            gone = wait_until(
                lambda: (s := {c.name: c for c in client.check_client_status()}) and not s["site-2"].online and s,
                timeout=90, interval=1, what="site-2 to be reported offline",
            )
            assert gone["site-2"].status == "no_reply" and gone["site-1"].online
        finally:
            nvflare_deployment.start_site("site-2")
            nvflare_deployment.wait_for_sites(["site-1", "site-2"], timeout=60)
        wait_until(lambda: all(c.online for c in client.check_client_status() if c.name in ("site-1", "site-2")),
                   timeout=30, what="site-2 back online")


def test_fl_api_recovers_after_the_server_restarts(
    nvflare_fl_api: RunningFLApi, nvflare_deployment: LocalNVFlare, s3_server: LocalS3
) -> None:
    """FLIP #1035: the same FL-API process answers and submits again once the FL server is back."""
    with nvflare_fl_api.client() as client:
        assert client.check_server_status().status in ("stopped", "started")
        nvflare_deployment.kill("server")
        with pytest.raises(FLApiUnavailableError) as info:
            client.check_server_status()
        assert info.value.status_code == 503
        nvflare_deployment.start_server()
        nvflare_deployment.wait_for_sites(["site-1", "site-2"], timeout=90)
        status = wait_until(lambda: client.check_server_status(), timeout=60, interval=1, what="the FL API to recover")
        assert status.status in ("stopped", "started")
        model_id, urls = presigned_bundle(s3_server, FLBackend.NVFLARE, demo_model_files("nvflare_logreg"))
        client.upload_app(model_id, upload_request(urls, ["site-1", "site-2"]))
        job_id = client.submit_job(model_id)
        final = wait_for_status(client, job_id, lambda s: s in (FLJobStatus.FINISHED, FLJobStatus.FAILED),
                                timeout=180, what="the job after the restart")
        assert final.status == FLJobStatus.FINISHED, final.status_details


def test_fl_api_exits_promptly_with_an_open_session(
    nvflare_deployment: LocalNVFlare, s3_server: LocalS3, tmp_path
) -> None:
    """An open FLARE session's threads must not keep the service alive after SIGINT."""
    import os
    import signal
    import time

    from flip_pipelines.local.processes import pid_alive
    from flip_pipelines_tests.conftest import start_fl_api

    running = start_fl_api("nvflare", tmp_path, {"FLIP_NVFLARE_ADMIN_KIT": str(nvflare_deployment.admin_kit)},
                           ["--allowed-origin", s3_server.endpoint_url])
    with running.client() as client:
        assert client.check_server_status().status  # opens the FLARE session
    os.kill(running.pid, signal.SIGINT)
    started = time.monotonic()
    wait_until(lambda: not pid_alive(running.pid), timeout=20, interval=0.1, what="the FL API to exit")
    assert time.monotonic() - started < 20
    assert "Application shutdown complete" in running.log_path.read_text()
