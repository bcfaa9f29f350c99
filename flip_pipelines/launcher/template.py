"""The warm template ``PrewarmedRunLauncher`` forks run workers from: ``python -m flip_pipelines.launcher.template``.

A new run worker spends ~2 s of CPU importing Dagster and the code location before its first op (measured by
``benchmarks/bench_dispatch.py``). The template pays that once: it imports Dagster's run worker entry point, the
instance's storage and the code location's ``Definitions``, then waits. Each run is a ``fork()`` of it (a few
milliseconds) that runs ``dagster api execute_run`` in-process — the command the Docker and Kubernetes launchers
run in a new container — so the run executes exactly as it would there.

Protocol, one JSON object per line: the launcher sends ``{"modules": [...], "instance_ref": ...}``, the template
answers ``{"ready": true, "pid": ...}`` (or ``{"error": ...}`` and exits); then each ``{"run": <ExecuteRunArgs>}``
is answered ``{"pid": ..., "started": ...}``, or ``{"stale": <file>}`` when a source file of the preloaded
packages changed since: the template forks nothing more and the launcher starts a fresh one, so a run never
executes older code than a cold start would. The template reaps its workers: one killed or failing before its run
finished fails the run at once.

The template leaves the launcher's process tree as it starts (a session of its own, adopted by init), so its runs
outlive the daemon, as they outlive it under Dagster's default launcher, where they belong to the code server:
SIGKILLing the daemon and everything under it leaves the trainings running. How the launcher's end closes says
what to do with them. ``{"stop": true}`` — the launcher's owner shutting down (Ctrl-C of ``make dev``, a test's
teardown), or SIGTERM/SIGINT to the template — interrupts every worker (SIGTERM: its run ends as a run
interrupted does; SIGKILL after ``STOP_GRACE_SECONDS``), then the template exits: nothing is left running. A
plain end of file — the template retired, or its launcher's process died — forks nothing more and exits once the
last worker has.
"""

import atexit
import contextlib
import ctypes
import gc
import importlib
import json
import os
import select
import signal
import sys
import time
import traceback
from pathlib import Path

from flip_pipelines.launcher.workers import start_ticks

REAP_INTERVAL_SECONDS = 0.5
STOP_GRACE_SECONDS = 20.0


def detach() -> None:
    """Leave the launcher's process tree: a fork whose parent exits at once, so the template is adopted by init
    (or the nearest subreaper), not the launcher's process; then a session and process group of its own, led by
    the template itself (not by that parent, whose PID a signal to its group would otherwise still reach), so no
    signal to the daemon's process group or terminal reaches it."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()


def _reply(control: int, message: dict[str, object]) -> None:
    with contextlib.suppress(BrokenPipeError):  # the launcher is gone: its requests end next
        os.write(control, (json.dumps(message) + "\n").encode())


def preload(modules: list[str], instance_ref: str | None) -> None:
    """Import what every run worker imports, and build each module's ``Definitions`` once. An entry
    ``module:function`` also calls ``function()`` (e.g. to fill a cache every run would fill)."""
    from dagster import Definitions
    from dagster._cli import api  # noqa: F401  the run worker's entry point and the execution machinery
    from dagster._core.instance import DagsterInstance, InstanceRef
    from dagster._serdes import deserialize_value

    if instance_ref:
        with DagsterInstance.from_ref(deserialize_value(instance_ref, InstanceRef)):
            pass  # imports the storage classes; nothing stays open across fork()
    for entry in modules:
        name, _, function = entry.partition(":")
        module = importlib.import_module(name)
        if function:
            getattr(module, function)()
        for value in vars(module).values():
            if isinstance(value, Definitions):
                value.get_repository_def().get_all_jobs()


def settle_memory() -> None:
    """Before the first fork: free import-time garbage and hand it back to the OS (glibc keeps freed heap), so
    workers do not inherit it as resident pages (~2 MiB); then freeze the survivors, so a worker's garbage
    collector never walks — and so copies — the template's objects."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    gc.freeze()


def source_mtimes(modules: list[str]) -> dict[str, int]:
    """Modification times of every loaded module file inside the preloaded modules' top-level packages."""
    roots = set()
    for entry in modules:
        top = sys.modules.get(entry.partition(":")[0].split(".")[0])
        if top is not None and getattr(top, "__file__", None):
            roots.add(str(Path(top.__file__).parent))  # type: ignore[arg-type]
    mtimes = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and any(path.startswith(root + os.sep) for root in roots):
            try:
                mtimes[path] = os.stat(path).st_mtime_ns
            except OSError:
                mtimes[path] = -1
    return mtimes


def changed_file(mtimes: dict[str, int]) -> str | None:
    for path, mtime in mtimes.items():
        try:
            if os.stat(path).st_mtime_ns != mtime:
                return path
        except OSError:
            return path
    return None


def _run_worker(run_json: str, control: int) -> None:
    """In the forked child: ``dagster api execute_run`` for one run, then exit without returning."""
    code = 1
    try:
        os.close(control)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        for signum in (signal.SIGINT, signal.SIGTERM):  # not the template's handlers
            signal.signal(signum, signal.default_int_handler)
        from dagster._cli.api import execute_run_command
        from dagster._utils.interrupts import setup_interrupt_handlers

        setup_interrupt_handlers()  # SIGTERM interrupts the run, as in a container
        execute_run_command.main(args=[run_json], prog_name="dagster api execute_run", standalone_mode=False)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class LineReader:
    """Whole lines from a pipe, waiting at most ``timeout`` seconds for the next (a buffered reader would hide
    lines from ``select``); both ends of the protocol read with it."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer, self.closed = fd, b"", False

    def next(self, timeout: float) -> str | None:
        """The next line; None if none came in time or the writer closed its end (``closed``)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer and not self.closed:
            if not select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))[0]:
                return None
            chunk = os.read(self.fd, 65536)
            self.closed = not chunk
            self.buffer += chunk
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def _report_if_unfinished(instance_ref: str, run_id: str, exit_code: int) -> None:
    """In a forked child: a run whose worker exited before the run finished is failed, with the exit explained —
    what Dagster's code server does for the workers it spawns, so a killed worker's run fails at once instead of
    at run monitoring's next poll."""
    code = 1
    try:
        from dagster._core.instance import DagsterInstance, InstanceRef
        from dagster._serdes import deserialize_value
        from dagster._utils import get_run_crash_explanation

        with DagsterInstance.from_ref(deserialize_value(instance_ref, InstanceRef)) as instance:
            run = instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                message = get_run_crash_explanation(prefix=f"Run execution process for {run_id}",
                                                    exit_code=exit_code)
                instance.report_engine_event(message, run)
                instance.report_run_failed(run)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def main() -> int:
    detach()
    control = os.dup(1)
    os.dup2(2, 1)  # stray prints of user code go to stderr, never into the protocol
    for signum in (signal.SIGINT, signal.SIGTERM):  # while warming up there is nothing to stop
        signal.signal(signum, lambda *_: os._exit(0))
    requests = LineReader(0)
    setup = json.loads(requests.next(timeout=60) or "{}")
    modules, instance_ref = list(setup.get("modules", [])), setup.get("instance_ref")
    try:
        preload(modules, instance_ref)
    except BaseException as exc:  # the launcher starts runs cold, and they report the error in the run
        _reply(control, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    settle_memory()
    serve(requests, control, source_mtimes(modules), instance_ref)
    return 0


def serve(requests: LineReader, control: int, mtimes: dict[str, int], instance_ref: str | None) -> None:
    """Fork a worker per request and watch them until the launcher's end closes and the last worker ended."""
    workers: dict[int, str] = {}  # pid → run id
    reporters: set[int] = set()
    stop_asked: list[float] = []  # when: a stop is asked by the launcher, or by SIGTERM/SIGINT from any process
    stopped: set[int] = set()  # workers sent SIGTERM

    def ask_stop(*_: object) -> None:
        stop_asked[:] = stop_asked or [time.monotonic()]

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, ask_stop)
    _reply(control, {"ready": True, "pid": os.getpid()})
    while not (requests.closed or stop_asked) or workers or reporters:
        line = requests.next(timeout=REAP_INTERVAL_SECONDS) if not (requests.closed or stop_asked) else None
        if line is None and (requests.closed or stop_asked):
            select.select([], [], [], REAP_INTERVAL_SECONDS)  # serve the running workers' deaths, then exit
        if stop_asked:
            overdue = time.monotonic() - stop_asked[0] > STOP_GRACE_SECONDS
            for pid in [p for p in workers if overdue or p not in stopped]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if overdue else signal.SIGTERM)
                stopped.add(pid)
        for pid, exit_code in _reaped():
            reporters.discard(pid)
            run_id = workers.pop(pid, None)
            # a clean exit finished its run (one that somehow did not is left to run monitoring)
            if run_id and instance_ref and exit_code != 0:
                reporter = os.fork()
                if reporter == 0:
                    _report_if_unfinished(instance_ref, run_id, exit_code)
                reporters.add(reporter)
        if line is None:
            continue
        request = json.loads(line)
        if request.get("stop"):
            ask_stop()
            continue
        stale = changed_file(mtimes)
        if stale:
            _reply(control, {"stale": stale})
            requests.closed = True
            continue
        pid = os.fork()
        if pid == 0:
            _run_worker(request["run"], control)
        workers[pid] = request.get("run_id", "")
        _reply(control, {"pid": pid, "started": start_ticks(pid)})


def _reaped() -> list[tuple[int, int]]:
    """(pid, exit code) of every child that ended since the last call (reporters included)."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append((pid, os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    sys.exit(main())
