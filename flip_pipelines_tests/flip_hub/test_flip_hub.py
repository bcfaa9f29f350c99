"""Pointing at a FLIP hub database: one built by FLIP's migrations (``migrations.py``) and seeded as a FLIP hub
seeds it (``hub.py``). ``db upgrade`` leaves it untouched; every command, transition, the queue sensor and a real
training write only what FLIP accepts, checked after each step the way FLIP's code reads it."""

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from flip_pipelines.cli import main
from flip_pipelines.db import claims, lifecycle, registry, site_config
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.migrate import upgrade_database
from flip_pipelines.db.models import EXTRA_INDEXES
from flip_pipelines.demo_models import demo_model_dir
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.lifecycle import Outcome
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines_tests.conftest import RunningFLApi
from flip_pipelines_tests.factories import fits
from flip_pipelines_tests.flip_hub.conftest import TRUSTS, new_flip_database
from flip_pipelines_tests.flip_hub.history import create_hub_database
from flip_pipelines_tests.flip_hub.hub import OWNER, FlipHub
from flip_pipelines_tests.flip_hub.training import claimed_run_request, queue_demo_model
from flip_pipelines_tests.jobs.in_process import Hub, run_resources, train_model

pytestmark = pytest.mark.postgres
EXE = str(Path(sys.executable).parent / "flip-pipelines")


def snapshot(url: str) -> dict[str, object]:
    """Everything ``db upgrade`` could change: tables, columns, constraints, indexes, enum labels, the revision and
    every table's row count."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            def rows(sql: str) -> list[tuple[object, ...]]:
                return sorted(tuple(r) for r in connection.execute(sa.text(sql)))

            tables = [t for (t,) in rows("SELECT table_name FROM information_schema.tables "
                                         "WHERE table_schema = 'public'")]
            return {
                "columns": rows("SELECT table_name, column_name, udt_name, is_nullable, coalesce(column_default, '') "
                                "FROM information_schema.columns WHERE table_schema = 'public'"),
                "constraints": rows("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                                    "FROM pg_constraint WHERE connamespace = 'public'::regnamespace"),
                "indexes": rows("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"),
                "enums": rows("SELECT t.typname, e.enumlabel, e.enumsortorder FROM pg_enum e "
                              "JOIN pg_type t ON t.oid = e.enumtypid"),
                "revision": rows("SELECT version_num FROM alembic_version"),
                "counts": {t: connection.execute(sa.text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables},
            }
    finally:
        engine.dispose()


def cli(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {}), "FLIP_DATABASE_URL": url}
    return subprocess.run([EXE, *args], env=full_env, capture_output=True, text=True, timeout=120)


def test_a_new_database_has_flips_definitions_for_every_table_the_hub_uses(
        postgres_server_url: str, flip_hub_template: str) -> None:
    """Columns (type, nullability, server default), primary and foreign keys, unique constraints, enum labels in
    FLIP's order and indexes match FLIP's; the only extra indexes are EXTRA_INDEXES."""
    ours = create_hub_database(postgres_server_url, f"ours_{uuid.uuid4().hex[:10]}")
    upgrade_database(ours)
    flip = new_flip_database(postgres_server_url, flip_hub_template)
    used = set(SQLModel.metadata.tables)
    assert used <= {t for t, *_ in snapshot(flip)["columns"]}, "every table we use exists in FLIP's schema"
    mine, theirs = snapshot(ours), snapshot(flip)
    for part in ("columns", "constraints"):
        assert [r for r in mine[part] if r[0] in used] == [r for r in theirs[part] if r[0] in used], part
    assert [r for r in mine["indexes"] if r[0] in used and r[1] not in EXTRA_INDEXES] == \
        [r for r in theirs["indexes"] if r[0] in used]
    our_enums = {r[0] for r in mine["enums"]}
    assert mine["enums"] == [r for r in theirs["enums"] if r[0] in our_enums]


def test_cli_commands_on_a_flip_hub_write_what_flip_reads(
        flip_hub: FlipHub, s3_server: LocalS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI's ``main`` in-process (the installed command runs ``db upgrade`` above) with FLIP's owner id."""
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    for key in [k for k in os.environ if k.startswith(("FLIP_", "AWS_"))]:
        monkeypatch.delenv(key)
    for key, value in {"FLIP_S3_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ACCESS_KEY_ID": s3_server.access_key,
                       "AWS_SECRET_ACCESS_KEY": s3_server.secret_key, "FLIP_MODEL_BUCKET": bucket,
                       "FLIP_OWNER_ID": str(OWNER), "FLIP_DATA_DIR": str(tmp_path),
                       "FLIP_FL_API_TOKEN": "nothing-submitted", "FLIP_DATABASE_URL": flip_hub.url}.items():
        monkeypatch.setenv(key, value)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out.strip(), captured.err.strip()

    def ok(*args: str) -> str:
        code, out, err = run(*args)
        assert code == 0, f"{args}: {err}"
        return out

    ok("trusts", "add", "Trust_3", "--slot", "site-3")
    ok("nets", "add", "net-extra", "--endpoint", "http://127.0.0.1:18203", "--backend", "nvflare")
    ok("projects", "add", "hub-project", "--query", "SELECT 1", "--description", "from the CLI")
    project = flip_hub.execute("SELECT description, owner_id, status::text, has_imaging FROM projects "
                               "WHERE name = 'hub-project'")[0]
    assert tuple(project) == ("from the CLI", OWNER, "APPROVED", True)
    assert flip_hub.scalar("SELECT count(*) FROM queries q JOIN projects p ON p.id = q.project_id "
                           "WHERE p.name = 'hub-project' AND q.created_by = :o AND q.name <> ''", o=OWNER) == 1
    model_id = uuid.UUID(ok("models", "add", "cli-model", "--project", "flip-project", "--trust", "Trust_1"))
    assert flip_hub.model_status(model_id) == "PENDING" and flip_hub.audit_trail(model_id) == []
    ok("models", "upload", str(model_id), str(demo_model_dir("nvflare_logreg")))

    code, _, err = run("enqueue", str(model_id), "--trust", "Trust_1", "--trust", "Trust_2")
    assert code == 1 and "not approved for model cli-model: Trust_2" in err
    assert "approved for model" in ok("models", "approve", str(model_id), "--trust", "Trust_2")
    assert ok("deployment-mode", "on") == "deployment mode: on (scheduling paused)"
    assert flip_hub.scalar("SELECT value FROM site_config WHERE key = 'DeploymentMode'") is True
    code, _, err = run("enqueue", str(model_id))
    assert code == 1 and err.startswith("error: the hub is in deployment mode")
    ok("deployment-mode", "off")

    job_id = uuid.UUID(ok("enqueue", str(model_id)))  # the approved trusts by default
    assert flip_hub.job(job_id)["status"] == "QUEUED" and flip_hub.model_status(model_id) == "INITIATED"
    assert sorted(r[0] for r in flip_hub.execute("SELECT t.name FROM fl_job_trust j JOIN trust t "
                                                 "ON t.id = j.trust_id WHERE j.fl_job_id = :j", j=job_id)) == \
        ["Trust_1", "Trust_2"]
    assert flip_hub.queue_positions() == {str(job_id): 1}
    assert json.loads(ok("queue", "--json"))["queued"][0]["fl_job_id"] == str(job_id)
    ok("abort", str(model_id))
    assert flip_hub.job(job_id)["status"] == "DELETED" and flip_hub.model_status(model_id) == "STOPPED"
    assert {row["log"] for row in flip_hub.logs(model_id) if row["log"]} >= {
        "Selected trusts for training: Trust_1, Trust_2"}


def test_every_lifecycle_transition_on_each_supported_flip_hub(supported_flip_hub: FlipHub) -> None:
    """Every transition writes what FLIP reads, each timestamp at its instant (``test_flip_revisions.py``)."""
    flip_hub, begun = supported_flip_hub, datetime.now(UTC) - timedelta(seconds=30)
    engine = make_engine(flip_hub.url)
    trusts = list(flip_hub.trusts.values())
    done, failed, requeued, aborted, revoked = (flip_hub.save_model(n) for n in
                                                ("done", "failed", "requeued", "aborted", "revoked"))
    try:
        with new_session(engine) as session:
            jobs = {m: lifecycle.enqueue_training(session, m, trusts, fits()).id
                    for m in (done, failed, requeued, aborted, revoked)}
            assert flip_hub.queue_positions() == {str(jobs[m]): i for i, m in
                                                  enumerate((done, failed, requeued, aborted, revoked), start=1)}
            every_backend = {m: frozenset(FLBackend) for m in jobs}
            first = claims.claim_next_job(session, every_backend)
            second = claims.claim_next_job(session, every_backend)
            assert (first.fl_job_id, second.fl_job_id) == (jobs[done], jobs[failed])
            assert flip_hub.slots() == {"net-nvflare": "BUSY", "net-flower": "BUSY"}
            assert flip_hub.net_by_model_id(done) == first.net_name
            assert flip_hub.job(jobs[done])["status"] == "IN_PROGRESS"

            lifecycle.record_submission(session, jobs[done], "backend-1", first.net_name)
            assert flip_hub.model_status(done) == "RUNNING" and flip_hub.audit_trail(done) == ["RUNNING"]
            lifecycle.end_training(session, jobs[done], Outcome.FINISHED, "Training finished")
            assert flip_hub.job(jobs[done])["status"] == "COMPLETED"
            assert flip_hub.audit_trail(done) == ["RUNNING", "RESULTS_UPLOADED"]
            assert flip_hub.model_status(done) == "RESULTS_UPLOADED"

            lifecycle.fail_before_submission(session, jobs[failed], "bundle refused")
            assert flip_hub.job(jobs[failed])["status"] == "DELETED" and flip_hub.model_status(failed) == "ERROR"
            assert flip_hub.audit_trail(failed) == [] and flip_hub.slots() == {"net-nvflare": "AVAILABLE",
                                                                               "net-flower": "AVAILABLE"}

            claimed = claims.claim_next_job(session, every_backend)
            assert claimed.fl_job_id == jobs[requeued]
            lifecycle.requeue(session, jobs[requeued], "no run picked it up")
            assert flip_hub.job(jobs[requeued])["status"] == "QUEUED"

            flip_hub.execute("DELETE FROM model_trust_intersect WHERE model_id = :m AND trust_id = :t",
                             m=revoked, t=trusts[1])
            lifecycle.abort_model(session, aborted, "Stopped by the user")
            assert flip_hub.model_status(aborted) == "STOPPED" and flip_hub.job(jobs[aborted])["status"] == "DELETED"
            taken = claims.claim_next_job(session, every_backend)
            assert taken.fl_job_id == jobs[requeued]
            assert claims.claim_next_job(session, every_backend) is None, "the revoked job is retired, not claimed"
            assert flip_hub.job(jobs[revoked])["status"] == "DELETED" and flip_hub.model_status(revoked) == "ERROR"
            assert "Training could not start: the selected trusts are not approved for this model." in \
                [row["log"] for row in flip_hub.logs(revoked)]

            flip_hub.execute("UPDATE fl_job SET status = 'COMPLETED' WHERE id = :j", j=jobs[requeued])
            assert [r.net_name for r in lifecycle.recover_stale_busy_nets(session)] == [taken.net_name]
            paused = registry.add_model(session, "paused", "flip-project")
            lifecycle.enqueue_training(session, paused.id, trusts, fits())
            site_config.set_deployment_mode(session, True)
            assert claims.claim_next_job(session, {paused.id: frozenset(FLBackend)}) is None, "scheduling paused"
    finally:
        engine.dispose()
    for model in (done, failed, requeued, aborted, revoked):
        flip_hub.logs(model)  # every row FLIP-shaped
    assert flip_hub.scalar("SELECT count(*) FROM fl_logs WHERE trust IS NOT NULL") == 0, "hub rows name no trust"
    assert flip_hub.misplaced_timestamps(since=begun) == []


@pytest.mark.slow
@pytest.mark.fl
def test_queue_sensor_and_a_real_training_on_a_flip_hub(postgres_server_url: str, flip_hub_template: str,
                                                        s3_server: LocalS3, nvflare_fl_api: RunningFLApi) -> None:
    """A model saved as FLIP saves it, queued by the CLI's lifecycle call, claimed by the queue sensor and trained
    by train_model on the session's real NVFlare net: FLIP reads a COMPLETED job, a free net, RUNNING then
    RESULTS_UPLOADED in the audit trail, and FLIP-shaped logs."""
    hub = FlipHub(new_flip_database(postgres_server_url, flip_hub_template)).seed(
        {"net-nvflare": (nvflare_fl_api.base_url, "NVFLARE")}, TRUSTS)
    storage, model_id, job_id = queue_demo_model(hub, s3_server, "flip-trained")
    with dg.instance_for_test() as instance:
        request = claimed_run_request(hub, storage, instance)
        assert request.tags["flip/net"] == "net-nvflare" and request.run_key == f"fl_job:{job_id}"
        assert hub.slots() == {"net-nvflare": "BUSY"} and hub.net_by_model_id(model_id) == "net-nvflare"
        result = train_model.execute_in_process(run_config=request.run_config, tags=request.tags, instance=instance,
                                                resources=run_resources(Hub(hub.url, storage, storage.model_bucket),
                                                                     nvflare_fl_api), raise_on_error=False)
    assert result.success, result.get_run_failure_event()
    job = hub.job(job_id)
    assert job["status"] == "COMPLETED" and job["fl_backend_job_id"] and job["completed"].tzinfo is None
    assert hub.model_status(model_id) == "RESULTS_UPLOADED" and hub.slots() == {"net-nvflare": "AVAILABLE"}
    assert hub.audit_trail(model_id) == ["RUNNING", "RESULTS_UPLOADED"]
    logs = hub.logs(model_id)
    assert any((row["log"] or "").startswith("Model training started on 'net-nvflare'") for row in logs)
