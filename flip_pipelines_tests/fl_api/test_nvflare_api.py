"""The FL API with the NVFlare backend, against a real NVFlare server + 2 sites and a real S3 server."""

import json
from pathlib import Path

import numpy as np
import pytest

from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, FLJobStatus
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines_tests.conftest import RunningFLApi
from flip_pipelines_tests.fl_api.helpers import (
    npz,
    presigned_bundle,
    result_archive,
    upload_request,
    wait_for_status,
)

pytestmark = pytest.mark.slow
SITES = ["site-1", "site-2"]


def test_upload_submit_train_finish_and_download(nvflare_fl_api: RunningFLApi, s3_server: LocalS3,
                                                 tmp_path: Path) -> None:
    model_id, urls = presigned_bundle(s3_server, FLBackend.NVFLARE, demo_model_files("nvflare_logreg"))
    with nvflare_fl_api.client() as client:
        uploaded = client.upload_app(model_id, upload_request(urls, SITES))
        assert uploaded.files >= len(urls)
        meta = json.loads((nvflare_fl_api.upload_dir / model_id / "meta.json").read_text())
        assert meta["deploy_map"] == {"app_client": SITES, "app_server": ["server"]}
        assert meta["mandatory_clients"] == SITES and meta["min_clients"] == 2
        server_config = json.loads(
            (nvflare_fl_api.upload_dir / model_id / "app_server/config/config_fed_server.json").read_text()
        )
        assert server_config["num_rounds"] == 3 and server_config["participating_clients"] == SITES

        job_id = client.submit_job(model_id)
        wait_for_status(client, job_id, lambda s: s != FLJobStatus.PENDING, timeout=60, what="the job to start")
        final = wait_for_status(client, job_id, lambda s: s in (FLJobStatus.FINISHED, FLJobStatus.FAILED,
                                                               FLJobStatus.STOPPED), timeout=180, what="the job to end")
        assert final.status == FLJobStatus.FINISHED, final.status_details
        archive = result_archive(client.download_job(job_id, tmp_path / "result.zip").read_bytes())

    models = {Path(name).name: body for name, body in archive.items() if "/models/" in f"/{name}"}
    initial, final_weights = npz(models["initial_weights.npz"]), npz(models["global_weights.npz"])
    assert set(final_weights) == {"w", "b"}
    assert not np.allclose(initial["w"], final_weights["w"]), "training changed the global weights"
    metrics_file = next(body for name, body in archive.items() if name.endswith("round_metrics.jsonl"))
    records = [json.loads(line) for line in metrics_file.decode().splitlines()]
    by_round: dict[int, list[float]] = {}
    for record in records:
        by_round.setdefault(int(record["round"]), []).append(record["metrics"]["val_loss"])
    rounds = sorted(by_round)
    assert rounds == [0, 1, 2] and all(len(by_round[r]) == 2 for r in rounds)
    losses = [float(np.mean(by_round[r])) for r in rounds]
    assert losses[0] > losses[1] > losses[2], f"validation loss should fall every round: {losses}"
