"""FLIP's FL server as the hub meets it: the ``flip`` package's components in the NVFlare server job.

As rounds end the clients' metrics are pushed (``POST /model/{id}/metrics``). When the run ends,
``PersistToS3AndCleanup`` zips the run folder without ``app_server/`` and uploads it to
``<UPLOADED_FEDERATED_DATA_BUCKET>/<model_id>/<YYYYmmdd_HHMMSS>.zip`` (named by the FL server's local clock,
``FLIPStandardProd.upload_results_to_s3``); then ``ServerEventHandler`` pushes the final status
(``PUT /model/{id}/status/RESULTS_UPLOADED``). Every push carries ``X-Internal-Service-Key`` and is best effort
(FLIP logs a failed one and carries on), so a hub can miss the final status.
"""

import io
import json
import shutil
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from flip_pipelines.fl_api.metrics import METRICS_FILE, parse_round_metrics

NVFLARE_FIRST_ROUND = 0


def result_key(model_id: str, now: datetime | None = None) -> str:
    return f"{model_id}/{(now or datetime.now()).strftime('%Y%m%d_%H%M%S')}.zip"


def zipped_run_folder(run_folder: Path) -> bytes:
    """The run folder as FLIP uploads it: everything but the deployed ``app_server/``, at the zip's root."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(run_folder.rglob("*")):
            relative = path.relative_to(run_folder)
            if path.is_file() and relative.parts[0] != "app_server":
                archive.write(path, str(relative))
    return buffer.getvalue()


def metric_bodies(run_folder: Path) -> list[dict[str, Any]]:
    """The bodies FLIP's FL server posts for the run's metrics (rounds from 1, one per client, label and value)."""
    found = sorted(run_folder.rglob(METRICS_FILE))
    text = found[0].read_text() if found else ""
    return [{"fl_client_name": p.client, "global_round": p.round, "label": p.label, "result": p.value}
            for p in parse_round_metrics(text, first_round=NVFLARE_FIRST_ROUND)]


def write_scripted_run(run_folder: Path, clients: list[str], rounds: int = 2) -> Path:
    """A run folder for a job that trained nothing: per round, per client, ``val_loss`` 1/round + 0.1 × client
    index, and finite global weights."""
    shutil.rmtree(run_folder, ignore_errors=True)
    (run_folder / "metrics").mkdir(parents=True)
    (run_folder / "models").mkdir()
    lines = [json.dumps({"round": r - 1 + NVFLARE_FIRST_ROUND, "client": name, "time": 1.0,
                         "metrics": {"val_loss": 1.0 / r + 0.1 * index}})
             for r in range(1, rounds + 1) for index, name in enumerate(clients)]
    (run_folder / "metrics" / METRICS_FILE).write_text("\n".join(lines) + "\n")
    np.savez(run_folder / "models" / "global_weights.npz", w=np.ones(3), b=np.zeros(1))
    return run_folder


@dataclass
class FlipFLServerPushes:
    """What the FL server sends at the end of a run: ``results`` (S3 client, bucket) is FLIP's
    UPLOADED_FEDERATED_DATA_BUCKET; ``upload_results`` / ``push_final_status`` False leave that step out."""

    push_to: str | None
    push_key: str
    results: tuple[Any, str] | None
    upload_results: bool
    push_final_status: bool

    def push(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        if self.push_to:
            httpx.request(method, f"{self.push_to}{path}", json=body, timeout=10,
                          headers={"X-Internal-Service-Key": self.push_key}).raise_for_status()

    def run_ended(self, model_id: str, run_folder: Path) -> str | None:
        """Metrics, result upload, final status, in FLIP's order; the key uploaded, if any."""
        for body in metric_bodies(run_folder):
            self.push("POST", f"/model/{model_id}/metrics", body)
        key = None
        if self.upload_results and self.results is not None:
            client, bucket = self.results
            key = result_key(model_id)
            client.put_object(Bucket=bucket, Key=key, Body=zipped_run_folder(run_folder))
        if self.push_final_status:
            self.push("PUT", f"/model/{model_id}/status/RESULTS_UPLOADED")
        return key
