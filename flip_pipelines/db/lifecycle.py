"""A training's lifecycle after its model is registered: one function per business transition, each one
transaction that moves the job, its net's slot, the model, the audit trail and the log together.

queue (``enqueue_training``) → claim (``db.claims``) → ``record_submission`` → ``end_training``; or
``fail_before_submission``, ``requeue``, ``retire_job``, ``abort_model``. A crash between two transitions
leaves a consistent state that reconciliation can read; a crash inside one leaves nothing of it.
"""

import uuid
from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlmodel import Session, col, select

from flip_pipelines.db.models import FLJob, FLJobTrust, FLLogs, FLNets, FLScheduler, Model, utcnow
from flip_pipelines.db.registry import trust_names_in_transaction, unapproved_in_transaction
from flip_pipelines.db.site_config import refuse_in_deployment_mode
from flip_pipelines.db.transaction import get_row, set_model_status, transaction, write_log
from flip_pipelines.domain.enums import ACTIVE_JOB_STATUSES, FLBackend, FLLogEvent, JobStatus, ModelStatus, NetStatus
from flip_pipelines.domain.errors import ConflictError, InvalidInputError, NotFoundError
from flip_pipelines.domain.lifecycle import FINAL_STATES, Outcome
from flip_pipelines.domain.model_check import ModelCheck
from flip_pipelines.domain.queue import AbortedTraining, ActiveJob, NetDetails, QueuePosition, RecoveredNet


class JobNotRunningError(ConflictError):
    """The job is no longer IN_PROGRESS (it was aborted or ended meanwhile)."""


def _free_slots(session: Session, where: sa.ColumnElement[bool]) -> int:
    result = session.execute(
        sa.update(FLScheduler)
        .where(where, col(FLScheduler.status) == NetStatus.BUSY)
        .values(status=NetStatus.AVAILABLE, job_id=None)
    )
    return int(result.rowcount or 0)


def _running_job(session: Session, fl_job_id: uuid.UUID) -> FLJob:
    job = get_row(session, FLJob, fl_job_id, "fl_job", for_update=True)
    if job.status != JobStatus.IN_PROGRESS:
        raise JobNotRunningError(f"fl_job {fl_job_id} is {job.status.value}, not IN_PROGRESS")
    return job


# --- queueing -------------------------------------------------------------------------------------------------


def enqueue_training(session: Session, model_id: uuid.UUID, trust_ids: Sequence[uuid.UUID],
                     check: ModelCheck) -> FLJob:
    """Queue a training of a model on these trusts: the job QUEUED, the model INITIATED, the trusts and queue
    positions logged. ``check`` is the model's file check: a model that suits no registered backend is refused.

    Raises:
        InvalidInputError: no trusts, a trust named twice, trusts not approved for the model (named), or the model
            suits no registered backend (the reason).
        NotFoundError: unknown or deleted model, or unknown trust ids (all named).
        DeploymentModeError: the hub is in deployment mode.
    """
    with transaction(session):
        return enqueue_in_transaction(session, model_id, trust_ids, check)


def enqueue_in_transaction(session: Session, model_id: uuid.UUID, trust_ids: Sequence[uuid.UUID],
                           check: ModelCheck) -> FLJob:
    """``enqueue_training`` in the caller's transaction, so a claim can follow in the same one
    (``claims.enqueue_and_claim_free_net``)."""
    if not trust_ids:
        raise InvalidInputError("a training job needs at least one trust")
    if len(set(trust_ids)) != len(trust_ids):
        raise InvalidInputError("a trust is named more than once")
    model = get_row(session, Model, model_id, "model")
    if model.deleted:
        raise NotFoundError(f"model {model_id} is deleted")
    names = trust_names_in_transaction(session, trust_ids)
    unapproved = unapproved_in_transaction(session, model_id, trust_ids)
    if unapproved:
        raise InvalidInputError(
            f"trust(s) not approved for model {model.name}: {', '.join(names[t] for t in unapproved)} "
            f"(approve them: flip-pipelines models approve {model_id} --trust NAME)")
    refuse_in_deployment_mode(session, "queueing a training")
    refusal = check.refusal(session.exec(select(FLNets.fl_backend).distinct()).all())
    if refusal:
        raise InvalidInputError(f"model {model.name} cannot be queued: {refusal}")
    return add_queued_job_in_transaction(session, model, trust_ids, names, check.backends)


def add_queued_job_in_transaction(session: Session, model: Model, trust_ids: Sequence[uuid.UUID],
                                  names: Mapping[uuid.UUID, str], backends: Iterable[FLBackend]) -> FLJob:
    """A new QUEUED job of the model on trusts the caller checked (``names``: their names), in the caller's
    transaction: the model INITIATED, the trusts and the changed queue positions logged, as FLIP's initiate does."""
    job = FLJob(model_id=model.id)
    session.add(job)
    session.flush()
    session.add_all([FLJobTrust(fl_job_id=job.id, trust_id=t) for t in trust_ids])
    set_model_status(session, model, ModelStatus.INITIATED)
    write_log(session, model.id, f"Selected trusts for training: {', '.join(names[t] for t in trust_ids)}",
              details={"fl_job_id": str(job.id), "backends": sorted(b.value for b in backends)})
    _log_changed_positions(session)
    return job


def retire_job_in_transaction(session: Session, job: FLJob, reason: str) -> None:
    """Take a job that can never run out of the queue (FLIP #894), so that it cannot wedge it: job DELETED, the
    model ERROR unless it has another active job, "Training could not start: <reason>" logged (FLIP's wording)."""
    job.status, job.completed = JobStatus.DELETED, utcnow()
    session.add(job)
    other_active = session.exec(
        select(FLJob.id).where(FLJob.model_id == job.model_id, FLJob.id != job.id,
                               col(FLJob.status).in_(ACTIVE_JOB_STATUSES))
    ).first()
    model = session.get(Model, job.model_id)
    if other_active is None and model is not None:
        set_model_status(session, model, ModelStatus.ERROR)
    write_log(session, job.model_id, f"Training could not start: {reason}", success=False,
              details={"fl_job_id": str(job.id), "retired": True})


def retire_model_jobs(session: Session, model_id: uuid.UUID, reason: str) -> int:
    """Retire every queued job of a model that can never run (its files suit no registered net); how many.

    Raises:
        NotFoundError: unknown model.
    """
    with transaction(session):
        get_row(session, Model, model_id, "model")
        jobs = session.exec(select(FLJob).where(FLJob.model_id == model_id, FLJob.status == JobStatus.QUEUED)).all()
        for job in jobs:
            retire_job_in_transaction(session, job, reason)
        return len(jobs)


def requeue(session: Session, fl_job_id: uuid.UUID, reason: str) -> None:
    """Undo a claim whose run never started: the job QUEUED again in its old place, its net AVAILABLE.

    Raises:
        NotFoundError: unknown job.
        JobNotRunningError: the job is not IN_PROGRESS.
        ConflictError: the job was submitted to an FL server (it must be followed, not queued again).
    """
    with transaction(session):
        job = _running_job(session, fl_job_id)
        if job.fl_backend_job_id is not None:
            raise ConflictError(f"fl_job {fl_job_id} was submitted as {job.fl_backend_job_id}: it cannot be requeued")
        job.status, job.started = JobStatus.QUEUED, None
        session.add(job)
        _free_slots(session, col(FLScheduler.job_id) == fl_job_id)
        write_log(session, job.model_id, f"Training queued again: {reason}", details={"fl_job_id": str(job.id)})


# --- after the claim --------------------------------------------------------------------------------------------


def record_submission(session: Session, fl_job_id: uuid.UUID, backend_job_id: str, net_name: str) -> bool:
    """The FL server accepted the job: its backend id stored, the model RUNNING, the submission logged (FLIP's
    ``add_fl_backend_job_id`` and TRAINING_STARTED). Recording the same id again changes nothing (False).

    Raises:
        InvalidInputError: empty backend id.
        NotFoundError: unknown job.
        JobNotRunningError: the job was aborted or ended meanwhile (its FL job must be aborted).
        ConflictError: the job already has a different backend id (a second submission).
    """
    if not backend_job_id or not backend_job_id.strip():
        raise InvalidInputError("the backend job id is empty")
    with transaction(session):
        job = _running_job(session, fl_job_id)
        if job.fl_backend_job_id == backend_job_id:
            return False
        if job.fl_backend_job_id is not None:
            raise ConflictError(f"fl_job {fl_job_id} already has backend job {job.fl_backend_job_id}, "
                                f"not {backend_job_id}")
        job.fl_backend_job_id = backend_job_id
        session.add(job)
        set_model_status(session, get_row(session, Model, job.model_id, "model"), ModelStatus.RUNNING)
        write_log(session, job.model_id, f"Model training started on '{net_name}' as FL job {backend_job_id}",
                  details={"fl_job_id": str(job.id), "backend_job_id": backend_job_id})
        return True


def end_training(session: Session, fl_job_id: uuid.UUID, outcome: Outcome, reason: str) -> bool:
    """End a claimed training once: job COMPLETED (DELETED when aborted), its net AVAILABLE, the model
    RESULTS_UPLOADED, ERROR or STOPPED (``domain.lifecycle.FINAL_STATES``), the reason logged. A job already
    ended is left as it is (False): whoever ended it first decided its outcome.

    Raises:
        NotFoundError: unknown job.
        ConflictError: the job is still QUEUED (nothing was claimed to end).
    """
    with transaction(session):
        job = get_row(session, FLJob, fl_job_id, "fl_job", for_update=True)
        if job.status == JobStatus.QUEUED:
            raise ConflictError(f"fl_job {fl_job_id} is QUEUED, not running")
        return end_locked_training_in_transaction(session, job, outcome, reason)


def end_locked_training_in_transaction(session: Session, job: FLJob, outcome: Outcome, reason: str,
                                       model_status: ModelStatus | None = None) -> bool:
    """``end_training`` in the caller's transaction, on a job row the caller locked and read afresh (so of two
    enders the second sees the job ended and changes nothing: False). ``model_status``: the status the model
    takes instead of the outcome's (a status an FL server pushed, e.g. RESULTS_UPLOAD_FAILED)."""
    if job.status != JobStatus.IN_PROGRESS:
        return False
    _end_job(session, job, outcome, reason, model_status)
    return True


def running_training_of_model_in_transaction(session: Session, model_id: uuid.UUID) -> FLJob | None:
    """The model's training running on a net — its IN_PROGRESS job that a BUSY slot holds — locked and read
    afresh, or None. A model can have one (a job queued again while it trains is QUEUED); should two of its jobs
    run on two nets, the submitted one claimed first is taken.

    PostgreSQL: the job row is locked ``FOR UPDATE``, so a caller that waited for another ender's lock finds the
    job no longer running. SQLite: ``BEGIN IMMEDIATE`` serialises the two."""
    return session.exec(
        select(FLJob)
        .join(FLScheduler, col(FLScheduler.job_id) == FLJob.id)
        .where(FLJob.model_id == model_id, FLJob.status == JobStatus.IN_PROGRESS,
               FLScheduler.status == NetStatus.BUSY)
        .order_by(col(FLJob.fl_backend_job_id).is_(None), col(FLJob.started), col(FLJob.id))
        .limit(1)
        .with_for_update(of=FLJob)
        .execution_options(populate_existing=True)
    ).first()


def _end_job(session: Session, job: FLJob, outcome: Outcome, reason: str,
             model_status: ModelStatus | None = None) -> None:
    final = FINAL_STATES[outcome]
    job.status, job.completed = final.job, utcnow()
    session.add(job)
    _free_slots(session, col(FLScheduler.job_id) == job.id)
    set_model_status(session, get_row(session, Model, job.model_id, "model"), model_status or final.model)
    write_log(session, job.model_id, reason, success=outcome in (Outcome.FINISHED, Outcome.ABORTED),
              details={"fl_job_id": str(job.id), "outcome": outcome.value, "backend_job_id": job.fl_backend_job_id})


def fail_before_submission(session: Session, fl_job_id: uuid.UUID, reason: str) -> bool:
    """A claimed training failed before its FL server got it (bundle refused, clients missing, ...): job DELETED
    with ``started`` cleared (FLIP's ``remove_job``), the model ERROR, its net AVAILABLE, the reason logged. False
    when the job is no longer IN_PROGRESS (nothing changed).

    Raises:
        NotFoundError: unknown job.
        ConflictError: the job was submitted (it has a backend job to follow or end instead).
    """
    with transaction(session):
        job = get_row(session, FLJob, fl_job_id, "fl_job", for_update=True)
        if job.status != JobStatus.IN_PROGRESS:
            return False
        if job.fl_backend_job_id is not None:
            raise ConflictError(f"fl_job {fl_job_id} was submitted as {job.fl_backend_job_id}: end it instead")
        job.status, job.started = JobStatus.DELETED, None
        session.add(job)
        _free_slots(session, col(FLScheduler.job_id) == fl_job_id)
        set_model_status(session, get_row(session, Model, job.model_id, "model"), ModelStatus.ERROR)
        write_log(session, job.model_id, f"Training failed before submission: {reason}", success=False,
                  details={"fl_job_id": str(job.id)})
        return True


def abort_model(session: Session, model_id: uuid.UUID, reason: str) -> AbortedTraining:
    """Stop a model: its queued jobs DELETED, its claimed jobs ended ABORTED (DELETED, nets AVAILABLE), the
    model STOPPED — in one transaction. Returns the submitted FL jobs to abort on their FL servers; a run still
    preparing one stops at its abort gate. Nothing queued or running: nothing changes. The jobs' rows are locked
    (PostgreSQL), so a training ended at the same instant (an FL server's pushed status, a sensor) is not ended
    twice: whoever ended it first decided.

    Raises:
        NotFoundError: unknown model.
    """
    with transaction(session):
        model = get_row(session, Model, model_id, "model")
        rows = session.exec(
            select(FLJob, FLNets)
            .join(FLScheduler, col(FLScheduler.job_id) == FLJob.id, isouter=True)
            .join(FLNets, col(FLNets.id) == FLScheduler.net_id, isouter=True)
            .where(FLJob.model_id == model_id, col(FLJob.status).in_(ACTIVE_JOB_STATUSES))
            .with_for_update(of=FLJob)
            .execution_options(populate_existing=True)
        ).all()
        if not rows:
            return AbortedTraining(dequeued=0, stopped_jobs=(), backend_jobs=())
        now = utcnow()
        queued = [job for job, _ in rows if job.status == JobStatus.QUEUED]
        for job in queued:
            job.status, job.completed = JobStatus.DELETED, now
            session.add(job)
        running = [(job, net) for job, net in rows if job.status == JobStatus.IN_PROGRESS]
        for job, _ in running:
            _end_job(session, job, Outcome.ABORTED, reason)
        set_model_status(session, model, ModelStatus.STOPPED)
        if queued:
            write_log(session, model_id, f"{reason}: {len(queued)} queued job(s) removed",
                      details={"fl_job_ids": [str(j.id) for j in queued]})
        return AbortedTraining(
            dequeued=len(queued),
            stopped_jobs=tuple(job.id for job, _ in running),
            backend_jobs=tuple((NetDetails(net.name, net.endpoint, net.fl_backend), job.fl_backend_job_id)
                               for job, net in running if net is not None and job.fl_backend_job_id),
        )


# --- upkeep and reads ---------------------------------------------------------------------------------------------


def recover_stale_busy_nets(session: Session) -> list[RecoveredNet]:
    """The watchdog: free BUSY nets whose job is gone, COMPLETED or DELETED, or that hold no job at all.

    FLIP's first watchdog only freed nets whose job row was missing (#615), so a net whose job had COMPLETED
    or been DELETED stayed BUSY forever. A net whose job is still QUEUED or IN_PROGRESS is never touched.
    """
    with transaction(session):
        live_job = sa.exists().where(col(FLJob.id) == FLScheduler.job_id, col(FLJob.status).in_(ACTIVE_JOB_STATUSES))
        stale = session.exec(
            select(FLScheduler, FLNets)
            .join(FLNets, col(FLNets.id) == FLScheduler.net_id)
            .where(FLScheduler.status == NetStatus.BUSY, sa.or_(col(FLScheduler.job_id).is_(None), ~live_job))
            .with_for_update(skip_locked=True, of=FLScheduler)
        ).all()
        recovered = [RecoveredNet(net_name=net.name, stale_fl_job_id=slot.job_id) for slot, net in stale]
        if stale:
            _free_slots(session, col(FLScheduler.id).in_([slot.id for slot, _ in stale]))
        return recovered


def _queue_positions(session: Session) -> list[QueuePosition]:
    jobs = session.exec(
        select(FLJob).where(FLJob.status == JobStatus.QUEUED).order_by(col(FLJob.created), col(FLJob.id))
    ).all()
    return [QueuePosition(position=i, fl_job_id=j.id, model_id=j.model_id, created=j.created)
            for i, j in enumerate(jobs, start=1)]


def queue_positions(session: Session) -> list[QueuePosition]:
    """QUEUED jobs in the order they wait (oldest first), numbered from 1."""
    with transaction(session):
        return _queue_positions(session)


def _log_changed_positions(session: Session) -> int:
    positions = _queue_positions(session)
    if not positions:
        return 0
    previous = session.exec(
        select(FLLogs)
        .where(FLLogs.event_type == FLLogEvent.QUEUE_POSITION.value,
               col(FLLogs.model_id).in_({p.model_id for p in positions}))
        .order_by(col(FLLogs.log_date))
    ).all()
    last = {str((row.details or {}).get("job_id")): int((row.details or {}).get("position", 0)) for row in previous}
    changed = [p for p in positions if last.get(str(p.fl_job_id)) != p.position]
    for p in changed:
        write_log(session, p.model_id, None, event_type=FLLogEvent.QUEUE_POSITION.value,
                  details={"position": p.position, "job_id": str(p.fl_job_id)})
    return len(changed)


def log_queue_positions(session: Session) -> int:
    """Write a QUEUE_POSITION row for each queued job whose position changed since its last one; returns how many.

    Emitting only on change keeps ``fl_logs`` from growing on every tick (FLIP #616)."""
    with transaction(session):
        return _log_changed_positions(session)


def get_job(session: Session, fl_job_id: uuid.UUID) -> FLJob:
    """Raises: NotFoundError: unknown job."""
    with transaction(session):
        return get_row(session, FLJob, fl_job_id, "fl_job")


def in_progress_jobs(session: Session) -> list[ActiveJob]:
    """Every IN_PROGRESS job with the net holding it, oldest claim first: what reconciliation checks."""
    with transaction(session):
        rows = session.exec(
            select(FLJob, Model.name, FLNets)
            .join(Model, col(Model.id) == FLJob.model_id)
            .join(FLScheduler, col(FLScheduler.job_id) == FLJob.id, isouter=True)
            .join(FLNets, col(FLNets.id) == FLScheduler.net_id, isouter=True)
            .where(FLJob.status == JobStatus.IN_PROGRESS)
            .order_by(col(FLJob.started))
        ).all()
    return [
        ActiveJob(fl_job_id=job.id, model_id=job.model_id, model_name=name, backend_job_id=job.fl_backend_job_id,
                  started=job.started, net=NetDetails(net.name, net.endpoint, net.fl_backend) if net else None)
        for job, name, net in rows
    ]
