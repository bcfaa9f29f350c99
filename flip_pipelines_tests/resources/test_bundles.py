"""Bundling and presigning against a real S3 server (SeaweedFS)."""

import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from flip_pipelines.domain.bundle import (
    BundleError,
    EmptyModelError,
    InvalidModelConfigError,
    JobType,
    MissingRequiredFilesError,
    NvflareLayout,
    ReservedFileError,
    UnknownJobTypeError,
    UnsafePathError,
)
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.uploaded_results import missing_flip_components
from flip_pipelines.fl_api.base_apps import template_sources
from flip_pipelines.local.processes import wait_until
from flip_pipelines.local.s3 import LocalS3
from flip_pipelines.resources.bundles import BundleStore, delete_prefix, list_keys, sync_templates
from flip_pipelines.resources.templates import TemplateSourceError
from flip_pipelines_tests.flip_hub.flip_job_templates import flip_shaped_templates, write_templates

NVFLARE_STANDARD = {
    "trainer.py": b"def train(weights, context):\n    return weights, 1, {}\n",
    "validator.py": b"def validate(weights, context):\n    return {}\n",
    "models.py": b"def initial_weights(config):\n    return {}\n",
    "config.json": b'{"GLOBAL_ROUNDS": 2}',
    "lib/util.py": b"X = 1\n",
    "data/init.bin": bytes(range(256)) * 4,
}
NVFLARE_EVALUATION = {
    "config.json": b'{"job_type": "evaluation"}',
    "evaluator.py": b"def evaluate(weights, context):\n    return {}\n",
    "models.py": b"def initial_weights(config):\n    return {}\n",
}
FLOWER_STANDARD = {
    "client_app.py": b"from flwr.clientapp import ClientApp\napp = ClientApp()\n",
    "models.py": b"def initial_weights(config):\n    return {}\n",
    "config.json": b'{"lr": 0.1}',
    "helpers/extra.py": b"Y = 2\n",
}
FLOWER_EVALUATION = {**FLOWER_STANDARD, "config.json": b'{"job_type": "evaluation_client_api"}'}


@pytest.fixture(scope="session")
def buckets(s3_server: LocalS3) -> tuple[str, str]:
    """One model bucket and one bundle bucket for the session: every test uses its own model ids in them
    (SeaweedFS gives each bucket its own volumes, so a bucket per test would exhaust them)."""
    client = s3_server.client()
    names = (f"models-{uuid.uuid4().hex[:8]}", f"bundles-{uuid.uuid4().hex[:8]}")
    for name in names:
        client.create_bucket(Bucket=name)
    return names


@pytest.fixture
def store(s3_server: LocalS3, buckets: tuple[str, str]) -> BundleStore:
    return BundleStore(s3_server.client(), model_bucket=buckets[0], bundle_bucket=buckets[1])


def upload(store: BundleStore, model_id: str, files: dict[str, bytes]) -> None:
    for rel, body in files.items():
        store.client.put_object(Bucket=store.model_bucket, Key=f"{model_id}/{rel}", Body=body)


def read(store: BundleStore, bucket: str, key: str) -> bytes:
    return store.client.get_object(Bucket=bucket, Key=key)["Body"].read()


def expected_bundle(backend: FLBackend, job_type: JobType, files: dict[str, bytes]) -> dict[str, bytes]:
    """What the destination must hold, built independently of the planner from the rules in the issue."""
    template = {k: p.read_bytes() for k, p in template_sources(backend.value, job_type.value).items()}
    if backend == FLBackend.FLOWER:
        return {**template, **files}
    apps = sorted({k.split("/")[0] for k in template if k.startswith("app")})
    return {**template, **{f"{app}/custom/{rel}": body for rel, body in files.items() for app in apps}}


@pytest.mark.parametrize(
    ("backend", "job_type", "files"),
    [
        (FLBackend.NVFLARE, JobType.STANDARD, NVFLARE_STANDARD),
        (FLBackend.NVFLARE, JobType.EVALUATION, NVFLARE_EVALUATION),
        (FLBackend.FLOWER, JobType.STANDARD, FLOWER_STANDARD),
        (FLBackend.FLOWER, JobType.EVALUATION, FLOWER_EVALUATION),
    ],
)
def test_bundle_holds_exactly_the_planned_bytes(
    store: BundleStore, backend: FLBackend, job_type: JobType, files: dict[str, bytes]
) -> None:
    model_id = str(uuid.uuid4())
    upload(store, model_id, {**files, ".env": b"SECRET=1", "__pycache__/x.cpython-311.pyc": b"\0"})
    result = store.bundle(model_id, backend)
    assert result.plan.job_type == job_type
    expected = expected_bundle(backend, job_type, files)
    present = list_keys(store.client, store.bundle_bucket, f"{model_id}/")
    assert sorted(present) == sorted(f"{model_id}/{k}" for k in expected)
    for rel, body in expected.items():
        assert read(store, store.bundle_bucket, f"{model_id}/{rel}") == body, rel
    assert result.total_bytes == sum(len(b) for b in expected.values())


def test_rebundling_replaces_the_previous_bundle(store: BundleStore) -> None:
    model_id = str(uuid.uuid4())
    upload(store, model_id, NVFLARE_STANDARD)
    store.bundle(model_id, FLBackend.NVFLARE)
    store.client.delete_object(Bucket=store.model_bucket, Key=f"{model_id}/lib/util.py")
    store.client.put_object(Bucket=store.model_bucket, Key=f"{model_id}/trainer.py", Body=b"# v2\n")
    store.bundle(model_id, FLBackend.NVFLARE)
    keys = list_keys(store.client, store.bundle_bucket, f"{model_id}/")
    assert not any(k.endswith("lib/util.py") for k in keys), "no stale keys survive a re-bundle"
    assert read(store, store.bundle_bucket, f"{model_id}/app_client/custom/trainer.py") == b"# v2\n"
    assert len(keys) == len(expected_bundle(FLBackend.NVFLARE, JobType.STANDARD, NVFLARE_STANDARD)) - 2


def test_emptying_a_prefix_in_parallel_batches_leaves_its_neighbours(store: BundleStore) -> None:
    model_id, neighbour = str(uuid.uuid4()), str(uuid.uuid4())
    for name in (f"{model_id}/k{i}" for i in range(7)):
        store.client.put_object(Bucket=store.bundle_bucket, Key=name, Body=b"x")
    store.client.put_object(Bucket=store.bundle_bucket, Key=f"{neighbour}/k0", Body=b"kept")
    store.client.put_object(Bucket=store.bundle_bucket, Key=f"{model_id}x/k0", Body=b"kept")

    assert delete_prefix(store.client, store.bundle_bucket, f"{model_id}/", batch_size=2, max_workers=3) == 7

    assert list_keys(store.client, store.bundle_bucket, f"{model_id}/") == {}
    assert read(store, store.bundle_bucket, f"{neighbour}/k0") == b"kept"
    assert read(store, store.bundle_bucket, f"{model_id}x/k0") == b"kept"


def _without(files: dict[str, bytes], *names: str) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if k not in names}


BAD_UPLOADS: list[tuple[str, FLBackend, Callable[[], dict[str, bytes]], type[Exception], str]] = [
    ("missing trainer", FLBackend.NVFLARE, lambda: _without(NVFLARE_STANDARD, "trainer.py"),
     MissingRequiredFilesError, "trainer.py"),
    ("missing config", FLBackend.NVFLARE, lambda: _without(NVFLARE_STANDARD, "config.json"),
     MissingRequiredFilesError, "config.json"),
    ("missing two", FLBackend.NVFLARE, lambda: _without(NVFLARE_STANDARD, "validator.py", "models.py"),
     MissingRequiredFilesError, "validator.py, models.py"),
    ("evaluation without evaluator", FLBackend.NVFLARE, lambda: _without(NVFLARE_EVALUATION, "evaluator.py"),
     MissingRequiredFilesError, "evaluator.py"),
    ("flower missing client app", FLBackend.FLOWER, lambda: _without(FLOWER_STANDARD, "client_app.py"),
     MissingRequiredFilesError, "client_app.py"),
    ("unknown job type", FLBackend.NVFLARE, lambda: {**NVFLARE_STANDARD, "config.json": b'{"job_type": "gan"}'},
     UnknownJobTypeError, "'gan'"),
    ("job type not a string", FLBackend.NVFLARE, lambda: {**NVFLARE_STANDARD, "config.json": b'{"job_type": [1]}'},
     UnknownJobTypeError, "must be a string"),
    ("job type without template", FLBackend.NVFLARE,
     lambda: {**NVFLARE_STANDARD, "config.json": b'{"job_type": "fed_opt"}'}, UnknownJobTypeError, "fed_opt"),
    ("config not JSON", FLBackend.NVFLARE, lambda: {**NVFLARE_STANDARD, "config.json": b"{rounds: 2"},
     InvalidModelConfigError, "not valid JSON"),
    ("config is a list", FLBackend.NVFLARE, lambda: {**NVFLARE_STANDARD, "config.json": b"[]"},
     InvalidModelConfigError, "JSON object"),
    ("config not UTF-8", FLBackend.NVFLARE, lambda: {**NVFLARE_STANDARD, "config.json": b"\xff\xfe{}"},
     InvalidModelConfigError, "not valid JSON"),
    ("flower config not JSON", FLBackend.FLOWER, lambda: {**FLOWER_STANDARD, "config.json": b"lr=0.1"},
     InvalidModelConfigError, "not valid JSON"),
    ("reserved executor", FLBackend.NVFLARE, lambda: {**NVFLARE_STANDARD, "flip_executor.py": b"x"},
     ReservedFileError, "flip_executor.py"),
    ("reserved persistor", FLBackend.NVFLARE, lambda: {**NVFLARE_STANDARD, "flip_persistor.py": b"x"},
     ReservedFileError, "flip_persistor.py"),
    ("reserved meta.json", FLBackend.NVFLARE, lambda: {**NVFLARE_STANDARD, "meta.json": b"{}"},
     ReservedFileError, "meta.json"),
    ("reserved server app", FLBackend.FLOWER, lambda: {**FLOWER_STANDARD, "server_app.py": b"x"},
     ReservedFileError, "server_app.py"),
    ("reserved pyproject", FLBackend.FLOWER, lambda: {**FLOWER_STANDARD, "pyproject.toml": b"x"},
     ReservedFileError, "pyproject.toml"),
    ("control character in a name", FLBackend.NVFLARE, lambda: {**NVFLARE_STANDARD, "bad\x07name.py": b"x"},
     UnsafePathError, "control character"),
    ("only dotfiles", FLBackend.NVFLARE, lambda: {".env": b"A=1", ".git/HEAD": b"ref"}, EmptyModelError, "no files"),
    ("only caches", FLBackend.FLOWER, lambda: {"__pycache__/m.pyc": b"\0", "uv.lock": b""}, EmptyModelError,
     "no files"),
    ("empty model folder", FLBackend.NVFLARE, lambda: {}, EmptyModelError, "no files"),
]


@pytest.mark.parametrize(
    ("backend", "files", "error", "message"),
    [pytest.param(b, f, e, m, id=name) for name, b, f, e, m in BAD_UPLOADS],
)
def test_bad_upload_gives_its_error_and_leaves_destination_untouched(
    store: BundleStore, backend: FLBackend, files: Callable[[], dict[str, bytes]], error: type, message: str
) -> None:
    model_id = str(uuid.uuid4())
    store.client.put_object(Bucket=store.bundle_bucket, Key=f"{model_id}/previous.txt", Body=b"previous bundle")
    upload(store, model_id, files())
    with pytest.raises(error, match=message) as info:
        store.bundle(model_id, backend)
    assert isinstance(info.value, BundleError)
    assert list(list_keys(store.client, store.bundle_bucket, f"{model_id}/")) == [f"{model_id}/previous.txt"]
    assert read(store, store.bundle_bucket, f"{model_id}/previous.txt") == b"previous bundle"


@pytest.mark.parametrize("model_id", ["../victim", "a/b", "..", ""])
def test_model_id_cannot_escape_its_prefix(store: BundleStore, model_id: str) -> None:
    store.client.put_object(Bucket=store.bundle_bucket, Key="victim/keep.txt", Body=b"keep")
    with pytest.raises(UnsafePathError):
        store.bundle(model_id, FLBackend.NVFLARE)
    assert read(store, store.bundle_bucket, "victim/keep.txt") == b"keep"


def test_presigned_urls_download_identical_bytes_and_expire(
    store: BundleStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model_id = str(uuid.uuid4())
    upload(store, model_id, NVFLARE_STANDARD)
    result = store.bundle(model_id, FLBackend.NVFLARE)
    urls = store.presign(result.keys)
    assert len(urls) == len(result.keys)
    assert "presigned" in caplog.text, "the presign step is logged (without its URLs' secrets)"
    for key, url in zip(result.keys, urls, strict=True):
        assert "X-Amz-Signature=" in url
        assert httpx.get(url).content == read(store, store.bundle_bucket, key)
    # X-Amz-Date has whole seconds, so a URL lives between ttl-1 and ttl seconds
    short = store.presign(result.keys[:1], ttl_seconds=4)[0]
    assert httpx.get(short).status_code == 200
    wait_until(lambda: httpx.get(short).status_code == 403, timeout=20, what="the presigned URL to expire")
    # the whole log, including boto3's DEBUG output and httpx's request lines for the downloads above
    assert "HTTP Request: GET" in caplog.text
    assert "X-Amz-Signature" not in caplog.text and "X-Amz-Credential" not in caplog.text


def test_bundle_from_synced_s3_templates(store: BundleStore, s3_server: LocalS3) -> None:
    base_bucket = f"base-{uuid.uuid4().hex[:8]}"
    store.client.create_bucket(Bucket=base_bucket)
    written = sync_templates(store.client, f"s3://{base_bucket}/fl-apps")
    assert "fl-apps/nvflare/standard/meta.json" in written
    from_s3 = BundleStore(store.client, model_bucket=store.model_bucket, bundle_bucket=store.bundle_bucket,
                          base_app_source=f"s3://{base_bucket}/fl-apps")
    model_id = str(uuid.uuid4())
    upload(store, model_id, NVFLARE_STANDARD)
    from_s3.bundle(model_id, FLBackend.NVFLARE)
    expected = expected_bundle(FLBackend.NVFLARE, JobType.STANDARD, NVFLARE_STANDARD)
    for rel, body in expected.items():
        assert read(store, store.bundle_bucket, f"{model_id}/{rel}") == body, rel
    meta = json.loads(read(store, store.bundle_bucket, f"{model_id}/meta.json"))
    assert "app_client" in meta["deploy_map"]


def test_bundle_from_a_local_folder_in_flips_shape(store: BundleStore, tmp_path: Path) -> None:
    """A net's base applications in a local folder laid out as FLIP's FL_APP_BASE_DIR (``nvflare/<job_type>/app/``,
    ``nvflare/required_files.json``): bundled in the single-app layout, the template's own server config (here
    declaring FLIP's components) and the model's files in ``app/custom/``; a README beside ``app/`` is left out."""
    folder = write_templates(tmp_path / "fl-apps", {**flip_shaped_templates(), "nvflare/standard/README.md": b"#"})
    local = BundleStore(store.client, model_bucket=store.model_bucket, bundle_bucket=store.bundle_bucket,
                        base_app_source=str(folder))
    model_id = str(uuid.uuid4())
    upload(store, model_id, NVFLARE_STANDARD)
    result = local.bundle(model_id, FLBackend.NVFLARE, NvflareLayout.APP)
    assert "README.md" in result.plan.dropped and not any(k.endswith("meta.json") for k in result.keys)
    configs = local.server_configs(result)
    assert list(configs) == ["app/config/config_fed_server.json"]
    assert configs["app/config/config_fed_server.json"] == (
        folder / "nvflare/standard/app/config/config_fed_server.json").read_bytes()
    assert read(store, store.bundle_bucket, f"{model_id}/app/custom/trainer.py") == NVFLARE_STANDARD["trainer.py"]
    assert missing_flip_components(configs) == ()


def test_a_local_template_folder_that_is_missing_or_holds_a_symlink_is_refused(store: BundleStore,
                                                                              tmp_path: Path) -> None:
    model_id = str(uuid.uuid4())
    upload(store, model_id, NVFLARE_STANDARD)
    missing = BundleStore(store.client, model_bucket=store.model_bucket, bundle_bucket=store.bundle_bucket,
                          base_app_source=str(tmp_path / "nowhere"))
    with pytest.raises(TemplateSourceError, match=f"the base application folder {tmp_path / 'nowhere'} does not "
                                                  "exist"):
        missing.bundle(model_id, FLBackend.NVFLARE)
    with pytest.raises(TemplateSourceError, match="does not exist"):
        missing.check(model_id), "a source that cannot be read refuses no model: the check cannot be made"
    folder = write_templates(tmp_path / "fl-apps", flip_shaped_templates())
    (tmp_path / "secret.txt").write_text("not for the bundle")
    (folder / "nvflare/standard/app/custom/leak.txt").symlink_to(tmp_path / "secret.txt")
    linked = BundleStore(store.client, model_bucket=store.model_bucket, bundle_bucket=store.bundle_bucket,
                         base_app_source=str(folder))
    with pytest.raises(TemplateSourceError, match="refusing symlinks in the base application folder .*: "
                                                  "app/custom/leak.txt"):
        linked.bundle(model_id, FLBackend.NVFLARE)
    assert not list_keys(store.client, store.bundle_bucket, f"{model_id}/"), "nothing was written"


def test_a_backend_suits_a_model_only_if_every_template_source_its_nets_use_takes_it(
        store: BundleStore, tmp_path: Path) -> None:
    """One NVFlare net bundles from the package, another from a folder holding only a standard template: a standard
    model suits NVFlare, an evaluation model does not, and the problem names the folder."""
    folder = write_templates(tmp_path / "fl-apps", {k: v for k, v in flip_shaped_templates().items()
                                                    if "/evaluation/" not in k})
    sources = {FLBackend.NVFLARE: ("package", str(folder)), FLBackend.FLOWER: ("package",)}
    standard, evaluation = str(uuid.uuid4()), str(uuid.uuid4())
    upload(store, standard, NVFLARE_STANDARD)
    upload(store, evaluation, NVFLARE_EVALUATION)
    assert store.check(standard, sources=sources).backends == {FLBackend.NVFLARE}
    [fit] = store.check(evaluation, (FLBackend.NVFLARE,), sources=sources).fits
    assert fit.problems == (f"no nvflare base application for job type 'evaluation' (base applications in "
                            f"{folder})",)
    assert store.check(evaluation, (FLBackend.NVFLARE,)).backends == {FLBackend.NVFLARE}, "the package alone"
    bad = {**NVFLARE_STANDARD}
    del bad["trainer.py"]
    unfit = str(uuid.uuid4())
    upload(store, unfit, bad)
    [fit] = store.check(unfit, (FLBackend.NVFLARE,), sources=sources).fits
    assert fit.problems == ("Missing required files for job type standard on nvflare: trainer.py",), \
        "a problem every source shares is named once"
