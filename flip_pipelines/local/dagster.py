"""Dagster as production runs it, as local processes: a gRPC code server, the daemon and the webserver, each a
process of its own over one instance, so any of them can be killed and restarted (the crash drills kill the
daemon). ``flip-pipelines dev`` runs the same pieces under ``dagster dev`` instead."""

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from flip_pipelines.local.processes import (
    free_port,
    kill_tree,
    pid_alive,
    processes_running,
    start_process,
    stop_pid,
    wait_until,
)

LOCATION = "flip_pipelines"
TEMPLATE_MODULE = "flip_pipelines.launcher.template"
BIN = Path(sys.executable).parent


@dataclass
class LocalDagster:
    """``workdir`` holds ``DAGSTER_HOME``, the workspace file and the logs; ``env`` reaches every process (and so
    every run worker, which the code server starts)."""

    workdir: Path
    env: dict[str, str]
    instance_config: Path
    host: str = "127.0.0.1"
    code_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.workdir / "dagster_home"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.web_port}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "DAGSTER_HOME": str(self.home)}

    def _start(self, name: str, args: list[str]) -> None:
        process = start_process(args, log_path=self.workdir / "logs" / f"{name}.log", env=self._env(),
                                cwd=self.workdir)
        self.pids[name] = process.pid

    def start(self, timeout: float = 180) -> float:
        """Start code server, daemon and webserver; return the seconds until the code location is LOADED."""
        import time

        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.instance_config, self.home / "dagster.yaml")
        # create the instance's storage once, before three processes race to create its tables
        subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=self._env(), cwd=self.workdir,
                       check=True, capture_output=True, timeout=120)
        workspace = self.workdir / "workspace.yaml"
        workspace.write_text(f"load_from:\n  - grpc_server:\n      host: {self.host}\n      port: {self.code_port}\n"
                             f"      location_name: {LOCATION}\n")
        self._start("code_server", [str(BIN / "dagster"), "code-server", "start", "-m", "flip_pipelines.definitions",
                                    "-h", self.host, "-p", str(self.code_port), "--location-name", LOCATION])
        self.start_daemon()
        self._start("webserver", [str(BIN / "dagster-webserver"), "-w", str(workspace), "-h", self.host,
                                  "-p", str(self.web_port)])
        wait_until(self._loaded, timeout=timeout, interval=0.5, what="the Dagster code location to load")
        return time.monotonic() - started

    def start_daemon(self) -> None:
        self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workdir / "workspace.yaml")])

    def kill_daemon(self) -> None:
        """SIGKILL the daemon and every process of its tree, whatever their session: a crashed daemon. Its run
        launcher's template left that tree as it started, so the runs it forked go on."""
        kill_tree(self.pids.pop("daemon"))

    def launcher_processes(self) -> list[int]:
        """The run-worker templates of this instance and the run workers they forked (``PrewarmedRunLauncher``):
        outside the daemon's tree, found by their command and ``DAGSTER_HOME``."""
        return processes_running(TEMPLATE_MODULE, {"DAGSTER_HOME": str(self.home)})

    def daemon_alive(self) -> bool:
        return "daemon" in self.pids and pid_alive(self.pids["daemon"])

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30)
        return response.json()["data"]

    def _loaded(self) -> bool:
        for name, pid in self.pids.items():
            if not pid_alive(pid):
                log = (self.workdir / "logs" / f"{name}.log").read_text()[-2000:]
                raise RuntimeError(f"dagster {name} exited: {log}")
        # LOADED also covers "the code server was not reachable yet" (a PythonError): that is not loaded, and a
        # page opened then shows "Pipeline not found" until the webserver refreshes the location
        data = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { loadStatus "
                            "locationOrLoadError { __typename } } } } }")
        entries = data["workspaceOrError"]["locationEntries"]
        return (bool(entries) and entries[0]["loadStatus"] == "LOADED"
                and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation")

    def stop(self, timeout: float = 30) -> list[int]:
        """Webserver and daemon first (no new runs), then the code server. The daemon's shutdown stops its run
        launcher's template, which interrupts its runs and exits; returns the launcher's processes still running
        ``timeout`` seconds later, which are then killed (none is expected: tests assert it)."""
        for name in ("webserver", "daemon", "code_server"):
            pid = self.pids.pop(name, None)
            if pid is not None:
                stop_pid(pid, first_signal=signal.SIGINT, timeout=20)
        try:
            wait_until(lambda: not self.launcher_processes(), timeout=timeout, interval=0.2,
                       what="the run launcher's processes to exit")
            return []
        except TimeoutError:
            left = self.launcher_processes()
            for pid in left:
                kill_tree(pid)
            return left
