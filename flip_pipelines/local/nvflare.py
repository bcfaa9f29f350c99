"""A real local NVFlare deployment: provisioned server, N sites and an admin kit, started and stopped by PID.

No POC watchdog and no shared /tmp state: ``nvflare provision`` writes the kits under the work folder, the
server's job store and snapshot are moved there too, and each participant runs ``server_train``/``client_train``
in its own session. Job workers are started by NVFlare in sessions of their own, so stopping sweeps every
descendant, not only the process groups. Scheduler and heartbeat settings can be shortened for tests.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flip_pipelines.local.processes import kill_tree, pid_alive, read_pids, start_process, wait_until, write_pids

ADMIN_USER = "admin@nvidia.com"
PROJECT = "flip_local"


@dataclass
class LocalNVFlare:
    workdir: Path
    port: int
    sites: int = 2
    spare_sites: int = 1  # provisioned but not started: a "site that is not connected"
    heart_beat_timeout: int | None = None
    scheduler_args: dict[str, Any] = field(default_factory=dict)
    dead_client_grace: float | None = None
    python: str = sys.executable
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def prod(self) -> Path:
        return self.workdir / "ws" / PROJECT / "prod_00"

    @property
    def admin_kit(self) -> Path:
        return self.prod / ADMIN_USER

    @property
    def server_workspace(self) -> Path:
        """The server's workspace (``server_train -m``): a running job's files are in ``<this>/<job id>/``."""
        return self.prod / "server"

    @property
    def site_names(self) -> list[str]:
        return [f"site-{i}" for i in range(1, self.sites + 1)]

    @property
    def spare_site_names(self) -> list[str]:
        return [f"site-{i}" for i in range(self.sites + 1, self.sites + self.spare_sites + 1)]

    @property
    def state_file(self) -> Path:
        return self.workdir / "deployment.json"

    def _env(self, *, server: bool) -> dict[str, str]:
        env = dict(os.environ)
        env["HOME"] = str(self.workdir / "home")  # keep nvflare's ~/.nvflare out of the real home
        env["PATH"] = f"{Path(self.python).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        if server and self.dead_client_grace is not None:
            env["NVFLARE_DEAD_CLIENT_GRACE_PERIOD"] = str(self.dead_client_grace)
        return env

    def provision(self) -> None:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        (self.workdir / "home").mkdir(parents=True)
        project = {
            "api_version": 3,
            "name": PROJECT,
            "description": "flip_pipelines local deployment",
            "participants": [
                {"name": "server", "type": "server", "org": "flip", "default_host": "localhost",
                 "fed_learn_port": self.port},
                *[{"name": s, "type": "client", "org": "flip"} for s in self.site_names + self.spare_site_names],
                {"name": ADMIN_USER, "type": "admin", "org": "flip", "role": "project_admin"},
            ],
            "builders": [
                {"path": "nvflare.lighter.impl.workspace.WorkspaceBuilder",
                 "args": {"template_file": ["master_template.yml"]}},
                {"path": "nvflare.lighter.impl.static_file.StaticFileBuilder", "args": {"config_folder": "config"}},
                {"path": "nvflare.lighter.impl.cert.CertBuilder"},
                {"path": "nvflare.lighter.impl.signature.SignatureBuilder"},
            ],
        }
        project_file = self.workdir / "project.yml"
        project_file.write_text(yaml.safe_dump(project, sort_keys=False))
        subprocess.run(
            [self.python, "-m", "nvflare.cli", "provision", "-p", str(project_file), "-w", str(self.workdir / "ws"),
             "--force"],
            check=True, env=self._env(server=False), stdin=subprocess.DEVNULL, capture_output=True,
        )
        self._patch_server_resources()
        self._save()

    def _patch_server_resources(self) -> None:
        local = self.prod / "server" / "local"
        resources = json.loads((local / "resources.json.default").read_text())
        resources["snapshot_persistor"]["args"]["storage"]["args"]["root_dir"] = str(self.workdir / "snapshots")
        for component in resources["components"]:
            if component["id"] == "job_manager":
                component["args"]["uri_root"] = str(self.workdir / "jobs-storage")
            if component["id"] == "job_scheduler":
                component["args"].update(self.scheduler_args)
        if self.heart_beat_timeout:
            resources["servers"][0]["heart_beat_timeout"] = self.heart_beat_timeout
        (local / "resources.json").write_text(json.dumps(resources, indent=2))

    def _spawn(self, name: str, module: str, config: str, extra: list[str]) -> int:
        kit = self.prod / name
        process = start_process(
            [self.python, "-u", "-m", module, "-m", str(kit), "-s", config,
             "--set", "secure_train=true", "config_folder=config", "org=flip", *extra],
            log_path=self.workdir / "logs" / f"{name}.log", env=self._env(server=name == "server"), cwd=kit,
        )
        self.pids[name] = process.pid
        self._save()
        return process.pid

    def start_server(self) -> int:
        return self._spawn("server", "nvflare.private.fed.app.server.server_train", "fed_server.json", [])

    def start_site(self, name: str) -> int:
        return self._spawn(name, "nvflare.private.fed.app.client.client_train", "fed_client.json", [f"uid={name}"])

    def start(self, *, timeout: float = 90.0) -> float:
        """Start the server and every site; return seconds until all sites are connected."""
        started = time.monotonic()
        self.start_server()
        for site in self.site_names:
            self.start_site(site)
        self.wait_for_sites(self.site_names, timeout=timeout)
        return time.monotonic() - started

    def session(self, timeout: float = 10.0) -> Any:
        from nvflare.fuel.flare_api.flare_api import new_secure_session

        return new_secure_session(ADMIN_USER, str(self.admin_kit), timeout=timeout)

    def connected_sites(self) -> set[str]:
        session = self.session(timeout=3)
        try:
            return {c.name for c in session.get_system_info().client_info}
        finally:
            session.close()

    def wait_for_sites(self, sites: list[str], *, timeout: float) -> None:
        wait_until(lambda: set(sites) <= self.connected_sites(), timeout=timeout, interval=0.5,
                   what=f"NVFlare sites {sites} to connect")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a participant and its job workers (which live in sessions of their own)."""
        pid = self.pids.pop(name, None)
        if pid is not None:
            kill_tree(pid, sig)
            wait_until(lambda: not pid_alive(pid), timeout=15, what=f"{name} (pid {pid}) to exit")
        self._save()

    def stop(self, *, graceful: bool = True, timeout: float = 20.0) -> None:
        """Abort running jobs and shut the system down through the admin API, then kill whatever is left."""
        if graceful and "server" in self.pids and pid_alive(self.pids["server"]):
            try:
                session = self.session(timeout=3)
                try:
                    for job in session.list_jobs():
                        if not job["status"].startswith("FINISHED"):
                            session.abort_job(job["job_id"])
                    session.api.do_command("shutdown all")
                finally:
                    session.close()
            except Exception:  # the server is unreachable: fall through to killing by PID
                pass
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(pid_alive(p) for p in self.pids.values()):
                time.sleep(0.2)
        for name in list(self.pids):
            self.kill(name, signal.SIGKILL)

    def _save(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        state = {"port": self.port, "sites": self.sites, "spare_sites": self.spare_sites,
                 "admin_kit": str(self.admin_kit)}
        self.state_file.write_text(json.dumps(state, indent=2))
        write_pids(self.workdir / "pids.json", self.pids)

    @classmethod
    def load(cls, workdir: Path) -> "LocalNVFlare":
        state = json.loads((workdir / "deployment.json").read_text())
        deployment = cls(workdir=workdir, port=state["port"], sites=state["sites"], spare_sites=state["spare_sites"])
        deployment.pids = read_pids(workdir / "pids.json")
        return deployment
