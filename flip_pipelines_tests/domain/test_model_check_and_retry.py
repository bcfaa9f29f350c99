"""Which backends a model suits (every reason named), and which failures the one retry policy retries."""

import json

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from flip_pipelines.domain.bundle import JobType
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.errors import InvalidInputError
from flip_pipelines.domain.model_check import check_model
from flip_pipelines.domain.retry import backoff_seconds, is_transient
from flip_pipelines.fl_api.client import FLApiContractError, FLApiError, FLApiNotFoundError, FLApiUnavailableError

TEMPLATES = {
    FLBackend.NVFLARE: ["meta.json", "app/config/config_fed_server.json", "app/custom/flip_executor.py"],
    FLBackend.FLOWER: ["pyproject.toml", "server_app.py"],
}
NVFLARE_FILES = ["trainer.py", "validator.py", "models.py", "config.json"]
FLOWER_FILES = ["client_app.py", "models.py", "config.json"]


def templates(backend: FLBackend, job_type: JobType) -> list[str] | None:
    return TEMPLATES[backend] if job_type in (JobType.STANDARD, JobType.EVALUATION) else None


def config(**values: object) -> bytes:
    return json.dumps(values).encode()


def test_a_model_with_one_backends_files_suits_that_backend_only() -> None:
    check = check_model("m", NVFLARE_FILES, config(GLOBAL_ROUNDS=2), templates)
    assert check.backends == {FLBackend.NVFLARE}
    nvflare, flower = check.fits
    assert nvflare.ok and nvflare.summary.startswith("nvflare/standard bundle")
    assert flower.problems == ("Missing required files for job type standard on flower: client_app.py",)
    assert check.refusal({FLBackend.NVFLARE, FLBackend.FLOWER}) is None
    assert check.refusal({FLBackend.FLOWER}) == (
        "its files suit no registered backend (flower: Missing required files for job type standard on flower: "
        "client_app.py)")


def test_a_model_with_both_sets_of_files_suits_both() -> None:
    check = check_model("m", sorted({*NVFLARE_FILES, *FLOWER_FILES}), config(), templates)
    assert check.backends == {FLBackend.NVFLARE, FLBackend.FLOWER}


def test_every_problem_is_named_not_just_the_first() -> None:
    files = ["trainer.py", "models.py", "config.json", "server_app.py", "../escape.py"]
    check = check_model("m", files, config(GLOBAL_ROUNDS=0, AGGREGATOR="Median"), templates)
    flower = next(f for f in check.fits if f.backend == FLBackend.FLOWER)
    text = "\n".join(flower.problems)
    for expected in ("GLOBAL_ROUNDS must be a whole number", "AGGREGATOR must be one of", "'..'",
                     "client_app.py", "would overwrite base-application files: server_app.py"):
        assert expected in text, text
    assert not check.backends and check.refusal(set()) == "no net is registered"


@pytest.mark.parametrize(("body", "problem"), [
    (b"{not json", "config.json is not valid JSON"),
    (config(job_type="federated_magic"), "unknown job_type 'federated_magic'"),
    (config(job_type="fed_opt"), "no nvflare base application for job type 'fed_opt'"),
])
def test_config_json_problems(body: bytes, problem: str) -> None:
    nvflare = check_model("m", NVFLARE_FILES, body, templates).fits[0]
    assert not nvflare.ok and any(problem in p for p in nvflare.problems), nvflare.problems


def test_a_missing_config_json_is_named_by_the_required_files() -> None:
    nvflare = check_model("m", ["trainer.py", "validator.py", "models.py"], None, templates).fits[0]
    assert nvflare.problems == ("Missing required files for job type standard on nvflare: config.json",)


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "CopyObject")


@pytest.mark.parametrize(("exc", "transient"), [
    (FLApiUnavailableError("503"), True),
    (FLApiNotFoundError("404", 404), False),
    (FLApiError("500", 500), False),
    (FLApiContractError("bad shape"), False),
    (InvalidInputError("bad"), False),
    (_client_error("SlowDown"), True),
    (_client_error("503"), True),
    (_client_error("AccessDenied"), False),
    (_client_error("NoSuchKey"), False),
    (EndpointConnectionError(endpoint_url="http://s3"), True),
    (NoCredentialsError(), False),
    (ConnectionResetError(), True),
    (ValueError("a bug"), False),
])
def test_one_retry_policy_for_s3_and_fl_api_errors(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
