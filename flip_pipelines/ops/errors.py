"""How an op fails: the one retry policy (``domain.retry``) in Dagster's terms."""

import dagster as dg

from flip_pipelines.domain.retry import MAX_RETRIES, backoff_seconds, is_transient


def op_error(context: dg.OpExecutionContext, exc: Exception, doing: str) -> Exception:
    """The exception an op raises for ``exc``: a retry with exponential backoff when the failure may pass (S3 or
    FL API down, throttled, timing out), otherwise a Failure whose first line says what failed and why, never
    retried (4xx, bad bundles, validation errors)."""
    if is_transient(exc):
        wait = backoff_seconds(context.retry_number)
        context.log.warning(f"{doing} failed, retrying in {wait:.0f}s: {exc}")
        return dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait)
    return dg.Failure(f"{doing} failed: {exc}", allow_retries=False)
