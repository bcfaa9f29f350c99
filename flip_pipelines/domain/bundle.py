"""Bundle planning: which base-application and model files go where, decided without any I/O.

A plan is a complete list of copy steps (source → destination key under ``<model_id>/``) or a clear error. All
validation happens here, before anything is written, so a bad model upload never touches the destination.
"""

import json
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import PurePosixPath

from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.errors import FlipError


class JobType(StrEnum):
    STANDARD = "standard"
    EVALUATION = "evaluation"
    FED_OPT = "fed_opt"
    DIFFUSION_MODEL = "diffusion_model"


DEFAULT_JOB_TYPE = JobType.STANDARD

# Job types each backend ships a base application for.
SUPPORTED_JOB_TYPES: dict[FLBackend, frozenset[JobType]] = {
    FLBackend.NVFLARE: frozenset({JobType.STANDARD, JobType.EVALUATION}),
    FLBackend.FLOWER: frozenset({JobType.STANDARD, JobType.EVALUATION}),
}

# Files the model owner must upload, per backend and job type (FLIP's required_files.json).
REQUIRED_FILES: dict[FLBackend, dict[JobType, tuple[str, ...]]] = {
    FLBackend.NVFLARE: {
        JobType.STANDARD: ("trainer.py", "validator.py", "config.json", "models.py"),
        JobType.EVALUATION: ("config.json", "evaluator.py"),
    },
    FLBackend.FLOWER: {
        JobType.STANDARD: ("client_app.py", "models.py", "config.json"),
        JobType.EVALUATION: ("client_app.py", "models.py", "config.json"),
    },
}

# The only template paths a base application may contribute (FLIP #1008 allow-list).
NVFLARE_TEMPLATE_ROOT_FILES = frozenset({"meta.json"})
FLOWER_TEMPLATE_ROOT_FILES = frozenset({"pyproject.toml", "server_app.py"})

_APP_FOLDER = re.compile(r"^app(_[A-Za-z0-9][A-Za-z0-9_-]*)?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BundleError(FlipError):
    """The model's files cannot be bundled; nothing was written."""


class UnknownJobTypeError(BundleError):
    pass


class InvalidModelConfigError(BundleError):
    """``config.json`` is not a JSON object."""


class MissingRequiredFilesError(BundleError, FileNotFoundError):
    """Required model files are missing (all are named)."""


class ReservedFileError(BundleError):
    """Model files would overwrite base-application files (all are named)."""


class UnsafePathError(BundleError):
    """A key would escape the model's folder or is not a plain relative path."""


class EmptyModelError(BundleError):
    pass


def normalise_job_type(raw: object) -> JobType:
    """``config.json``'s ``job_type``: unset means standard; ``*_client_api`` aliases map to the plain names.

    Raises:
        UnknownJobTypeError: naming the value and the known job types.
    """
    if raw is None or raw == "":
        return DEFAULT_JOB_TYPE
    if not isinstance(raw, str):
        raise UnknownJobTypeError(f"job_type must be a string, not {type(raw).__name__}")
    text = raw.strip().lower().replace("-", "_")
    text = text.removesuffix("_client_api")
    try:
        return JobType(text)
    except ValueError:
        known = ", ".join(t.value for t in JobType)
        raise UnknownJobTypeError(f"unknown job_type {raw!r}: expected one of {known}") from None


def job_type_from_config(config_bytes: bytes) -> JobType:
    """Read the job type from a model's ``config.json`` contents.

    Raises:
        InvalidModelConfigError: not UTF-8 JSON, or not an object.
        UnknownJobTypeError: unknown ``job_type``.
    """
    try:
        config = json.loads(config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidModelConfigError(f"config.json is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise InvalidModelConfigError(f"config.json must hold a JSON object, not {type(config).__name__}")
    return normalise_job_type(config.get("job_type"))


def check_relative_key(key: str) -> str:
    """A key relative to a model or template folder, made of plain path segments.

    Raises:
        UnsafePathError: absolute, ``..``/``.``/empty segments, backslashes or control characters.
    """
    if not key:
        raise UnsafePathError("empty file name")
    if key.startswith("/"):
        raise UnsafePathError(f"{key!r} is an absolute path")
    if "\\" in key:
        raise UnsafePathError(f"{key!r} contains a backslash")
    if _CONTROL.search(key):
        raise UnsafePathError(f"{key!r} contains a control character")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePathError(f"{key!r} has an empty, '.' or '..' path segment")
    return key


def is_dropped(key: str) -> bool:
    """Files never bundled: dotfiles and dot-folders, ``__pycache__``, ``*.pyc``, ``uv.lock``."""
    parts = PurePosixPath(key).parts
    return (
        any(p.startswith(".") or p == "__pycache__" for p in parts)
        or key.endswith(".pyc")
        or parts[-1] == "uv.lock"
    )


@dataclass(frozen=True)
class CopyStep:
    """Copy ``source`` (a key relative to the template or model folder) to ``dest`` (relative to the bundle)."""

    origin: str  # "template" or "model"
    source: str
    dest: str


@dataclass(frozen=True)
class BundlePlan:
    backend: FLBackend
    job_type: JobType
    steps: tuple[CopyStep, ...]
    dropped: tuple[str, ...]  # model or template files left out on purpose (dotfiles, caches, ...)

    @property
    def dest_keys(self) -> tuple[str, ...]:
        return tuple(s.dest for s in self.steps)

    def summary(self) -> str:
        counts = {o: sum(1 for s in self.steps if s.origin == o) for o in ("template", "model")}
        return (
            f"{self.backend.value}/{self.job_type.value} bundle: {len(self.steps)} files "
            f"({counts['template']} from the base application, {counts['model']} from the model), "
            f"{len(self.dropped)} dropped"
        )


def _split_files(files: list[str], *, what: str, problems: list[BundleError]) -> tuple[list[str], list[str]]:
    """Files kept and files dropped on purpose; unsafe keys and duplicates go to ``problems``."""
    safe = []
    for key in files:
        try:
            safe.append(check_relative_key(key))
        except UnsafePathError as exc:
            problems.append(exc)
    kept = sorted(k for k in safe if not is_dropped(k))
    dropped = sorted(k for k in safe if is_dropped(k))
    if len(set(kept)) != len(kept):
        problems.append(BundleError(f"{what} lists a file twice"))
    return kept, dropped


def _required_problems(backend: FLBackend, job_type: JobType, model_files: list[str]) -> list[BundleError]:
    if job_type not in SUPPORTED_JOB_TYPES[backend]:
        return [UnknownJobTypeError(f"no {backend.value} base application for job type {job_type.value!r}")]
    missing = [f for f in REQUIRED_FILES[backend][job_type] if f not in model_files]
    if missing:
        return [MissingRequiredFilesError(
            f"Missing required files for job type {job_type.value} on {backend.value}: {', '.join(missing)}"
        )]
    return []


def _reserved_problems(steps: list[CopyStep], template_keys: set[str]) -> list[BundleError]:
    clashes = sorted({s.source for s in steps if s.origin == "model" and s.dest in template_keys})
    if clashes:
        return [ReservedFileError(
            f"model file(s) would overwrite base-application files: {', '.join(clashes)} (rename them)"
        )]
    return []


@dataclass(frozen=True)
class BundleDraft:
    """A plan with every problem found on the way: bundling needs no problem; ``models check`` shows them all."""

    plan: BundlePlan
    problems: tuple[BundleError, ...]

    def plan_or_raise(self) -> BundlePlan:
        """Raises: the first problem found (checks run in a fixed order: paths, layout, required, reserved)."""
        if self.problems:
            raise self.problems[0]
        return self.plan


def draft_nvflare_bundle(template_files: list[str], model_files: list[str], job_type: JobType) -> BundleDraft:
    """NVFlare: the template 1:1; a user ``meta.json`` to the root; every other user file into EACH
    ``app*/custom/<path>``."""
    problems: list[BundleError] = []
    template, template_dropped = _split_files(template_files, what="the base application", problems=problems)
    allowed = [k for k in template if k in NVFLARE_TEMPLATE_ROOT_FILES or _APP_FOLDER.match(k.split("/")[0])]
    template_dropped += [k for k in template if k not in allowed]
    app_folders = sorted({k.split("/")[0] for k in allowed if "/" in k and _APP_FOLDER.match(k.split("/")[0])})
    if not app_folders:
        problems.append(BundleError("the NVFlare base application has no app folder (app/ or app_*/)"))
    model, model_dropped = _split_files(model_files, what="the model", problems=problems)
    if not model:
        problems.append(EmptyModelError("the model folder holds no files to bundle"))
    problems += _required_problems(FLBackend.NVFLARE, job_type, model)
    steps = [CopyStep("template", k, k) for k in allowed]
    for key in model:
        if key == "meta.json":
            steps.append(CopyStep("model", key, "meta.json"))
        else:
            steps += [CopyStep("model", key, f"{app}/custom/{key}") for app in app_folders]
    problems += _reserved_problems(steps, set(allowed))
    plan = BundlePlan(FLBackend.NVFLARE, job_type, tuple(steps), tuple(sorted(template_dropped + model_dropped)))
    return BundleDraft(plan, tuple(problems))


def draft_flower_bundle(template_files: list[str], model_files: list[str], job_type: JobType) -> BundleDraft:
    """Flower: the template's ``pyproject.toml`` and ``server_app.py`` plus every user file, in the flat FAB
    layout (the FAB root is the bundle root, so user code and the ServerApp can ``import models``)."""
    problems: list[BundleError] = []
    template, template_dropped = _split_files(template_files, what="the base application", problems=problems)
    allowed = [k for k in template if k in FLOWER_TEMPLATE_ROOT_FILES]
    template_dropped += [k for k in template if k not in allowed]
    if set(allowed) != FLOWER_TEMPLATE_ROOT_FILES:
        problems.append(BundleError("the Flower base application needs pyproject.toml and server_app.py"))
    model, model_dropped = _split_files(model_files, what="the model", problems=problems)
    if not model:
        problems.append(EmptyModelError("the model folder holds no files to bundle"))
    problems += _required_problems(FLBackend.FLOWER, job_type, model)
    steps = [CopyStep("template", k, k) for k in allowed] + [CopyStep("model", k, k) for k in model]
    problems += _reserved_problems(steps, set(allowed))
    plan = BundlePlan(FLBackend.FLOWER, job_type, tuple(steps), tuple(sorted(template_dropped + model_dropped)))
    return BundleDraft(plan, tuple(problems))


class NvflareLayout(StrEnum):
    """How an NVFlare bundle's app folders are laid out for the net's FL API.

    ``split``: the base application's ``app_server/`` and ``app_client/`` as they are, with ``meta.json`` (this
    project's FL API). ``app``: one ``app/`` folder holding both configs and all custom code, no ``meta.json``
    (FLIP's NVFlare FL API checks every app folder for ``config_fed_client.json`` and ``config_fed_server.json``
    and writes ``meta.json`` itself).
    """

    SPLIT = "split"
    APP = "app"


def as_single_app(plan: BundlePlan) -> BundlePlan:
    """The same NVFlare bundle in the ``app`` layout: every ``app*/`` folder merged into ``app/``, the base
    application's ``meta.json`` left out, the per-folder copies of each model file kept once.

    Raises:
        BundleError: two different files would land on the same key.
    """
    steps: dict[str, CopyStep] = {}
    for step in plan.steps:
        if step.origin == "template" and step.dest in NVFLARE_TEMPLATE_ROOT_FILES:
            continue
        head, _, rest = step.dest.partition("/")
        dest = f"app/{rest}" if rest and _APP_FOLDER.match(head) else step.dest
        merged = CopyStep(step.origin, step.source, dest)
        clash = steps.get(dest)
        if clash is not None and (clash.origin, clash.source) != (merged.origin, merged.source):
            raise BundleError(f"the single-app NVFlare layout puts {clash.source} and {step.source} both at {dest}")
        steps[dest] = merged
    return replace(plan, steps=tuple(steps.values()))


def plan_nvflare_bundle(template_files: list[str], model_files: list[str], job_type: JobType) -> BundlePlan:
    """Raises: UnsafePathError, EmptyModelError, MissingRequiredFilesError, ReservedFileError, BundleError."""
    return draft_nvflare_bundle(template_files, model_files, job_type).plan_or_raise()


def plan_flower_bundle(template_files: list[str], model_files: list[str], job_type: JobType) -> BundlePlan:
    """Raises: UnsafePathError, EmptyModelError, MissingRequiredFilesError, ReservedFileError, BundleError."""
    return draft_flower_bundle(template_files, model_files, job_type).plan_or_raise()


def draft_bundle(
    backend: FLBackend, template_files: list[str], model_files: list[str], job_type: JobType
) -> BundleDraft:
    drafter = draft_nvflare_bundle if backend == FLBackend.NVFLARE else draft_flower_bundle
    return drafter(template_files, model_files, job_type)


def plan_bundle(
    backend: FLBackend, template_files: list[str], model_files: list[str], job_type: JobType
) -> BundlePlan:
    """Raises: the first ``BundleError`` the draft found."""
    return draft_bundle(backend, template_files, model_files, job_type).plan_or_raise()
