"""The `make dev` stack as the dispatch benchmark drives it: `flip-pipelines dev` in a temporary data folder, and
what the benchmark reads from it — a training run's timeline (Dagster's own event timestamps), the FL server's
job status, the processes of the stack with their RSS and CPU.

Shared by ``bench_dispatch.py``'s modes; nothing here is imported by the package.
"""

import os
import shlex
import signal
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from flip_pipelines.db import registry
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.models import FLJob
from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.enums import FLBackend, FLJobStatus
from flip_pipelines.fl_api.client import FLApiClient
from flip_pipelines.local.processes import (
    descendants,
    free_port,
    parent_pid,
    proc_stat,
    processes_running,
    start_process,
    stop_pid,
    wait_until,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO_FILES = {FLBackend.NVFLARE: "nvflare_logreg", FLBackend.FLOWER: "flower_logreg"}
TRUSTS = ("Trust_1", "Trust_2")
SITES = ["site-1", "site-2"]
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")

RUN_QUERY = """query($tag: String!) { runsOrError(filter: {tags: [{key: "flip/fl_job_id", value: $tag}]}) {
  ... on Runs { results { runId status creationTime } } } }"""
EVENTS_QUERY = """query($runId: ID!) { logsForRun(runId: $runId, limit: 1000) { __typename
  ... on EventConnection { events { __typename ... on MessageEvent { timestamp stepKey } } } } }"""
MILESTONES = {"RunStartingEvent": "starting", "RunStartEvent": "started", "RunDequeuedEvent": "dequeued"}
ACTIVE_RUNS = """{ runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) {
  ... on Runs { results { runId } } } }"""


@dataclass
class DevStack:
    """`flip-pipelines dev` (S3, net-nvflare, net-flower, their FL APIs, Dagster webserver + daemon + code server)."""

    work: Path
    env: dict[str, str] = field(default_factory=dict)
    pid: int = 0
    port: int = 0

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, extra_env: dict[str, str] | None = None) -> float:
        started = time.monotonic()
        self.port = free_port()
        env = {**os.environ, "FLIP_DATA_DIR": str(self.data_dir), **(extra_env or {}),
               "FLIP_DATABASE_URL": f"sqlite:///{self.work / 'flip.db'}"}
        for name in ("DAGSTER_HOME", "FLIP_DAGSTER_UI_URL", "FLIP_S3_ENDPOINT_URL", "FLIP_FL_API_TOKEN"):
            env.pop(name, None)
        process = start_process([str(BIN / "flip-pipelines"), "dev", "--port", str(self.port), "--instance-config",
                                 str(REPO / "dagster.yaml")], log_path=self.work / "dev.log", env=env, cwd=REPO)
        self.pid = process.pid
        stack_env = self.data_dir / "stack.env"
        wait_until(stack_env.exists, timeout=300, interval=0.5, what="the local stack")
        wait_until(self._loaded, timeout=300, interval=0.5, what="the Dagster code location")
        for line in stack_env.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            self.env[key] = shlex.split(value)[0] if value else ""
        self.env["FLIP_DATA_DIR"] = str(self.data_dir)
        return time.monotonic() - started

    def _loaded(self) -> bool:
        if (self.work / "dev.log").exists() and "Error" in (self.work / "dev.log").read_text()[-300:] and \
                not descendants(self.pid):
            raise RuntimeError((self.work / "dev.log").read_text()[-3000:])
        data = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { loadStatus "
                            "locationOrLoadError { __typename } } } } }")
        entries = data["workspaceOrError"]["locationEntries"]
        return bool(entries) and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation"

    def stop(self) -> None:
        if self.pid:
            stop_pid(self.pid, first_signal=signal.SIGINT, timeout=60)

    def processes(self) -> list[int]:
        """Every process of the stack: `flip-pipelines dev` and everything under it, and the run-worker templates
        with their workers, which leave the daemon's tree (found by their command and DAGSTER_HOME)."""
        home = {"DAGSTER_HOME": str((self.data_dir / "dagster_home").resolve())}
        launcher = processes_running(TEMPLATE, home)
        return list(dict.fromkeys([self.pid, *descendants(self.pid), *launcher,
                                   *(child for pid in launcher for child in descendants(pid))]))

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
        return response.json()["data"]

    def session(self):  # type: ignore[no-untyped-def]
        return new_session(make_engine(self.env["FLIP_DATABASE_URL"]))

    def s3(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.env["FLIP_S3_ENDPOINT_URL"], region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def endpoint(self, net: str) -> str:
        with self.session() as session:
            return next(n.endpoint for n in registry.list_nets(session) if n.name == net)

    def new_model(self, backend: FLBackend) -> uuid.UUID:
        """A model whose files suit ``backend`` only, so the queue can put it on no other net."""
        with self.session() as session:
            model = registry.add_model(session, f"bench-{backend.value}-{uuid.uuid4().hex[:6]}", "demo")
        client = self.s3()
        for rel, body in demo_model_files(DEMO_FILES[backend]).items():
            client.put_object(Bucket=self.env["FLIP_MODEL_BUCKET"], Key=f"{model.id}/{rel}", Body=body)
        return model.id

    def backend_job(self, fl_job_id: str) -> str | None:
        with self.session() as session:
            return session.get(FLJob, uuid.UUID(fl_job_id)).fl_backend_job_id

    def wait_idle(self, timeout: float = 300) -> None:
        """Every net free and no run active: the next sample starts from a quiet hub."""
        def idle() -> bool:
            with self.session() as session:
                if any(n.status.value == "BUSY" for n in registry.list_nets(session)):
                    return False
            return not self.graphql(ACTIVE_RUNS)["runsOrError"]["results"]

        wait_until(idle, timeout=timeout, interval=0.5, what="every net free and no run active")

    def timeline(self, fl_job_id: str) -> dict[str, float]:
        """Epoch seconds of the run's milestones, from Dagster's own records: created, STARTING, STARTED, and each
        step's start and end (``<step>:start``, ``<step>:end``)."""
        runs = self.graphql(RUN_QUERY, {"tag": fl_job_id})["runsOrError"]["results"]
        if not runs:
            return {}
        run = min(runs, key=lambda r: r["creationTime"])
        marks = {"created": float(run["creationTime"])}
        events = self.graphql(EVENTS_QUERY, {"runId": run["runId"]})["logsForRun"]["events"]
        for event in events:
            kind, at = event["__typename"], float(event.get("timestamp") or 0) / 1000
            name = MILESTONES.get(kind)
            if name and name not in marks:
                marks[name] = at
            elif kind == "ExecutionStepStartEvent":
                marks[f"{event['stepKey']}:start"] = at
            elif kind == "ExecutionStepSuccessEvent":
                marks[f"{event['stepKey']}:end"] = at
        marks["run_id"] = run["runId"]  # type: ignore[assignment]
        return marks


def wait_fl_running(endpoint: str, token: str, job_id: str, timeout: float = 300) -> float:
    """Epoch seconds at which the FL server first reported the job past PENDING (polled every 0.1 s)."""
    with FLApiClient(endpoint, token) as client:
        wait_until(lambda: (j := client.get_job(job_id)) is not None and j.status != FLJobStatus.PENDING,
                   timeout=timeout, interval=0.1, what=f"FL job {job_id} RUNNING")
    return time.time()


def abort_fl_job(endpoint: str, token: str, job_id: str) -> None:
    with FLApiClient(endpoint, token) as client:
        client.abort_job(job_id)


# --- processes: RSS and CPU -----------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(RSS bytes, CPU seconds so far) of a process, None once it is gone."""
    if (fields := proc_stat(pid)) is None:
        return None
    return int(fields[21]) * PAGE, (int(fields[11]) + int(fields[12])) / TICKS


def memory(pid: int) -> tuple[float, float] | None:
    """(RSS, USS) in MiB: all resident pages, and the pages this process alone holds (private). A worker forked
    from the run-worker template shares the template's pages until it writes to them: they count in its RSS, but
    only its USS is what one more training costs."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    kib = {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines[1:]) if v.strip()}
    return kib.get("Rss", 0) / 1024, (kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0)) / 1024


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


FLOWER = "Flower (SuperLink + 2 SuperNodes)"


TEMPLATE = "flip_pipelines.launcher.template"


def component(pid: int) -> str:
    """Which part of the stack a process is, from its command line."""
    line = cmdline(pid)[:160]
    if TEMPLATE in line:
        return "Dagster run worker" if TEMPLATE in cmdline(parent_pid(pid)) else "run-worker template"
    for needle, name in (("api execute_run", "Dagster run worker"),
                         ("-m dagster_webserver", "Dagster webserver"), ("-m dagster._daemon", "Dagster daemon"),
                         ("dagster api grpc", "Dagster code server"), ("code-server start", "Dagster code server"),
                         ("bin/dg dev", "Dagster dev (dg)"), ("weed server", "S3 (SeaweedFS)"),
                         ("fl-api serve", "FL APIs (2)"), ("nvflare", "NVFlare (server + 2 sites)"),
                         ("flower-", FLOWER), ("flwr-", FLOWER),
                         ("flip-pipelines dev", "flip-pipelines dev")):
        if needle in line:
            return name
    return line[:60] or "?"


def run_workers(stack: DevStack) -> list[int]:
    """Dagster run workers: forked from the run-worker template, or started cold (not the FL servers' own)."""
    return [p for p in stack.processes() if component(p) == "Dagster run worker"]


def stack_usage(stack: DevStack, seconds: float) -> dict[str, tuple[float, float, int]]:
    """Per component over ``seconds``: (RSS MiB at the end, % of one core used, processes)."""
    pids = stack.processes()
    before = {p: s for p in pids if (s := _stat(p))}
    time.sleep(seconds)
    usage: dict[str, list[float]] = {}
    for pid, (_, cpu0) in before.items():
        now = _stat(pid)
        if now is None:
            continue
        entry = usage.setdefault(component(pid), [0.0, 0.0, 0])
        entry[0] += now[0] / 2**20
        entry[1] += (now[1] - cpu0) / seconds * 100
        entry[2] += 1
    return {k: (v[0], v[1], int(v[2])) for k, v in sorted(usage.items())}


class RssSampler:
    """Samples the RSS and USS (``memory``) of every Dagster run worker of ``stack`` every 0.2 s."""

    def __init__(self, stack: DevStack) -> None:
        self.stack, self.samples = stack, {}  # type: ignore[var-annotated]
        self.earlier = set(run_workers(stack))  # a previous run's worker may still be exiting
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            for pid in set(run_workers(self.stack)) - self.earlier:
                if (sample := memory(pid)) is not None:
                    self.samples.setdefault(pid, []).append(sample)

    def summary(self) -> list[tuple[float, float, float, float]]:
        """The training's worker (the longest-lived of the processes forked meanwhile: the template also forks a
        short one to check the run once its worker exits): RSS peak and median, USS peak and median (MiB)."""
        if not self.samples:
            return []
        s = max(self.samples.values(), key=len)
        return [(max(r for r, _ in s), statistics.median(r for r, _ in s), max(u for _, u in s),
                 statistics.median(u for _, u in s))]


def seconds(values: Iterable[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)
