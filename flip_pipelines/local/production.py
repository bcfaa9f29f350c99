"""deploy/ as local processes: the compose file's services run with their own commands and environment, and the
production instance config, on this machine instead of in containers (no Docker engine needed).

What changes, and only that: each service's host and port options and the addresses of other services (``code``,
``postgres:5432``) become free local ones; paths under /opt/dagster become the work folder; and the instance's
``DockerRunLauncher`` becomes Dagster's ``DefaultRunLauncher`` (each run a subprocess of the code server instead
of a container). Everything else — PostgreSQL storage, the run queue and its limits, run monitoring, run
retries, retention — is the file's own.
"""

import contextlib
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flip_pipelines.local.dagster import BIN, LocalDagster
from flip_pipelines.local.postgres import LocalPostgres
from flip_pipelines.local.processes import descendants, pid_alive, start_process, wait_until

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
LOCAL_RUN_LAUNCHER = {"module": "flip_pipelines.launcher", "class": "PrewarmedRunLauncher",
                      "config": {"preload_modules": ["flip_pipelines.definitions"]}}
# what compose would get from deploy/.env and the Docker host; every other variable comes from the compose file
HOST_SCOPED = ("FLIP_", "DAGSTER_", "AWS_", "POSTGRES_")
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def load_compose(deploy: Path = DEPLOY) -> dict[str, Any]:
    return yaml.safe_load((deploy / "docker-compose.yaml").read_text())


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's variable syntax: ``${X}``, ``${X:-default}``, ``${X-default}``, ``${X:?error}``, ``${X?error}``,
    ``$$``. A required variable that is unset raises ``KeyError`` with its message, as compose refuses to start."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = variables.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if not missing:
            return str(value)
        if op in (":?", "?"):
            raise KeyError(f"{name}: {arg or 'required'}")
        return arg if op in (":-", "-") else ""

    return _VARIABLE.sub(replace, value)


def service_env(compose: Mapping[str, Any], service: str, variables: Mapping[str, str],
                addresses: Mapping[str, str]) -> dict[str, str]:
    """A service's ``environment`` with compose's variables filled in and other services' addresses
    (``"postgres:5432"``) replaced by local ones."""
    env = {}
    for key, raw in (compose["services"][service].get("environment") or {}).items():
        value = interpolate(str(raw), variables)
        for address, local in addresses.items():
            value = value.replace(f"@{address}/", f"@{local}/").replace(f"//{address}/", f"//{local}/")
        env[key] = value
    return env


def local_command(command: list[str], options: Mapping[str, str]) -> list[str]:
    """The compose command with its executable from this environment and the value of each option in
    ``options`` (``{"-h": "127.0.0.1", "-p": "40123"}``) replaced."""
    args = [str(BIN / command[0]), *command[1:]]
    for i, arg in enumerate(args[:-1]):
        if arg in options:
            args[i + 1] = options[arg]
    return args


def local_instance_config(path: Path = DEPLOY / "dagster.production.yaml", **run_monitoring: Any) -> dict[str, Any]:
    """The production instance config with the PrewarmedRunLauncher in place of the DockerRunLauncher (and any
    ``run_monitoring`` values given, e.g. a shorter ``poll_interval_seconds``)."""
    config = yaml.safe_load(path.read_text())
    config["run_launcher"] = dict(LOCAL_RUN_LAUNCHER)
    config["run_monitoring"] = {**config["run_monitoring"], **run_monitoring}
    return config


def local_workspace(deploy: Path, host: str, port: int) -> dict[str, Any]:
    """deploy/workspace.yaml with the ``code`` service's address replaced."""
    workspace = yaml.safe_load((deploy / "workspace.yaml").read_text())
    for entry in workspace["load_from"]:
        entry["grpc_server"].update(host=host, port=port)
    return workspace


def start_compose_postgres(workdir: Path, password: str, deploy: Path = DEPLOY) -> LocalPostgres:
    """The ``postgres`` service: a server whose superuser is ``flip`` (compose's ``POSTGRES_USER``), with the
    databases of deploy/postgres-init.sql, created by that file as the container's entrypoint would."""
    import psycopg2

    server = LocalPostgres(workdir=workdir)
    server.start()
    try:
        with contextlib.closing(psycopg2.connect(host="127.0.0.1", port=server.port, user="postgres",
                                                 dbname="postgres")) as admin:
            admin.autocommit = True
            admin.cursor().execute("CREATE ROLE flip LOGIN SUPERUSER PASSWORD %s", (password,))
        with contextlib.closing(psycopg2.connect(host="127.0.0.1", port=server.port, user="flip", password=password,
                                                 dbname="postgres")) as flip:
            flip.autocommit = True
            for statement in _sql_statements((deploy / "postgres-init.sql").read_text()):
                flip.cursor().execute(statement)
    except BaseException:
        server.stop()
        raise
    return server


def _sql_statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@dataclass
class ComposeDagster(LocalDagster):
    """The compose file's ``code``, ``daemon`` and ``webserver`` services as processes over one instance
    (``instance_config`` through ``local_instance_config``, with ``run_monitoring`` values changed), each with
    its service's environment filled from ``variables``; ``env`` is added to every service (test settings
    only). ``run_service`` runs a one-shot service such as ``migrate``."""

    deploy: Path = DEPLOY
    variables: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    run_monitoring: dict[str, Any] = field(default_factory=dict)
    compose: dict[str, Any] = field(init=False, default_factory=dict)
    instance: dict[str, Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.compose = load_compose(self.deploy)
        self.instance = local_instance_config(self.instance_config, **self.run_monitoring)

    @property
    def workspace(self) -> Path:
        return self.workdir / "workspace.yaml"

    def service_env(self, service: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(HOST_SCOPED)}
        env = {**base, **service_env(self.compose, service, self.variables, self.addresses), **self.env}
        if "DAGSTER_HOME" in env:
            env["DAGSTER_HOME"] = str(self.home)
        return env

    def command(self, service: str) -> list[str]:
        ports = {"code": str(self.code_port), "webserver": str(self.web_port)}
        options = {"-h": self.host, "-w": str(self.workspace), **({"-p": ports[service]} if service in ports else {})}
        return local_command(self.compose["services"][service]["command"], options)

    def run_service(self, service: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.command(service), env=self.service_env(service), cwd=self.workdir,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"service {service} exited {result.returncode}: {result.stderr[-2000:]}")
        return result

    def _start_service(self, service: str, name: str) -> None:
        process = start_process(self.command(service), log_path=self.workdir / "logs" / f"{name}.log",
                                env=self.service_env(service), cwd=self.workdir)
        self.pids[name] = process.pid

    def start(self, timeout: float = 180) -> float:
        """Start the services in compose's order (code, then daemon and webserver, which depend on it; no
        ``dagster instance migrate``: as in compose, they create the storage's tables themselves); return the
        seconds until the code location is LOADED."""
        import time

        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(self.instance, sort_keys=False))
        self.workspace.write_text(yaml.safe_dump(local_workspace(self.deploy, self.host, self.code_port)))
        self._start_service("code", "code_server")
        self.start_daemon()
        self._start_service("webserver", "webserver")
        wait_until(self._loaded, timeout=timeout, interval=0.5, what="the Dagster code location to load")
        return time.monotonic() - started

    def start_daemon(self) -> None:
        self._start_service("daemon", "daemon")

    def daemon_statuses(self) -> dict[str, bool]:
        data = self.graphql("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }")
        return {d["daemonType"]: bool(d["healthy"]) for d in data["instance"]["daemonHealth"]["allDaemonStatuses"]
                if d["required"]}

    def process_tree(self) -> dict[str, list[int]]:
        """Each service's process and everything under it (the code server's gRPC child and run workers)."""
        return {name: [pid, *descendants(pid)] for name, pid in self.pids.items() if pid_alive(pid)}

    def stop(self, timeout: float = 30) -> list[int]:
        """Stop every service, then make sure no process of the tree, nor of the run launcher, outlived it."""
        tree = [pid for pids in self.process_tree().values() for pid in pids]
        left = super().stop(timeout)
        wait_until(lambda: not [p for p in tree if pid_alive(p)], timeout=30, what="every Dagster process to exit")
        if left:
            raise RuntimeError(f"run launcher processes {left} outlived the daemon's shutdown (killed)")
        return left
