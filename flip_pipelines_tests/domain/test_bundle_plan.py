"""Bundle planning rules, without I/O."""

import pytest

from flip_pipelines.domain.bundle import (
    BundleError,
    EmptyModelError,
    InvalidModelConfigError,
    JobType,
    MissingRequiredFilesError,
    ReservedFileError,
    UnknownJobTypeError,
    UnsafePathError,
    job_type_from_config,
    normalise_job_type,
    plan_flower_bundle,
    plan_nvflare_bundle,
)
from flip_pipelines.domain.enums import FLBackend

NVFLARE_TEMPLATE = [
    "meta.json",
    "app_server/config/config_fed_server.json",
    "app_server/custom/flip_persistor.py",
    "app_client/config/config_fed_client.json",
    "app_client/custom/flip_executor.py",
]
STANDARD = ["trainer.py", "validator.py", "config.json", "models.py"]


def test_nvflare_copies_template_and_puts_each_user_file_in_every_app() -> None:
    plan = plan_nvflare_bundle(NVFLARE_TEMPLATE, [*STANDARD, "lib/util.py"], JobType.STANDARD)
    dests = set(plan.dest_keys)
    assert set(NVFLARE_TEMPLATE) <= dests
    for app in ("app_server", "app_client"):
        assert {f"{app}/custom/{f}" for f in [*STANDARD, "lib/util.py"]} <= dests
    assert len(plan.steps) == len(NVFLARE_TEMPLATE) + 2 * 5
    assert plan.backend == FLBackend.NVFLARE and plan.job_type == JobType.STANDARD


def test_nvflare_user_meta_json_goes_to_root_once() -> None:
    template = [k for k in NVFLARE_TEMPLATE if k != "meta.json"]
    plan = plan_nvflare_bundle(template, [*STANDARD, "meta.json"], JobType.STANDARD)
    assert [s.dest for s in plan.steps if s.source == "meta.json"] == ["meta.json"]


def test_nvflare_single_app_folder_and_disallowed_template_paths() -> None:
    template = ["app/config/config_fed_server.json", "app/custom/x.py", "README.md", "scripts/run.sh"]
    plan = plan_nvflare_bundle(template, STANDARD, JobType.STANDARD)
    assert "README.md" in plan.dropped and "scripts/run.sh" in plan.dropped
    assert "app/custom/trainer.py" in plan.dest_keys and "README.md" not in plan.dest_keys


def test_flower_flat_layout() -> None:
    plan = plan_flower_bundle(["pyproject.toml", "server_app.py"], ["client_app.py", "models.py", "config.json",
                                                                     "utils/helpers.py"], JobType.STANDARD)
    assert sorted(plan.dest_keys) == sorted(
        ["pyproject.toml", "server_app.py", "client_app.py", "models.py", "config.json", "utils/helpers.py"]
    )


def test_dropped_files_are_listed_not_bundled() -> None:
    files = [*STANDARD, ".env", ".git/config", "__pycache__/models.cpython-311.pyc", "old.pyc", "uv.lock",
             "sub/.hidden.py"]
    plan = plan_nvflare_bundle(NVFLARE_TEMPLATE, files, JobType.STANDARD)
    assert set(plan.dropped) == set(files) - set(STANDARD)
    assert not any(".env" in d or "uv.lock" in d or d.endswith(".pyc") for d in plan.dest_keys)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, JobType.STANDARD), ("", JobType.STANDARD), ("standard", JobType.STANDARD),
     ("standard_client_api", JobType.STANDARD), ("Evaluation", JobType.EVALUATION),
     ("evaluation_client_api", JobType.EVALUATION), ("fed-opt", JobType.FED_OPT)],
)
def test_job_type_aliases(raw: str | None, expected: JobType) -> None:
    assert normalise_job_type(raw) == expected


def test_job_type_errors() -> None:
    with pytest.raises(UnknownJobTypeError, match="'segmentation'"):
        job_type_from_config(b'{"job_type": "segmentation"}')
    with pytest.raises(UnknownJobTypeError, match="must be a string"):
        job_type_from_config(b'{"job_type": 3}')
    with pytest.raises(InvalidModelConfigError, match="not valid JSON"):
        job_type_from_config(b"{nope")
    with pytest.raises(InvalidModelConfigError, match="JSON object"):
        job_type_from_config(b"[1, 2]")
    assert job_type_from_config(b"{}") == JobType.STANDARD


def test_missing_required_files_are_all_named() -> None:
    with pytest.raises(MissingRequiredFilesError, match="trainer.py, validator.py") as info:
        plan_nvflare_bundle(NVFLARE_TEMPLATE, ["config.json", "models.py"], JobType.STANDARD)
    assert isinstance(info.value, FileNotFoundError)


def test_reserved_names_are_reported() -> None:
    with pytest.raises(ReservedFileError, match="flip_executor.py"):
        plan_nvflare_bundle(NVFLARE_TEMPLATE, [*STANDARD, "flip_executor.py"], JobType.STANDARD)
    with pytest.raises(ReservedFileError, match="meta.json"):
        plan_nvflare_bundle(NVFLARE_TEMPLATE, [*STANDARD, "meta.json"], JobType.STANDARD)
    with pytest.raises(ReservedFileError, match="server_app.py"):
        plan_flower_bundle(["pyproject.toml", "server_app.py"], ["client_app.py", "models.py", "config.json",
                                                                 "server_app.py"], JobType.STANDARD)


@pytest.mark.parametrize(
    "key", ["../escape.py", "a/../../b.py", "/etc/passwd", "a\\b.py", "bad\x01name.py", "a//b.py", "./x.py"]
)
def test_unsafe_keys_are_rejected(key: str) -> None:
    with pytest.raises(UnsafePathError):
        plan_nvflare_bundle(NVFLARE_TEMPLATE, [*STANDARD, key], JobType.STANDARD)


def test_empty_model_and_broken_templates() -> None:
    with pytest.raises(EmptyModelError):
        plan_nvflare_bundle(NVFLARE_TEMPLATE, [".DS_Store"], JobType.STANDARD)
    with pytest.raises(BundleError, match="no app folder"):
        plan_nvflare_bundle(["meta.json"], STANDARD, JobType.STANDARD)
    with pytest.raises(BundleError, match="pyproject.toml and server_app.py"):
        plan_flower_bundle(["pyproject.toml"], ["client_app.py", "models.py", "config.json"], JobType.STANDARD)
    with pytest.raises(UnknownJobTypeError, match="no nvflare base application"):
        plan_nvflare_bundle(NVFLARE_TEMPLATE, STANDARD, JobType.FED_OPT)
