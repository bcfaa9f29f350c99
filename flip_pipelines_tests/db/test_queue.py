"""Every queue and scheduler transition, on SQLite and on PostgreSQL (the ``session`` fixture is parametrised)."""

import uuid

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from flip_pipelines.db import queue
from flip_pipelines.db.models import FLJob, FLJobTrust, FLKitSlot, FLLogs, FLScheduler, Model, Query, Trust
from flip_pipelines.domain.enums import FLBackend, FLLogEvent, JobStatus, ModelStatus, NetStatus
from flip_pipelines.domain.errors import ConflictError, InvalidInputError, NotFoundError
from flip_pipelines_tests.factories import build_world, queue_model


def _job(session: Session, job_id: uuid.UUID) -> FLJob:
    session.expire_all()
    return session.get(FLJob, job_id)  # type: ignore[return-value]


def _model(session: Session, model_id: uuid.UUID) -> Model:
    session.expire_all()
    return session.get(Model, model_id)  # type: ignore[return-value]


def test_add_fl_job_queues_with_trusts_and_initiates_model(session: Session) -> None:
    world = build_world(session)
    model_id, job_id = queue_model(session, world)
    job = _job(session, job_id)
    assert job.status == JobStatus.QUEUED and job.started is None
    trusts = session.exec(select(FLJobTrust.trust_id).where(FLJobTrust.fl_job_id == job_id)).all()
    assert sorted(trusts) == sorted(world.trust_ids)
    assert _model(session, model_id).status == ModelStatus.INITIATED


@pytest.mark.parametrize(
    ("trusts", "error", "message"),
    [
        ("none", InvalidInputError, "at least one trust"),
        ("duplicate", InvalidInputError, "more than once"),
        ("unknown", NotFoundError, "unknown trust id"),
    ],
)
def test_add_fl_job_rejects_bad_trusts_and_writes_nothing(
    session: Session, trusts: str, error: type, message: str
) -> None:
    world = build_world(session)
    model = queue.add_model(session, "m", "proj")
    trust_ids = {"none": [], "duplicate": [world.trust_ids[0]] * 2, "unknown": [world.trust_ids[0], uuid.uuid4()]}
    with pytest.raises(error, match=message):
        queue.add_fl_job(session, model.id, trust_ids[trusts])
    assert session.exec(select(FLJob)).all() == []
    assert _model(session, model.id).status == ModelStatus.PENDING


def test_add_fl_job_unknown_model(session: Session) -> None:
    world = build_world(session)
    with pytest.raises(NotFoundError, match="model"):
        queue.add_fl_job(session, uuid.uuid4(), world.trust_ids)


def test_claim_takes_free_net_and_oldest_job_together(session: Session) -> None:
    world = build_world(session, nets=1)
    _, first = queue_model(session, world, "a")
    _, second = queue_model(session, world, "b")
    claim = queue.claim_available_net(session)
    assert claim is not None
    assert claim.fl_job_id == first and claim.net_name == "net-1" and claim.fl_backend == FLBackend.NVFLARE
    assert sorted(claim.trust_ids) == sorted(world.trust_ids)
    assert _job(session, first).status == JobStatus.IN_PROGRESS and _job(session, first).started is not None
    slot = session.exec(select(FLScheduler)).one()
    assert slot.status == NetStatus.BUSY and slot.job_id == first
    assert queue.claim_available_net(session) is None, "the only net is busy"
    assert _job(session, second).status == JobStatus.QUEUED


def test_claim_with_no_queued_job_leaves_net_available(session: Session) -> None:
    build_world(session, nets=2)
    assert queue.claim_available_net(session) is None
    assert {n.status for n in queue.list_nets(session)} == {NetStatus.AVAILABLE}


def test_deregistered_trust_does_not_wedge_the_queue(session: Session) -> None:
    """FLIP #894: a job naming a trust the FL server cannot address is retired; the next job proceeds."""
    world = build_world(session, nets=1)
    bad_model, bad_job = queue_model(session, world, "bad")
    good_model = queue.add_model(session, "good", "proj")
    good_job = queue.add_fl_job(session, good_model.id, [world.trust_ids[0]]).id
    slot = session.exec(select(FLKitSlot).where(FLKitSlot.assigned_to_trust_id == world.trust_ids[1])).one()
    slot.assigned_to_trust_id = None  # trust 2 is deregistered after the job was queued
    session.add(slot)
    session.commit()

    claim = queue.claim_available_net(session)
    assert claim is not None and claim.fl_job_id == good_job
    assert _job(session, bad_job).status == JobStatus.DELETED
    assert _model(session, bad_model).status == ModelStatus.ERROR
    row = session.exec(select(FLLogs).where(FLLogs.model_id == bad_model, FLLogs.success.is_(False))).one()
    assert row.event_type == FLLogEvent.JOB_RETIRED.value and str(world.trust_ids[1]) in (row.log or "")


def test_retired_job_lets_next_valid_job_claim(session: Session) -> None:
    world = build_world(session, nets=1)
    model = queue.add_model(session, "ghost", "proj")
    ghost = FLJob(model_id=model.id)
    session.add(ghost)
    session.flush()
    session.add(FLJobTrust(fl_job_id=ghost.id, trust_id=uuid.uuid4()))
    session.commit()
    _, good_job = queue_model(session, world, "good")
    claim = queue.claim_available_net(session)
    assert claim is not None and claim.fl_job_id == good_job
    assert _job(session, ghost.id).status == JobStatus.DELETED
    assert _model(session, model.id).status == ModelStatus.ERROR


def test_record_backend_job_id_is_single_valued(session: Session) -> None:
    world = build_world(session)
    _, job_id = queue_model(session, world)
    queue.claim_available_net(session)
    queue.record_backend_job_id(session, job_id, "abc-123")
    queue.record_backend_job_id(session, job_id, "abc-123")  # same id again: a retried submit
    assert _job(session, job_id).fl_backend_job_id == "abc-123"
    with pytest.raises(ConflictError, match="already has backend job"):
        queue.record_backend_job_id(session, job_id, "other")
    with pytest.raises(NotFoundError):
        queue.record_backend_job_id(session, uuid.uuid4(), "x")


def test_complete_job_frees_net(session: Session) -> None:
    world = build_world(session)
    _, job_id = queue_model(session, world)
    queue.claim_available_net(session)
    queue.complete_job(session, job_id)
    job = _job(session, job_id)
    assert job.status == JobStatus.COMPLETED and job.completed is not None
    slot = session.exec(select(FLScheduler)).one()
    assert slot.status == NetStatus.AVAILABLE and slot.job_id is None
    queue.complete_job(session, job_id)  # idempotent
    _, queued = queue_model(session, world, "other")
    with pytest.raises(ConflictError, match="QUEUED"):
        queue.complete_job(session, queued)


def test_remove_job_and_remove_model_jobs_from_queue(session: Session) -> None:
    world = build_world(session, nets=1)
    model_id, first = queue_model(session, world, "a")
    second = queue.add_fl_job(session, model_id, world.trust_ids).id
    queue.claim_available_net(session)
    queue.remove_job(session, first)
    assert _job(session, first).status == JobStatus.DELETED and _job(session, first).started is None
    assert queue.remove_model_jobs_from_queue(session, model_id) == 1
    assert _job(session, second).status == JobStatus.DELETED and _job(session, second).completed is not None
    with pytest.raises(NotFoundError):
        queue.remove_model_jobs_from_queue(session, uuid.uuid4())


def test_revert_pickup_requeues_job_and_frees_net(session: Session) -> None:
    world = build_world(session)
    _, job_id = queue_model(session, world)
    queue.claim_available_net(session)
    queue.revert_pickup(session, job_id)
    assert _job(session, job_id).status == JobStatus.QUEUED and _job(session, job_id).started is None
    assert session.exec(select(FLScheduler)).one().status == NetStatus.AVAILABLE
    claim = queue.claim_available_net(session)
    assert claim is not None and claim.fl_job_id == job_id
    queue.record_backend_job_id(session, job_id, "submitted")
    with pytest.raises(ConflictError):
        queue.revert_pickup(session, job_id)


def test_release_nets_for_model(session: Session) -> None:
    world = build_world(session, nets=2)
    model_a, _ = queue_model(session, world, "a")
    _, job_b = queue_model(session, world, "b")
    queue.claim_available_net(session)
    queue.claim_available_net(session)
    assert queue.release_nets_for_model(session, model_a) == 1
    states = {n.name: n for n in queue.list_nets(session)}
    busy = [n for n in states.values() if n.status == NetStatus.BUSY]
    assert len(busy) == 1 and busy[0].fl_job_id == job_b
    assert queue.release_nets_for_model(session, model_a) == 0


@pytest.mark.parametrize("job_state", ["COMPLETED", "DELETED", "missing"])
def test_watchdog_recovers_stale_busy_nets(session: Session, job_state: str) -> None:
    """Without FLIP's #615 bug: a net whose job COMPLETED or was DELETED is freed, not only a missing one."""
    world = build_world(session, nets=2)
    _, stale = queue_model(session, world, "stale")
    _, live = queue_model(session, world, "live")
    queue.claim_available_net(session)
    queue.claim_available_net(session)
    if job_state == "missing":
        session.execute(sa.update(FLScheduler).where(FLScheduler.job_id == stale).values(job_id=None))
    else:
        session.execute(sa.update(FLJob).where(FLJob.id == stale).values(status=JobStatus(job_state)))
    session.commit()
    recovered = queue.recover_stale_busy_nets(session)
    assert [r.stale_fl_job_id for r in recovered] == [None if job_state == "missing" else stale]
    nets = {n.fl_job_id: n.status for n in queue.list_nets(session)}
    assert nets[live] == NetStatus.BUSY, "a net running a live job is never freed"
    assert sorted(s.value for s in nets.values()) == ["AVAILABLE", "BUSY"]
    assert queue.recover_stale_busy_nets(session) == []


def test_queue_positions_and_emit_on_change(session: Session) -> None:
    world = build_world(session, nets=1)
    _, a = queue_model(session, world, "a")
    _, b = queue_model(session, world, "b")
    _, c = queue_model(session, world, "c")
    assert [(p.position, p.fl_job_id) for p in queue.queue_positions(session)] == [(1, a), (2, b), (3, c)]
    assert queue.log_queue_positions(session) == 3
    assert queue.log_queue_positions(session) == 0, "unchanged positions write nothing"
    queue.claim_available_net(session)
    assert queue.log_queue_positions(session) == 2, "b and c moved up"
    rows = session.exec(select(FLLogs).where(FLLogs.event_type == FLLogEvent.QUEUE_POSITION.value)).all()
    assert sorted((r.details or {})["position"] for r in rows) == [1, 1, 2, 2, 3]


def test_net_lookups_and_backend_resolution(session: Session) -> None:
    world = build_world(session, nets=1, backend=FLBackend.FLOWER)
    model_id, _ = queue_model(session, world)
    with pytest.raises(NotFoundError, match="no net is running"):
        queue.get_net_by_model_id(session, model_id)
    queue.claim_available_net(session)
    net = queue.get_net_by_model_id(session, model_id)
    assert net.name == "net-1" and net.fl_backend == FLBackend.FLOWER
    assert queue.get_net_by_name(session, "net-1") == net
    assert queue.resolve_backend(session, "net-1") == FLBackend.FLOWER
    with pytest.raises(NotFoundError, match="net 'nope' not found"):
        queue.resolve_backend(session, "nope")


def test_backend_is_stored_by_member_name(session: Session) -> None:
    build_world(session, nets=1, backend=FLBackend.FLOWER)
    raw = session.execute(sa.text("SELECT fl_backend FROM fl_nets")).scalar_one()
    assert raw == "FLOWER"


def test_slot_names_for_trust_ids(session: Session) -> None:
    world = build_world(session, trusts=2)
    names = queue.get_slot_names_by_trust_ids(session, world.trust_ids)
    assert list(names.values()) == ["site-1", "site-2"]
    stranger = queue.add_trust(session, "Trust_x", "site-x").id
    slot = session.get(FLKitSlot, "site-x")
    slot.assigned_to_trust_id = None
    session.add(slot)
    session.commit()
    with pytest.raises(NotFoundError, match=str(stranger)):
        queue.get_slot_names_by_trust_ids(session, [*world.trust_ids, stranger])


def test_required_training_details_use_newest_query(session: Session) -> None:
    world = build_world(session)
    model_id, _ = queue_model(session, world)
    session.add(Query(project_id=world.project_id, query="SELECT newest"))
    session.commit()
    details = queue.get_required_training_details(session, model_id)
    assert details.project_id == world.project_id and details.cohort_query == "SELECT newest"
    session.execute(sa.delete(Query))
    session.commit()
    with pytest.raises(NotFoundError, match="No cohort query found for this project"):
        queue.get_required_training_details(session, model_id)


def test_registry_conflicts_write_nothing(session: Session) -> None:
    build_world(session, nets=1)
    with pytest.raises(ConflictError, match="name"):
        queue.add_net(session, "net-1", "http://elsewhere", FLBackend.FLOWER)
    with pytest.raises(ConflictError, match="endpoint"):
        queue.add_net(session, "net-9", "http://127.0.0.1:18001", FLBackend.FLOWER)
    with pytest.raises(ConflictError):
        queue.add_trust(session, "Trust_1")
    with pytest.raises(ConflictError, match="already assigned"):
        queue.add_trust(session, "Trust_9", "site-1")
    assert session.exec(select(Trust).where(Trust.name == "Trust_9")).first() is None
    with pytest.raises(NotFoundError, match="project 'nope'"):
        queue.add_model(session, "m", "nope")
    assert len(queue.list_nets(session)) == 1


def test_update_model_status_and_logs(session: Session) -> None:
    world = build_world(session)
    model_id, _ = queue_model(session, world)
    queue.update_model_status(session, model_id, ModelStatus.ERROR)
    assert _model(session, model_id).status == ModelStatus.ERROR
    queue.add_log(session, model_id, "boom", success=False, details={"k": 1})
    row = session.exec(select(FLLogs).where(FLLogs.model_id == model_id)).one()
    assert row.log == "boom" and row.success is False and row.details == {"k": 1}
    with pytest.raises(NotFoundError):
        queue.update_model_status(session, uuid.uuid4(), ModelStatus.ERROR)
