"""The one retry policy: which failures are worth trying again, and how long to wait.

Every op and sensor that talks to S3 or an FL API asks ``is_transient``: a store or service that is down,
overloaded or slow may come back; a refusal (4xx, a bad bundle, a validation error, a contract breach) will be
refused again, so it fails at once with its reason.
"""

from flip_pipelines.domain.errors import FlipError, TransientError

MAX_RETRIES = 3
BASE_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0

TRANSIENT_S3_CODES = frozenset({
    "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed", "Throttling",
    "500", "502", "503", "504",
})


def is_transient(exc: BaseException) -> bool:
    """True for failures that may pass: FL API unreachable or 502/503/504, S3 throttling, 5xx or connection
    errors, network timeouts. False for everything else: refusals (4xx, access denied, no credentials), bad
    input, contract breaches, and every error this project raises on purpose except ``TransientError``."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as S3ConnectionError

    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, FlipError):
        return False
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) in TRANSIENT_S3_CODES
    # endpoint unreachable, connection closed, read timeout: the store may come back (missing credentials won't)
    return isinstance(exc, (S3ConnectionError, HTTPClientError, ConnectionError, TimeoutError))


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff: 1, 2, 4 ... seconds for attempts 0, 1, 2 ..., at most 30."""
    return min(BASE_DELAY_SECONDS * 2**attempt, MAX_DELAY_SECONDS)
