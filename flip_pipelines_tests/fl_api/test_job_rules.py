"""FL-API input rules without servers: bundle URL checks and NVFlare config validation."""

import pytest

from flip_pipelines.fl_api.downloads import bundle_relative_path, check_model_id, plan_downloads
from flip_pipelines.fl_api.errors import BadRequestError
from flip_pipelines.fl_api.model_config import validate_model_config

ORIGINS = frozenset({"http://127.0.0.1:9000"})
SIG = "?X-Amz-Signature=deadbeef"


@pytest.mark.parametrize(
    ("url", "expected"),
    [("http://127.0.0.1:9000/bucket/m1/meta.json" + SIG, "meta.json"),
     ("http://127.0.0.1:9000/bucket/m1/app_client/custom/lib/x.py" + SIG, "app_client/custom/lib/x.py"),
     ("http://127.0.0.1:9000/m1/app/config/c.json", "app/config/c.json")],
)
def test_bundle_paths_inside_the_model_folder(url: str, expected: str) -> None:
    assert bundle_relative_path(url, "m1", ORIGINS) == expected


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1:9000/b/m1/x.py", "http://evil:9000/b/m1/x.py", "ftp://127.0.0.1:9000/b/m1/x.py",
     "http://127.0.0.1:9000/b/m1/../m2/x.py", "http://127.0.0.1:9000/b/m1/%2E%2E/x.py",
     "http://127.0.0.1:9000/b/../m1/x.py", "http://127.0.0.1:9000/b/m1//etc/passwd", "http://127.0.0.1:9000/b/m2/x.py",
     "http://127.0.0.1:9000/b/m1/", "http://127.0.0.1:9000/b/m1/a%5Cb.py"],
)
def test_unsafe_bundle_urls_are_rejected_without_their_secrets(url: str) -> None:
    with pytest.raises(BadRequestError) as info:
        bundle_relative_path(url + SIG, "m1", ORIGINS)
    assert "deadbeef" not in str(info.value)


def test_duplicate_targets_and_model_ids() -> None:
    with pytest.raises(BadRequestError, match="same file"):
        plan_downloads(["http://127.0.0.1:9000/b/m1/x.py", "http://127.0.0.1:9000/c/m1/x.py"], "m1", ORIGINS)
    for bad in ("../x", "a/b", "", ".", "x" * 200, "has space"):
        with pytest.raises(BadRequestError):
            check_model_id(bad)
    assert check_model_id("4f1c-model.v2") == "4f1c-model.v2"


@pytest.mark.parametrize(
    ("config", "message"),
    [([], "JSON object"), ({"GLOBAL_ROUNDS": 0}, "GLOBAL_ROUNDS"), ({"LOCAL_ROUNDS": 1001}, "LOCAL_ROUNDS"),
     ({"GLOBAL_ROUNDS": "3"}, "GLOBAL_ROUNDS"), ({"GLOBAL_ROUNDS": True}, "GLOBAL_ROUNDS"),
     ({"AGGREGATOR": "Median"}, "AGGREGATOR"), ({"IGNORE_RESULT_ERROR": "yes"}, "IGNORE_RESULT_ERROR")],
)
def test_model_config_validation(config: object, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        validate_model_config(config, default_rounds=1)


def test_model_config_defaults_rounds() -> None:
    assert validate_model_config({}, default_rounds=2) == {"LOCAL_ROUNDS": 2, "GLOBAL_ROUNDS": 2}
