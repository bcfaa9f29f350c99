"""The whole local stack behind `make dev`: S3, an NVFlare net and a Flower net with their FL APIs, trusts, a
demo project and a demo model — so `train_model` runs on embedded defaults with nothing set up by hand."""

import contextlib
import os
import signal
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlmodel import select

from flip_pipelines.db import registry
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.migrate import upgrade_database
from flip_pipelines.db.models import Model
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.errors import ConflictError
from flip_pipelines.local.flower import LocalFlower
from flip_pipelines.local.nvflare import LocalNVFlare
from flip_pipelines.local.processes import free_port, start_process, stop_pid, wait_until
from flip_pipelines.local.s3 import LocalS3

BUCKETS = {"FLIP_MODEL_BUCKET": "flip-model-files", "FLIP_BUNDLE_BUCKET": "flip-fl-apps",
           "FLIP_RESULTS_BUCKET": "flip-results"}
TRUSTS = {"Trust_1": "site-1", "Trust_2": "site-2"}
DEMO_PROJECT = "demo"
DEMO_MODEL = "demo-logreg"


@dataclass
class LocalStack:
    data_dir: Path
    database_url: str
    token: str
    log: object = print
    s3: LocalS3 | None = None
    nvflare: LocalNVFlare | None = None
    flower: LocalFlower | None = None
    api_pids: list[int] = field(default_factory=list)
    demo_model_id: uuid.UUID | None = None

    def _fl_api(self, backend: str, args: list[str]) -> str:
        port = free_port()
        env = {**os.environ, "FLIP_FL_API_TOKEN": self.token}
        process = start_process(
            [str(Path(sys.executable).parent / "flip-pipelines"), "fl-api", "serve", "--backend", backend,
             "--port", str(port), "--upload-dir", str(self.data_dir / "fl_api" / backend),
             "--allowed-origin", self.s3.endpoint_url, *args],  # type: ignore[union-attr]
            log_path=self.data_dir / "logs" / f"fl_api_{backend}.log", env=env,
        )
        self.api_pids.append(process.pid)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, timeout=60,
                   what=f"the {backend} FL API")
        return url

    def start(self) -> dict[str, str]:
        """Start everything and return the environment the Dagster processes need."""
        self.s3 = LocalS3(workdir=self.data_dir / "s3")
        self.s3.start()
        client = self.s3.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in BUCKETS.values():
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
        self.log(f"S3 (SeaweedFS):  {self.s3.endpoint_url}")
        self.nvflare = LocalNVFlare(workdir=self.data_dir / "nvflare", port=free_port(), sites=2)
        self.nvflare.provision()
        self.nvflare.start()
        self.flower = LocalFlower(workdir=self.data_dir / "flower", port=free_port(), nodes=2)
        self.flower.start()
        nvflare_url = self._fl_api("nvflare", ["--admin-kit", str(self.nvflare.admin_kit),
                                               "--server-workspace", str(self.nvflare.server_workspace)])
        flower_url = self._fl_api("flower", ["--superlink", self.flower.address,
                                             "--node-names", str(self.flower.node_names_file)])
        self.log(f"nets:            net-nvflare {nvflare_url}, net-flower {flower_url} (sites site-1, site-2)")
        self._register(nvflare_url, flower_url)
        return {
            "FLIP_S3_ENDPOINT_URL": self.s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
            "FLIP_FL_API_TOKEN": self.token,
            **BUCKETS,
        }

    def _register(self, nvflare_url: str, flower_url: str) -> None:
        """Nets (endpoints change every session), trusts, the demo project and model: idempotent."""
        upgrade_database(self.database_url)
        engine = make_engine(self.database_url)
        try:
            with new_session(engine) as session:
                registry.upsert_net(session, "net-nvflare", nvflare_url, FLBackend.NVFLARE)
                registry.upsert_net(session, "net-flower", flower_url, FLBackend.FLOWER)
                for trust, slot in TRUSTS.items():
                    with contextlib.suppress(ConflictError):
                        registry.add_trust(session, trust, slot)
                with contextlib.suppress(ConflictError):
                    registry.add_project(session, DEMO_PROJECT, "SELECT * FROM demo_cohort")
                model = session.exec(select(Model).where(Model.name == DEMO_MODEL)).first()
                if model is None:
                    model = registry.add_model(session, DEMO_MODEL, DEMO_PROJECT)
                self.demo_model_id = model.id
        finally:
            engine.dispose()
        # the demo model's files satisfy both backends, so it can train on whichever net is free
        files = {**demo_model_files("nvflare_logreg"), **demo_model_files("flower_logreg")}
        client = self.s3.client()  # type: ignore[union-attr]
        for rel, body in files.items():
            client.put_object(Bucket=BUCKETS["FLIP_MODEL_BUCKET"], Key=f"{self.demo_model_id}/{rel}", Body=body)

    def stop(self) -> None:
        for pid in reversed(self.api_pids):
            stop_pid(pid, first_signal=signal.SIGINT, timeout=20)
        self.api_pids.clear()
        for part in (self.flower, self.nvflare, self.s3):
            if part is not None:
                part.stop()
