"""One contract suite, the same client and the same assertions, for the NVFlare and the Flower backends; each
backend's own evidence that training really learned is checked on the same trained job."""

import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, FLJobStatus
from flip_pipelines.fl_api.client import FLApiClient, FLApiNotFoundError, FLApiRequestError
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines_tests.conftest import RunningFLApi
from flip_pipelines_tests.fl_api.helpers import (
    npz,
    presigned_bundle,
    result_archive,
    upload_request,
    wait_for_status,
    with_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.fl]  # the `case` fixture starts the deployments
TERMINAL = (FLJobStatus.FINISHED, FLJobStatus.FAILED, FLJobStatus.STOPPED)
SITES = ["site-1", "site-2"]


def nvflare_learned(api: RunningFLApi, client: FLApiClient, model_id: str, job_id: str, archive: bytes) -> None:
    """The job folder FLIP's contract asks for, and a validation loss that falls every round (per site)."""
    folder = api.upload_dir / model_id
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["deploy_map"] == {"app_client": SITES, "app_server": ["server"]}
    assert meta["mandatory_clients"] == SITES and meta["min_clients"] == 2
    server_config = json.loads((folder / "app_server/config/config_fed_server.json").read_text())
    assert server_config["global_rounds"] == 3 and server_config["participating_clients"] == SITES
    files = result_archive(archive)
    metrics = next(body for name, body in files.items() if name.endswith("round_metrics.jsonl"))
    by_round: dict[int, list[float]] = {}
    for record in (json.loads(line) for line in metrics.decode().splitlines()):
        by_round.setdefault(int(record["round"]), []).append(record["metrics"]["val_loss"])
    assert sorted(by_round) == [0, 1, 2] and all(len(v) == 2 for v in by_round.values())
    losses = [float(np.mean(by_round[r])) for r in sorted(by_round)]
    assert losses[0] > losses[1] > losses[2], f"validation loss should fall every round: {losses}"


def flower_learned(api: RunningFLApi, client: FLApiClient, model_id: str, job_id: str, archive: bytes) -> None:
    """Plain-text run logs whose metrics show the global model's validation loss falling every round."""
    logs = client.run_logs(job_id).log
    assert "\x1b[" not in logs, "colour codes are stripped"
    history = json.loads(re.search(r"FLIP metrics: (\{.*\})", logs).group(1))  # type: ignore[union-attr]
    losses = [history["train"][str(r)]["val_loss"] for r in (1, 2, 3)]
    assert losses[0] > losses[1] > losses[2], f"the global model's validation loss should fall: {losses}"


@dataclass
class Case:
    backend: FLBackend
    api: RunningFLApi
    files: dict[str, bytes]
    trusts: list[str]
    learned: Callable[[RunningFLApi, FLApiClient, str, str, bytes], None]


@pytest.fixture(params=["nvflare", "flower"])
def case(request: pytest.FixtureRequest) -> Case:
    if request.param == "nvflare":
        return Case(FLBackend.NVFLARE, request.getfixturevalue("nvflare_fl_api"),
                    with_config(demo_model_files("nvflare_logreg"), GLOBAL_ROUNDS=3), SITES, nvflare_learned)
    return Case(FLBackend.FLOWER, request.getfixturevalue("flower_fl_api"),
                with_config(demo_model_files("flower_logreg"), GLOBAL_ROUNDS=3), SITES, flower_learned)


def _global_weights(archive: bytes) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        name = next(n for n in zipped.namelist() if n.endswith(("global_weights.npz", "global_model.npz")))
        return npz(zipped.read(name))


def test_health_and_auth(case: Case) -> None:
    assert httpx.get(f"{case.api.base_url}/health").json() == {"status": "ok", "backend": case.backend.value}
    assert httpx.get(f"{case.api.base_url}/list_jobs").status_code == 401
    with case.api.client() as client:
        assert isinstance(client.list_jobs(), list)
        assert client.check_server_status().status
        clients = {c.name: c for c in client.check_client_status()}
        assert {"site-1", "site-2"} <= set(clients) and clients["site-1"].online and clients["site-2"].online


def test_train_to_finished_and_download_a_changed_model(case: Case, s3_server: LocalS3, tmp_path: Path) -> None:
    model_id, urls = presigned_bundle(s3_server, case.backend, case.files)
    with case.api.client() as client:
        client.upload_app(model_id, upload_request(urls, case.trusts))
        before = {j.job_id for j in client.list_jobs()}
        job_id = client.submit_job(model_id, submit_token=f"contract-{model_id}")
        assert client.submit_job(model_id, submit_token=f"contract-{model_id}") == job_id
        assert {j.job_id for j in client.list_jobs()} - before == {job_id}, "the same token makes one job"
        final = wait_for_status(client, job_id, lambda s: s in TERMINAL, timeout=240, what="the job to end")
        assert final.status == FLJobStatus.FINISHED, final.status_details
        archive = client.download_job(job_id, tmp_path / "r.zip").read_bytes()
        weights = _global_weights(archive)
        case.learned(case.api, client, model_id, job_id, archive)
    assert set(weights) == {"w", "b"} and np.abs(weights["w"]).sum() > 0.1, "training moved the zero-initialised model"


def test_abort_running_and_unknown_ids(case: Case, s3_server: LocalS3) -> None:
    files = with_config(case.files, GLOBAL_ROUNDS=50, STEP_SLEEP_SECONDS=0.3)
    model_id, urls = presigned_bundle(s3_server, case.backend, files)
    with case.api.client() as client:
        for unknown in ("123456789", "no-such-job"):
            with pytest.raises(FLApiNotFoundError):
                client.abort_job(unknown)
        client.upload_app(model_id, upload_request(urls, case.trusts))
        job_id = client.submit_job(model_id)
        wait_for_status(client, job_id, lambda s: s == FLJobStatus.RUNNING, timeout=60, what="RUNNING")
        assert client.abort_job(job_id).status == FLJobStatus.STOPPED
        final = wait_for_status(client, job_id, lambda s: s in TERMINAL, timeout=60, what="the abort")
        assert final.status == FLJobStatus.STOPPED
        assert client.abort_job(job_id).status == FLJobStatus.STOPPED


def test_unsafe_bundle_urls_are_refused(case: Case, s3_server: LocalS3) -> None:
    model_id, urls = presigned_bundle(s3_server, case.backend, case.files)
    with case.api.client() as client:
        escaping = [*urls[:-1], urls[-1].replace(f"/{model_id}/", f"/{model_id}/%2e%2e/")]
        with pytest.raises(FLApiRequestError) as info:
            client.upload_app(model_id, upload_request(escaping, case.trusts))
        assert info.value.status_code == 400
    no_trusts = httpx.post(
        f"{case.api.base_url}/upload_app/{model_id}",
        json={"project_id": "p", "cohort_query": "q", "trusts": [], "bundle_urls": urls},
        headers={"Authorization": f"Bearer {case.api.token}"},
    )
    assert no_trusts.status_code == 400 and "trusts" in no_trusts.json()["detail"]
    assert not (case.api.upload_dir / model_id).exists()
