"""Keep presigned-URL signatures and tokens out of logs, Dagster events and error messages."""

import logging
import re
from urllib.parse import urlsplit, urlunsplit

_URL_WITH_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact_url(url: str) -> str:
    """The URL without its query string (where a presigned URL carries its signature and credential)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def redact_text(text: str) -> str:
    """``text`` with every http(s) URL's query string and every bearer token replaced by ``<redacted>``."""
    text = _URL_WITH_QUERY.sub(lambda m: f"{m.group(1)}?<redacted>", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}<redacted>", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URLs' query strings and bearer tokens from every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
