"""FLIP's revisions as ``db upgrade`` and every write see them: each FLIP hub schema this project uses as it is
(``SUPPORTED_HUBS``: FLIP's head, with naive timestamps or with the timestamptz columns FLIP's b7e3c1d94a20 made) is
recognised and left untouched, and takes every write at the right instant under a non-UTC ``TimeZone``; every other
FLIP revision, built by FLIP's own migrations, is refused with what it lacks and what to do."""

import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from flip_pipelines.db import claims, lifecycle, pushes, registry
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.db.migrate import upgrade_database
from flip_pipelines.domain.enums import FLBackend, ModelStatus
from flip_pipelines.domain.schema import FLIP_HEAD, FLIP_HISTORY, SchemaAction, UnsupportedSchemaError
from flip_pipelines_tests.factories import fits
from flip_pipelines_tests.flip_hub.conftest import SUPPORTED_HUBS, new_flip_database
from flip_pipelines_tests.flip_hub.history import build_flip_hub_schema, create_hub_database, steps_to
from flip_pipelines_tests.flip_hub.hub import FlipHub, instant
from flip_pipelines_tests.flip_hub.test_flip_hub import cli, snapshot

pytestmark = pytest.mark.postgres


def test_db_upgrade_recognises_each_supported_flip_hub_and_leaves_it_untouched(
        supported_flip_hub: FlipHub, request: pytest.FixtureRequest) -> None:
    timestamps = SUPPORTED_HUBS[request.node.callspec.params["supported_flip_hub"]][1]
    before = snapshot(supported_flip_hub.url)
    decision = upgrade_database(supported_flip_hub.url)
    assert decision.action is SchemaAction.LEAVE_FLIP_HUB
    assert decision.description == f"FLIP hub database at FLIP revision {FLIP_HEAD}, {timestamps}"
    assert snapshot(supported_flip_hub.url) == before


NEEDS_FROM_THE_HEAD = "fl_job.mem_per_gpu_gib, fl_job.num_gpus"
NEEDS_SINCE_292F = f"{NEEDS_FROM_THE_HEAD}, projects.has_imaging, trust.services_health, trust.services_health_at"


@pytest.mark.parametrize(("revision", "message"), [
    ("e8c4a2f71b36", "FLIP revision e8c4a2f71b36 (trust_admin_decisions), older than f5ad2a562fad: upgrade it "
     f"with FLIP's own migrations (flip-api: alembic upgrade f5ad2a562fad) first (it lacks {NEEDS_FROM_THE_HEAD})"),
    ("d5b2c8f04a17", "FLIP revision d5b2c8f04a17 (grant_trust_owner_to_existing_admins), on a branch of FLIP's "
     f"history that its head f5ad2a562fad does not contain (it forks at c3a7f1eb9402) (it lacks "
     f"{NEEDS_FROM_THE_HEAD}): FLIP's migrations cannot bring it onto that line as they are"),
    ("b3f1c857a001", f"(it forks at 46edb903e4d1) (it lacks {NEEDS_FROM_THE_HEAD}, projects.has_imaging): bring it "
     "onto FLIP's line first (flip-api: alembic stamp 46edb903e4d1 && alembic upgrade f5ad2a562fad)"),
    ("b7e3c1d94a20", f"(timestamptz_columns), on a branch of FLIP's history that its head f5ad2a562fad does not "
     f"contain (it forks at 292f04be92c4) (it lacks {NEEDS_SINCE_292F}): bring it onto FLIP's line first "
     "(flip-api: alembic stamp 292f04be92c4 && alembic upgrade f5ad2a562fad)"),
    ("e3b1a7c4d2f8", "(sync_develop_schema_changes), on a branch of FLIP's history that its head f5ad2a562fad does "
     "not contain (it forks at 75c871e682a4) (it lacks fl_job.mem_per_gpu_gib, fl_job.num_gpus, fl_logs.details, "
     "fl_logs.event_type, fl_logs.global_round, fl_metrics.x_label, fl_metrics.x_value, projects.has_imaging, "
     "trust.services_health, trust.services_health_at): bring it onto FLIP's line first (flip-api: alembic stamp "
     "75c871e682a4 && alembic upgrade f5ad2a562fad)"),
])
def test_db_upgrade_refuses_every_other_flip_revision_saying_what_it_lacks_and_changes_nothing(
        revision: str, message: str, postgres_server_url: str) -> None:
    """Each built by FLIP's own migrations up to that revision."""
    url = create_hub_database(postgres_server_url, f"fh_{uuid.uuid4().hex[:12]}")
    build_flip_hub_schema(url, up_to=revision)
    before = snapshot(url)
    with pytest.raises(UnsupportedSchemaError, match="; nothing was changed$") as refused:
        upgrade_database(url)
    assert f"FLIP hub database at FLIP revision {revision}" in str(refused.value)
    assert message in str(refused.value)
    assert snapshot(url) == before


@pytest.mark.parametrize(("change", "message"), [
    ("ALTER TABLE fl_job DROP COLUMN num_gpus",
     f"FLIP hub database recorded at FLIP revision {FLIP_HEAD} but lacks fl_job.num_gpus: not the schema"),
    ("UPDATE alembic_version SET version_num = '0001'", "earlier flip_pipelines schema (revision 0001)"),
])
def test_db_upgrade_refuses_what_is_not_flips_head_and_changes_nothing(
        change: str, message: str, postgres_server_url: str, flip_hub_template: str) -> None:
    url = new_flip_database(postgres_server_url, flip_hub_template)
    FlipHub(url).execute(change)
    before = snapshot(url)
    with pytest.raises(UnsupportedSchemaError, match=re.escape(message)):
        upgrade_database(url)
    assert snapshot(url) == before


@pytest.mark.parametrize(("change", "code", "said"), [
    ("SELECT 1", 0, f"FLIP hub database at FLIP revision {FLIP_HEAD}, timestamps naive UTC (timestamp without time "
     "zone); used as it is, nothing changed"),
    ("UPDATE alembic_version SET version_num = '0123456789ab'", 1, "error: unknown Alembic revision '0123456789ab'"),
])
def test_the_db_upgrade_command_says_what_it_did_in_one_line(
        change: str, code: int, said: str, postgres_server_url: str, flip_hub_template: str) -> None:
    url = new_flip_database(postgres_server_url, flip_hub_template)
    FlipHub(url).execute(change)
    before = snapshot(url)
    result = cli(url, "db", "upgrade")
    output = result.stdout if code == 0 else result.stderr
    assert result.returncode == code and said in output, result.stderr
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert snapshot(url) == before


def test_claims_pushes_and_metrics_are_read_at_their_instants_on_each_supported_flip_hub(
        supported_flip_hub: FlipHub) -> None:
    """What the claim grace, ``monitor``'s resume and the metrics' ``since`` read back is naive UTC at the right
    instant, a metrics window compares instants, and every timestamp FLIP reads is the instant it was written."""
    hub, begun = supported_flip_hub, datetime.now(UTC) - timedelta(seconds=30)
    model_id = hub.save_model("timed")
    engine = make_engine(hub.url)
    try:
        with new_session(engine) as session:
            registry.add_trust(session, "Trust_3", "site-3")
            job_id = lifecycle.enqueue_training(session, model_id, list(hub.trusts.values()), fits()).id
            claim = claims.claim_next_job(session, {model_id: frozenset(FLBackend)})
            lifecycle.record_submission(session, job_id, "backend-1", claim.net_name)
            [active] = lifecycle.in_progress_jobs(session)
            started = lifecycle.get_job(session, job_id).started
            assert active.started == started and started.tzinfo is None
            assert abs(time.time() - instant(started).timestamp()) < 30, "the claim grace starts now"

            pushes.record_pushed_metric(session, model_id, pushes.PushedMetric(
                "site-1", 1, "val_loss", 0.5, 1.0, "Global Round"))
            recorded, _ = pushes.record_round_metrics(session, model_id, started,
                                                      [pushes.RoundValue("site-2", 1, "val_loss", 0.6)])
            assert [v.fl_client_name for v in recorded] == ["site-2"]
            assert [p.fl_client_name for p in pushes.model_metrics(session, model_id, since=started)] == [
                "site-1", "site-2"]
            assert pushes.model_metrics(session, model_id, since=started + timedelta(minutes=5)) == []
            pushes.record_pushed_log(session, model_id, pushes.PushedLog("site-1", "round 1 done", None, 1, None,
                                                                         True))
            assert pushes.record_pushed_status(session, model_id, ModelStatus.RESULTS_UPLOADED)
    finally:
        engine.dispose()
    assert hub.job(job_id)["status"] == "COMPLETED" and hub.audit_trail(model_id) == ["RUNNING", "RESULTS_UPLOADED"]
    assert hub.misplaced_timestamps(since=begun) == []


def test_the_harness_builds_each_flip_revision_as_flips_history_records_it() -> None:
    """No database: every revision of ``FLIP_HISTORY`` has its steps here, each after its down revisions."""
    for revision in FLIP_HISTORY:
        steps = steps_to(revision)
        assert steps[-1][0] == revision
        for position, (step, down, _) in enumerate(steps):
            # c3a7f1eb9402 first revised 40f7934c6419, before FLIP put b7e3a1c95d20 under it
            assert down == FLIP_HISTORY[step].down or (step, down) == ("c3a7f1eb9402", ("40f7934c6419",))
            assert set(down) <= {s[0] for s in steps[:position]}
    assert [s[0] for s in steps_to("8c4f2b9d31e7")] == ["75c871e682a4", "23aff57898a0", "8c4f2b9d31e7"]
