"""Which backends a model's files can train on, and every reason a backend cannot, decided without I/O.

The input is what an object listing and ``config.json`` give (no payload is downloaded): the same facts decide
``flip-pipelines models check``, the refusal at ``enqueue`` and which nets the queue may claim for the model.
"""

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from flip_pipelines.domain.bundle import BundleError, JobType, draft_bundle, normalise_job_type
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.model_config import model_config_problems

TemplateLookup = Callable[[FLBackend, JobType], list[str] | None]


@dataclass(frozen=True)
class BackendFit:
    """One backend's verdict on a model: ``problems`` is empty when the model can train on it."""

    backend: FLBackend
    job_type: JobType | None
    problems: tuple[str, ...]
    summary: str = ""  # the bundle plan's summary when the model fits

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ModelCheck:
    model_id: str
    fits: tuple[BackendFit, ...]

    @property
    def backends(self) -> frozenset[FLBackend]:
        """The backends the model can train on."""
        return frozenset(f.backend for f in self.fits if f.ok)

    def refusal(self, registered: Iterable[FLBackend]) -> str | None:
        """Why the model cannot be queued when nets of ``registered`` backends exist, in one line; None if it can."""
        registered = frozenset(registered)
        if self.backends & registered:
            return None
        if not registered:
            return "no net is registered"
        reasons = "; ".join(f"{f.backend.value}: {', '.join(f.problems)}" for f in self.fits
                            if f.backend in registered)
        if not reasons:
            fitting = ", ".join(sorted(b.value for b in self.backends))
            return f"it suits only {fitting}, and no such net is registered"
        return f"its files suit no registered backend ({reasons})"


def read_model_config(config_bytes: bytes | None) -> tuple[object, list[str]]:
    """``config.json`` parsed, with the problems found reading it (not JSON, broken rules). A missing one reads as
    empty: every job type requires it, so the required-files check names it."""
    if config_bytes is None:
        return {}, []
    try:
        config = json.loads(config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, [f"config.json is not valid JSON: {exc}"]
    return config, model_config_problems(config)


def check_backend(
    backend: FLBackend, model_files: list[str], config_bytes: bytes | None, templates: TemplateLookup,
    source: str = "",
) -> BackendFit:
    """Plan the bundle for ``backend`` (required and reserved files, ``config.json``, base application merge) and
    report every problem, not just the first; ``source`` names where ``templates`` looks, when that matters."""
    config, problems = read_model_config(config_bytes)
    job_type: JobType | None = None
    try:
        job_type = normalise_job_type(config.get("job_type") if isinstance(config, dict) else None)
    except BundleError as exc:
        problems.append(str(exc))
    if job_type is None:
        return BackendFit(backend, None, tuple(problems))
    template = templates(backend, job_type)
    if template is None:
        problems.append(f"no {backend.value} base application for job type {job_type.value!r}"
                        + (f" (base applications in {source})" if source else ""))
        return BackendFit(backend, job_type, tuple(problems))
    draft = draft_bundle(backend, template, model_files, job_type)
    problems += [str(p) for p in draft.problems]
    return BackendFit(backend, job_type, tuple(problems), "" if problems else draft.plan.summary())


def check_backend_everywhere(backend: FLBackend, model_files: list[str], config_bytes: bytes | None,
                             templates: Mapping[str, TemplateLookup], name_sources: bool = True) -> BackendFit:
    """A backend whose nets bundle from several base application sources (``templates``: source → lookup, in
    order) suits the model only if every source's base application takes it: any net of the backend may be
    claimed. A problem every source finds is named once; one the others do not find names its source (a lone
    source is named where it lacks the base application, unless ``name_sources`` is false)."""
    if len(templates) == 1:
        [(source, lookup)] = templates.items()
        return check_backend(backend, model_files, config_bytes, lookup, source if name_sources else "")
    fits = {source: check_backend(backend, model_files, config_bytes, lookup) for source, lookup in templates.items()}
    first = next(iter(fits.values()))
    shared = [p for p in first.problems if all(p in f.problems for f in fits.values())]
    problems = shared + [f"{p} (base applications in {source})" for source, fit in fits.items()
                         for p in fit.problems if p not in shared]
    return BackendFit(backend, first.job_type, tuple(problems), "" if problems else first.summary)


def check_model(model_id: str, model_files: list[str], config_bytes: bytes | None, templates: TemplateLookup,
                backends: Iterable[FLBackend] = tuple(FLBackend)) -> ModelCheck:
    return ModelCheck(model_id, tuple(check_backend(b, model_files, config_bytes, templates) for b in backends))
