"""Claims: a queued job and a free net of a backend the model's files suit, taken together in one transaction.

PostgreSQL: the net's slot and the job are taken ``FOR UPDATE SKIP LOCKED``, so concurrent claimers never wait
on nor take the same net or job. SQLite: every transaction is ``BEGIN IMMEDIATE`` (``db.engine``), which
serialises claimers. Which backends suit a model is decided beforehand from its files (``domain.model_check``),
so a model is never claimed onto a net it cannot train on, and an old job waiting for a busy backend never
blocks a younger one that a free net of another backend can take.
"""

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from flip_pipelines.db.lifecycle import (
    add_queued_job_in_transaction,
    enqueue_in_transaction,
    retire_job_in_transaction,
)
from flip_pipelines.db.models import (
    FLJob,
    FLJobTrust,
    FLKitSlot,
    FLNets,
    FLScheduler,
    Model,
    Trust,
    utcnow,
)
from flip_pipelines.db.registry import trust_names_in_transaction, unapproved_in_transaction
from flip_pipelines.db.site_config import deployment_mode_in_transaction, refuse_in_deployment_mode
from flip_pipelines.db.transaction import get_row, transaction, write_log
from flip_pipelines.domain.enums import FLBackend, JobStatus, NetStatus
from flip_pipelines.domain.errors import ConflictError, InvalidInputError, NotFoundError
from flip_pipelines.domain.model_check import ModelCheck
from flip_pipelines.domain.queue import Claim, QueuedBehind

BackendsOf = Mapping[uuid.UUID, frozenset[FLBackend]]


class NoNetAvailableError(ConflictError):
    """No net (of a backend the model suits, or the named one) is free: nothing was queued or claimed."""


def _locked(stmt: Any, of: Any, lock_rows: bool) -> Any:
    return stmt.with_for_update(skip_locked=True, of=of) if lock_rows else stmt


def _free_slots(session: Session, backends: Iterable[FLBackend], net_name: str | None = None, *,
                lock_rows: bool = True) -> dict[FLBackend, tuple[FLScheduler, FLNets]]:
    """Lock the first free slot (by net name) of each backend; only the named net's when ``net_name`` is given."""
    found = {}
    for backend in backends:
        query = (
            select(FLScheduler, FLNets)
            .join(FLNets, col(FLNets.id) == FLScheduler.net_id)
            .where(FLScheduler.status == NetStatus.AVAILABLE, FLNets.fl_backend == backend)
        )
        if net_name:
            query = query.where(FLNets.name == net_name)
        row = session.exec(_locked(query.order_by(FLNets.name).limit(1), FLScheduler, lock_rows)).first()
        if row is not None:
            found[backend] = row
    return found


def _addressed_trusts(session: Session, trust_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str]]:
    """Trust id → (trust name, FL kit slot name) for the trusts the FL server can address."""
    rows = session.exec(
        select(Trust.id, Trust.name, FLKitSlot.slot_name)
        .join(FLKitSlot, col(FLKitSlot.assigned_to_trust_id) == Trust.id)
        .where(col(Trust.id).in_(list(trust_ids)))
    ).all()
    return {trust_id: (name, slot) for trust_id, name, slot in rows}


def _job_trusts(session: Session, job_id: uuid.UUID) -> list[uuid.UUID]:
    return list(session.exec(select(FLJobTrust.trust_id).where(FLJobTrust.fl_job_id == job_id)).all())


def _unrunnable(session: Session, job: FLJob, trust_ids: Sequence[uuid.UUID],
                trusts: dict[uuid.UUID, tuple[str, str]]) -> str | None:
    """Why a queued job can never run (FLIP #894: it would wedge the queue), or None."""
    if not trust_ids:
        return "it names no trusts."
    unaddressable = [str(t) for t in trust_ids if t not in trusts]
    if unaddressable:
        return f"unknown trust id(s) or trust(s) without an FL kit slot: {', '.join(unaddressable)}."
    if unapproved_in_transaction(session, job.model_id, trust_ids):
        return "the selected trusts are not approved for this model."
    return None


def _take(session: Session, job: FLJob, slot: FLScheduler, net: FLNets,
          trusts: dict[uuid.UUID, tuple[str, str]], trust_ids: Sequence[uuid.UUID]) -> Claim:
    """The claim itself: job IN_PROGRESS, net BUSY with it, and the log line saying so."""
    job.status, job.started = JobStatus.IN_PROGRESS, utcnow()
    slot.status, slot.job_id = NetStatus.BUSY, job.id
    session.add_all([job, slot])
    write_log(session, job.model_id, f"Training assigned to net '{net.name}' ({net.fl_backend.value})",
              details={"fl_job_id": str(job.id), "net": net.name})
    return _as_claim(session, job, slot, net, trusts, trust_ids)


def _as_claim(session: Session, job: FLJob, slot: FLScheduler, net: FLNets,
              trusts: dict[uuid.UUID, tuple[str, str]], trust_ids: Sequence[uuid.UUID]) -> Claim:
    model = get_row(session, Model, job.model_id, "model")
    trust_ids = sorted(trust_ids, key=lambda t: trusts.get(t, (str(t), ""))[0])  # by name: stable for people
    names = [trusts.get(t, (str(t), str(t))) for t in trust_ids]  # a trust deregistered since: its id
    return Claim(
        scheduler_id=slot.id, net_id=net.id, net_name=net.name, endpoint=net.endpoint, fl_backend=net.fl_backend,
        fl_job_id=job.id, model_id=job.model_id, model_name=model.name, trust_ids=tuple(trust_ids),
        trust_names=tuple(n for n, _ in names), slot_names=tuple(s for _, s in names),
        backend_job_id=job.fl_backend_job_id,
    )


def _pick(slots: dict[FLBackend, tuple[FLScheduler, FLNets]], suits: frozenset[FLBackend]) -> FLBackend:
    """Of the free nets the model suits, the first by name (so a model that suits both may take either)."""
    return min((b for b in slots if b in suits), key=lambda b: slots[b][1].name)


def claim_next_job(session: Session, backends_of: BackendsOf, *, lock_rows: bool = True) -> Claim | None:
    """Take the oldest queued job whose model suits a free net, and that net, in one transaction.

    ``backends_of`` maps model ids to the backends their files suit; a queued job of a model not in it is not
    taken (its files were not checked yet). A job naming a trust that no longer exists or has no FL kit slot is
    retired with a logged reason and the next one is taken (FLIP #894). Returns None, changing nothing, when no
    suitable pair exists. ``lock_rows=False`` exists only to prove, in a test, that the row locks are needed.

    Raises:
        DatabaseError: the database failed; nothing was changed.
    """
    with transaction(session):
        if deployment_mode_in_transaction(session):
            return None
        slots = _free_slots(session, FLBackend, lock_rows=lock_rows)
        eligible = [m for m, suits in backends_of.items() if suits & slots.keys()]
        if not eligible:
            return None
        while True:
            job = session.exec(_locked(
                select(FLJob)
                .where(FLJob.status == JobStatus.QUEUED, col(FLJob.model_id).in_(eligible))
                .order_by(col(FLJob.created), col(FLJob.id))
                .limit(1),
                FLJob, lock_rows,
            )).first()
            if job is None:
                return None
            trust_ids = _job_trusts(session, job.id)
            trusts = _addressed_trusts(session, trust_ids)
            reason = _unrunnable(session, job, trust_ids, trusts)
            if reason is None:
                break
            retire_job_in_transaction(session, job, reason)
        slot, net = slots[_pick(slots, backends_of[job.model_id])]
        return _take(session, job, slot, net, trusts, trust_ids)


def claim_available_nets(session: Session, backends_of: BackendsOf, limit: int) -> list[Claim]:
    """Up to ``limit`` claims, each in its own transaction (``claim_next_job``)."""
    claims: list[Claim] = []
    while len(claims) < limit:
        claim = claim_next_job(session, backends_of)
        if claim is None:
            break
        claims.append(claim)
    return claims


def free_net_count(session: Session) -> dict[FLBackend, int]:
    """Free nets per backend (backends with none are left out)."""
    with transaction(session):
        rows = session.exec(
            select(FLNets.fl_backend, sa.func.count())
            .join(FLScheduler, col(FLScheduler.net_id) == FLNets.id)
            .where(FLScheduler.status == NetStatus.AVAILABLE)
            .group_by(FLNets.fl_backend)
        ).all()
    return {backend: int(count) for backend, count in rows}


def queued_models(session: Session, limit: int = 500) -> list[uuid.UUID]:
    """The models of the oldest ``limit`` queued jobs, each once, in the order their first job waits."""
    with transaction(session):
        rows = session.exec(
            select(FLJob.model_id).where(FLJob.status == JobStatus.QUEUED)
            .order_by(col(FLJob.created), col(FLJob.id)).limit(limit)
        ).all()
    return list(dict.fromkeys(rows))


def has_queued_job(session: Session, model_id: uuid.UUID) -> bool:
    with transaction(session):
        return session.exec(
            select(FLJob.id).where(FLJob.model_id == model_id, FLJob.status == JobStatus.QUEUED).limit(1)
        ).first() is not None


def _older_waiting(session: Session, job: FLJob, backends: Iterable[FLBackend],
                   backends_of: BackendsOf) -> dict[FLBackend, set[uuid.UUID]]:
    """Per backend, the queued jobs ahead of ``job`` in the queue sensor's order whose models suit it (a model not
    in ``backends_of`` was not checked: as the sensor leaves its jobs waiting, they hold no net back)."""
    ahead = sa.or_(col(FLJob.created) < job.created, sa.and_(col(FLJob.created) == job.created, col(FLJob.id) < job.id))
    older = session.exec(
        select(FLJob.id, FLJob.model_id).where(FLJob.status == JobStatus.QUEUED, FLJob.id != job.id, ahead)).all()
    return {b: {j for j, m in older if b in backends_of.get(m, frozenset())} for b in backends}


def _launch(session: Session, job: FLJob, suits: frozenset[FLBackend],
            slots: dict[FLBackend, tuple[FLScheduler, FLNets]], backends_of: BackendsOf | None,
            trusts: dict[uuid.UUID, tuple[str, str]], trust_ids: Sequence[uuid.UUID]) -> Claim | QueuedBehind:
    """Take a free net for a launched job unless older queued jobs wait for it: the queue sensor's order, kept.

    A free net's backend is held back only by an older job whose model suits that backend; one waiting for a busy
    backend, or for another, holds nothing back (as in the sensor's claim)."""
    waiting = _older_waiting(session, job, slots, {**(backends_of or {}), job.model_id: suits})
    open_slots = {b: slot for b, slot in slots.items() if not waiting[b]}
    if not open_slots:
        return QueuedBehind(fl_job_id=job.id, model_id=job.model_id, older_jobs=len(set().union(*waiting.values())),
                            backends=tuple(sorted(slots, key=lambda b: slots[b][1].name)))
    slot, net = open_slots[_pick(open_slots, suits)]
    return _take(session, job, slot, net, trusts, trust_ids)


def claim_queued_job_of_model(session: Session, model_id: uuid.UUID, suits: frozenset[FLBackend],
                              net_name: str | None = None, *,
                              backends_of: BackendsOf | None = None) -> Claim | QueuedBehind:
    """Take a free net of a backend the model suits (the named net, when given) for the model's oldest queued job,
    in one transaction: a Launchpad run with only a model id. ``backends_of``: the backends the other waiting
    models suit (their files checked as the queue sensor checks them); an older job of one that suits a free net's
    backend keeps the net for the sensor to give in order, and the job stays QUEUED in its place (``QueuedBehind``,
    nothing written).

    Raises:
        NotFoundError: the model has no queued job.
        NoNetAvailableError: no such net is free; nothing changed.
        InvalidInputError: the job's trusts cannot be addressed or are not approved for the model.
        DeploymentModeError: the hub is in deployment mode.
    """
    with transaction(session):
        refuse_in_deployment_mode(session, "starting a training")
        job = session.exec(
            select(FLJob).where(FLJob.model_id == model_id, FLJob.status == JobStatus.QUEUED)
            .order_by(col(FLJob.created), col(FLJob.id)).limit(1).with_for_update(skip_locked=True)
        ).first()
        if job is None:
            raise NotFoundError(f"model {model_id} has no queued job: give trusts to queue one")
        trust_ids = _job_trusts(session, job.id)
        trusts = _checked_trusts(session, model_id, trust_ids)
        slots = _slots_or_raise(session, suits, net_name)
        return _launch(session, job, suits, slots, backends_of, trusts, trust_ids)


def enqueue_and_claim(session: Session, model_id: uuid.UUID, trust_ids: Sequence[uuid.UUID],
                      suits: frozenset[FLBackend], net_name: str | None = None, *,
                      backends_of: BackendsOf | None = None) -> Claim | QueuedBehind:
    """Queue a job (as ``enqueue`` does: trusts and queue positions logged) and take a free net of a backend the
    model suits for it, in one transaction: a launch from the Launchpad. With older jobs waiting for the free nets
    (``backends_of``, as ``claim_queued_job_of_model``) the job stays QUEUED, last in line (``QueuedBehind``).

    Raises:
        InvalidInputError: no trusts, a trust named twice, a trust without an FL kit slot or not approved for the
            model.
        NotFoundError: unknown model or trusts.
        NoNetAvailableError: no such net (or not the named one) is free; nothing was written.
        DeploymentModeError: the hub is in deployment mode.
    """
    if not trust_ids or len(set(trust_ids)) != len(trust_ids):
        raise InvalidInputError("a training job needs at least one trust, each named once")
    with transaction(session):
        model = get_row(session, Model, model_id, "model")
        refuse_in_deployment_mode(session, "starting a training")
        trusts = _checked_trusts(session, model_id, trust_ids)
        slots = _slots_or_raise(session, suits, net_name)
        job = add_queued_job_in_transaction(session, model, trust_ids, {t: n for t, (n, _) in trusts.items()},
                                            suits)
        return _launch(session, job, suits, slots, backends_of, trusts, trust_ids)


def enqueue_and_claim_free_net(session: Session, model_id: uuid.UUID, trust_ids: Sequence[uuid.UUID],
                               check: ModelCheck) -> tuple[FLJob, Claim | None]:
    """Queue a job exactly as ``lifecycle.enqueue_training`` does and, in the same transaction, take a free net of a
    backend the model's files suit for it — only when the queue sensor would take this job next anyway: no other
    job is queued (FIFO is the sensor's to keep; an older job may be waiting for that very net). So
    ``flip-pipelines enqueue`` can start the run at once instead of waiting for a sensor tick.

    Returns the job and its claim, or None when it waits QUEUED for the sensor (another job is queued, no suitable
    net is free, or its trusts cannot be addressed — the sensor retires such a job with the reason).

    Raises: what ``lifecycle.enqueue_training`` raises; nothing is written then.
    """
    with transaction(session):
        job = enqueue_in_transaction(session, model_id, trust_ids, check)
        waiting = session.exec(
            select(FLJob.id).where(FLJob.status == JobStatus.QUEUED, FLJob.id != job.id).limit(1)).first()
        slots = _free_slots(session, check.backends) if waiting is None else {}
        trusts = _addressed_trusts(session, trust_ids)
        if not slots or _unrunnable(session, job, trust_ids, trusts):
            return job, None
        slot, net = slots[_pick(slots, check.backends)]
        return job, _take(session, job, slot, net, trusts, trust_ids)


def _checked_trusts(session: Session, model_id: uuid.UUID,
                    trust_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str]]:
    trust_names_in_transaction(session, trust_ids)
    trusts = _addressed_trusts(session, trust_ids)
    unaddressable = [str(t) for t in trust_ids if t not in trusts]
    if unaddressable:
        raise InvalidInputError(f"trust(s) without an FL kit slot: {', '.join(unaddressable)}")
    unapproved = unapproved_in_transaction(session, model_id, trust_ids)
    if unapproved:
        raise InvalidInputError(f"trust(s) not approved for this model: "
                                f"{', '.join(trusts[t][0] for t in unapproved)}")
    return trusts


def _slots_or_raise(session: Session, suits: frozenset[FLBackend],
                    net_name: str | None) -> dict[FLBackend, tuple[FLScheduler, FLNets]]:
    if not suits:
        raise InvalidInputError("the model's files suit no backend: see flip-pipelines models check")
    if net_name:
        net = session.exec(select(FLNets).where(FLNets.name == net_name)).first()
        if net is None:
            raise NotFoundError(f"net {net_name!r} not found")
        if net.fl_backend not in suits:
            raise InvalidInputError(f"the model's files do not suit net {net_name!r} ({net.fl_backend.value})")
    slots = _free_slots(session, suits, net_name)
    if not slots:
        where = f"net {net_name!r} is" if net_name else f"no {' or '.join(sorted(b.value for b in suits))} net is"
        raise NoNetAvailableError(f"{where} free right now: queue the model instead (flip-pipelines enqueue)")
    return slots


def claim_for_job(session: Session, fl_job_id: uuid.UUID) -> Claim:
    """The claim a job holds (its net, trusts, names and backend job id): for a run started on a claimed job.

    Raises:
        NotFoundError: unknown job, or no net holds it (it ended, or was never claimed).
    """
    with transaction(session):
        job = get_row(session, FLJob, fl_job_id, "fl_job")
        row = session.exec(
            select(FLScheduler, FLNets)
            .join(FLNets, col(FLNets.id) == FLScheduler.net_id)
            .where(FLScheduler.job_id == fl_job_id, FLScheduler.status == NetStatus.BUSY)
        ).first()
        if row is None or job.status != JobStatus.IN_PROGRESS:
            raise NotFoundError(f"fl_job {fl_job_id} is {job.status.value} and holds no net")
        slot, net = row
        trust_ids = _job_trusts(session, job.id)
        return _as_claim(session, job, slot, net, _addressed_trusts(session, trust_ids), trust_ids)
