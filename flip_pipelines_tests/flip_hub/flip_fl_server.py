"""FLIP's FL server as the hub meets it: the ``flip`` package's components in the NVFlare server job.

They are job components, so a job does what its own ``config_fed_server.json`` declares. ``ServerEventHandler``
pushes the model's statuses (``PUT /model/{id}/status/...``) and, at the end of the run, calls the component its
``persist_and_cleanup_id`` names (default ``persist_and_cleanup``), which must be a ``PersistToS3AndCleanup``: that
zips the run folder without ``app_server/`` and uploads it to
``<UPLOADED_FEDERATED_DATA_BUCKET>/<model_id>/<YYYYmmdd_HHMMSS>.zip`` (named by the FL server's local clock,
``FLIPStandardProd.upload_results_to_s3``); then the handler pushes RESULTS_UPLOADED — or ERROR when that component
is missing. A job declaring no ``ServerEventHandler`` uploads and pushes nothing. Every push carries
``X-Internal-Service-Key`` and is best effort (FLIP logs a failed one and carries on), so a hub can miss the final
status. The clients' metrics (``POST /model/{id}/metrics``), which FLIP relays through its own workflow
controllers, are pushed here for the jobs that declare the handler, as the stand-in for that relay.
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
SERVER_EVENT_HANDLER, PERSIST_TO_S3 = "ServerEventHandler", "PersistToS3AndCleanup"
DEFAULT_PERSIST_ID = "persist_and_cleanup"  # ServerEventHandler's persist_and_cleanup_id


def _class_name(component: dict[str, Any]) -> str:
    """A component's class as NVFlare names it: the last part of ``path``, else ``name``."""
    return str(component.get("path") or component.get("name") or "").rsplit(".", 1)[-1]


def _server_configs(job_dir: Path) -> list[Path]:
    return sorted(job_dir.glob("app*/config/config_fed_server.json"))


@dataclass(frozen=True)
class FlipComponents:
    """What a job's server config declares of the ``flip`` package: the status pusher, and the uploader it calls."""

    event_handler: bool = False
    persist: bool = False

    @classmethod
    def declared_in(cls, job_dir: Path) -> "FlipComponents":
        """Read from the job folder's server app (a job folder that is not there declares nothing)."""
        for path in _server_configs(job_dir):
            components = json.loads(path.read_text()).get("components", [])
            handlers = [c for c in components if _class_name(c) == SERVER_EVENT_HANDLER]
            if handlers:
                persist_id = handlers[0].get("args", {}).get("persist_and_cleanup_id", DEFAULT_PERSIST_ID)
                return cls(True, any(c.get("id") == persist_id and _class_name(c) == PERSIST_TO_S3
                                     for c in components))
        return cls()


def remove_flip_components(job_dir: Path) -> None:
    """Drop the ``flip`` package's two components from the job's server configs, for an NVFlare that cannot import
    that package (its part is played by ``FlipFLServerPushes``)."""
    for path in _server_configs(job_dir):
        config = json.loads(path.read_text())
        config["components"] = [c for c in config.get("components", [])
                                if _class_name(c) not in (SERVER_EVENT_HANDLER, PERSIST_TO_S3)]
        path.write_text(json.dumps(config, indent=4))


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
    pushed: list[str]  # "<METHOD> <path>" of every push sent

    def push(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        if self.push_to:
            self.pushed.append(f"{method} {path}")
            httpx.request(method, f"{self.push_to}{path}", json=body, timeout=10,
                          headers={"X-Internal-Service-Key": self.push_key}).raise_for_status()

    def run_started(self, model_id: str, components: FlipComponents) -> None:
        if components.event_handler:
            self.push("PUT", f"/model/{model_id}/status/RUNNING")

    def run_ended(self, model_id: str, run_folder: Path, components: FlipComponents) -> str | None:
        """Metrics, result upload, final status, in FLIP's order, as far as the job's ``components`` go; the key
        uploaded, if any."""
        if not components.event_handler:
            return None
        for body in metric_bodies(run_folder):
            self.push("POST", f"/model/{model_id}/metrics", body)
        key = None
        if components.persist and self.upload_results and self.results is not None:
            client, bucket = self.results
            key = result_key(model_id)
            client.put_object(Bucket=bucket, Key=key, Body=zipped_run_folder(run_folder))
        if self.push_final_status:
            self.push("PUT", f"/model/{model_id}/status/{'RESULTS_UPLOADED' if components.persist else 'ERROR'}")
        return key
