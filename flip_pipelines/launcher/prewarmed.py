"""``PrewarmedRunLauncher``: each run in its own process, forked from a warm template instead of started cold.

Dagster's ``DefaultRunLauncher`` asks the code server to spawn a new Python process per run, which imports Dagster
and the code location again: ~2 s of a 2-core machine before the first op, the largest share of a training's
dispatch (``benchmarks/bench_dispatch.py``). This launcher keeps one template process with all of that imported
(``template.py``) and forks each run worker from it. The worker runs ``dagster api execute_run`` — what the Docker
and Kubernetes launchers run in a container — so a run behaves the same; only its start is shorter.

- **Warm-up.** The first launch starts the template and waits for it (~2.5 s, about what a cold start costs),
  and so do the launches queued behind it: four runs launched at once after start fork from one template
  instead of importing everything four times over on the same cores. A source file of the preloaded packages
  that changed since the template imported it retires the template: the launch warms a new one, so a run never
  executes older code than a new process would.
- **Cold fallback.** A template that fails to import the code location is dropped, and the run starts cold, as
  ``dagster api execute_run`` in a new process: it reports the import error in its own logs, as it would under
  the default launcher. So does a run whose template is still warming after ``template_wait_seconds``.
- **A dead worker.** The template is every worker's parent: it fails the run of a worker that exited before its
  run finished, at once, as Dagster's code server does for the workers it spawns. The worker's PID and start
  time are also tagged on the run, so run monitoring (``check_run_worker_health``) sees a dead worker that nobody
  reported (template and worker both gone), and termination signals it from any process.
- **A dead daemon.** The template leaves the daemon's process tree as it starts (``template.detach``), so the
  runs outlive the daemon, as under the default launcher, where they belong to the code server: a daemon
  SIGKILLed with every process under it leaves its trainings running, their template still failing the run of a
  worker that dies. That template forks nothing more and exits with its last worker; the restarted daemon's
  launcher warms a new one. A daemon shut down on purpose (``dispose``: Ctrl-C of ``make dev``, SIGTERM) has its
  templates (retired ones still serving runs too) interrupt their runs and exit, so nothing of the stack is left
  running.
- **Same host.** Workers run where the daemon runs: this is the launcher of the single-machine ``make dev``
  stack; deployments over several machines use the Docker or Kubernetes launcher (``deploy/``).
"""

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Self

from dagster import Array, Field, Noneable, StringSource
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

from flip_pipelines.launcher.template import LineReader
from flip_pipelines.launcher.workers import HostProcess, RunWorker

REPLY_TIMEOUT_SECONDS = 10.0


class _Template:
    """One template process and its two pipes; not thread-safe (the launcher holds its lock)."""

    def __init__(self, python: str, modules: Sequence[str], instance_ref: str | None) -> None:
        # the process started here only detaches the template and exits (``template.detach``): the launcher keeps
        # it to be reaped, and knows the template by the PID it reports once warm
        self.starter = subprocess.Popen([python, "-m", "flip_pipelines.launcher.template"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.starter.stdin is not None and self.starter.stdout is not None
        self._requests, self._replies = self.starter.stdin, LineReader(self.starter.stdout.fileno())
        self.process: HostProcess | None = None
        self.ready = False
        self.error = ""
        self._send({"modules": list(modules), "instance_ref": instance_ref})

    def _send(self, message: dict[str, Any]) -> None:
        self._requests.write((json.dumps(message) + "\n").encode())
        self._requests.flush()

    def _read(self, timeout: float) -> dict[str, Any] | None:
        """The next reply; None if none came within ``timeout`` seconds; ``{"ended": ...}`` if the template
        closed its end."""
        line = self._replies.next(timeout)
        if line is None:
            return {"ended": True} if self._replies.closed else None
        return json.loads(line)

    def wait_ready(self, timeout: float) -> bool | None:
        """True once warm (waiting up to ``timeout`` seconds); False when it failed or ended; None while it is
        still warming."""
        if self.ready:
            return self.process is not None and self.process.alive()
        reply = self._read(timeout)
        self.starter.poll()  # reaped once it detached the template
        if reply is None:
            return None
        self.ready = bool(reply.get("ready"))
        if not self.ready:
            self.error = str(reply.get("error") or "it exited")
            print(f"flip run launcher: the run-worker template failed ({self.error}); runs start cold",
                  file=sys.stderr)
            return False
        self.process = HostProcess.of(int(reply["pid"]))
        return self.process.alive()

    def fork(self, run_id: str, run_json: str) -> RunWorker | None:
        """A run worker forked for ``run_json``; None when the template is stale, gone or unresponsive."""
        try:
            self._send({"run": run_json, "run_id": run_id})
        except (BrokenPipeError, OSError):
            return None
        reply = self._read(REPLY_TIMEOUT_SECONDS)
        if not reply or "pid" not in reply:
            if reply is None and self.process is not None:  # unresponsive: it serves no run well any more
                self.process.signal(signal.SIGKILL)
            return None
        return RunWorker(int(reply["pid"]), str(reply.get("started", "")))

    def retire(self) -> None:
        """Close its pipes: it forks nothing more, and exits once the workers it watches have ended."""
        for stream in (self.starter.stdin, self.starter.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def stop(self) -> None:
        """Have it interrupt its workers and exit, then close its pipes."""
        with contextlib.suppress(OSError):
            self._send({"stop": True})
        self.retire()


class PrewarmedRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run in its own process, forked from a template that has the code location imported."""

    def __init__(self, preload_modules: Sequence[str] | None = None, python: str | None = None,
                 template_wait_seconds: float = 60.0, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        self._modules = list(preload_modules or [])
        self._python = python or sys.executable
        self._template_wait = template_wait_seconds
        self._lock = threading.Lock()
        self._template: _Template | None = None
        self._children: list[subprocess.Popen[bytes]] = []  # templates' starters and cold workers, to be reaped
        self._retired: list[HostProcess] = []  # retired templates, which may still serve runs until dispose
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "preload_modules": Field(Array(str), is_required=False, default_value=[],
                                     description="Modules the template imports (the code location's module); "
                                                 "'module:function' also calls the function."),
            "template_wait_seconds": Field(float, is_required=False, default_value=60.0,
                                           description="How long a launch waits for a new template to warm up "
                                                       "before it starts the run cold."),
            "python": Field(Noneable(StringSource), is_required=False, default_value=None,
                            description="Python of the template and of cold-started workers (default: the daemon's)."),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data, **config_value)

    def _keep_until_reaped(self, process: subprocess.Popen[bytes]) -> None:
        """Under the lock: keep ``process`` until it ends, and reap the ones that did."""
        self._children = [p for p in self._children if p.poll() is None] + [process]

    def _retire_template(self) -> None:
        assert self._template is not None
        self._template.retire()  # it still watches the workers it forked
        if self._template.process is not None:
            self._retired = [t for t in self._retired if t.alive()] + [self._template.process]
        self._template = None

    def _warm_worker(self, run_id: str, run_json: str) -> tuple[RunWorker | None, str]:
        """A worker forked from the template, waiting for it to warm up if it is new (or replacing it once if a
        source file changed); (None, why) when the run must start cold."""
        with self._lock:
            deadline = time.monotonic() + self._template_wait
            for _ in range(2):
                if self._template is None:
                    self._template = _Template(self._python, self._modules,
                                               serialize_value(self._instance.get_ref()))
                    self._keep_until_reaped(self._template.starter)
                ready = self._template.wait_ready(max(deadline - time.monotonic(), 0))
                if ready is None:
                    return None, f"the template was still warming up after {self._template_wait:.0f} s"
                worker = self._template.fork(run_id, run_json) if ready else None
                if worker is not None:
                    return worker, ""
                error = self._template.error
                self._retire_template()
                if error:  # it cannot import the code location: the next launch tries a new one
                    return None, f"the template failed: {error}"
            return None, "the template ended"

    def _cold_worker(self, run_json: str) -> RunWorker:
        with self._lock:
            process = subprocess.Popen([self._python, "-m", "dagster", "api", "execute_run", run_json])
            self._keep_until_reaped(process)
        return RunWorker.of(process.pid)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        run_json = serialize_value(ExecuteRunArgs(job_origin=run.job_code_origin,  # type: ignore[arg-type]
                                                  run_id=run.run_id, instance_ref=self._instance.get_ref()))
        started = time.monotonic()
        worker, why_cold = self._warm_worker(run.run_id, run_json)
        how = "forked from the run-worker template"
        if worker is None:
            worker, how = self._cold_worker(run_json), f"started cold ({why_cold})"
        self._instance.add_run_tags(run.run_id, worker.tags())
        self._instance.report_engine_event(
            f"Run worker pid {worker.pid} {how} in {(time.monotonic() - started) * 1000:.0f} ms.", run,
            cls=self.__class__)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        worker = RunWorker.from_tags(run.tags)
        if worker is None or not worker.signal(signal.SIGTERM):
            self._instance.report_engine_event("No live run worker to send the termination to.", run,
                                               cls=self.__class__)
            return False
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = RunWorker.from_tags(run.tags)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.NOT_FOUND, "no run worker is recorded on the run")
        if worker.alive():
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(worker.pid))
        latest = self._instance.get_run_by_id(run.run_id)
        if latest is not None and latest.is_finished:  # it ended between the caller's read and this check
            return CheckRunHealthResult(WorkerStatus.SUCCESS, run_worker_id=str(worker.pid))
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker pid {worker.pid} is no longer running",
                                    run_worker_id=str(worker.pid))

    def dispose(self) -> None:
        """The launcher's process shuts down: its templates, retired ones too, interrupt the runs they serve and
        exit."""
        with self._lock:
            if self._template is not None:
                self._template.stop()
                self._template = None
            for retired in self._retired:
                retired.signal(signal.SIGTERM)  # its pipes are closed: SIGTERM asks the same stop
            self._retired = []
