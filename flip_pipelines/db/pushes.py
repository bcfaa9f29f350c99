"""What FL servers push to the hub (FLIP's internal routes), as transitions: a model status, a metric, a log line.
Each is one transaction and writes what FLIP's own routes write."""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from flip_pipelines.db.lifecycle import free_net_of_job_in_transaction
from flip_pipelines.db.models import FLJob, FLKitSlot, FLLogs, FLMetrics, Model, Trust, utcnow
from flip_pipelines.db.registry import unapproved_in_transaction
from flip_pipelines.db.transaction import get_row, set_model_status, transaction, write_log
from flip_pipelines.domain.enums import JobStatus, ModelStatus
from flip_pipelines.domain.errors import InvalidInputError
from flip_pipelines.domain.pushes import pushed_status_effect


def record_pushed_status(session: Session, model_id: uuid.UUID, status: ModelStatus) -> bool:
    """An FL server reports a model's status (FLIP's ``PUT /model/{id}/status/{status}``): the model takes it
    (audited as FLIP audits), FLIP's sentence is logged, and a final status ends the model's newest live job —
    COMPLETED, its net AVAILABLE. A stopped model ignores late reports (False).

    Raises:
        NotFoundError: unknown model.
    """
    with transaction(session):
        model = get_row(session, Model, model_id, "model")
        effect = pushed_status_effect(model.status, status)
        if not effect.applied:
            return False
        if effect.ends_training:
            job = session.exec(
                select(FLJob).where(FLJob.model_id == model_id, FLJob.status != JobStatus.DELETED)
                .order_by(col(FLJob.created).desc())
            ).first()
            if job is not None and job.status == JobStatus.IN_PROGRESS:
                job.status, job.completed = JobStatus.COMPLETED, utcnow()
                session.add(job)
                free_net_of_job_in_transaction(session, job.id)
        set_model_status(session, model, status)
        if effect.message:
            write_log(session, model_id, effect.message, success=effect.success)
        return True


def _client_trust(session: Session, model_id: uuid.UUID, fl_client_name: str) -> Trust:
    trust = session.exec(
        select(Trust).join(FLKitSlot, col(FLKitSlot.assigned_to_trust_id) == Trust.id)
        .where(FLKitSlot.slot_name == fl_client_name)
    ).first()
    if trust is None:
        raise InvalidInputError(f"FL client '{fl_client_name}' could not be resolved to a trust (model: {model_id})")
    if unapproved_in_transaction(session, model_id, [trust.id]):
        raise InvalidInputError(f"The trust: {trust.name} is not associated with model: {model_id}")
    return trust


@dataclass(frozen=True)
class PushedMetric:
    fl_client_name: str
    global_round: int
    label: str
    result: float
    x_value: float
    x_label: str


def record_pushed_metric(session: Session, model_id: uuid.UUID, metric: PushedMetric) -> FLMetrics:
    """One client's metric of one round (FLIP's ``POST /model/{id}/metrics``), attributed to the client's trust.

    Raises:
        NotFoundError: unknown model.
        InvalidInputError: the FL client is no trust's kit slot, or its trust is not approved for the model.
    """
    with transaction(session):
        get_row(session, Model, model_id, "model")
        trust = _client_trust(session, model_id, metric.fl_client_name)
        row = FLMetrics(trust=trust.id, fl_client_name=metric.fl_client_name, model_id=model_id,
                        global_round=metric.global_round, label=metric.label, result=metric.result,
                        x_value=metric.x_value, x_label=metric.x_label)
        session.add(row)
        return row


@dataclass(frozen=True)
class PushedLog:
    fl_client_name: str | None
    log: str | None
    event_type: str | None
    global_round: int | None
    details: dict[str, Any] | None
    success: bool


def record_pushed_log(session: Session, model_id: uuid.UUID, entry: PushedLog) -> FLLogs:
    """A log line or event from the FL side (FLIP's ``POST /model/{id}/logs``), attributed to the client's trust.
    A failure text from a client that cannot be attributed is still kept, marked so, as FLIP keeps it.

    Raises:
        NotFoundError: unknown model.
        InvalidInputError: the FL client cannot be attributed (and the entry is not a failure text).
    """
    with transaction(session):
        get_row(session, Model, model_id, "model")
        trust_id = None
        text = entry.log
        if entry.fl_client_name is not None:
            try:
                trust_id = _client_trust(session, model_id, entry.fl_client_name).id
            except InvalidInputError as exc:
                if entry.log is None or entry.success:
                    raise
                text = f"[unattributed client '{entry.fl_client_name}' — {exc}] {entry.log}"
        row = FLLogs(model_id=model_id, log=text, success=entry.success, trust=trust_id,
                     fl_client_name=entry.fl_client_name, event_type=entry.event_type,
                     global_round=entry.global_round, details=entry.details)
        session.add(row)
        return row



@dataclass(frozen=True)
class MetricPoint:
    fl_client_name: str
    global_round: int
    label: str
    result: float
    x_label: str
    x_value: float


def model_metrics(session: Session, model_id: uuid.UUID) -> list[MetricPoint]:
    """Every metric pushed for a model, by round, label and client (what FLIP's metrics view plots)."""
    with transaction(session):
        rows = session.exec(select(FLMetrics).where(FLMetrics.model_id == model_id)).all()
    points = [MetricPoint(r.fl_client_name, r.global_round, r.label, r.result, r.x_label, r.x_value) for r in rows]
    return sorted(points, key=lambda p: (p.global_round, p.label, p.fl_client_name))
