"""A real local Flower deployment: one SuperLink and N SuperNodes, started and stopped by PID.

Telemetry, update checks and runtime dependency installation are off; FLWR_HOME (with its ``config.toml``
connection) lives in the work folder. Each SuperNode is started with ``site-name`` in its node config, and the
node id it logs is recorded in ``nodes.json`` (site name → node id), since the Control API cannot tell which
node is which site.
"""

import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from flip_pipelines.local.processes import (
    free_port,
    kill_tree,
    pid_alive,
    read_pids,
    start_process,
    stop_pid,
    wait_until,
    write_pids,
)

NODE_ID_LINE = re.compile(r"SuperNode ID: (\d+)")


def flower_env(flwr_home: Path, python: str = sys.executable) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}",  # flower-superexec is found via PATH
        FLWR_HOME=str(flwr_home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        FLWR_SUPEREXEC_TASK_POLL_INTERVAL="0.1",
    )
    return env


@dataclass
class LocalFlower:
    workdir: Path
    port: int
    nodes: int = 2
    python: str = sys.executable
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def flwr_home(self) -> Path:
        return self.workdir / "flwr_home"

    @property
    def site_names(self) -> list[str]:
        return [f"site-{i}" for i in range(1, self.nodes + 1)]

    @property
    def node_names_file(self) -> Path:
        return self.workdir / "nodes.json"

    def _bin(self, name: str) -> str:
        return str(Path(self.python).parent / name)

    def start(self, *, timeout: float = 90.0) -> float:
        started = time.monotonic()
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        (self.flwr_home / "config.toml").write_text(
            '[superlink]\ndefault = "local"\n\n[superlink.local]\n'
            f'address = "{self.address}"\ninsecure = true\n'
        )
        process = start_process(
            [self._bin("flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(self.port),
             "--disable-runtime-dependency-installation"],
            log_path=self.workdir / "logs" / "superlink.log", env=flower_env(self.flwr_home, self.python),
        )
        self.pids["superlink"] = process.pid
        for index, site in enumerate(self.site_names):
            self.start_node(site, index)
        self._save()
        wait_until(self.healthy, timeout=timeout, interval=0.2, what="the SuperLink /health")
        self.wait_for_nodes(self.site_names, timeout=timeout)
        return time.monotonic() - started

    def start_node(self, site: str, index: int | None = None) -> int:
        index = self.site_names.index(site) if index is None else index
        log = self.workdir / "logs" / f"{site}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")  # a restarted node logs its new id: read only this run's log
        process = start_process(
            [self._bin("flower-supernode"), "--insecure", "--superlink", self.address, "--host", "127.0.0.1",
             "--port", str(free_port()), "--node-config",
             f'partition-id={index} num-partitions={self.nodes} site-name="{site}"'],
            log_path=log, env=flower_env(self.flwr_home, self.python),
        )
        self.pids[site] = process.pid
        self._save()
        return process.pid

    def healthy(self) -> bool:
        return httpx.get(f"http://{self.address}/health", timeout=1).status_code == 200

    def node_ids(self) -> dict[str, int]:
        """Site name → node id, from each running node's log."""
        found = {}
        for site in self.site_names:
            if site in self.pids:
                match = NODE_ID_LINE.search((self.workdir / "logs" / f"{site}.log").read_text(errors="replace"))
                if match:
                    found[site] = int(match.group(1))
        return found

    def wait_for_nodes(self, sites: list[str], *, timeout: float) -> None:
        from flip_pipelines.fl_api.backends.flower_control import FlowerControl

        control = FlowerControl(self.address)

        def ready() -> bool:
            ids = self.node_ids()
            if not set(sites) <= set(ids):
                return False
            online = {n.node_id for n in control.list_nodes() if n.status == "online"}
            return {ids[s] for s in sites} <= online

        wait_until(ready, timeout=timeout, interval=0.3, what=f"SuperNodes {sites} online")
        self.node_names_file.write_text(json.dumps({str(v): k for k, v in self.node_ids().items()}, indent=2))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        pid = self.pids.pop(name, None)
        if pid is not None:
            kill_tree(pid, sig)
            wait_until(lambda: not pid_alive(pid), timeout=15, what=f"{name} (pid {pid}) to exit")
        self._save()

    def stop(self) -> None:
        for name in [n for n in self.pids if n != "superlink"] + ["superlink"]:
            pid = self.pids.get(name)
            if pid is not None:
                stop_pid(pid, first_signal=signal.SIGTERM, timeout=5)
                kill_tree(pid)
                self.pids.pop(name, None)
        self._save()

    def _save(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "deployment.json").write_text(json.dumps({"port": self.port, "nodes": self.nodes}))
        write_pids(self.workdir / "pids.json", self.pids)

    @classmethod
    def load(cls, workdir: Path) -> "LocalFlower":
        state = json.loads((workdir / "deployment.json").read_text())
        deployment = cls(workdir=workdir, port=state["port"], nodes=state["nodes"])
        deployment.pids = read_pids(workdir / "pids.json")
        return deployment
