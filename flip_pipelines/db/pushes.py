"""What FL servers push to the hub (FLIP's internal routes), as transitions: a model status, a metric, a log line.
Each is one transaction and writes what FLIP's own routes write."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from flip_pipelines.db.lifecycle import end_locked_training_in_transaction, running_training_of_model_in_transaction
from flip_pipelines.db.models import FLKitSlot, FLLogs, FLMetrics, Model, Trust
from flip_pipelines.db.registry import unapproved_in_transaction
from flip_pipelines.db.transaction import get_row, set_model_status, transaction, write_log
from flip_pipelines.domain.enums import ModelStatus
from flip_pipelines.domain.errors import InvalidInputError
from flip_pipelines.domain.pushes import ENDS_TRAINING, MetricPoint, pushed_status_effect


def record_pushed_status(session: Session, model_id: uuid.UUID, status: ModelStatus) -> bool:
    """An FL server reports a model's status (FLIP's ``PUT /model/{id}/status/{status}``): the model takes it
    (audited as FLIP audits), and FLIP's sentence is logged. A final status (``domain.pushes.ENDS_TRAINING``)
    ends the training through the lifecycle's one ending transition (``end_locked_training_in_transaction``):
    the job row locked, ended once — COMPLETED, its net AVAILABLE — with the pushed status as the model's and
    FLIP's sentence as the ending logged.

    The route names no net, and FLIP's FL servers send none (their ``NET_ID`` names the net to the trust's imaging
    API only), so the training is the one running on a net: the model's IN_PROGRESS job that a BUSY slot holds —
    never a newer QUEUED job, which FLIP's "newest job" rule completes. A final status with no training running
    (pushed twice, or the hub ended it first) and a late report to a stopped model change nothing (False).

    Raises:
        NotFoundError: unknown model.
    """
    with transaction(session):
        model = get_row(session, Model, model_id, "model")
        job = running_training_of_model_in_transaction(session, model_id) if status in ENDS_TRAINING else None
        if job is not None:  # afresh, under the job's lock: whatever ended or moved it meanwhile is seen
            model = get_row(session, Model, model_id, "model", for_update=True)
        effect = pushed_status_effect(model.status, status, training_running=job is not None)
        if not effect.applied:
            return False
        if job is not None and effect.ends_training is not None:
            return end_locked_training_in_transaction(session, job, effect.ends_training, str(effect.message),
                                                      model_status=status)
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



def model_metrics(session: Session, model_id: uuid.UUID, since: datetime | None = None) -> list[MetricPoint]:
    """Every metric recorded for a model (since a training started, when given: ``fl_metrics`` has no job
    column), by round, label and client (what FLIP's metrics view plots)."""
    query = select(FLMetrics).where(FLMetrics.model_id == model_id)
    if since is not None:
        query = query.where(col(FLMetrics.timestamp) >= since)
    with transaction(session):
        rows = session.exec(query).all()
    points = [MetricPoint(r.fl_client_name, r.global_round, r.label, r.result, r.x_label, r.x_value) for r in rows]
    return sorted(points, key=lambda p: (p.global_round, p.label, p.fl_client_name))


@dataclass(frozen=True)
class RoundValue:
    fl_client_name: str
    global_round: int
    label: str
    result: float


def record_round_metrics(session: Session, model_id: uuid.UUID, since: datetime | None,
                         values: Sequence[RoundValue]) -> tuple[list[RoundValue], list[str]]:
    """The metrics a training's FL API reported so far, as ``fl_metrics`` rows (what FLIP's FL servers push):
    only those not yet recorded since the training started, so polling again writes nothing twice — nor do two
    runs recording at the same instant (a resumed run beside its late original).

    The read-then-insert is made atomic by serialising the recorders of one model at the database: the model's
    row is locked ``FOR UPDATE`` first on PostgreSQL (SQLite's ``BEGIN IMMEDIATE``, ``db.engine``, takes the
    write lock when the transaction begins), so the second recorder reads what the first stored. A unique key
    cannot do it: ``fl_metrics`` has no job column and a model trains many times, so one (model, client, round,
    label) legitimately recurs across trainings; and FLIP's hub database is used as it is, so no key (nor the
    insert-on-conflict that needs one) can be added there.

    Returns the values recorded now, and the FL clients whose values were left out because no trust approved
    for the model has them as its kit slot.

    Raises:
        NotFoundError: unknown model.
    """
    with transaction(session):
        get_row(session, Model, model_id, "model", for_update=True)
        query = select(FLMetrics.fl_client_name, FLMetrics.global_round, FLMetrics.label).where(
            FLMetrics.model_id == model_id)
        if since is not None:
            query = query.where(col(FLMetrics.timestamp) >= since)
        seen = {tuple(row) for row in session.exec(query).all()}
        trusts: dict[str, uuid.UUID | None] = {}
        recorded: list[RoundValue] = []
        for value in values:
            if (value.fl_client_name, value.global_round, value.label) in seen:
                continue
            if value.fl_client_name not in trusts:
                try:
                    trusts[value.fl_client_name] = _client_trust(session, model_id, value.fl_client_name).id
                except InvalidInputError:
                    trusts[value.fl_client_name] = None
            trust_id = trusts[value.fl_client_name]
            if trust_id is None:
                continue
            session.add(FLMetrics(trust=trust_id, fl_client_name=value.fl_client_name, model_id=model_id,
                                  global_round=value.global_round, label=value.label, result=value.result,
                                  x_value=float(value.global_round)))
            seen.add((value.fl_client_name, value.global_round, value.label))
            recorded.append(value)
    return recorded, sorted(name for name, trust in trusts.items() if trust is None)
