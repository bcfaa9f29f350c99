"""Dispatch latency: `flip-pipelines enqueue` → FL job RUNNING on the `make dev` stack, per backend, with where the
time goes, beside the direct path (the same bundle uploaded and submitted by a script through the FL API) in the
same run; 4 jobs onto 4 free nets at once; and the memory of a training's run worker and of the idle stack.

Run: .venv/bin/python benchmarks/bench_dispatch.py [--repeat 5] [--modes single,parallel,rss]
  single    per backend (NVFlare, Flower): --repeat samples of the direct path and of `enqueue` → RUNNING, each
            with its breakdown (run created, dequeue, worker start, each op, FL server)
  parallel  two more nets (a second NVFlare and a second Flower); 4 models queued at once as FLIP's UI does (rows
            only: the queue sensor's path) and by 4 concurrent `enqueue` commands; every job's time to RUNNING
  rss       the idle stack's RSS and CPU per component over 30 s; one whole training per backend with its run
            worker's RSS sampled every 0.2 s
Starts `flip-pipelines dev` (S3, net-nvflare, net-flower, FL APIs, Dagster) in a temporary folder on free ports and
stops it at the end. Take figures on a quiet machine: the load average is printed at the start and the end.
"""

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from dispatch_stack import (
    BIN,
    SITES,
    TRUSTS,
    DevStack,
    RssSampler,
    abort_fl_job,
    component,
    memory,
    seconds,
    stack_usage,
    wait_fl_running,
)

from flip_pipelines.db import lifecycle, registry
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.fl_api.client import FLApiClient
from flip_pipelines.fl_api.schemas import UploadAppRequest
from flip_pipelines.local.flower import LocalFlower
from flip_pipelines.local.nvflare import LocalNVFlare
from flip_pipelines.local.processes import free_port, start_process, stop_pid, wait_until
from flip_pipelines.resources.bundles import BundleStore

OPS = ("resolve_backend", "validate_clients", "bundle", "presign", "submit")


def load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def store(stack: DevStack) -> BundleStore:
    return BundleStore(stack.s3(), model_bucket=stack.env["FLIP_MODEL_BUCKET"],
                       bundle_bucket=stack.env["FLIP_BUNDLE_BUCKET"], log=lambda _: None)


def enqueue_command(model_id: uuid.UUID) -> list[str]:
    return [str(BIN / "flip-pipelines"), "enqueue", str(model_id), *[a for t in TRUSTS for a in ("--trust", t)],
            "--json"]


def cli_env(stack: DevStack) -> dict[str, str]:
    """What a second terminal in the `make dev` folder has: the data folder, whose stack.env gives the rest."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLIP_", "DAGSTER_", "AWS_"))}
    return {**env, "FLIP_DATA_DIR": stack.env["FLIP_DATA_DIR"]}


def net_of(stack: DevStack, fl_job_id: str) -> str:
    with stack.session() as session:
        return next(n.endpoint for n in registry.list_nets(session) if str(n.fl_job_id) == fl_job_id)


def follow(stack: DevStack, fl_job_id: str, abort: bool = True) -> float:
    """Epoch seconds at which the job's FL job was first seen RUNNING; the FL job is aborted after."""
    backend_job = wait_until(lambda: stack.backend_job(fl_job_id), timeout=300, interval=0.1, what="the submission")
    endpoint = net_of(stack, fl_job_id)
    running = wait_fl_running(endpoint, stack.env["FLIP_FL_API_TOKEN"], backend_job)
    if abort:
        abort_fl_job(endpoint, stack.env["FLIP_FL_API_TOKEN"], backend_job)
    return running


# --- single: one job at a time, per backend ---------------------------------------------------------------------


def direct_sample(stack: DevStack, backend: FLBackend, net: str | None = None, model_id: uuid.UUID | None = None,
                  started: float | None = None) -> float:
    """The same model bundled, presigned, uploaded and submitted by a script through the net's FL API."""
    model_id = model_id or stack.new_model(backend)
    endpoint = stack.endpoint(net or f"net-{backend.value}")
    bundles = store(stack)
    started = time.monotonic() if started is None else started
    result = bundles.bundle(str(model_id), backend)
    urls = bundles.presign(result.keys)
    with FLApiClient(endpoint, stack.env["FLIP_FL_API_TOKEN"]) as client:
        client.upload_app(str(model_id), UploadAppRequest(project_id="p", cohort_query="SELECT 1", trusts=SITES,
                                                          bundle_urls=urls))
        job_id = client.submit_job(str(model_id))
    wait_fl_running(endpoint, stack.env["FLIP_FL_API_TOKEN"], job_id)
    elapsed = time.monotonic() - started
    abort_fl_job(endpoint, stack.env["FLIP_FL_API_TOKEN"], job_id)
    return elapsed


def pipeline_sample(stack: DevStack, backend: FLBackend) -> dict[str, float]:
    """`flip-pipelines enqueue` in a fresh process (as a person types it) → the FL job RUNNING, with milestones."""
    model_id = stack.new_model(backend)
    t0 = time.time()
    out = subprocess.run(enqueue_command(model_id), env=cli_env(stack), capture_output=True, text=True, check=True)
    cli_done = time.time()
    fl_job_id = json.loads(out.stdout)["fl_job_id"]
    running = follow(stack, fl_job_id)
    marks = stack.timeline(fl_job_id)
    stages = {"total": running - t0, "enqueue command": cli_done - t0, "run created": marks["created"] - t0,
              "queue → launch": marks.get("starting", marks["created"]) - marks["created"],
              "worker start": marks["started"] - marks.get("starting", marks["created"])}
    for op in OPS:
        stages[op] = marks[f"{op}:end"] - marks[f"{op}:start"]
    stages["FL server → RUNNING"] = running - marks["submit:end"]
    stages["between ops"] = (marks["submit:end"] - marks["started"]) - sum(stages[op] for op in OPS)
    return stages


def single(stack: DevStack, repeat: int) -> None:
    for backend in (FLBackend.NVFLARE, FLBackend.FLOWER):
        direct, pipeline = [], []
        for _ in range(repeat):
            direct.append(direct_sample(stack, backend))
            stack.wait_idle()
            pipeline.append(pipeline_sample(stack, backend))
            stack.wait_idle()
            time.sleep(2)  # the previous run's teardown off the CPU
        totals = [p["total"] for p in pipeline]
        print(f"\n{backend.value}: direct through the FL API {statistics.median(direct):.1f} s "
              f"(runs: {seconds(direct)})")
        print(f"{backend.value}: flip-pipelines enqueue → RUNNING {statistics.median(totals):.1f} s "
              f"(runs: {seconds(totals)})")
        print(f"  {'stage':<22} {'median s':>8}   runs")
        for stage in pipeline[0]:
            values = [p[stage] for p in pipeline]
            print(f"  {stage:<22} {statistics.median(values):>8.2f}   {seconds(values)}")


# --- parallel: 4 jobs onto 4 free nets ----------------------------------------------------------------------------


def second_nets(stack: DevStack, work: Path) -> tuple[list[int], list[object]]:
    """A second NVFlare net and a second Flower net, with their FL APIs, registered beside the stack's."""
    nvflare = LocalNVFlare(workdir=work / "nvflare-2", port=free_port(), sites=2)
    nvflare.provision()
    nvflare.start()
    flower = LocalFlower(workdir=work / "flower-2", port=free_port(), nodes=2)
    flower.start()
    pids = []
    for backend, args in (("nvflare", ["--admin-kit", str(nvflare.admin_kit), "--server-workspace",
                                       str(nvflare.server_workspace)]),
                          ("flower", ["--superlink", flower.address, "--node-names", str(flower.node_names_file)])):
        port = free_port()
        api = start_process([str(BIN / "flip-pipelines"), "fl-api", "serve", "--backend", backend, "--port", str(port),
                             "--upload-dir", str(work / f"uploads-{backend}"), "--allowed-origin",
                             stack.env["FLIP_S3_ENDPOINT_URL"], *args], log_path=work / f"fl_api_{backend}-2.log",
                            env={**os.environ, "FLIP_FL_API_TOKEN": stack.env["FLIP_FL_API_TOKEN"]})
        pids.append(api.pid)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda u=url: httpx.get(f"{u}/health").status_code == 200, timeout=60, what="the FL API")
        with stack.session() as session:
            registry.upsert_net(session, f"net-{backend}-2", url, FLBackend.parse(backend))
    return pids, [nvflare, flower]


def parallel_sample(stack: DevStack, via: str) -> tuple[float, list[float]]:
    """4 models (2 NVFlare, 2 Flower) queued at once; (seconds to the first run's creation, each job to RUNNING)."""
    models = [stack.new_model(b) for b in (FLBackend.NVFLARE, FLBackend.NVFLARE, FLBackend.FLOWER, FLBackend.FLOWER)]
    checks = {m: store(stack).check(str(m)) for m in models}
    t0 = time.time()
    if via == "rows":  # FLIP's UI writes the queue rows; the queue sensor takes it from there
        with stack.session() as session:
            trusts = registry.get_trust_ids_by_names(session, list(TRUSTS))
            jobs = [str(lifecycle.enqueue_training(session, m, trusts, checks[m]).id) for m in models]
    else:
        commands = [subprocess.Popen(enqueue_command(m), env=cli_env(stack), stdout=subprocess.PIPE, text=True)
                    for m in models]
        jobs = [json.loads(c.communicate()[0])["fl_job_id"] for c in commands]
    running: dict[str, float] = {}
    threads = [threading.Thread(target=lambda j=j: running.__setitem__(j, follow(stack, j))) for j in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    marks = {j: stack.timeline(j) for j in jobs}
    for j in sorted(jobs, key=lambda j: running[j]):
        m = marks[j]
        print("    job " + ", ".join(f"{name} {m[key] - t0:.1f}" for name, key in (
            ("created", "created"), ("STARTING", "starting"), ("STARTED", "started"), ("submitted", "submit:end"))
            if key in m) + f", RUNNING {running[j] - t0:.1f} s")
    created = min(m["created"] for m in marks.values())
    return created - t0, sorted(running[j] - t0 for j in jobs)


PARALLEL_NETS = (("net-nvflare", FLBackend.NVFLARE), ("net-nvflare-2", FLBackend.NVFLARE),
                 ("net-flower", FLBackend.FLOWER), ("net-flower-2", FLBackend.FLOWER))


def direct_parallel_sample(stack: DevStack) -> list[float]:
    """The floor the FL servers set: 4 models bundled, uploaded and submitted by a script to the 4 nets at once,
    each job's seconds to RUNNING."""
    models = {net: stack.new_model(backend) for net, backend in PARALLEL_NETS}
    started = time.monotonic()
    running: dict[str, float] = {}
    threads = [threading.Thread(target=lambda n=net, b=backend: running.__setitem__(
        n, direct_sample(stack, b, n, models[n], started))) for net, backend in PARALLEL_NETS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(running.values())


def parallel(stack: DevStack, work: Path, repeat: int) -> tuple[list[int], list[object]]:
    pids, nets = second_nets(stack, work)
    for _ in range(repeat):
        stack.wait_idle()
        time.sleep(2)
        print(f"4 jobs submitted directly at once (a script, through the FL APIs): RUNNING at "
              f"{seconds(direct_parallel_sample(stack))} s")
    for via in ("rows", "enqueue"):
        for _ in range(repeat):
            stack.wait_idle()
            time.sleep(2)
            created, running = parallel_sample(stack, via)
            print(f"4 jobs queued by {via:<8}: first run created at {created:.1f} s; RUNNING at {seconds(running)} s; "
                  f"last RUNNING {running[-1] - created:.1f} s after the first run was created")
    return pids, nets


# --- rss: the idle stack and one training's run worker -----------------------------------------------------------


def job_ended(stack: DevStack, fl_job_id: str) -> str | None:
    with stack.session() as session:
        status = lifecycle.get_job(session, uuid.UUID(fl_job_id)).status.value
    return None if status in ("QUEUED", "IN_PROGRESS") else status


def rss(stack: DevStack) -> None:
    time.sleep(20)  # the stack settles: first sensor ticks, partitions
    usage = stack_usage(stack, 30)
    print(f"\nidle `make dev` stack over 30 s (load {load()}):")
    print(f"  {'component':<32} {'RSS MiB':>8} {'CPU %':>6} processes")
    for name, (mib, cpu, count) in usage.items():
        print(f"  {name:<32} {mib:>8.0f} {cpu:>6.1f} {count}")
    print(f"  {'total':<32} {sum(u[0] for u in usage.values()):>8.0f} {sum(u[1] for u in usage.values()):>6.1f} "
          f"{sum(u[2] for u in usage.values())}")
    for backend in (FLBackend.NVFLARE, FLBackend.FLOWER):
        model_id = stack.new_model(backend)
        with RssSampler(stack) as sampler:
            out = subprocess.run(enqueue_command(model_id), env=cli_env(stack), capture_output=True, text=True,
                                 check=True)
            fl_job_id = json.loads(out.stdout)["fl_job_id"]
            started = time.monotonic()
            status = wait_until(lambda j=fl_job_id: job_ended(stack, j), timeout=600, interval=0.5,
                                what="the training to end")
            stack.wait_idle(timeout=600)
        for rss_peak, rss_median, uss_peak, uss_median in sampler.summary():
            print(f"{backend.value} training ({status}, {time.monotonic() - started:.0f} s): run worker RSS peak "
                  f"{rss_peak:.0f} MiB, median {rss_median:.0f} MiB; USS (its own pages) peak {uss_peak:.0f} MiB, "
                  f"median {uss_median:.0f} MiB")
    for pid in stack.processes():
        if component(pid) == "run-worker template" and (held := memory(pid)):
            print(f"the run-worker template (warm after the first run): RSS {held[0]:.0f} MiB, USS {held[1]:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--modes", default="single", help="comma-separated: single, parallel, rss")
    args = parser.parse_args()
    modes = set(args.modes.split(","))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average at start {load()}")
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    stack = DevStack(work)
    pids: list[int] = []
    nets: list[object] = []
    try:
        print(f"`flip-pipelines dev` up in {stack.start():.0f} s ({work})")
        if "rss" in modes:
            rss(stack)
        if "single" in modes:
            single(stack, args.repeat)
        if "parallel" in modes:
            pids, nets = parallel(stack, work, max(1, args.repeat // 2))
        print(f"\nload average at the end {load()}")
    finally:
        for pid in pids:
            stop_pid(pid, first_signal=signal.SIGINT, timeout=20)
        for net in nets:
            net.stop()  # type: ignore[attr-defined]
        stack.stop()


if __name__ == "__main__":
    main()
