"""Job type ``evaluation`` on both real backends: the global model is evaluated, not trained."""

import json
from pathlib import Path

import pytest

from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, FLJobStatus
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines_tests.conftest import RunningFLApi
from flip_pipelines_tests.fl_api.helpers import (
    presigned_bundle,
    result_archive,
    upload_request,
    wait_for_status,
    with_config,
)

pytestmark = pytest.mark.slow
TERMINAL = (FLJobStatus.FINISHED, FLJobStatus.FAILED, FLJobStatus.STOPPED)
SITES = ["site-1", "site-2"]

EVALUATOR = b'''"""Evaluates received weights on the site's validation split."""
import models
import numpy as np


def initial_weights(config):
    return models.initial_weights(config)


def evaluate(weights, context):
    x, y = models.load_site_data(context.site_name, context.config, "validation")
    return {"val_loss": models.log_loss(weights, x, y)}
'''


def test_nvflare_evaluation_job(nvflare_fl_api: RunningFLApi, s3_server: LocalS3, tmp_path: Path) -> None:
    logreg = demo_model_files("nvflare_logreg")
    files = with_config({"models.py": logreg["models.py"], "config.json": logreg["config.json"],
                         "evaluator.py": EVALUATOR}, job_type="evaluation", GLOBAL_ROUNDS=1)
    model_id, urls = presigned_bundle(s3_server, FLBackend.NVFLARE, files)
    with nvflare_fl_api.client() as client:
        client.upload_app(model_id, upload_request(urls, SITES))
        job_id = client.submit_job(model_id)
        final = wait_for_status(client, job_id, lambda s: s in TERMINAL, timeout=180, what="the evaluation")
        assert final.status == FLJobStatus.FINISHED, final.status_details
        archive = result_archive(client.download_job(job_id, tmp_path / "r.zip").read_bytes())
    metrics = next(body for name, body in archive.items() if name.endswith("round_metrics.jsonl"))
    records = [json.loads(line) for line in metrics.decode().splitlines()]
    assert len(records) == 2 and all(abs(r["metrics"]["val_loss"] - 0.6931) < 1e-3 for r in records), records


def test_flower_evaluation_job(flower_fl_api: RunningFLApi, s3_server: LocalS3) -> None:
    files = with_config(demo_model_files("flower_logreg"), job_type="evaluation")
    model_id, urls = presigned_bundle(s3_server, FLBackend.FLOWER, files)
    with flower_fl_api.client() as client:
        client.upload_app(model_id, upload_request(urls, SITES))
        job_id = client.submit_job(model_id)
        final = wait_for_status(client, job_id, lambda s: s in TERMINAL, timeout=180, what="the evaluation")
        assert final.status == FLJobStatus.FINISHED, final.status_details
        logs = client.run_logs(job_id).log
    history = json.loads(logs.split("FLIP metrics: ", 1)[1].splitlines()[0])
    assert history["train"] == {} and abs(history["evaluate"]["1"]["val_loss"] - 0.6931) < 1e-3, history
