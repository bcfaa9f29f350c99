"""Which backends waiting models' files suit, read from S3 within a time budget: what the queue sensor needs to
claim in order, and a Launchpad run to keep that order."""

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.model_check import ModelCheck
from flip_pipelines.domain.retry import is_transient

if TYPE_CHECKING:
    import dagster as dg

    from flip_pipelines.resources.storage import FlipStorage

CHECK_BUDGET_SECONDS = 20.0  # S3 checks stop here, well inside Dagster's 60 s sensor timeout


def check_models(storage: "FlipStorage", model_ids: list[uuid.UUID], log: "dg.DagsterLogManager",
                 sources: Mapping[FLBackend, Sequence[str]] | None = None,
                 budget_seconds: float = CHECK_BUDGET_SECONDS) -> dict[uuid.UUID, ModelCheck]:
    """Which backends each waiting model's files suit (object listing + config.json) with the base applications
    of each backend's nets (``sources``, ``FlipStorage.base_app_sources``), within the budget.

    A model whose check failed is left out and its jobs wait: a passing S3 problem (``domain.retry``) is tried
    again next time, a refusal (of S3, or an unusable base application source) is logged as an error for people to
    fix; neither retires a job."""
    store = storage.bundle_store()
    deadline = time.monotonic() + budget_seconds
    checks: dict[uuid.UUID, ModelCheck] = {}
    for model_id in model_ids:
        if time.monotonic() > deadline:
            log.warning(f"checked {len(checks)} of {len(model_ids)} waiting models within the time budget")
            break
        try:
            checks[model_id] = store.check(str(model_id), sources=sources)
        except Exception as exc:  # the jobs wait either way; only people can fix a refusal
            if is_transient(exc):
                log.warning(f"could not check model {model_id} this time, trying again later: {exc}")
            else:
                log.error(f"could not check model {model_id} (its files or a base application source), its jobs "
                          f"wait until that is fixed: {exc}")
    return checks
