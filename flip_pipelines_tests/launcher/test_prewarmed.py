"""PrewarmedRunLauncher on a real Dagster instance: runs forked from the template execute like cold ones, run
monitoring's health check sees a killed worker, termination cancels, an edited source file retires the template,
a template that cannot import leaves runs to start cold, and the launcher's shutdown leaves nothing running (a
daemon killed mid-run leaving its run running: the daemon drill, jobs/test_daemon.py). The jobs live in a module
written to a temporary folder, so the test can edit it."""

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, instance_for_test
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.launcher import WorkerStatus

from flip_pipelines.launcher.workers import RunWorker
from flip_pipelines.local.processes import descendants, kill_tree, parent_pid, wait_until

JOBS = '''
import os
import time
from pathlib import Path

from dagster import Definitions, in_process_executor, job, op

VERSION = "{version}"


@op
def report(context) -> None:
    context.log.info(f"version {{VERSION}} in pid {{os.getpid()}}")


@job(executor_def=in_process_executor)
def quick():
    report()


@op(config_schema={{"release": str}})
def hold(context) -> None:
    deadline = time.monotonic() + 60
    while not Path(context.op_config["release"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@job(executor_def=in_process_executor)
def held():
    hold()


defs = Definitions(jobs=[quick, held])
'''


@pytest.fixture
def jobs_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"launcher_jobs_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(JOBS.format(version="v1"))
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])  # not first: Dagster drops sys.path[0]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def instance(jobs_module: str) -> Iterator[DagsterInstance]:
    overrides = {"run_launcher": {"module": "flip_pipelines.launcher", "class": "PrewarmedRunLauncher",
                                  "config": {"preload_modules": [jobs_module]}}}
    with instance_for_test(overrides=overrides) as instance:
        yield instance
        instance.run_launcher.dispose()


def launch(instance: DagsterInstance, module: str, job: str, run_config: dict | None = None) -> str:
    recon = ReconstructableJob.for_module(module, job)
    run = instance.create_run_for_job(recon.get_definition(), run_config=run_config,
                                      job_code_origin=recon.get_python_origin())
    instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]
    return run.run_id


def launcher_message(instance: DagsterInstance, run_id: str) -> str:
    return next(e.message for e in instance.all_logs(run_id) if "Run worker pid" in (e.message or ""))


def wait_status(instance: DagsterInstance, run_id: str, *statuses: DagsterRunStatus, timeout: float = 90
                ) -> DagsterRunStatus:
    return wait_until(lambda: (run := instance.get_run_by_id(run_id)) and run.status in statuses and run.status,
                      timeout=timeout, what=f"run {run_id} to be {statuses}")


def test_the_first_run_waits_for_the_template_and_the_next_fork_at_once(instance: DagsterInstance,
                                                                       jobs_module: str) -> None:
    first = launch(instance, jobs_module, "quick")
    assert "forked from the run-worker template" in launcher_message(instance, first)
    assert wait_status(instance, first, DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) == DagsterRunStatus.SUCCESS

    started = time.monotonic()
    second = launch(instance, jobs_module, "quick")
    launched = time.monotonic() - started
    assert "forked from the run-worker template" in launcher_message(instance, second)
    assert wait_status(instance, second, DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) == DagsterRunStatus.SUCCESS
    worker = RunWorker.from_tags(instance.get_run_by_id(second).tags)  # type: ignore[union-attr]
    assert worker is not None and worker.started
    # the worker Dagster reports is the forked one, and it ran the op
    assert any(f"Started process for run (pid: {worker.pid})" in (e.message or "") for e in instance.all_logs(second))
    assert any((e.user_message or "").startswith(f"version v1 in pid {worker.pid}") for e in instance.all_logs(second))
    print(f"forked run: launched in {launched:.2f} s, SUCCESS {time.monotonic() - started:.2f} s after launch")


def held_run(instance: DagsterInstance, jobs_module: str, tmp_path: Path) -> tuple[str, RunWorker]:
    run_id = launch(instance, jobs_module, "held", {"ops": {"hold": {"config": {"release": str(tmp_path / "r")}}}})
    wait_status(instance, run_id, DagsterRunStatus.STARTED)
    worker = RunWorker.from_tags(instance.get_run_by_id(run_id).tags)  # type: ignore[union-attr]
    assert worker is not None and worker.alive()
    return run_id, worker


def test_a_killed_worker_fails_its_run_at_once(instance: DagsterInstance, jobs_module: str, tmp_path: Path) -> None:
    """The template, parent of its workers, fails the run of one that died, as the code server does for its own."""
    run_id, worker = held_run(instance, jobs_module, tmp_path)
    kill_tree(worker.pid)  # with its log-capturing `tail`, as a container's death would
    assert wait_status(instance, run_id, DagsterRunStatus.FAILURE, DagsterRunStatus.SUCCESS, timeout=15) == \
        DagsterRunStatus.FAILURE
    assert any(f"Run execution process for {run_id}" in (e.message or "") and "signal 9" in (e.message or "")
               for e in instance.all_logs(run_id))


def test_health_check_sees_a_dead_worker_nobody_reported(instance: DagsterInstance, jobs_module: str,
                                                          tmp_path: Path) -> None:
    """Template and worker both killed (the machine lost them): run monitoring's health check says FAILED, and
    the next launch warms a new template."""
    run_id, worker = held_run(instance, jobs_module, tmp_path)
    launcher = instance.run_launcher
    run = instance.get_run_by_id(run_id)
    assert run is not None and launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    kill_tree(launcher._template.process.pid)  # type: ignore[attr-defined]
    wait_until(lambda: not worker.alive(), timeout=10, what="the worker to die")
    health = launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.FAILED and str(worker.pid) in (health.msg or "")
    assert instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED  # type: ignore[union-attr]
    # a later process given the same PID is not taken for the worker
    assert not RunWorker(os.getpid(), "1").alive()
    after = launch(instance, jobs_module, "quick")
    assert "forked from the run-worker template" in launcher_message(instance, after)
    assert wait_status(instance, after, DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) == DagsterRunStatus.SUCCESS


def test_dispose_interrupts_the_runs_and_leaves_nothing_running(instance: DagsterInstance, jobs_module: str,
                                                                  tmp_path: Path) -> None:
    """The template lives outside the launcher's process tree (so a daemon killed with its tree leaves the runs
    running); the launcher's shutdown (the daemon's, on Ctrl-C; a test's teardown) stops it, and a template
    retired by a source edit while it still serves a run: the running workers are interrupted, their runs end,
    and none of these processes is left."""
    run_id, worker = held_run(instance, jobs_module, tmp_path)
    retired = instance.run_launcher._template.process  # type: ignore[attr-defined]
    assert parent_pid(worker.pid) == retired.pid
    assert parent_pid(retired.pid) != os.getpid() and os.getsid(retired.pid) != os.getsid(0)
    assert retired.pid not in descendants(os.getpid())
    edit(tmp_path / f"{jobs_module}.py", "v2")
    later_id, later = held_run(instance, jobs_module, tmp_path)
    template = instance.run_launcher._template.process  # type: ignore[attr-defined]
    assert template.pid != retired.pid and parent_pid(later.pid) == template.pid
    instance.run_launcher.dispose()
    wait_until(lambda: not any(p.alive() for p in (worker, retired, later, template)), timeout=30,
               what="the workers and the templates to exit")
    for run in (run_id, later_id):
        assert wait_status(instance, run, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED,
                           DagsterRunStatus.SUCCESS, timeout=15) == DagsterRunStatus.FAILURE


def test_terminate_cancels_a_forked_run(instance: DagsterInstance, jobs_module: str, tmp_path: Path) -> None:
    run_id, _ = held_run(instance, jobs_module, tmp_path)
    assert "forked" in launcher_message(instance, run_id)
    assert instance.run_launcher.terminate(run_id)
    assert wait_status(instance, run_id, DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE,
                       DagsterRunStatus.SUCCESS) == DagsterRunStatus.CANCELED
    assert not instance.run_launcher.terminate(run_id)


def edit(source: Path, version: str) -> None:
    source.write_text(JOBS.format(version=version))
    mtime = source.stat().st_mtime_ns + 1_000_000_000  # a clock tick later, even on coarse file systems
    os.utime(source, ns=(mtime, mtime))


def test_an_edited_source_retires_the_template(instance: DagsterInstance, jobs_module: str, tmp_path: Path) -> None:
    before = launch(instance, jobs_module, "quick")
    assert wait_status(instance, before, DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) == DagsterRunStatus.SUCCESS
    template = instance.run_launcher._template.process.pid  # type: ignore[attr-defined]
    edit(tmp_path / f"{jobs_module}.py", "v2")
    edited = launch(instance, jobs_module, "quick")
    assert "forked from the run-worker template" in launcher_message(instance, edited)
    assert instance.run_launcher._template.process.pid != template  # type: ignore[attr-defined]
    assert wait_status(instance, edited, DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) == DagsterRunStatus.SUCCESS
    assert any((e.user_message or "").startswith("version v2") for e in instance.all_logs(edited))
    assert any((e.user_message or "").startswith("version v1") for e in instance.all_logs(before))


def test_a_template_that_cannot_import_leaves_runs_cold(jobs_module: str) -> None:
    overrides = {"run_launcher": {"module": "flip_pipelines.launcher", "class": "PrewarmedRunLauncher",
                                  "config": {"preload_modules": ["no_such_module_here"]}}}
    with instance_for_test(overrides=overrides) as instance:
        runs = [launch(instance, jobs_module, "quick"), launch(instance, jobs_module, "quick")]
        for run_id in runs:
            assert "started cold (the template failed: ModuleNotFoundError" in launcher_message(instance, run_id)
            assert wait_status(instance, run_id, DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) == \
                DagsterRunStatus.SUCCESS
        instance.run_launcher.dispose()
