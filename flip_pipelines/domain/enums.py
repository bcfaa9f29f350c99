"""FLIP's status enums, with FLIP's member names so a FLIP hub database reads the same values.

The database stores the member *name* (``NVFLARE``, ``QUEUED``), as FLIP's SQLModel tables do.
"""

from enum import StrEnum


class JobStatus(StrEnum):
    """Lifecycle of a row in ``fl_job`` (a queued training attempt)."""

    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    DELETED = "DELETED"


ACTIVE_JOB_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.IN_PROGRESS})


class NetStatus(StrEnum):
    """Whether a net's single training slot (its ``fl_scheduler`` row) is taken."""

    AVAILABLE = "AVAILABLE"
    BUSY = "BUSY"


class ModelStatus(StrEnum):
    """A model's training status, in the order of FLIP's ``modelstatus`` type.

    FLIP's migration 8c41d0f2ab5e renamed ``TRAINING_STARTED`` to ``RUNNING`` (#782); we use the newer name.
    """

    ERROR = "ERROR"
    STOPPED = "STOPPED"
    PENDING = "PENDING"
    INITIATED = "INITIATED"
    PREPARED = "PREPARED"
    RUNNING = "RUNNING"
    RESULTS_UPLOADED = "RESULTS_UPLOADED"
    RESULTS_UPLOAD_FAILED = "RESULTS_UPLOAD_FAILED"


class ModelAuditAction(StrEnum):
    """FLIP's ``modelauditaction``: edits, deletions and three status transitions (FLIP audits no others)."""

    DELETE = "DELETE"
    EDIT = "EDIT"
    PREPARED = "PREPARED"
    RUNNING = "RUNNING"
    RESULTS_UPLOADED = "RESULTS_UPLOADED"


AUDITED_MODEL_STATUSES: dict[ModelStatus, ModelAuditAction] = {
    ModelStatus.PREPARED: ModelAuditAction.PREPARED,
    ModelStatus.RUNNING: ModelAuditAction.RUNNING,
    ModelStatus.RESULTS_UPLOADED: ModelAuditAction.RESULTS_UPLOADED,
}
"""FLIP's ``_STATUS_AUDIT_MAP``: a move into one of these statuses writes a ``models_audit`` row."""


class ProjectStatus(StrEnum):
    """FLIP's ``projectstatus``; a project trains once APPROVED."""

    UNSTAGED = "UNSTAGED"
    STAGED = "STAGED"
    APPROVED = "APPROVED"


class TrustIntersectStatus(StrEnum):
    """FLIP's ``trustintersectstatus``: FL client set-up progress of an approved (model, trust) pair; approval
    itself is the row's existence."""

    PENDING = "PENDING"
    REQUEST_SENT = "REQUEST_SENT"
    INITIALISED = "INITIALISED"


TERMINAL_MODEL_STATUSES: frozenset[ModelStatus] = frozenset(
    {ModelStatus.RESULTS_UPLOADED, ModelStatus.RESULTS_UPLOAD_FAILED, ModelStatus.ERROR, ModelStatus.STOPPED}
)


class FLJobStatus(StrEnum):
    """A backend job's status, normalised across NVFlare and Flower (FLIP #490). FLIP's FL APIs answer UNKNOWN
    for a native status they cannot map: neither running nor ended, so it is asked again."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    UNKNOWN = "UNKNOWN"


TERMINAL_FL_JOB_STATUSES: frozenset[FLJobStatus] = frozenset(
    {FLJobStatus.FINISHED, FLJobStatus.FAILED, FLJobStatus.STOPPED}
)


class FLBackend(StrEnum):
    """The FL framework a net runs. Values are what users type; the database stores the names."""

    NVFLARE = "nvflare"
    FLOWER = "flower"

    @classmethod
    def parse(cls, text: str) -> "FLBackend":
        """Accept ``nvflare``/``NVFLARE``/``flower``/``FLOWER``.

        Raises:
            ValueError: naming the accepted values when ``text`` is none of them.
        """
        for member in cls:
            if text.strip().lower() == member.value:
                return member
        accepted = ", ".join(m.value for m in cls)
        raise ValueError(f"unknown FL backend {text!r}: expected one of {accepted}")


class ClientStatus(StrEnum):
    """Client liveness words the FL APIs report (NVFlare: no_reply/no_jobs; Flower: CONNECTED/DISCONNECTED)."""

    NO_REPLY = "no_reply"
    NO_JOBS = "no_jobs"
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"


OFFLINE_CLIENT_STATUSES: frozenset[str] = frozenset({ClientStatus.NO_REPLY.value, ClientStatus.DISCONNECTED.value})


class FLLogEvent(StrEnum):
    """FLIP's ``fl_logs.event_type`` values (plain text in the table). An event row has no ``log`` text, and a
    text row no event type; everything else the hub says is text."""

    ROUND_STARTED = "ROUND_STARTED"
    CLIENT_RESULT_RECEIVED = "CLIENT_RESULT_RECEIVED"
    ROUND_AGGREGATED = "ROUND_AGGREGATED"
    JOB_WAITING_FOR_RESOURCES = "JOB_WAITING_FOR_RESOURCES"
    QUEUE_POSITION = "QUEUE_POSITION"
