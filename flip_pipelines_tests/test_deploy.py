"""The deployment files under deploy/, checked without a Docker engine or a cluster: the Dockerfile by a real
Dockerfile parser, the compose file and Helm values by a YAML parser against what the project really provides
(every command's options accepted by the real command, every service and variable named), and the production
instance config by Dagster itself, on a real PostgreSQL."""

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
from dockerfile_parse import DockerfileParser

from flip_pipelines.local.postgres import create_database

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
INSTANCE = yaml.safe_load((DEPLOY / "dagster.production.yaml").read_text())
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY")


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


def test_the_production_instance_loads_in_dagster_with_its_policies(postgres_server_url: str,
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.production.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", create_database(postgres_server_url, f"dagster_{uuid.uuid4().hex[:8]}"))
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


def test_helm_values_configure_the_official_chart_as_the_instance_does() -> None:
    """Keys as the dagster/dagster chart reads them (checked against its values.yaml and values.schema.json),
    holding the same policies as the compose deployment's instance."""
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", PYPROJECT["tool"]["dagster"]["module_name"]]
    assert deployment["envSecrets"] == [{"name": "flip-pipelines-env"}]
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert launcher["config"]["k8sRunLauncher"]["envSecrets"] == deployment["envSecrets"]
    assert launcher["config"]["k8sRunLauncher"]["imagePullPolicy"], "the chart's schema requires it"
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    runs = values["concurrency"]["runs"]
    assert values["concurrency"]["enabled"] and runs["tagConcurrencyLimits"] == \
        INSTANCE["concurrency"]["runs"]["tag_concurrency_limits"]
    coordinator = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & set(coordinator), "limits set in one place only"
    assert (coordinator["dequeueUseThreads"], coordinator["dequeueNumWorkers"]) == \
        (INSTANCE["run_coordinator"]["config"]["dequeue_use_threads"],
         INSTANCE["run_coordinator"]["config"]["dequeue_num_workers"])
    daemon = values["dagsterDaemon"]
    assert daemon["sensors"] == {"useThreads": INSTANCE["sensors"]["use_threads"],
                                 "numWorkers": INSTANCE["sensors"]["num_workers"],
                                 "numSubmitWorkers": INSTANCE["sensors"]["num_submit_workers"]}
    assert daemon["runMonitoring"]["enabled"] and daemon["runMonitoring"]["maxResumeRunAttempts"] == 0
    assert daemon["runRetries"] == {"enabled": True, "maxRetries": INSTANCE["run_retries"]["max_retries"],
                                    "retryOnAssetOrOpFailure": False}
    kept = values["retention"]["sensor"]["purgeAfterDays"]
    assert values["retention"]["enabled"] and set(kept) == {"skipped", "failure", "success", "started"}
    assert {k: kept[k] for k in ("skipped", "failure", "success")} == \
        INSTANCE["retention"]["sensor"]["purge_after_days"]
    assert not [k for k in _keys(values) if re.fullmatch(r"(?i)(postgresql)?password|token|.*secretkey", k)], \
        "no password or key in the values: secrets are referenced by their Kubernetes secret's name"


def _keys(node: object) -> list[str]:
    if isinstance(node, dict):
        return [str(k) for k in node] + [k for v in node.values() for k in _keys(v)]
    if isinstance(node, list):
        return [k for v in node for k in _keys(v)]
    return []
