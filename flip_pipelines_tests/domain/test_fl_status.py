import pytest

from flip_pipelines.domain.enums import FLJobStatus
from flip_pipelines.domain.fl_status import normalise_flower_status, normalise_nvflare_status


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("SUBMITTED", "PENDING"), ("APPROVED", "PENDING"), ("DISPATCHED", "PENDING"), ("RUNNING", "RUNNING"),
     ("FINISHED:COMPLETED", "FINISHED"), ("FINISHED:ABORTED", "STOPPED"), ("FINISHED:EXECUTION_EXCEPTION", "FAILED"),
     ("FINISHED:ABNORMAL", "FAILED"), ("FINISHED:CAN_NOT_SCHEDULE", "FAILED"), ("FINISHED:FAILED_TO_RUN", "FAILED"),
     ("FINISHED:ABANDONED", "FAILED"), ("SOMETHING_NEW", "FAILED")],
)
def test_nvflare_statuses(raw: str, expected: str) -> None:
    assert normalise_nvflare_status(raw) == FLJobStatus(expected)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("pending", "PENDING"), ("starting", "PENDING"), ("running", "RUNNING"), ("finished:completed", "FINISHED"),
     ("finished:failed", "FAILED"), ("finished:stopped", "STOPPED"), ("stopped", "STOPPED"), ("weird", "FAILED")],
)
def test_flower_statuses(raw: str, expected: str) -> None:
    assert normalise_flower_status(raw) == FLJobStatus(expected)
