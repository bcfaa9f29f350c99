"""Flower-specific behaviour of the FL API, on a real SuperLink + 2 SuperNodes and a real S3 server."""

import time

import pytest

from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, FLJobStatus
from flip_pipelines.fl_api.backends.flower_control import FlowerControl
from flip_pipelines.fl_api.client import FLApiRequestError
from flip_pipelines.local.flower import LocalFlower
from flip_pipelines.local.processes import wait_until
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines_tests.conftest import FLOWER_NODE_LOST_SECONDS, FLOWER_STALL_SECONDS, RunningFLApi
from flip_pipelines_tests.fl_api.helpers import presigned_bundle, upload_request, wait_for_status, with_config

pytestmark = pytest.mark.slow
SITES = ["site-1", "site-2"]
TERMINAL = (FLJobStatus.FINISHED, FLJobStatus.FAILED, FLJobStatus.STOPPED)


def test_client_error_fails_the_run_with_its_reason(flower_fl_api: RunningFLApi, s3_server: LocalS3) -> None:
    files = with_config(demo_model_files("flower_logreg"), FAIL_ON_SITE="site-2")
    model_id, urls = presigned_bundle(s3_server, FLBackend.FLOWER, files)
    with flower_fl_api.client() as client:
        client.upload_app(model_id, upload_request(urls, SITES))
        job_id = client.submit_job(model_id)
        final = wait_for_status(client, job_id, lambda s: s in TERMINAL, timeout=180, what="the run to end")
    assert final.status == FLJobStatus.FAILED
    assert "client error" in (final.status_details or "") and "deliberate failure on site-2" in final.status_details


@pytest.mark.parametrize(
    ("extra", "named"),
    [({"weights.npz": b"\0" * 64}, "weights.npz"), ({"test_models.py": b"x = 1\n"}, "test_models.py"),
     ({"blob.json": b"[" + b"0," * 5_500_000 + b"0]"}, "over the 10485760-byte FAB limit")],
)
def test_fab_rules_are_enforced_not_silently_applied(
    flower_fl_api: RunningFLApi, s3_server: LocalS3, extra: dict[str, bytes], named: str
) -> None:
    model_id, urls = presigned_bundle(s3_server, FLBackend.FLOWER, {**demo_model_files("flower_logreg"), **extra})
    with flower_fl_api.client() as client:
        before = len(client.list_jobs())
        with pytest.raises(FLApiRequestError) as info:
            client.upload_app(model_id, upload_request(urls, SITES))
        assert info.value.status_code == 400 and named in str(info.value)
        assert not (flower_fl_api.upload_dir / model_id).exists()
        assert len(client.list_jobs()) == before, "nothing was submitted"


def test_killed_supernode_fails_the_run_and_shows_disconnected(
    flower_fl_api: RunningFLApi, flower_deployment: LocalFlower, s3_server: LocalS3
) -> None:
    files = with_config(demo_model_files("flower_logreg"), GLOBAL_ROUNDS=40, STEP_SLEEP_SECONDS=0.3)
    model_id, urls = presigned_bundle(s3_server, FLBackend.FLOWER, files)
    with flower_fl_api.client() as client:
        assert {c.name: c.status for c in client.check_client_status()} == {"site-1": "CONNECTED",
                                                                             "site-2": "CONNECTED"}
        client.upload_app(model_id, upload_request(urls, SITES))
        job_id = client.submit_job(model_id)
        wait_for_status(client, job_id, lambda s: s == FLJobStatus.RUNNING, timeout=60, what="RUNNING")
        flower_deployment.kill("site-2")
        killed_at = time.monotonic()
        try:
            final = wait_for_status(client, job_id, lambda s: s in TERMINAL, timeout=150,
                                    what="the run to be reported failed")
            took = time.monotonic() - killed_at
            assert final.status == FLJobStatus.FAILED, final.status_details
            # Flower notices a dead node after two missed heartbeats; our deadline comes on top of that
            assert took < FLOWER_NODE_LOST_SECONDS + FLOWER_STALL_SECONDS + 15, f"reported after {took:.0f}s"
            on_link = FlowerControl(flower_deployment.address).list_runs(int(job_id))[0]
            assert on_link.status.startswith("finished"), f"the run still holds the SuperLink: {on_link.status}"
            statuses = wait_until(
                lambda: (s := {c.name: c.status for c in client.check_client_status()})["site-2"] == "DISCONNECTED"
                and s,
                timeout=60, interval=1, what="site-2 to show DISCONNECTED",
            )
            assert statuses["site-1"] == "CONNECTED"
        finally:
            flower_deployment.start_node("site-2")
            flower_deployment.wait_for_nodes(SITES, timeout=60)
        wait_until(lambda: all(c.online for c in client.check_client_status()), timeout=30, what="site-2 back")


def test_run_waiting_for_a_missing_node_is_stopped_and_failed_by_the_deadline(
    flower_fl_api: RunningFLApi, flower_deployment: LocalFlower, s3_server: LocalS3
) -> None:
    """A SuperNode that is gone before the run starts: Flower would wait forever; the watchdog ends it."""
    import signal

    model_id, urls = presigned_bundle(s3_server, FLBackend.FLOWER, demo_model_files("flower_logreg"))
    with flower_fl_api.client() as client:
        client.upload_app(model_id, upload_request(urls, SITES))
        flower_deployment.kill("site-2", signal.SIGTERM)  # a clean exit: the node deactivates, mostly at once
        try:
            wait_until(lambda: {c.name: c.status for c in client.check_client_status()}.get("site-2") == "DISCONNECTED",
                       timeout=FLOWER_NODE_LOST_SECONDS, interval=0.5, what="site-2 to disconnect")
            job_id = client.submit_job(model_id)
            submitted = time.monotonic()
            final = wait_for_status(client, job_id, lambda s: s in TERMINAL, timeout=FLOWER_STALL_SECONDS + 60,
                                    what="the stalled run to be failed")
            assert final.status == FLJobStatus.FAILED
            assert "stalled: waiting for SuperNodes (1 online, 2 required)" in (final.status_details or "")
            assert time.monotonic() - submitted >= FLOWER_STALL_SECONDS
            on_link = FlowerControl(flower_deployment.address).list_runs(int(job_id))[0]
            assert on_link.status.startswith("finished"), on_link.status
        finally:
            flower_deployment.start_node("site-2")
            flower_deployment.wait_for_nodes(SITES, timeout=60)
