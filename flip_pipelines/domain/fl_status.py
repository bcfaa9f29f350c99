"""Backend job statuses normalised to FLIP's FLJobStatus, exactly as FLIP's FL APIs map them."""

from flip_pipelines.domain.enums import FLJobStatus

_NVFLARE = {
    "SUBMITTED": FLJobStatus.PENDING,
    "APPROVED": FLJobStatus.PENDING,
    "DISPATCHED": FLJobStatus.PENDING,
    "RUNNING": FLJobStatus.RUNNING,
    "FINISHED:COMPLETED": FLJobStatus.FINISHED,
    "FINISHED:ABORTED": FLJobStatus.STOPPED,
}

_FLOWER = {
    "pending": FLJobStatus.PENDING,
    "starting": FLJobStatus.PENDING,
    "running": FLJobStatus.RUNNING,
    "finished:completed": FLJobStatus.FINISHED,
    "finished:failed": FLJobStatus.FAILED,
    "finished:stopped": FLJobStatus.STOPPED,
    "stopped": FLJobStatus.STOPPED,
}


def normalise_nvflare_status(raw: str) -> FLJobStatus:
    """SUBMITTED/APPROVED/DISPATCHED → PENDING; RUNNING; FINISHED:COMPLETED → FINISHED; FINISHED:ABORTED →
    STOPPED; every other FINISHED:* (EXECUTION_EXCEPTION, ABNORMAL, CAN_NOT_SCHEDULE, ...) and unknown → FAILED."""
    return _NVFLARE.get(raw.strip().upper(), FLJobStatus.FAILED)


def normalise_flower_status(raw: str) -> FLJobStatus:
    """pending/starting → PENDING; running; finished:completed → FINISHED; finished:failed → FAILED;
    finished:stopped/stopped → STOPPED; unknown → FAILED."""
    return _FLOWER.get(raw.strip().lower(), FLJobStatus.FAILED)
