"""``flip-pipelines hub-api serve`` as a real process on a FLIP hub database, pushed to as FLIP's FL servers push
(flip-utils' ``flip`` package: snake_case bodies, ``X-Internal-Service-Key``): every push lands as FLIP's routes
write it, a final status ends the training and frees the net, and a bad push is refused and changes nothing."""

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import httpx
import pytest

from flip_pipelines.db import claims, lifecycle
from flip_pipelines.db.engine import make_engine, new_session
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.hub_api.app import MAX_LOG_CHARS
from flip_pipelines.local.processes import free_port
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.database import QueueDatabase
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.heartbeat import RunHeartbeat
from flip_pipelines_tests.factories import fits
from flip_pipelines_tests.flip_hub.conftest import KEY
from flip_pipelines_tests.flip_hub.flip_fl_api import FlipFLApi
from flip_pipelines_tests.flip_hub.hub import FlipHub
from flip_pipelines_tests.flip_hub.training import claimed_run_request, flip_net_options, queue_demo_model
from flip_pipelines_tests.jobs.in_process import train_model

pytestmark = pytest.mark.postgres


def test_the_api_description_needs_the_key_and_no_docs_page_is_served(hub_api: str) -> None:
    """Only FL servers holding the key learn the routes: /openapi.json answers 401 without it, and the
    interactive pages (which could not send the key) are not served."""
    assert httpx.get(f"{hub_api}/openapi.json").status_code == 401
    assert httpx.get(f"{hub_api}/openapi.json", headers={"X-Internal-Service-Key": "wrong"}).status_code == 401
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert httpx.get(f"{hub_api}{page}").status_code == 404, page
    described = httpx.get(f"{hub_api}/openapi.json", headers={"X-Internal-Service-Key": KEY})
    assert described.status_code == 200 and "/model/{model_id}/logs" in described.json()["paths"]


@pytest.mark.parametrize(("variables", "message"), [
    ({"FLIP_INTERNAL_SERVICE_KEY_HASH": ""}, "the hub API needs the internal service key: set "
                                             "FLIP_INTERNAL_SERVICE_KEY_HASH (or FLIP_INTERNAL_SERVICE_KEY)"),
    ({"FLIP_INTERNAL_SERVICE_KEY_HASH": "not-a-digest"}, "FLIP_INTERNAL_SERVICE_KEY_HASH must be a SHA-256 hex "
                                                         "digest (64 hex characters)"),
    ({"FLIP_INTERNAL_SERVICE_KEY_HASH": hashlib.sha256(b"k").hexdigest(),
      "FLIP_DATABASE_URL": "postgresql://hub:s3cret@127.0.0.1:{port}/flip"},
     "cannot reach the database at postgresql://hub:***@127.0.0.1:{port}/flip"),
], ids=["empty key hash", "no digest", "database unreachable"])
def test_serve_refuses_a_missing_key_or_database_with_one_line(variables: dict[str, str], message: str,
                                                               tmp_path: Path) -> None:
    """`hub-api serve` as a real process: a key hash that is empty or no digest, or a database it cannot reach,
    is one `error:` line on stderr (no traceback, no password) and exit code 1, before anything is served."""
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIP_")}
    env.update({k: v.format(port=port) for k, v in variables.items()}, FLIP_DATA_DIR=str(tmp_path))
    result = subprocess.run([str(Path(sys.executable).parent / "flip-pipelines"), "hub-api", "serve", "--port",
                             str(free_port())], env=env, capture_output=True, text=True, timeout=60)
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {message.format(port=port)}") and "s3cret" not in line, result.stderr
    assert result.returncode == 1


def _running_training(flip_hub: FlipHub) -> tuple[uuid.UUID, uuid.UUID]:
    model_id = flip_hub.save_model("pushed")
    engine = make_engine(flip_hub.url)
    try:
        with new_session(engine) as session:
            job_id = lifecycle.enqueue_training(session, model_id, list(flip_hub.trusts.values()), fits()).id
            claim = claims.claim_next_job(session, {model_id: frozenset({FLBackend.NVFLARE})})
            lifecycle.record_submission(session, job_id, "nvflare-job-1", claim.net_name)
    finally:
        engine.dispose()
    return model_id, job_id


def _counts(flip_hub: FlipHub) -> tuple[int, ...]:
    return tuple(flip_hub.scalar(f"SELECT count(*) FROM {t}") for t in ("fl_logs", "fl_metrics", "models_audit"))


def test_pushes_land_as_flip_writes_them_and_end_the_training(flip_hub: FlipHub, hub_api: str) -> None:
    model_id, job_id = _running_training(flip_hub)
    pushed = httpx.Client(base_url=hub_api, headers={"X-Internal-Service-Key": KEY}, timeout=10)
    before = _counts(flip_hub)

    assert httpx.put(f"{hub_api}/model/{model_id}/status/RUNNING").status_code == 401
    assert httpx.put(f"{hub_api}/model/{model_id}/status/RUNNING",
                     headers={"X-Internal-Service-Key": "wrong"}).status_code == 401
    refused = [
        pushed.put(f"/model/{model_id}/status/DONE"),
        pushed.put("/model/not-a-uuid/status/RUNNING"),
        pushed.post(f"/model/{model_id}/metrics", json={"fl_client_name": "site-1", "global_round": 1,
                                                          "label": "val_loss", "result": "nan"}),
        pushed.post(f"/model/{model_id}/metrics", json={"fl_client_name": "site-1", "global_round": -1,
                                                          "label": "val_loss", "result": 0.5}),
        pushed.post(f"/model/{model_id}/metrics", json={"fl_client_name": "site-1", "label": "x", "result": 1}),
        pushed.post(f"/model/{model_id}/logs", json={"log": "text", "event_type": "ROUND_STARTED",
                                                       "global_round": 1}),
        pushed.post(f"/model/{model_id}/logs", json={"event_type": "QUEUE_POSITION", "global_round": 1}),
        pushed.post(f"/model/{model_id}/logs", json={"event_type": "ROUND_STARTED"}),
        pushed.post(f"/model/{model_id}/logs", json={"log": "x", "details": {"blob": "y" * 9000}}),
        pushed.post(f"/model/{model_id}/logs", json={"log": "z" * (MAX_LOG_CHARS + 1), "success": False}),
    ]
    assert [r.status_code for r in refused] == [422] * len(refused), [r.text for r in refused]
    assert pushed.post(f"/model/{model_id}/metrics", json={"fl_client_name": "site-9", "global_round": 1,
                                                             "label": "val_loss", "result": 0.5}).status_code == 400
    assert pushed.put(f"/model/{uuid.uuid4()}/status/RUNNING").status_code == 404
    assert _counts(flip_hub) == before, "nothing refused was written"

    assert pushed.put(f"/model/{model_id}/status/RUNNING").json() == {"success": "status set"}
    assert pushed.post(f"/model/{model_id}/metrics", json={"fl_client_name": "site-1", "global_round": 1,
                                                             "label": "val_loss", "result": 0.5}).status_code == 204
    assert pushed.post(f"/model/{model_id}/metrics", json={
        "fl_client_name": "site-2", "global_round": 2, "label": "val_loss", "result": 0.25, "x_value": 64,
        "x_label": "Samples"}).status_code == 204
    assert pushed.post(f"/model/{model_id}/logs", json={
        "fl_client_name": "site-2", "event_type": "ROUND_STARTED", "global_round": 1,
        "details": {"round": 1}}).json() == {"detail": "Created"}
    assert pushed.post(f"/model/{model_id}/logs", json={
        "fl_client_name": "site-7", "log": "CUDA out of memory", "success": False}).status_code == 200
    assert pushed.post(f"/model/{model_id}/logs", json={"log": "t" * MAX_LOG_CHARS}).status_code == 200
    metrics = flip_hub.execute("SELECT t.name, m.fl_client_name, m.global_round, m.label, m.result, m.x_value, "
                               "m.x_label FROM fl_metrics m JOIN trust t ON t.id = m.trust WHERE m.model_id = :m "
                               "ORDER BY m.global_round", m=model_id)
    assert [tuple(r) for r in metrics] == [("Trust_1", "site-1", 1, "val_loss", 0.5, 1.0, "Global Round"),
                                           ("Trust_2", "site-2", 2, "val_loss", 0.25, 64.0, "Samples")]
    logs = flip_hub.logs(model_id)
    event = next(r for r in logs if r["event_type"] == "ROUND_STARTED")
    assert event["trust"] == flip_hub.trusts["Trust_2"] and event["details"] == {"round": 1}
    assert any(r["log"] == "The job for this model is now running." for r in logs)
    assert any((r["log"] or "").startswith("[unattributed client 'site-7'") and not r["success"] for r in logs)

    assert pushed.put(f"/model/{model_id}/status/RESULTS_UPLOADED").status_code == 200
    assert flip_hub.job(job_id)["status"] == "COMPLETED" and flip_hub.model_status(model_id) == "RESULTS_UPLOADED"
    assert set(flip_hub.slots().values()) == {"AVAILABLE"}
    assert flip_hub.audit_trail(model_id) == ["RUNNING", "RESULTS_UPLOADED"]


def test_a_stopped_model_ignores_what_its_fl_server_still_reports(flip_hub: FlipHub, hub_api: str) -> None:
    model_id, job_id = _running_training(flip_hub)
    engine = make_engine(flip_hub.url)
    try:
        with new_session(engine) as session:
            lifecycle.abort_model(session, model_id, "Stopped by the user")
    finally:
        engine.dispose()
    before = _counts(flip_hub)
    response = httpx.put(f"{hub_api}/model/{model_id}/status/RESULTS_UPLOADED",
                         headers={"X-Internal-Service-Key": KEY})
    assert response.json() == {"success": "status set"}, "FLIP answers the same when it ignores a report"
    assert flip_hub.model_status(model_id) == "STOPPED" and flip_hub.job(job_id)["status"] == "DELETED"
    assert _counts(flip_hub) == before


@pytest.mark.slow
def test_a_training_on_a_flip_net_ends_through_what_its_fl_server_pushes(
        flip_hub: FlipHub, hub_api: str, s3_server: LocalS3, flip_job_templates: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """train_model on a FLIP hub database and a FLIP-style NVFlare FL API (``FLIP_NET_OPTIONS`` "flip", bundling
    from FLIP's job templates): no token sent, the single-app bundle accepted, client statuses without ``online``
    read, UNKNOWN then RUNNING followed; the FL side pushes RUNNING, the clients' metrics and RESULTS_UPLOADED to the
    hub API, and the run ends on that."""
    fake = FlipFLApi(push_to=hub_api, push_key=KEY).start()
    try:
        flip_hub.execute("INSERT INTO fl_nets VALUES (:i, 'net-flip', :e, 'NVFLARE')", i=(net := uuid.uuid4()),
                         e=fake.base_url)
        flip_hub.execute("INSERT INTO fl_scheduler VALUES (:i, :n, 'AVAILABLE', NULL)", i=uuid.uuid4(), n=net)
        monkeypatch.setenv("FLIP_NET_OPTIONS", flip_net_options(flip_job_templates))
        storage, model_id, job_id = queue_demo_model(flip_hub, s3_server, "on-a-flip-net")
        with dg.instance_for_test() as instance:
            request = claimed_run_request(flip_hub, storage, instance)
            assert request.tags["flip/net"] == "net-flip"
            resources = {"queue_db": QueueDatabase(url=flip_hub.url), "storage": storage,
                         "fl_api": FLApiResource(token="hub-secret"), "io_manager": dg.mem_io_manager,
                         "heartbeat": RunHeartbeat()}
            result = train_model.execute_in_process(run_config=request.run_config, tags=request.tags, instance=instance,
                                                    resources=resources, raise_on_error=False)
        assert result.success, result.get_run_failure_event()
        assert result.output_for_node("monitor") == "RESULTS_UPLOADED"
        [model] = [m.event_specific_data.materialization for m in result.get_asset_materialization_events()
                   if m.event_specific_data.materialization.asset_key.path[-1] == "global_model"]
        assert model.metadata["final_val_loss"].value == pytest.approx(0.55), "round 2: site-1 0.5, site-2 0.6"
        assert len(model.metadata["metrics"].value.records) == 4 and model.metadata["rounds"].value == 2
    finally:
        fake.stop()
    assert flip_hub.job(job_id)["status"] == "COMPLETED" and flip_hub.model_status(model_id) == "RESULTS_UPLOADED"
    assert flip_hub.slots()["net-flip"] == "AVAILABLE"
    assert flip_hub.audit_trail(model_id) == ["RUNNING", "RESULTS_UPLOADED"]
    assert flip_hub.scalar("SELECT count(*) FROM fl_metrics WHERE model_id = :m", m=model_id) == 4
    assert all("authorization" not in h for h in fake.seen_headers), "the hub's token never reached FLIP's FL API"
    assert "app/config/config_fed_client.json" in fake.uploads[str(model_id)]
