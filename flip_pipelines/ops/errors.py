"""How an op fails: the one retry policy (``domain.retry``) in Dagster's terms, and failures a person reads in
one screen — a plain first sentence, the training's net, backend and trusts beside it."""

from collections.abc import Mapping

import dagster as dg

from flip_pipelines.domain.queue import Claim
from flip_pipelines.domain.retry import MAX_RETRIES, backoff_seconds, is_transient


class TrainingFailed(dg.Failure):
    """A training's failure as the run page shows it. Dagster prints an error as Python's traceback does,
    ``<module>.<qualified class name>: <message>``: for ``dg.Failure`` that is
    ``dagster._core.definitions.events.Failure: ...``. A built-in module and a qualified name that reads as words
    make the first line a sentence, "Training failed: Bundling demo-logreg failed: ..."."""


TrainingFailed.__module__ = "builtins"
TrainingFailed.__qualname__ = "Training failed"


def training_metadata(claim: Claim | None) -> dict[str, str]:
    if claim is None:
        return {}
    return {"model": claim.model_name, "net": claim.net_name, "backend": claim.fl_backend.value,
            "trusts": ", ".join(claim.trust_names), "fl_job_id": str(claim.fl_job_id)}


def training_failure(message: str, claim: Claim | None = None,
                     extra: Mapping[str, object] | None = None) -> TrainingFailed:
    """A failure no retry mends: ``message`` is its first line, written as a sentence; the metadata says where
    the training was (net, backend, trusts) and, when the FL server failed, the tail of its log."""
    sentence = message[:1].upper() + message[1:]
    return TrainingFailed(description=sentence, metadata={**training_metadata(claim), **(extra or {})},
                          allow_retries=False)


def op_error(context: dg.OpExecutionContext, exc: Exception, doing: str, claim: Claim | None = None) -> Exception:
    """The exception an op raises for ``exc``: a retry with exponential backoff when the failure may pass (S3 or
    FL API down, throttled, timing out), otherwise a failure whose first line says what failed and why, never
    retried (4xx, bad bundles, validation errors)."""
    if is_transient(exc):
        wait = backoff_seconds(context.retry_number)
        context.log.warning(f"{doing} failed, retrying in {wait:.0f}s: {exc}")
        return dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait)
    return training_failure(f"{doing} failed: {exc}", claim)
