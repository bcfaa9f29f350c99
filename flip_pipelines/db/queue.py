"""The training queue and net scheduler: one function per state transition, as FLIP's scheduler service.

Every function takes a session, runs in one transaction that it commits, and rolls back on any error: a
failure never leaves half a transition behind. Missing rows raise ``NotFoundError``; a database failure raises
``DatabaseError``; nothing fails silently.
"""

import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col, select

from flip_pipelines.db.models import (
    FLJob,
    FLJobTrust,
    FLKitSlot,
    FLLogs,
    FLNets,
    FLScheduler,
    Model,
    ModelsAudit,
    Project,
    Query,
    Trust,
    utcnow,
)
from flip_pipelines.domain.enums import (
    ACTIVE_JOB_STATUSES,
    FLBackend,
    FLLogEvent,
    JobStatus,
    ModelStatus,
    NetStatus,
)
from flip_pipelines.domain.errors import ConflictError, DatabaseError, FlipError, InvalidInputError, NotFoundError
from flip_pipelines.domain.queue import (
    Claim,
    NetDetails,
    NetState,
    QueuePosition,
    RecoveredNet,
    TrainingDetails,
)


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """Commit on success; roll back on any exception, turning driver errors into ``DatabaseError``."""
    try:
        yield session
        session.commit()
    except FlipError:
        session.rollback()
        raise
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"the database refused the write: {exc.orig}") from exc
    except SQLAlchemyError as exc:
        session.rollback()
        raise DatabaseError(f"database error: {exc.__class__.__name__}: {exc}") from exc
    except BaseException:
        session.rollback()
        raise


def _get(session: Session, model: type, key: Any, what: str) -> Any:
    row = session.get(model, key)
    if row is None:
        raise NotFoundError(f"{what} {key} not found")
    return row


def _log(
    session: Session,
    model_id: uuid.UUID,
    message: str,
    *,
    success: bool,
    event_type: str | None = None,
    details: dict[str, Any] | None = None,
) -> FLLogs:
    row = FLLogs(model_id=model_id, log=message, success=success, event_type=event_type, details=details)
    session.add(row)
    return row


# --- registry: nets, trusts, projects, models ---------------------------------------------------------------


def add_net(session: Session, name: str, endpoint: str, fl_backend: FLBackend) -> FLNets:
    """Register an FL server and its single training slot (AVAILABLE).

    Raises:
        InvalidInputError: empty name or endpoint.
        ConflictError: a net with this name or endpoint exists.
    """
    name, endpoint = name.strip(), endpoint.strip().rstrip("/")
    if not name or not endpoint:
        raise InvalidInputError("a net needs a name and an endpoint")
    with transaction(session):
        clash = session.exec(select(FLNets).where((FLNets.name == name) | (FLNets.endpoint == endpoint))).first()
        if clash is not None:
            field = "name" if clash.name == name else "endpoint"
            raise ConflictError(f"a net with {field} {name if field == 'name' else endpoint!r} already exists")
        net = FLNets(name=name, endpoint=endpoint, fl_backend=fl_backend)
        session.add(net)
        session.flush()
        session.add(FLScheduler(net_id=net.id))
    return net


def list_nets(session: Session) -> list[NetState]:
    """Every net with its slot status, current job and that job's model, by name."""
    with transaction(session):
        rows = session.exec(
            select(FLNets, FLScheduler, FLJob)
            .join(FLScheduler, col(FLScheduler.net_id) == FLNets.id)
            .join(FLJob, col(FLJob.id) == FLScheduler.job_id, isouter=True)
            .order_by(FLNets.name)
        ).all()
    return [
        NetState(
            net_id=net.id,
            name=net.name,
            endpoint=net.endpoint,
            fl_backend=net.fl_backend,
            status=slot.status,
            fl_job_id=slot.job_id,
            model_id=job.model_id if job is not None else None,
        )
        for net, slot, job in rows
    ]


def add_trust(session: Session, name: str, slot_name: str | None = None) -> Trust:
    """Register a trust and assign it the FL kit slot it connects as (its own name when none is given).

    Raises:
        InvalidInputError: empty name.
        ConflictError: the trust exists, or the slot is assigned to another trust.
    """
    name = name.strip()
    slot_name = (slot_name or name).strip()
    if not name or not slot_name:
        raise InvalidInputError("a trust needs a name")
    with transaction(session):
        if session.exec(select(Trust).where(Trust.name == name)).first() is not None:
            raise ConflictError(f"trust {name!r} already exists")
        trust = Trust(name=name)
        session.add(trust)
        session.flush()
        slot = session.get(FLKitSlot, slot_name)
        if slot is None:
            next_number = session.exec(select(sa.func.coalesce(sa.func.max(FLKitSlot.slot_number), 0))).one() + 1
            slot = FLKitSlot(slot_name=slot_name, slot_number=next_number)
        elif slot.assigned_to_trust_id is not None:
            raise ConflictError(f"slot {slot_name!r} is already assigned to another trust")
        slot.assigned_to_trust_id = trust.id
        slot.assigned_at = utcnow()
        session.add(slot)
    return trust


def get_trust_ids_by_names(session: Session, names: Sequence[str]) -> list[uuid.UUID]:
    """Trust ids for trust names, in the given order.

    Raises:
        NotFoundError: naming every unknown trust.
    """
    with transaction(session):
        rows = session.exec(select(Trust).where(col(Trust.name).in_(list(names)))).all()
    by_name = {t.name: t.id for t in rows}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise NotFoundError(f"unknown trust(s): {', '.join(unknown)}")
    return [by_name[n] for n in names]


def add_project(session: Session, name: str, cohort_query: str) -> Project:
    """Create a project with its first cohort query.

    Raises:
        InvalidInputError: empty name or query.
        ConflictError: a project with this name exists.
    """
    name, cohort_query = name.strip(), cohort_query.strip()
    if not name or not cohort_query:
        raise InvalidInputError("a project needs a name and a cohort query")
    with transaction(session):
        if session.exec(select(Project).where(Project.name == name)).first() is not None:
            raise ConflictError(f"project {name!r} already exists")
        project = Project(name=name)
        session.add(project)
        session.flush()
        session.add(Query(project_id=project.id, query=cohort_query))
    return project


def add_model(session: Session, name: str, project_name: str) -> Model:
    """Create a model (PENDING) in a project.

    Raises:
        InvalidInputError: empty name.
        NotFoundError: unknown project.
    """
    name = name.strip()
    if not name:
        raise InvalidInputError("a model needs a name")
    with transaction(session):
        project = session.exec(select(Project).where(Project.name == project_name)).first()
        if project is None:
            raise NotFoundError(f"project {project_name!r} not found")
        model = Model(name=name, project_id=project.id)
        session.add(model)
        session.flush()
        session.add(ModelsAudit(model_id=model.id, action="CREATE"))
    return model


def update_model_status(session: Session, model_id: uuid.UUID, status: ModelStatus) -> Model:
    """Set a model's status and audit it. Freeing the net is the caller's separate, explicit step.

    Raises:
        NotFoundError: unknown model.
    """
    with transaction(session):
        model = _get(session, Model, model_id, "model")
        model.status = status
        session.add(model)
        session.add(ModelsAudit(model_id=model_id, action=f"STATUS:{status.value}"))
    return model


def add_log(
    session: Session,
    model_id: uuid.UUID,
    message: str,
    *,
    success: bool = True,
    event_type: str | None = None,
    details: dict[str, Any] | None = None,
) -> FLLogs:
    """Append a row to ``fl_logs`` (what the user reads about a model's training)."""
    with transaction(session):
        row = _log(session, model_id, message, success=success, event_type=event_type, details=details)
    return row


# --- the queue ---------------------------------------------------------------------------------------------


def add_fl_job(session: Session, model_id: uuid.UUID, trust_ids: Sequence[uuid.UUID]) -> FLJob:
    """Queue a training attempt of a model on these trusts; the model becomes INITIATED.

    Raises:
        InvalidInputError: no trusts, or a trust named twice.
        NotFoundError: unknown model, or unknown trust ids (all named).
    """
    if not trust_ids:
        raise InvalidInputError("a training job needs at least one trust")
    if len(set(trust_ids)) != len(trust_ids):
        raise InvalidInputError("a trust is named more than once")
    with transaction(session):
        model = _get(session, Model, model_id, "model")
        if model.deleted:
            raise NotFoundError(f"model {model_id} is deleted")
        known = set(session.exec(select(Trust.id).where(col(Trust.id).in_(list(trust_ids)))).all())
        unknown = [str(t) for t in trust_ids if t not in known]
        if unknown:
            raise NotFoundError(f"unknown trust id(s): {', '.join(unknown)}")
        job = FLJob(model_id=model_id)
        session.add(job)
        session.flush()
        session.add_all([FLJobTrust(fl_job_id=job.id, trust_id=t) for t in trust_ids])
        model.status = ModelStatus.INITIATED
        session.add(model)
        session.add(ModelsAudit(model_id=model_id, action="QUEUED"))
    return job


def _unaddressable_trusts(session: Session, trust_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Trust ids that no longer exist or have no FL kit slot: the FL server could not address them."""
    addressable = set(
        session.exec(
            select(Trust.id)
            .join(FLKitSlot, col(FLKitSlot.assigned_to_trust_id) == Trust.id)
            .where(col(Trust.id).in_(list(trust_ids)))
        ).all()
    )
    return [t for t in trust_ids if t not in addressable]


def _retire_job(session: Session, job: FLJob, reason: str) -> None:
    """Take a job that can never run out of the queue (FLIP #894), so that it cannot wedge the queue."""
    job.status = JobStatus.DELETED
    job.completed = utcnow()
    session.add(job)
    other_active = session.exec(
        select(FLJob.id).where(
            FLJob.model_id == job.model_id, FLJob.id != job.id, col(FLJob.status).in_(ACTIVE_JOB_STATUSES)
        )
    ).first()
    if other_active is None:
        model = session.get(Model, job.model_id)
        if model is not None:
            model.status = ModelStatus.ERROR
            session.add(model)
    _log(
        session,
        job.model_id,
        f"Training job {job.id} retired before start: {reason}",
        success=False,
        event_type=FLLogEvent.JOB_RETIRED.value,
        details={"fl_job_id": str(job.id)},
    )


def _claim_available_net(session: Session, *, lock_rows: bool) -> Claim | None:
    def locked(stmt: Any, of: Any) -> Any:
        return stmt.with_for_update(skip_locked=True, of=of) if lock_rows else stmt

    with transaction(session):
        slot_row = session.exec(
            locked(
                select(FLScheduler, FLNets)
                .join(FLNets, col(FLNets.id) == FLScheduler.net_id)
                .where(FLScheduler.status == NetStatus.AVAILABLE)
                .order_by(FLNets.name)
                .limit(1),
                FLScheduler,
            )
        ).first()
        if slot_row is None:
            return None
        slot, net = slot_row
        while True:
            job = session.exec(
                locked(
                    select(FLJob)
                    .where(FLJob.status == JobStatus.QUEUED)
                    .order_by(col(FLJob.created), col(FLJob.id))
                    .limit(1),
                    FLJob,
                )
            ).first()
            if job is None:
                return None
            trust_ids = tuple(
                session.exec(select(FLJobTrust.trust_id).where(FLJobTrust.fl_job_id == job.id)).all()
            )
            unaddressable = _unaddressable_trusts(session, trust_ids) if trust_ids else []
            if not trust_ids or unaddressable:
                reason = (
                    "it names no trusts"
                    if not trust_ids
                    else f"unknown or unassigned trust id(s): {', '.join(map(str, unaddressable))}"
                )
                _retire_job(session, job, reason)
                continue
            break
        now = utcnow()
        job.status = JobStatus.IN_PROGRESS
        job.started = now
        slot.status = NetStatus.BUSY
        slot.job_id = job.id
        session.add_all([job, slot])
        return _claim(slot, net, job, trust_ids)


def claim_available_net(session: Session) -> Claim | None:
    """Take a free net and the oldest queued job together, in one transaction.

    PostgreSQL: both rows are taken ``FOR UPDATE SKIP LOCKED``, so concurrent claimers never wait on nor take
    the same net or job. SQLite: the transaction is ``BEGIN IMMEDIATE`` (see ``db.engine``), which serialises
    claimers. A queued job whose trusts cannot be addressed is retired with a logged reason and the next one
    is taken. Returns None, changing nothing, when no net is free or no job is queued.

    Raises:
        DatabaseError: the database failed; nothing was changed.
    """
    return _claim_available_net(session, lock_rows=True)


def record_backend_job_id(session: Session, fl_job_id: uuid.UUID, backend_job_id: str) -> FLJob:
    """Store the FL server's id for a submitted job (FLIP's ``add_fl_backend_job_id``).

    Raises:
        InvalidInputError: empty backend id.
        NotFoundError: unknown job.
        ConflictError: the job already has a different backend id (a second submission).
    """
    if not backend_job_id or not backend_job_id.strip():
        raise InvalidInputError("the backend job id is empty")
    with transaction(session):
        job = _get(session, FLJob, fl_job_id, "fl_job")
        if job.fl_backend_job_id not in (None, backend_job_id):
            raise ConflictError(
                f"fl_job {fl_job_id} already has backend job {job.fl_backend_job_id}, not {backend_job_id}"
            )
        job.fl_backend_job_id = backend_job_id
        session.add(job)
    return job


def remove_job(session: Session, fl_job_id: uuid.UUID) -> FLJob:
    """Soft-delete a job that failed before training started (FLIP's ``remove_job``: ``started`` cleared).

    Raises:
        NotFoundError: unknown job.
    """
    with transaction(session):
        job = _get(session, FLJob, fl_job_id, "fl_job")
        job.status = JobStatus.DELETED
        job.started = None
        session.add(job)
    return job


def remove_model_jobs_from_queue(session: Session, model_id: uuid.UUID) -> int:
    """Soft-delete every QUEUED or IN_PROGRESS job of a model (stopping it); finished history is kept.

    Returns the number of jobs removed. Raises:
        NotFoundError: unknown model.
    """
    with transaction(session):
        _get(session, Model, model_id, "model")
        result = session.execute(
            sa.update(FLJob)
            .where(col(FLJob.model_id) == model_id, col(FLJob.status).in_(ACTIVE_JOB_STATUSES))
            .values(status=JobStatus.DELETED, completed=utcnow())
        )
    return int(result.rowcount or 0)


def revert_pickup(session: Session, fl_job_id: uuid.UUID) -> None:
    """Undo a claim that could not start for a passing reason: the job is QUEUED again, its net AVAILABLE.

    Raises:
        NotFoundError: unknown job.
        ConflictError: the job is not IN_PROGRESS or was already submitted to a backend.
    """
    with transaction(session):
        job = _get(session, FLJob, fl_job_id, "fl_job")
        if job.status != JobStatus.IN_PROGRESS or job.fl_backend_job_id is not None:
            raise ConflictError(f"fl_job {fl_job_id} cannot be put back in the queue (status {job.status.value})")
        job.status = JobStatus.QUEUED
        job.started = None
        session.add(job)
        _free_slots(session, sa.and_(col(FLScheduler.job_id) == fl_job_id))


def _free_slots(session: Session, where: Any) -> int:
    result = session.execute(
        sa.update(FLScheduler)
        .where(where, col(FLScheduler.status) == NetStatus.BUSY)
        .values(status=NetStatus.AVAILABLE, job_id=None)
    )
    return int(result.rowcount or 0)


def complete_job(session: Session, fl_job_id: uuid.UUID) -> FLJob:
    """Mark a running job COMPLETED and free the net that held it (FLIP's ``update_fl_scheduler``).

    Completing an already COMPLETED job changes nothing.

    Raises:
        NotFoundError: unknown job.
        ConflictError: the job is QUEUED or DELETED.
    """
    with transaction(session):
        job = _get(session, FLJob, fl_job_id, "fl_job")
        if job.status in (JobStatus.QUEUED, JobStatus.DELETED):
            raise ConflictError(f"fl_job {fl_job_id} is {job.status.value}, not running")
        if job.status == JobStatus.IN_PROGRESS:
            job.status = JobStatus.COMPLETED
            job.completed = utcnow()
            session.add(job)
        _free_slots(session, col(FLScheduler.job_id) == fl_job_id)
    return job


def release_nets_for_model(session: Session, model_id: uuid.UUID) -> int:
    """Free every net held by any job of a model (FLIP's ``release_scheduler_for_model``); returns how many."""
    with transaction(session):
        jobs_of_model = select(FLJob.id).where(FLJob.model_id == model_id)
        return _free_slots(session, col(FLScheduler.job_id).in_(jobs_of_model))


def recover_stale_busy_nets(session: Session) -> list[RecoveredNet]:
    """The watchdog: free BUSY nets whose job is gone, COMPLETED or DELETED, or that hold no job at all.

    FLIP's first watchdog only freed nets whose job row was missing (#615), so a net whose job had COMPLETED
    or been DELETED stayed BUSY forever. A net whose job is still QUEUED or IN_PROGRESS is never touched.
    """
    with transaction(session):
        live_job = sa.exists().where(
            col(FLJob.id) == FLScheduler.job_id, col(FLJob.status).in_(ACTIVE_JOB_STATUSES)
        )
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


def queue_positions(session: Session) -> list[QueuePosition]:
    """QUEUED jobs in the order they will be claimed (oldest first), numbered from 1."""
    with transaction(session):
        jobs = session.exec(
            select(FLJob).where(FLJob.status == JobStatus.QUEUED).order_by(col(FLJob.created), col(FLJob.id))
        ).all()
    return [
        QueuePosition(position=i, fl_job_id=j.id, model_id=j.model_id, created=j.created)
        for i, j in enumerate(jobs, start=1)
    ]


def log_queue_positions(session: Session) -> int:
    """Write a QUEUE_POSITION row for each queued job whose position changed since its last one.

    Emitting only on change keeps ``fl_logs`` from growing on every tick (FLIP #616). Returns rows written.
    """
    positions = queue_positions(session)
    if not positions:
        return 0
    with transaction(session):
        previous = session.exec(
            select(FLLogs)
            .where(
                FLLogs.event_type == FLLogEvent.QUEUE_POSITION.value,
                col(FLLogs.model_id).in_({p.model_id for p in positions}),
            )
            .order_by(col(FLLogs.log_date))
        ).all()
        last: dict[str, int] = {}
        for row in previous:
            details = row.details or {}
            last[str(details.get("job_id"))] = int(details.get("position", 0))
        written = 0
        for p in positions:
            if last.get(str(p.fl_job_id)) != p.position:
                _log(
                    session,
                    p.model_id,
                    f"Model queued at position {p.position}",
                    success=True,
                    event_type=FLLogEvent.QUEUE_POSITION.value,
                    details={"position": p.position, "job_id": str(p.fl_job_id)},
                )
                written += 1
    return written


# --- lookups the training run needs ------------------------------------------------------------------------


def get_net_by_model_id(session: Session, model_id: uuid.UUID) -> NetDetails:
    """The net currently running (holding the slot for) the model's newest claimed job.

    Raises:
        NotFoundError: no net holds a job of this model.
    """
    with transaction(session):
        net = session.exec(
            select(FLNets)
            .join(FLScheduler, col(FLScheduler.net_id) == FLNets.id)
            .join(FLJob, col(FLJob.id) == FLScheduler.job_id)
            .where(FLJob.model_id == model_id)
            .order_by(col(FLJob.started).desc())
        ).first()
    if net is None:
        raise NotFoundError(f"no net is running a job of model {model_id}")
    return NetDetails(name=net.name, endpoint=net.endpoint, fl_backend=net.fl_backend)


def get_net_by_name(session: Session, name: str) -> NetDetails:
    """Raises: NotFoundError: unknown net."""
    with transaction(session):
        net = session.exec(select(FLNets).where(FLNets.name == name)).first()
    if net is None:
        raise NotFoundError(f"net {name!r} not found")
    return NetDetails(name=net.name, endpoint=net.endpoint, fl_backend=net.fl_backend)


def resolve_backend(session: Session, net_name: str) -> FLBackend:
    """The FL backend of a net, read from ``fl_nets`` (never from an environment variable).

    Raises:
        NotFoundError: unknown net.
    """
    return get_net_by_name(session, net_name).fl_backend


def get_slot_names_by_trust_ids(session: Session, trust_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The FL client names (kit slot names) the FL server knows these trusts by.

    Raises:
        NotFoundError: naming every trust without a slot.
    """
    wanted = list(trust_ids)
    with transaction(session):
        rows = session.exec(
            select(FLKitSlot).where(col(FLKitSlot.assigned_to_trust_id).in_(wanted))
        ).all()
    slots = {row.assigned_to_trust_id: row.slot_name for row in rows if row.assigned_to_trust_id is not None}
    missing = [str(t) for t in wanted if t not in slots]
    if missing:
        raise NotFoundError(f"no FL kit slot assigned to trust id(s): {', '.join(missing)}")
    return {t: slots[t] for t in wanted}


def get_required_training_details(session: Session, model_id: uuid.UUID) -> TrainingDetails:
    """The model's project and that project's newest cohort query.

    Raises:
        NotFoundError: unknown model, or "No cohort query found for this project".
    """
    with transaction(session):
        model = _get(session, Model, model_id, "model")
        newest = session.exec(
            select(Query).where(Query.project_id == model.project_id).order_by(col(Query.created).desc())
        ).first()
    if newest is None:
        raise NotFoundError(f"No cohort query found for this project ({model.project_id})")
    return TrainingDetails(project_id=model.project_id, cohort_query=newest.query)


def get_model(session: Session, model_id: uuid.UUID) -> Model:
    """Raises: NotFoundError: unknown model."""
    with transaction(session):
        return _get(session, Model, model_id, "model")


def get_job(session: Session, fl_job_id: uuid.UUID) -> FLJob:
    """Raises: NotFoundError: unknown job."""
    with transaction(session):
        return _get(session, FLJob, fl_job_id, "fl_job")


# --- what the pipeline adds --------------------------------------------------------------------------------


class NoNetAvailableError(ConflictError):
    """Every net is busy (or the named net is): nothing was queued or claimed."""


def _lock_free_slot(session: Session, net_name: str | None) -> tuple[FLScheduler, FLNets]:
    """Lock an AVAILABLE net's slot (the named net's, when given) for this transaction.

    Raises:
        NoNetAvailableError: no such net is free.
    """
    query = (
        select(FLScheduler, FLNets)
        .join(FLNets, col(FLNets.id) == FLScheduler.net_id)
        .where(FLScheduler.status == NetStatus.AVAILABLE)
    )
    if net_name:
        query = query.where(FLNets.name == net_name)
    locked = query.order_by(FLNets.name).limit(1).with_for_update(skip_locked=True, of=FLScheduler)
    row = session.exec(locked).first()
    if row is None:
        where = f"net {net_name!r} is" if net_name else "no net is"
        raise NoNetAvailableError(f"{where} free right now: queue the model instead (flip-pipelines enqueue)")
    return row


def _claim(slot: FLScheduler, net: FLNets, job: FLJob, trust_ids: Sequence[uuid.UUID]) -> Claim:
    return Claim(
        scheduler_id=slot.id, net_id=net.id, net_name=net.name, endpoint=net.endpoint,
        fl_backend=net.fl_backend, fl_job_id=job.id, model_id=job.model_id, trust_ids=tuple(trust_ids),
    )


def enqueue_and_claim(
    session: Session, model_id: uuid.UUID, trust_ids: Sequence[uuid.UUID], net_name: str | None = None
) -> Claim:
    """Queue a job and take a free net for it, in one transaction: a launch from the Launchpad either gets a
    net now or changes nothing.

    Raises:
        InvalidInputError, NotFoundError: as ``add_fl_job``.
        NoNetAvailableError: no net (or not the named one) is free; nothing was written.
    """
    if not trust_ids:
        raise InvalidInputError("a training job needs at least one trust")
    with transaction(session):
        model = _get(session, Model, model_id, "model")
        known = set(session.exec(select(Trust.id).where(col(Trust.id).in_(list(trust_ids)))).all())
        unknown = [str(t) for t in trust_ids if t not in known]
        if unknown:
            raise NotFoundError(f"unknown trust id(s): {', '.join(unknown)}")
        unaddressable = _unaddressable_trusts(session, trust_ids)
        if unaddressable:
            raise NotFoundError(f"trust(s) without an FL kit slot: {', '.join(map(str, unaddressable))}")
        slot, net = _lock_free_slot(session, net_name)
        job = FLJob(model_id=model_id, status=JobStatus.IN_PROGRESS, started=utcnow())
        session.add(job)
        session.flush()
        session.add_all([FLJobTrust(fl_job_id=job.id, trust_id=t) for t in trust_ids])
        slot.status, slot.job_id = NetStatus.BUSY, job.id
        model.status = ModelStatus.INITIATED
        session.add_all([slot, model, ModelsAudit(model_id=model_id, action="QUEUED")])
        return _claim(slot, net, job, trust_ids)


def claim_for_job(session: Session, fl_job_id: uuid.UUID) -> Claim:
    """The claim a running job holds (its net and trusts), for a run started by the queue sensor.

    Raises:
        NotFoundError: unknown job, or no net holds it (it was released or never claimed).
    """
    with transaction(session):
        job = _get(session, FLJob, fl_job_id, "fl_job")
        row = session.exec(
            select(FLScheduler, FLNets)
            .join(FLNets, col(FLNets.id) == FLScheduler.net_id)
            .where(FLScheduler.job_id == fl_job_id, FLScheduler.status == NetStatus.BUSY)
        ).first()
        if row is None or job.status != JobStatus.IN_PROGRESS:
            raise NotFoundError(f"fl_job {fl_job_id} is {job.status.value} and holds no net")
        slot, net = row
        trust_ids = tuple(session.exec(select(FLJobTrust.trust_id).where(FLJobTrust.fl_job_id == fl_job_id)).all())
        return _claim(slot, net, job, trust_ids)


def claim_available_nets(session: Session, limit: int) -> list[Claim]:
    """Up to ``limit`` (free net, oldest queued job) pairs, each claimed in its own transaction."""
    claims: list[Claim] = []
    while len(claims) < limit:
        claim = claim_available_net(session)
        if claim is None:
            break
        claims.append(claim)
    return claims


def count_available_nets(session: Session) -> int:
    with transaction(session):
        return int(
            session.exec(
                select(sa.func.count()).select_from(FLScheduler).where(FLScheduler.status == NetStatus.AVAILABLE)
            ).one()
        )


def in_progress_jobs(session: Session) -> list[tuple[FLJob, NetDetails | None]]:
    """Every IN_PROGRESS job with the net holding it (None when no net does): what reconciliation checks."""
    with transaction(session):
        rows = session.exec(
            select(FLJob, FLNets)
            .join(FLScheduler, col(FLScheduler.job_id) == FLJob.id, isouter=True)
            .join(FLNets, col(FLNets.id) == FLScheduler.net_id, isouter=True)
            .where(FLJob.status == JobStatus.IN_PROGRESS)
            .order_by(col(FLJob.started))
        ).all()
    return [
        (job, NetDetails(name=net.name, endpoint=net.endpoint, fl_backend=net.fl_backend) if net else None)
        for job, net in rows
    ]


def get_trust_names_by_ids(session: Session, trust_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    with transaction(session):
        rows = session.exec(select(Trust).where(col(Trust.id).in_(list(trust_ids)))).all()
    return {t.id: t.name for t in rows}


def claim_queued_job_of_model(session: Session, model_id: uuid.UUID, net_name: str | None = None) -> Claim:
    """Take a free net (optionally the named one) for the model's oldest queued job, in one transaction.

    Raises:
        NotFoundError: the model has no queued job.
        NoNetAvailableError: no (such) net is free; nothing changed.
    """
    with transaction(session):
        job = session.exec(
            select(FLJob)
            .where(FLJob.model_id == model_id, FLJob.status == JobStatus.QUEUED)
            .order_by(col(FLJob.created))
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if job is None:
            raise NotFoundError(f"model {model_id} has no queued job: give trusts to queue one")
        slot, net = _lock_free_slot(session, net_name)
        job.status, job.started = JobStatus.IN_PROGRESS, utcnow()
        slot.status, slot.job_id = NetStatus.BUSY, job.id
        session.add_all([job, slot])
        trust_ids = tuple(session.exec(select(FLJobTrust.trust_id).where(FLJobTrust.fl_job_id == job.id)).all())
        return _claim(slot, net, job, trust_ids)


def abort_model_jobs(session: Session, model_id: uuid.UUID, reason: str) -> tuple[int, list[FLJob]]:
    """Stop a model: queued jobs DELETED, running jobs DELETED (returned, to abort on their FL servers), their
    nets freed, the model STOPPED — in one transaction. Returns (queued jobs removed, running jobs stopped).

    Raises:
        NotFoundError: unknown model.
    """
    with transaction(session):
        model = _get(session, Model, model_id, "model")
        jobs = session.exec(
            select(FLJob).where(FLJob.model_id == model_id, col(FLJob.status).in_(ACTIVE_JOB_STATUSES))
        ).all()
        queued = [j for j in jobs if j.status == JobStatus.QUEUED]
        running = [j for j in jobs if j.status == JobStatus.IN_PROGRESS]
        if not jobs:
            return 0, []
        now = utcnow()
        for job in jobs:
            job.status, job.completed = JobStatus.DELETED, now
            session.add(job)
        _free_slots(session, col(FLScheduler.job_id).in_([j.id for j in running]))
        model.status = ModelStatus.STOPPED
        session.add_all([model, ModelsAudit(model_id=model_id, action="STOPPED")])
        _log(session, model_id, reason, success=True, details={"fl_job_ids": [str(j.id) for j in jobs]})
        return len(queued), list(running)


def upsert_net(session: Session, name: str, endpoint: str, fl_backend: FLBackend) -> FLNets:
    """Register a net, or update an existing one's endpoint and backend (FLIP seeds nets this way, by name).

    Raises:
        ConflictError: another net already uses the endpoint.
    """
    endpoint = endpoint.strip().rstrip("/")
    with transaction(session):
        net = session.exec(select(FLNets).where(FLNets.name == name)).first()
        if net is None:
            clash = session.exec(select(FLNets).where(FLNets.endpoint == endpoint)).first()
            if clash is not None:
                raise ConflictError(f"net {clash.name} already uses endpoint {endpoint}")
            net = FLNets(name=name, endpoint=endpoint, fl_backend=fl_backend)
            session.add(net)
            session.flush()
            session.add(FLScheduler(net_id=net.id))
        else:
            clash = session.exec(select(FLNets).where(FLNets.endpoint == endpoint, FLNets.id != net.id)).first()
            if clash is not None:
                raise ConflictError(f"net {clash.name} already uses endpoint {endpoint}")
            net.endpoint, net.fl_backend = endpoint, fl_backend
            session.add(net)
    return net
