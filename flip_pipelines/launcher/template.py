"""The warm template ``PrewarmedRunLauncher`` forks run workers from: ``python -m flip_pipelines.launcher.template``.

A new run worker spends ~2 s of CPU importing Dagster and the code location before its first op (measured by
``benchmarks/bench_dispatch.py``). The template pays that once: it imports Dagster's run worker entry point, the
instance's storage and the code location's ``Definitions``, then waits. Each run is a ``fork()`` of it (a few
milliseconds) that runs ``dagster api execute_run`` in-process — the command the Docker and Kubernetes launchers
run in a new container — so the run executes exactly as it would there.

Protocol, one JSON object per line: the launcher sends ``{"modules": [...], "instance_ref": ...}``, the template
answers ``{"ready": true}`` (or ``{"error": ...}`` and exits); then each ``{"run": <ExecuteRunArgs>}`` is
answered ``{"pid": ..., "started": ...}``, or ``{"stale": <file>}`` when a source file of the preloaded packages
changed since: the template exits and the launcher starts a fresh one, so a run never executes older code than a
cold start would. The template exits when its launcher's end of the pipe closes.
"""

import atexit
import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from flip_pipelines.launcher.workers import start_ticks


def _reply(control: int, message: dict[str, object]) -> None:
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
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
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


def main() -> int:
    control = os.dup(1)
    os.dup2(2, 1)  # stray prints of user code go to stderr, never into the protocol
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: os._exit(0))
    stdin = sys.stdin.buffer
    setup = json.loads(stdin.readline() or "{}")
    modules = list(setup.get("modules", []))
    try:
        preload(modules, setup.get("instance_ref"))
    except BaseException as exc:  # the launcher starts runs cold, and they report the error in the run
        _reply(control, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    mtimes = source_mtimes(modules)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # run workers are reaped by the kernel
    _reply(control, {"ready": True})
    for line in stdin:
        request = json.loads(line)
        stale = changed_file(mtimes)
        if stale:
            _reply(control, {"stale": stale})
            return 0
        pid = os.fork()
        if pid == 0:
            _run_worker(request["run"], control)
        _reply(control, {"pid": pid, "started": start_ticks(pid)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
