"""Dispatch latency: `enqueue` → FL job RUNNING through the Dagster daemon and sensor, side by side with
bundling and submitting the same model by hand through the FL API — on one local stack, in one run.

Run: .venv/bin/python benchmarks/bench_dispatch.py [--repeat 3]
Starts SeaweedFS, an NVFlare server + 2 sites, the FL API and `flip-pipelines dev` (webserver + daemon) on free
ports, and stops them all at the end.
"""

import argparse
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from flip_pipelines.db import lifecycle, registry
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.migrate import upgrade_database
from flip_pipelines.db.models import FLJob
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, FLJobStatus
from flip_pipelines.fl_api.client import FLApiClient
from flip_pipelines.fl_api.schemas import UploadAppRequest
from flip_pipelines.local.nvflare import LocalNVFlare
from flip_pipelines.local.processes import free_port, start_process, stop_pid, wait_until
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.bundles import BundleStore

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKEN = f"bench-{uuid.uuid4().hex}"


def wait_running(client: FLApiClient, job_id: str) -> None:
    wait_until(lambda: (j := client.get_job(job_id)) is not None and j.status != FLJobStatus.PENDING,
               timeout=300, interval=0.2, what="RUNNING")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    s3, flare = LocalS3(), LocalNVFlare(workdir=work / "nvflare", port=free_port())
    processes: list[int] = []
    try:
        s3.start()
        flare.provision()
        flare.start()
        s3_client = s3.client()
        for bucket in ("models", "bundles", "results"):
            s3_client.create_bucket(Bucket=bucket)
        api_port = free_port()
        env = {**os.environ, "FLIP_FL_API_TOKEN": TOKEN, "FLIP_DATA_DIR": str(work / "data"),
               "FLIP_DATABASE_URL": f"sqlite:///{work / 'flip.db'}", "FLIP_S3_ENDPOINT_URL": s3.endpoint_url,
               "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
               "FLIP_MODEL_BUCKET": "models", "FLIP_BUNDLE_BUCKET": "bundles", "FLIP_RESULTS_BUCKET": "results"}
        env.pop("DAGSTER_HOME", None)
        api = start_process([str(BIN / "flip-pipelines"), "fl-api", "serve", "--backend", "nvflare", "--port",
                             str(api_port), "--admin-kit", str(flare.admin_kit), "--allowed-origin", s3.endpoint_url,
                             "--upload-dir", str(work / "uploads")], log_path=work / "fl_api.log", env=env)
        processes.append(api.pid)
        endpoint = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: httpx.get(f"{endpoint}/health").status_code == 200, timeout=60, what="the FL API")
        url = env["FLIP_DATABASE_URL"]
        upgrade_database(url)
        engine = make_engine(url)
        with new_session(engine) as session:
            registry.add_project(session, "bench", "SELECT 1")
            trusts = [registry.add_trust(session, f"Trust_{i}", f"site-{i}").id for i in (1, 2)]
            registry.add_net(session, "net-1", endpoint, FLBackend.NVFLARE)
        dagster_port = free_port()
        dev = start_process([str(BIN / "flip-pipelines"), "dev", "--no-stack", "--port", str(dagster_port)],
                            log_path=work / "dev.log", env=env, cwd=REPO)
        processes.append(dev.pid)
        wait_until(lambda: "LOADED" in httpx.post(f"http://127.0.0.1:{dagster_port}/graphql", json={
            "query": "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"}).text,
            timeout=120, interval=1, what="the Dagster code location")
        files = demo_model_files("nvflare_logreg")
        store = BundleStore(s3_client, model_bucket="models", bundle_bucket="bundles", log=lambda _: None)
        by_hand, pipeline = [], []
        with FLApiClient(endpoint, TOKEN) as client:
            for _ in range(args.repeat):
                # by hand: the same model bundled, presigned, uploaded and submitted from a script
                model_id = str(uuid.uuid4())
                for rel, body in files.items():
                    s3_client.put_object(Bucket="models", Key=f"{model_id}/{rel}", Body=body)
                started = time.monotonic()
                result = store.bundle(model_id, FLBackend.NVFLARE)
                urls = store.presign(result.keys)
                client.upload_app(model_id, UploadAppRequest(project_id="p", cohort_query="SELECT 1",
                                                             trusts=["site-1", "site-2"], bundle_urls=urls))
                wait_running(client, client.submit_job(model_id))
                by_hand.append(time.monotonic() - started)
                client.abort_job(client.list_jobs()[-1].job_id)
                # the pipeline: enqueue, and the sensor + daemon do the rest
                with new_session(engine) as session:
                    model = registry.add_model(session, f"bench-{uuid.uuid4().hex[:6]}", "bench")
                for rel, body in files.items():
                    s3_client.put_object(Bucket="models", Key=f"{model.id}/{rel}", Body=body)
                started = time.monotonic()
                with new_session(engine) as session:  # as `flip-pipelines enqueue` does: check, then queue
                    job_id = lifecycle.enqueue_training(session, model.id, trusts, store.check(str(model.id))).id

                def backend_id(fl_job=job_id) -> str | None:
                    with new_session(engine) as session:
                        return session.get(FLJob, fl_job).fl_backend_job_id

                backend_job = wait_until(backend_id, timeout=300, interval=0.2, what="the pipeline to submit")
                wait_running(client, backend_job)
                pipeline.append(time.monotonic() - started)
                client.abort_job(backend_job)
                wait_until(lambda: not any(n.status.value == "BUSY" for n in registry.list_nets(new_session(engine))),
                           timeout=300, interval=0.5, what="the net to be free again")
        engine.dispose()
        hand, pipe = statistics.median(by_hand), statistics.median(pipeline)
        print(f"runs: {args.repeat}; NVFlare server + 2 sites, SeaweedFS, Dagster daemon (sensor interval 5 s)")
        print(f"by hand through the FL API (bundle, presign, upload, submit → RUNNING): {hand:.1f} s "
              f"(runs: {', '.join(f'{t:.1f}' for t in by_hand)})")
        print(f"flip_pipelines (enqueue → sensor → run → RUNNING):                    {pipe:.1f} s "
              f"(runs: {', '.join(f'{t:.1f}' for t in pipeline)})")
        print(f"ratio pipeline / by hand: {pipe / hand:.1f}x")
    finally:
        for pid in reversed(processes):
            stop_pid(pid, first_signal=signal.SIGINT, timeout=30)
        flare.stop()
        s3.stop()


if __name__ == "__main__":
    main()
