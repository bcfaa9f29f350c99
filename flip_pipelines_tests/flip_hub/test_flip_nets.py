"""FLIP's own FL APIs as nets: the hub's client reads their real answers, sends them no token, and bundles NVFlare
models in the single ``app/`` layout their upload accepts, configured as FLIP configures it — against a real server
that answers as FLIP's does. A training on such a net runs the model's rounds on a real NVFlare, and its result is
the one FLIP's FL server uploaded to the results bucket, found there even when its final status never arrives."""

import io
import json
import re
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dagster as dg
import httpx
import pytest

from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.bundle import NvflareLayout
from flip_pipelines.domain.enums import FLBackend, FLJobStatus
from flip_pipelines.domain.errors import InvalidInputError
from flip_pipelines.domain.net_options import FLIP_FL_API, NetOptions, base_app_sources, parse_net_options
from flip_pipelines.fl_api.client import FLApiClient, FLApiContractError, FLApiNotFoundError, FLApiRequestError
from flip_pipelines.fl_api.schemas import UploadAppRequest
from flip_pipelines.local.nvflare import LocalNVFlare
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.storage import FlipStorage
from flip_pipelines_tests.fl_api.helpers import with_config
from flip_pipelines_tests.flip_hub.conftest import KEY
from flip_pipelines_tests.flip_hub.flip_fl_api import FlipFLApi
from flip_pipelines_tests.flip_hub.hub import FlipHub
from flip_pipelines_tests.flip_hub.training import (
    add_flip_net,
    flip_net_options,
    global_model_events,
    queue_demo_model,
    train_on_the_net_claimed,
)

RESULT_KEY = re.compile(r"^(?P<model_id>[0-9a-f-]{36})/\d{8}_\d{6}\.zip$")  # FLIP's FL server's naming


@pytest.fixture
def flip_fl_api() -> Iterator[FlipFLApi]:
    server = FlipFLApi().start()
    try:
        yield server
    finally:
        server.stop()


def test_net_options_name_flips_fl_api_or_this_projects_and_refuse_what_they_cannot_read() -> None:
    options = parse_net_options('{"a": "flip", "b": {"bearer_token": false}, "c": "flip_pipelines", '
                                '"d": {"submit_token": false}}')
    assert options == {"a": FLIP_FL_API, "b": NetOptions(bearer_token=False), "c": NetOptions(),
                       "d": NetOptions(submit_token=False)}
    assert NetOptions(bearer_token=False, nvflare_layout=NvflareLayout.APP, results_pushed=True,
                      submit_token=False) == FLIP_FL_API
    assert parse_net_options("") == {}
    for bad, message in [("[1]", "map net names"), ("{", "not JSON"), ('{"a": "x"}', "unknown preset 'x'"),
                         ('{"a": {"nvflare_layout": "flat"}}', "split or app"),
                         ('{"a": {"bearer_token": "no"}}', "true or false"), ('{"a": {"tls": 1}}', "expected"),
                         ('{"a": {"submit_token": 0}}', "submit_token must be true or false")]:
        with pytest.raises(InvalidInputError, match=message):
            parse_net_options(bad)


def test_a_net_names_its_own_base_application_source_and_a_bad_one_is_refused_in_one_line() -> None:
    """A net's ``base_app_source`` (FLIP's ``FL_APP_BASE_DIR`` is a local folder; a bucket prefix works as
    FLIP_BASE_APP_SOURCE does), on a preset or on its own; nets that name none bundle from the global source."""
    options = parse_net_options(json.dumps({
        "a": {"preset": "flip", "base_app_source": "s3://fl-apps/flip/"}, "b": {"base_app_source": "/srv/fl-apps"},
        "c": {"preset": "flip", "bearer_token": True}, "d": {"base_app_source": "package"}}))
    assert options == {"a": replace(FLIP_FL_API, base_app_source="s3://fl-apps/flip"),
                       "b": NetOptions(base_app_source="/srv/fl-apps"), "c": replace(FLIP_FL_API, bearer_token=True),
                       "d": NetOptions(base_app_source="package")}
    assert FLIP_FL_API.base_app_source is None and NetOptions().base_app_source is None
    nets = {"a": FLBackend.NVFLARE, "b": FLBackend.NVFLARE, "c": FLBackend.NVFLARE, "f": FLBackend.FLOWER}
    assert base_app_sources(nets, options, "s3://hub/apps") == {
        FLBackend.NVFLARE: ("s3://hub/apps", "/srv/fl-apps", "s3://fl-apps/flip"), FLBackend.FLOWER: ("s3://hub/apps",)}
    assert base_app_sources({}, options, "package") == {FLBackend.NVFLARE: ("package",), FLBackend.FLOWER: ("package",)}
    for bad, message in [
        ({"base_app_source": "fl-apps"}, "base_app_source must be package, s3://bucket/prefix or an absolute "
                                         "folder path, not 'fl-apps'"),
        ({"base_app_source": "s3:///prefix"}, "base_app_source 's3:///prefix' names no bucket"),
        ({"base_app_source": ["s3://a"]}, "base_app_source must be a string"),
        ({"preset": "fl1p"}, "unknown preset 'fl1p'"), ({"preset": {"x": 1}}, "unknown preset"),
    ]:
        with pytest.raises(InvalidInputError) as refused:
            parse_net_options(json.dumps({"net-1": bad}))
        assert str(refused.value).startswith(f"FLIP_NET_OPTIONS: net 'net-1': {message}"), str(refused.value)
        assert "\n" not in str(refused.value)


def test_client_reads_flips_answers_and_sends_no_token_where_none_is_due(
        flip_fl_api: FlipFLApi, monkeypatch: pytest.MonkeyPatch) -> None:
    flip_fl_api.clients[1]["status"] = "no_reply"
    monkeypatch.setenv("FLIP_NET_OPTIONS", '{"net-flip": "flip"}')
    resource = FLApiResource(token="hub-secret-token")
    with resource.client(flip_fl_api.base_url, net="net-flip") as client:
        assert client.health().status.startswith("This service is healthy"), "/health redirects to /health/"
        assert [(c.name, c.online) for c in client.check_client_status()] == [("site-1", True), ("site-2", False)]
        assert client.check_server_status().status == "started"
        with pytest.raises(FLApiRequestError, match="HTTP 422") as refused:
            client.upload_app("not-a-uuid", UploadAppRequest(project_id="p", cohort_query="q", trusts=["site-1"],
                                                              bundle_urls=["https://x/y"]))
        assert refused.value.status_code == 422
        with pytest.raises(FLApiNotFoundError):
            client.abort_job("no-such-job")
    assert flip_fl_api.seen_headers and all("authorization" not in h for h in flip_fl_api.seen_headers)
    with resource.client(flip_fl_api.base_url, net="net-ours") as client:
        client.check_server_status()
    assert flip_fl_api.seen_headers[-1]["authorization"] == "Bearer hub-secret-token", "this project's nets get it"


def test_unknown_job_status_is_read_and_is_not_an_end(flip_fl_api: FlipFLApi, tmp_path: Path) -> None:
    """UNKNOWN, RUNNING, then FINISHED; FLIP's ``/download_job`` then answers where the result is on its own disk,
    which a hub cannot download (so a FLIP net's result is looked up in the results bucket instead)."""
    model_id = str(uuid.uuid4())
    flip_fl_api.uploads[model_id] = {}
    with FLApiClient(flip_fl_api.base_url, None) as client:
        job_id = client.submit_job(model_id)
        assert [client.get_job(job_id).status for _ in range(3)] == [
            FLJobStatus.UNKNOWN, FLJobStatus.RUNNING, FLJobStatus.FINISHED]
        with pytest.raises(FLApiContractError, match="expected application/zip, got application/json"):
            client.download_job(job_id, tmp_path / "result.zip")
    answer = httpx.get(f"{flip_fl_api.base_url}/download_job/{job_id}", timeout=10)
    assert Path(answer.json()) == flip_fl_api.result_folder(job_id) and Path(answer.json()).is_dir()


def test_flips_fl_api_ignores_the_submit_token_and_lists_a_models_jobs_in_submission_order(
        flip_fl_api: FlipFLApi) -> None:
    model, other = str(uuid.uuid4()), str(uuid.uuid4())
    flip_fl_api.uploads[model] = flip_fl_api.uploads[other] = {}
    with FLApiClient(flip_fl_api.base_url, None) as client:
        first = client.submit_job(model, submit_token="fl_job-1")
        elsewhere = client.submit_job(other)
        again = client.submit_job(model, submit_token="fl_job-1")
        assert again != first, "FLIP's FL API takes no submit token: the same call is one more job"
        assert [j.job_id for j in client.list_jobs(name_prefix=model)] == [first, again]
        assert [j.job_id for j in client.list_jobs()] == [first, elsewhere, again]


@pytest.mark.parametrize(("layout", "accepted"), [(NvflareLayout.APP, True), (NvflareLayout.SPLIT, False)])
def test_flips_nvflare_upload_accepts_the_single_app_layout(
        layout: NvflareLayout, accepted: bool, flip_fl_api: FlipFLApi, s3_server: LocalS3) -> None:
    """The bundle is copied on the real S3 server, presigned and downloaded by FLIP's upload rules: one ``app/``
    with both FL configs, the base application's and the model's code passes; the split layout is refused as
    FLIP refuses it."""
    client = s3_server.client()
    buckets = {k: f"{k}-{uuid.uuid4().hex[:8]}" for k in ("models", "bundles", "results")}
    for bucket in buckets.values():
        client.create_bucket(Bucket=bucket)
    storage = FlipStorage(s3=s3_server.resource(), model_bucket=buckets["models"], bundle_bucket=buckets["bundles"],
                          results_bucket=buckets["results"])
    model_id = str(uuid.uuid4())
    for rel, body in with_config(demo_model_files("nvflare_logreg"), GLOBAL_ROUNDS=1).items():
        client.put_object(Bucket=buckets["models"], Key=f"{model_id}/{rel}", Body=body)
    store = storage.bundle_store()
    result = store.bundle(model_id, FLBackend.NVFLARE, layout)
    request = UploadAppRequest(project_id="p", cohort_query="SELECT 1", trusts=["site-1", "site-2"],
                               bundle_urls=store.presign(result.keys))
    with FLApiClient(flip_fl_api.base_url, None) as api:
        if accepted:
            api.upload_app(model_id, request)
            files = set(flip_fl_api.uploads[model_id])
            assert {"app/config/config_fed_client.json", "app/config/config_fed_server.json",
                    "app/custom/config.json", "app/custom/trainer.py", "app/custom/flip_executor.py",
                    "app/custom/flip_aggregator.py"} <= files
            assert not any(f.startswith("app_") for f in files) and "meta.json" not in files
            _configured_as_flip_configures_it(flip_fl_api, model_id)
        else:
            with pytest.raises(FLApiNotFoundError, match="HTTP 404: .*config"):  # meta.json registers an empty app/
                api.upload_app(model_id, request)
            assert model_id not in flip_fl_api.uploads


def _configured_as_flip_configures_it(flip_fl_api: FlipFLApi, model_id: str) -> None:
    """FLIP's config preparation (global_rounds, not num_rounds) read back from the job folder it wrote."""
    app = flip_fl_api.job_folder(model_id) / "app"
    server = json.loads((app / "config/config_fed_server.json").read_text())
    assert (server["model_id"], server["global_rounds"], server["min_clients"]) == (model_id, 1, 2)
    [workflow] = server["workflows"]
    assert workflow["args"]["ignore_result_error"] is False and workflow["args"]["min_clients"] == "{min_clients}"
    [aggregator] = [c for c in server["components"] if c["id"] == "aggregator"]
    assert aggregator["name"] == "InTimeAccumulateWeightedAggregator"
    assert aggregator["args"]["aggregation_weights"] == {}
    client = json.loads((app / "config/config_fed_client.json").read_text())
    assert (client["project_id"], client["query"]) == ("p", "SELECT 1")
    assert json.loads((app / "config/environment.json").read_text()) == {"APP_CKPT_DIR": "model"}
    assert json.loads((app / "custom/config.json").read_text())["LOCAL_ROUNDS"] == 1, "defaulted into config.json"
    meta = json.loads((app.parent / "meta.json").read_text())
    assert meta["deploy_map"] == {"app": ["server", "site-1", "site-2"]} and meta["custom_props"] == {
        "model_id": model_id}


def _result_zip(s3: LocalS3, bucket: str, key: str) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()))


@pytest.mark.slow
@pytest.mark.fl
def test_a_flip_nets_fl_server_hands_back_only_jobs_bundled_with_flips_job_templates(
        flip_hub: FlipHub, hub_api: str, s3_server: LocalS3, nvflare_deployment: LocalNVFlare,
        flip_job_templates: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """FLIP's NVFlare FL API in front of the real NVFlare. Bundled with this project's base application, whose
    server config declares none of the ``flip`` package's components, the job runs, but FLIP's FL server uploads
    nothing and pushes nothing: the bundle op warns, and the training ends as the plain ERROR after the grace.
    Bundled with the net's own ``base_app_source`` (FLIP's job templates), GLOBAL_ROUNDS=2 runs two rounds per site
    (read from the FL server's own result), which FLIP's FL server zipped into the results bucket as
    ``<model_id>/<time>.zip`` before pushing RESULTS_UPLOADED; the global model points at that object, and its
    check loads the weights from it."""
    monkeypatch.setenv("FLIP_NET_OPTIONS", '{"net-flip": "flip"}')
    monkeypatch.setenv("FLIP_PUSHED_STATUS_GRACE_SECONDS", "1")
    storage, plain_model, plain_job = queue_demo_model(flip_hub, s3_server, "this-projects-template")
    fake = FlipFLApi(push_to=hub_api, push_key=KEY, nvflare=nvflare_deployment,
                     results=(s3_server.client(), storage.results_bucket)).start()
    try:
        add_flip_net(flip_hub, fake.base_url)
        plain_log: list[str] = []
        plain = train_on_the_net_claimed(flip_hub, storage, log=plain_log)
        plain_backend_job = flip_hub.job(plain_job)["fl_backend_job_id"]
        assert (fake.uploaded, fake.pushed) == ([], []), "no component of FLIP's declared: nothing came back"

        monkeypatch.setenv("FLIP_NET_OPTIONS", flip_net_options(flip_job_templates))
        _, model_id, job_id = queue_demo_model(flip_hub, s3_server, "two-rounds", rounds=2, storage=storage)
        run_log: list[str] = []
        result = train_on_the_net_claimed(flip_hub, storage, log=run_log)
        backend_job_id = flip_hub.job(job_id)["fl_backend_job_id"]
        downloaded = httpx.get(f"{fake.base_url}/download_job/{backend_job_id}", timeout=30)
    finally:
        fake.stop()
    reason = (f"FL job {plain_backend_job} finished but its FL server pushed no final status within 1 s and no "
              f"result is in s3://{storage.results_bucket}/{plain_model}/")
    assert not plain.success and flip_hub.model_status(plain_model) == "ERROR"
    assert [row["log"] for row in flip_hub.logs(plain_model) if (row["details"] or {}).get("outcome")] == [reason]
    assert any(line.startswith("bundle WARNING ") and "declares neither ServerEventHandler nor "
               "PersistToS3AndCleanup" in line for line in plain_log), "the bundle op said nothing would come back"

    assert result.success, result.get_run_failure_event()
    assert not any("ServerEventHandler" in line for line in run_log)
    assert any(line.startswith(f"bundle INFO bundling from {flip_job_templates}") for line in run_log), run_log
    assert downloaded.headers["content-type"] == "application/json" and "/" in downloaded.json(), "a path, not a zip"
    [key] = fake.uploaded
    assert RESULT_KEY.match(key) and RESULT_KEY.match(key)["model_id"] == str(model_id)  # type: ignore[index]
    assert fake.pushed[0] == f"PUT /model/{model_id}/status/RUNNING"
    assert fake.pushed[-1] == f"PUT /model/{model_id}/status/RESULTS_UPLOADED"
    with _result_zip(s3_server, storage.results_bucket, key) as archive:
        lines = archive.read("metrics/round_metrics.jsonl").decode().splitlines()
        assert "models/global_weights.npz" in archive.namelist() and not any(
            n.startswith("app_server/") for n in archive.namelist())
    by_round: dict[int, list[str]] = {}
    for record in map(json.loads, lines):
        by_round.setdefault(record["round"], []).append(record["client"])
    assert {r: sorted(c) for r, c in by_round.items()} == {0: ["site-1", "site-2"], 1: ["site-1", "site-2"]}, \
        "NVFlare ran exactly the model's two rounds"
    [model] = global_model_events(result)
    assert model.metadata["location"].value == f"s3://{storage.results_bucket}/{key}"
    assert model.metadata["rounds"].value == 2
    check = next(e.event_specific_data for e in result.all_events
                 if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    assert check.passed and "loaded from models/global_weights.npz" in check.description, check.description
    assert flip_hub.model_status(model_id) == "RESULTS_UPLOADED" and flip_hub.job(job_id)["status"] == "COMPLETED"
    assert flip_hub.slots()["net-flip"] == "AVAILABLE"
    assert {r[0] for r in flip_hub.execute("SELECT global_round FROM fl_metrics WHERE model_id = :m",
                                           m=model_id)} == {1, 2}


@pytest.mark.parametrize("uploaded", [False, True], ids=["no-result", "result-in-bucket"])
def test_a_flip_net_whose_fl_server_pushes_no_final_status_ends_on_what_is_in_the_results_bucket(
        uploaded: bool, flip_hub: FlipHub, hub_api: str, s3_server: LocalS3, flip_job_templates: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The FL job (bundled with FLIP's job templates) FINISHED, the FL server's final push never came: with its
    result in the results bucket the training ends RESULTS_UPLOADED on that object; without one it ends ERROR with a
    plain reason, once, and frees the net."""
    monkeypatch.setenv("FLIP_NET_OPTIONS", flip_net_options(flip_job_templates))
    monkeypatch.setenv("FLIP_PUSHED_STATUS_GRACE_SECONDS", "1")
    storage, model_id, job_id = queue_demo_model(flip_hub, s3_server, f"unpushed-{uploaded}")
    fake = FlipFLApi(push_to=hub_api, push_key=KEY, results=(s3_server.client(), storage.results_bucket),
                     upload_results=uploaded, push_final_status=False).start()
    try:
        add_flip_net(flip_hub, fake.base_url)
        result = train_on_the_net_claimed(flip_hub, storage)
    finally:
        fake.stop()
    backend_job_id = flip_hub.job(job_id)["fl_backend_job_id"]
    assert flip_hub.job(job_id)["status"] == "COMPLETED" and flip_hub.slots()["net-flip"] == "AVAILABLE"
    ends = [row["log"] for row in flip_hub.logs(model_id) if (row["details"] or {}).get("outcome")]
    if uploaded:
        [key] = fake.uploaded
        assert result.success, result.get_run_failure_event()
        assert flip_hub.model_status(model_id) == "RESULTS_UPLOADED"
        [model] = global_model_events(result)
        assert model.metadata["location"].value == f"s3://{storage.results_bucket}/{key}"
        assert ends == [f"Training finished; results at s3://{storage.results_bucket}/{key} (its FL server pushed "
                        "no final status within 1 s)"]
        return
    reason = (f"FL job {backend_job_id} finished but its FL server pushed no final status within 1 s and no result "
              f"is in s3://{storage.results_bucket}/{model_id}/")
    assert not result.success and not global_model_events(result)
    failure = result.get_run_failure_event()
    step_failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert step_failure.event_specific_data.error.message.splitlines()[0] == f"Training failed: {reason}", failure
    assert flip_hub.model_status(model_id) == "ERROR" and ends == [reason], "ended once, with the plain reason"
