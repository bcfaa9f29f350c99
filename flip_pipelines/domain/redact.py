"""Keep presigned-URL signatures and tokens out of logs, Dagster events and error messages."""

import logging
import re
from urllib.parse import urlsplit, urlunsplit

_URL_WITH_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_AMZ_PARAM = re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"'<>]+")


def redact_url(url: str) -> str:
    """The URL without its query string (where a presigned URL carries its signature and credential)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def redact_text(text: str) -> str:
    """``text`` with every http(s) URL's query string and every bearer token replaced by ``<redacted>``."""
    text = _URL_WITH_QUERY.sub(lambda m: f"{m.group(1)}?<redacted>", text)
    text = _AMZ_PARAM.sub(lambda m: f"{m.group(1)}<redacted>", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}<redacted>", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URLs' query strings and bearer tokens from every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


# Libraries that log request URLs (httpx logs "HTTP Request: GET <url>" at INFO, query string included).
URL_LOGGING_LOGGERS = ("httpx", "httpcore", "urllib3.connectionpool", "botocore", "botocore.endpoint", "s3transfer")


# botocore.auth's DEBUG records are the canonical request, string to sign and the signature itself.
SIGNING_LOGGERS = ("botocore.auth",)


class DropFilter(logging.Filter):
    """Drops every record of the logger it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


def install_log_redaction(logger_names: tuple[str, ...] = URL_LOGGING_LOGGERS) -> None:
    """Redact URLs in the loggers that print requests, and silence the one that prints signatures (idempotent)."""
    for name in logger_names:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(RedactingFilter())
    for name in SIGNING_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, DropFilter) for f in target.filters):
            target.addFilter(DropFilter())
