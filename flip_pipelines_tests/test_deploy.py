"""The deployment files under deploy/, checked without a Docker engine or a cluster: the Dockerfile by a real
Dockerfile parser, the compose file by a YAML parser against what the project really provides (every command's
options accepted by the real command, every service and variable named, every variable the code reads passed to
every deployment), and the production instance config by Dagster itself, on a real PostgreSQL and S3. The Helm
files: test_deploy_helm.py."""

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.storage.compute_log_manager import ComputeIOType
from dockerfile_parse import DockerfileParser

from flip_pipelines.local.postgres import create_database
from flip_pipelines.local.production import interpolate
from flip_pipelines.local.s3 import LocalS3

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
INSTANCE = yaml.safe_load((DEPLOY / "dagster.production.yaml").read_text())
CHART = DEPLOY / "helm" / "flip"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY")
DOCKER_SOCKET = "/var/run/docker.sock"
# Variables the code reads that no hub deployment passes, and why.
NOT_PASSED = {
    "FLIP_DATA_DIR": "the local data folder of `dev` and of the SQLite default; a deployment sets FLIP_DATABASE_URL",
    "FLIP_DAGSTER_PORT": "`flip-pipelines dev` only",
    "FLIP_DAGSTER_LOG_LEVEL": "`flip-pipelines dev` only",
    "FLIP_CRASH_POINTS_FILE": "the crash drills' fault injection, never in production",
    "FLIP_HUB_API_PORT": "the hub-api service's command gives --port",
    "FLIP_INTERNAL_SERVICE_KEY": "the key's hash is passed, never the key",
    **dict.fromkeys(
        ["FLIP_FL_API_PORT", "FLIP_FL_API_UPLOAD_DIR", "FLIP_FL_API_ALLOWED_ORIGINS", "FLIP_NVFLARE_ADMIN_KIT",
         "FLIP_NVFLARE_ADMIN_USER", "FLIP_NVFLARE_SERVER_WORKSPACE", "FLIP_FLOWER_SUPERLINK",
         "FLIP_FLOWER_NODE_NAMES", "FLIP_FLOWER_STALL_SECONDS"],
        "`fl-api serve` runs beside each net's FL server, not on the hub"),
}
HUB_API_ONLY = {"FLIP_INTERNAL_SERVICE_KEY_HASH"}  # the hub API's own: runs and Dagster never see it


def _pin(package: str) -> str:
    return next(d.split("==")[1] for d in PYPROJECT["project"]["dependencies"] if d.startswith(f"{package}=="))


def test_the_image_installs_the_package_and_serves_the_code_location() -> None:
    parser = DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    assert parser.baseimage == "python:3.11-slim", "the Python the project is pinned and tested on"
    instructions = [(i["instruction"], i["value"]) for i in parser.structure]
    for kind, value in instructions:
        if kind == "COPY":
            *sources, _ = value.split()
            assert all((REPO / s).exists() for s in sources), f"COPY of a missing path: {value}"
    [install] = [v for k, v in instructions if k == "RUN" and "pip install" in v]
    assert "pip install ." in install
    for extra in ("dagster-docker", "dagster-k8s"):
        assert f'"{extra}=={_pin("dagster-aws")}"' in install, "launchers pinned with the other dagster libraries"
    assert ("USER", "flip") in instructions, "runs as a user, not root"
    cmd = yaml.safe_load(parser.cmd)  # the JSON form: a list
    assert cmd == COMPOSE["services"]["code"]["command"], "the image's default command is the compose code service"


@pytest.mark.parametrize("service", ["migrate", "code", "webserver", "daemon", "hub-api"])
def test_each_service_command_is_accepted_by_the_real_command(service: str) -> None:
    """Every option of the compose command is one the installed command accepts (click and argparse refuse an
    unknown option before they print the help)."""
    command = COMPOSE["services"][service]["command"]
    assert (BIN / command[0]).exists(), f"{command[0]} is not installed with the package"
    result = subprocess.run([str(BIN / command[0]), *command[1:], "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_wire_together_and_hold_no_secret() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "migrate", "code", "webserver", "daemon", "hub-api"}
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        assert service.get("networks") == ["flip"], name
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key) and key != "FLIP_NET_OPTIONS":
                assert str(value).startswith("${"), f"{name}: {key} must come from the environment"
    env = COMPOSE["x-flip-env"]
    for key in ("DAGSTER_PG_URL", "FLIP_DATABASE_URL"):
        assert env[key].startswith("postgresql+psycopg2://"), "psycopg2 explicitly: SQLAlchemy 2.1 means psycopg 3"
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    code = services["code"]["command"]
    assert workspace["host"] == "code" and str(workspace["port"]) == code[code.index("-p") + 1]
    assert workspace["location_name"] == code[code.index("--location-name") + 1]
    launcher = INSTANCE["run_launcher"]["config"]
    assert launcher["network"] == COMPOSE["networks"]["flip"]["name"], "run containers join the compose network"
    assert set(launcher["env_vars"]) <= set(env), "every variable a run needs is set for the services"
    init = (DEPLOY / "postgres-init.sql").read_text()
    assert all(f"CREATE DATABASE {db};" in init for db in ("dagster", "flip"))


def test_the_services_holding_the_docker_socket_may_use_it() -> None:
    """The image runs as the unprivileged user ``flip``: a service mounting the Docker socket joins the socket's
    group (DOCKER_GID, required: compose refuses to start without it and says how to find it), or the
    DockerRunLauncher is refused by the Docker engine."""
    services = COMPOSE["services"]
    holding = {name for name, s in services.items()
               if any(v.split(":")[0] == DOCKER_SOCKET for v in s.get("volumes", []))}
    assert holding == {"webserver", "daemon"}
    for name in holding:
        [group] = services[name]["group_add"]
        assert interpolate(group, {"DOCKER_GID": "998"}) == "998", name
        with pytest.raises(KeyError, match=r"stat -c %g /var/run/docker.sock"):
            interpolate(group, {})
    assert not [n for n, s in services.items() if "group_add" in s and n not in holding], "no other service"


def test_the_dagster_ui_is_published_on_localhost_only_unless_asked() -> None:
    """The UI has no authentication and its container holds the Docker socket: it is published on the host's
    loopback interface by default; DAGSTER_UI_ADDRESS publishes it elsewhere (behind an authenticating proxy)."""
    [port] = COMPOSE["services"]["webserver"]["ports"]
    assert interpolate(port, {}) == "127.0.0.1:3000:3000"
    assert interpolate(port, {"DAGSTER_UI_ADDRESS": "10.0.0.5:8080"}) == "10.0.0.5:8080:3000"
    command = COMPOSE["services"]["webserver"]["command"]
    assert command[command.index("-p") + 1] == "3000", "the container's port the mapping names"


def _read_by_code() -> set[str]:
    """Every environment variable flip_pipelines reads, found in its source: ``os.environ.get(X)``,
    ``os.environ[X]``, ``os.getenv(X)``, ``X in os.environ``, settings' ``_env(X, ...)``, Dagster's ``EnvVar(X)``
    and click's ``envvar=X``, where X is a literal or a module constant holding one."""
    trees = [ast.parse(path.read_text()) for path in (REPO / "flip_pipelines").rglob("*.py")]
    constants: dict[str, set[str]] = {}
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                    isinstance(node.value.value, str):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        constants.setdefault(target.id, set()).add(node.value.value)

    def name(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        key = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        values = constants.get(key or "", set())
        return next(iter(values)) if len(values) == 1 else None

    def environ(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    read: set[str | None] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if node.args and ((called == "get" and environ(node.func.value))  # type: ignore[attr-defined]
                                  or called in ("getenv", "_env", "EnvVar")):
                    read.add(name(node.args[0]))
                read |= {name(k.value) for k in node.keywords if k.arg == "envvar"}
            elif isinstance(node, ast.Subscript) and environ(node.value) and isinstance(node.ctx, ast.Load):
                read.add(name(node.slice))
            elif isinstance(node, ast.Compare) and any(environ(c) for c in node.comparators):
                read.add(name(node.left))
    return {n for n in read if n and re.fullmatch(r"[A-Z][A-Z0-9_]*", n)}


def _flip(names: object) -> set[str]:
    return {n for n in names if n.startswith("FLIP_")}  # type: ignore[attr-defined]


def test_every_variable_the_code_reads_is_passed_by_every_deployment() -> None:
    """The variables flip_pipelines reads (collected from its source, not a list kept by hand), less the few no
    hub deployment passes (NOT_PASSED, each with its reason), are exactly those each deployment passes: every
    compose service, the DockerRunLauncher to each run's container, and the Helm chart's settings and secret to
    the hub API, the code location and each run's pod. The hub API alone gets its key's hash."""
    read = _read_by_code()
    assert {"FLIP_PUSHED_STATUS_GRACE_SECONDS", "FLIP_MONITOR_POLL_SECONDS", "FLIP_PRESIGN_TTL_SECONDS",
            "FLIP_BASE_APP_SOURCE", "FLIP_MAX_MODEL_FILE_BYTES", "FLIP_FL_API_TOKEN", "FLIP_DATABASE_URL",
            "FLIP_INTERNAL_SERVICE_KEY_HASH", "DAGSTER_HOME"} <= read, "the collector finds every kind of read"
    assert set(NOT_PASSED) <= read, f"not read any more: {set(NOT_PASSED) - read}"
    passed = _flip(read) - set(NOT_PASSED) - HUB_API_ONLY

    env = COMPOSE["x-flip-env"]
    assert _flip(env) == passed, f"compose: missing {passed - _flip(env)}, extra {_flip(env) - passed}"
    assert read - _flip(read) <= set(env), "the other variables the code reads (DAGSTER_HOME) are set too"
    for name, service in COMPOSE["services"].items():
        if name != "postgres":
            expected = passed | HUB_API_ONLY if name == "hub-api" else passed
            assert _flip(service["environment"]) == expected, name
    launcher = INSTANCE["run_launcher"]["config"]["env_vars"]
    assert set(launcher) == set(env) - {"DAGSTER_HOME"}, "each run's container gets what the services get " \
                                                           "(DAGSTER_HOME is the image's)"
    assert _instance_env(INSTANCE) <= set(launcher), "a run's instance config can be read in its container"

    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    helm = set(chart["settings"]) | set(chart["secretKeys"])
    assert _flip(helm) == passed, f"helm: missing {passed - _flip(helm)}, extra {_flip(helm) - passed}"
    assert chart["hubApi"]["keySecret"]["key"] in HUB_API_ONLY


def _instance_env(node: object) -> set[str]:
    """The variables a Dagster instance config reads (``{env: NAME}``)."""
    if isinstance(node, dict):
        found = {node["env"]} if set(node) == {"env"} else set()
        return found | {n for v in node.values() for n in _instance_env(v)}
    if isinstance(node, list):
        return {n for v in node for n in _instance_env(v)}
    return set()


def test_the_production_instance_loads_in_dagster_with_its_policies(postgres_server_url: str,
                                                                    s3_server: LocalS3, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Loaded by Dagster as the compose services load it (their environment), with its run logs kept in S3:
    what a run's container writes is uploaded when its capture ends and read back by another process (the
    webserver) once the container and its files are gone."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.production.yaml", home / "dagster.yaml")
    bucket = f"compute-logs-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    variables = {"POSTGRES_PASSWORD": "unused", "FLIP_MODEL_BUCKET": "m", "FLIP_BUNDLE_BUCKET": "b",
                 "FLIP_RESULTS_BUCKET": "r", "DAGSTER_COMPUTE_LOG_BUCKET": bucket,
                 "FLIP_S3_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ACCESS_KEY_ID": s3_server.access_key,
                 "AWS_SECRET_ACCESS_KEY": s3_server.secret_key}
    for key, raw in COMPOSE["x-flip-env"].items():
        monkeypatch.setenv(key, interpolate(str(raw), variables))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", create_database(postgres_server_url, f"dagster_{uuid.uuid4().hex[:8]}"))
    log_key = [f"run-{uuid.uuid4().hex[:8]}", "compute_logs", "train_model"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        manager = instance.compute_log_manager
        assert type(manager).__name__ == "S3ComputeLogManager"
        assert manager.upload_interval, "a long training's logs are uploaded while it runs, not only at its end"
        with manager.open_log_stream(log_key, ComputeIOType.STDOUT) as stdout:
            stdout.write("round 1 of 8\n")
        assert not manager.has_local_file(log_key, ComputeIOType.STDOUT), "the run's own copy is gone"
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.endswith(f"{log_key[0]}/compute_logs/train_model.out") for k in keys), keys
    with dg.DagsterInstance.from_config(str(home)) as webserver:
        data, _ = webserver.compute_log_manager.get_log_data_for_type(log_key, ComputeIOType.STDOUT, 0, None)
        assert data == b"round 1 of 8\n"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_launcher).__name__ == "DockerRunLauncher"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled
        assert instance.get_settings("sensors") == {"use_threads": True, "num_workers": 4, "num_submit_workers": 4}
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure, "infrastructure failures only"
        assert instance.run_monitoring_max_resume_run_attempts == 0, "the reconcile sensor restarts or resumes"
        kept = instance.get_tick_retention_settings(InstigatorType.SENSOR)
        assert kept[TickStatus.SKIPPED] == 1 and kept[TickStatus.SUCCESS] == 7, "sensor ticks are purged"
        assert {"key": "flip/net", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in \
            INSTANCE["concurrency"]["runs"]["tag_concurrency_limits"]
