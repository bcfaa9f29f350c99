"""FLIP's own FL APIs as nets: the hub's client reads their real answers, sends them no token, and bundles NVFlare
models in the single ``app/`` layout their upload accepts — against a real server that answers as FLIP's does."""

import uuid
from collections.abc import Iterator

import pytest

from flip_pipelines.demo_models import demo_model_files
from flip_pipelines.domain.bundle import NvflareLayout
from flip_pipelines.domain.enums import FLBackend, FLJobStatus
from flip_pipelines.domain.errors import InvalidInputError
from flip_pipelines.domain.net_options import FLIP_FL_API, NetOptions, parse_net_options
from flip_pipelines.fl_api.client import FLApiClient, FLApiNotFoundError, FLApiRequestError
from flip_pipelines.fl_api.schemas import UploadAppRequest
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.fl_api import FLApiResource
from flip_pipelines.resources.storage import FlipStorage
from flip_pipelines_tests.fl_api.helpers import with_config
from flip_pipelines_tests.flip_hub.flip_fl_api import FlipFLApi


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


def test_unknown_job_status_is_read_and_is_not_an_end(flip_fl_api: FlipFLApi) -> None:
    model_id = str(uuid.uuid4())
    flip_fl_api.uploads[model_id] = {}
    with FLApiClient(flip_fl_api.base_url, None) as client:
        job_id = client.submit_job(model_id)
        assert [client.get_job(job_id).status for _ in range(3)] == [
            FLJobStatus.UNKNOWN, FLJobStatus.RUNNING, FLJobStatus.FINISHED]


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
        else:
            with pytest.raises(FLApiNotFoundError, match="HTTP 404: .*config"):  # meta.json registers an empty app/
                api.upload_app(model_id, request)
            assert model_id not in flip_fl_api.uploads
