"""``GET /job_metrics/{job_id}`` on both real backends: per-round, per-client metrics served while the job is still
RUNNING, complete for every round and client once it has finished, and the same as in the downloaded result."""

import math
import time
from pathlib import Path

import httpx
import pytest

from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, FLJobStatus
from flip_pipelines.fl_api.client import FLApiClient, FLApiNotFoundError
from flip_pipelines.fl_api.metrics import parse_round_metrics
from flip_pipelines.fl_api.schemas import RoundMetric
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines_tests.conftest import RunningFLApi
from flip_pipelines_tests.fl_api.helpers import (
    presigned_bundle,
    result_archive,
    upload_request,
    wait_for_status,
    with_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.fl]  # the `net` fixture starts the deployments
TERMINAL = (FLJobStatus.FINISHED, FLJobStatus.FAILED, FLJobStatus.STOPPED)
SITES = ["site-1", "site-2"]
ROUNDS = 2
# both demo clients report these every round (NVFlare: validator + train_-prefixed trainer metrics)
LABELS = {"val_loss", "val_accuracy", "train_loss"}
DEMO = {FLBackend.NVFLARE: "nvflare_logreg", FLBackend.FLOWER: "flower_logreg"}
FIRST_ROUND_IN_FILE = {FLBackend.NVFLARE: 0, FLBackend.FLOWER: 1}


@pytest.fixture(params=[FLBackend.NVFLARE, FLBackend.FLOWER], ids=lambda b: b.value)
def net(request: pytest.FixtureRequest) -> tuple[FLBackend, RunningFLApi]:
    return request.param, request.getfixturevalue(f"{request.param.value}_fl_api")


def metrics_while_running(client: FLApiClient, job_id: str, *, timeout: float) -> list[RoundMetric]:
    """The first non-empty answer that the job was still RUNNING after (asked after the metrics, so they were
    served before the job finished). Fails if the job ends first."""
    deadline = time.monotonic() + timeout
    points: list[RoundMetric] = []
    while time.monotonic() < deadline:
        points = client.job_metrics(job_id)
        job = client.get_job(job_id)
        assert job is not None
        if points and job.status == FLJobStatus.RUNNING:
            return points
        if job.status in TERMINAL:
            pytest.fail(f"job {job_id} ended {job.status.value} before any metrics were served (last: {points})")
        time.sleep(0.3)  # the polling interval
    pytest.fail(f"no metrics within {timeout}s while job {job_id} ran (last: {points})")


def key(point: RoundMetric) -> tuple[int, str, str, float]:
    return point.round, point.client, point.label, point.value


def test_metrics_per_round_and_client_live_and_after_the_job(
    net: tuple[FLBackend, RunningFLApi], s3_server: LocalS3, tmp_path: Path
) -> None:
    backend, api = net
    # 10 steps x 0.2 s: every round lasts seconds, so a round's metrics are there well before the job ends
    files = with_config(demo_model_files(DEMO[backend]), GLOBAL_ROUNDS=ROUNDS, STEP_SLEEP_SECONDS=0.2)
    model_id, urls = presigned_bundle(s3_server, backend, files)
    with api.client() as client:
        with pytest.raises(FLApiNotFoundError):
            client.job_metrics("123456789")
        client.upload_app(model_id, upload_request(urls, SITES))
        job_id = client.submit_job(model_id)
        assert client.job_metrics(job_id) == [], "no round can have finished yet"
        assert httpx.get(f"{api.base_url}/job_metrics/{job_id}").status_code == 401

        live = metrics_while_running(client, job_id, timeout=180)

        final = wait_for_status(client, job_id, lambda s: s in TERMINAL, timeout=240, what="the job to end")
        assert final.status == FLJobStatus.FINISHED, final.status_details
        points = client.job_metrics(job_id)
        archive = result_archive(client.download_job(job_id, tmp_path / "result.zip").read_bytes())

    assert {p.round for p in live} <= set(range(1, ROUNDS + 1)) and {p.client for p in live} <= set(SITES)
    assert {key(p) for p in live} <= {key(p) for p in points}, "what was served live is part of the final answer"
    for round_ in range(1, ROUNDS + 1):
        for site in SITES:
            labels = {p.label for p in points if p.round == round_ and p.client == site}
            assert labels >= LABELS, f"round {round_}, {site}: {labels}"
    assert {p.round for p in points} == set(range(1, ROUNDS + 1)) and {p.client for p in points} == set(SITES)
    assert all(math.isfinite(p.value) for p in points)
    val_loss = {r: [p.value for p in points if p.round == r and p.label == "val_loss"] for r in (1, ROUNDS)}
    assert sum(val_loss[ROUNDS]) < sum(val_loss[1]), f"the global model learned: {val_loss}"

    stored = [body for name, body in archive.items() if name.endswith("metrics/round_metrics.jsonl")]
    assert len(stored) == 1, f"the result holds the metrics file: {sorted(archive)}"
    from_zip = parse_round_metrics(stored[0].decode(), first_round=FIRST_ROUND_IN_FILE[backend])
    assert [key(p) for p in from_zip] == [key(p) for p in points], "the result's file names clients as the API does"
