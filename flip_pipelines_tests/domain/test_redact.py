import logging

from flip_pipelines.domain.redact import RedactingFilter, redact_text, redact_url

URL = "http://127.0.0.1:9000/b/m/app/custom/x.py?X-Amz-Algorithm=AWS4&X-Amz-Signature=FAKE-signature-for-redaction-tests"


def test_redact_url_and_text() -> None:
    assert redact_url(URL) == "http://127.0.0.1:9000/b/m/app/custom/x.py"
    text = f"failed to fetch {URL}: 403; header Authorization: Bearer s3cr3t.t0ken"
    redacted = redact_text(text)
    assert "X-Amz-Signature" not in redacted and "s3cr3t" not in redacted
    assert "http://127.0.0.1:9000/b/m/app/custom/x.py?<redacted>" in redacted


def test_redacting_filter_rewrites_records() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "got %s", (URL,), None)
    assert RedactingFilter().filter(record)
    assert "X-Amz-Signature" not in record.getMessage()


def test_bare_amz_parameters_are_redacted() -> None:
    text = "GET\n/b/k\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2026&X-Amz-Signature=ab12"
    redacted = redact_text(text)
    assert "AKIA" not in redacted and "ab12" not in redacted and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in redacted
