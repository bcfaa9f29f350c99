"""Every lifecycle transition, on SQLite and on PostgreSQL (the ``session`` fixture is parametrised): each moves
job, net, model, audit trail and log together, and refuses or changes nothing when it does not apply."""

import uuid

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from flip_pipelines.db import lifecycle, registry, site_config
from flip_pipelines.db.models import FLJob, FLJobTrust, FLLogs, FLScheduler, Model, ModelsAudit
from flip_pipelines.db.site_config import DeploymentModeError
from flip_pipelines.domain.enums import FLBackend, FLLogEvent, JobStatus, ModelStatus, NetStatus
from flip_pipelines.domain.errors import ConflictError, InvalidInputError, NotFoundError
from flip_pipelines.domain.lifecycle import Outcome
from flip_pipelines_tests.factories import build_world, claim_next, fits, queue_model


def _job(session: Session, job_id: uuid.UUID) -> FLJob:
    session.expire_all()
    return session.get(FLJob, job_id)  # type: ignore[return-value]


def _model(session: Session, model_id: uuid.UUID) -> Model:
    session.expire_all()
    return session.get(Model, model_id)  # type: ignore[return-value]


def _net_status(session: Session) -> NetStatus:
    session.expire_all()
    return session.exec(select(FLScheduler)).one().status


def _audit(session: Session, model_id: uuid.UUID) -> list[str]:
    return [a.value for a in session.exec(select(ModelsAudit.action).where(ModelsAudit.model_id == model_id)
                                          .order_by(ModelsAudit.audit_date)).all()]


def _claimed(session: Session) -> tuple[uuid.UUID, uuid.UUID]:
    world = build_world(session, nets=1)
    model_id, job_id = queue_model(session, world)
    assert claim_next(session) is not None
    return model_id, job_id


def test_enqueue_queues_with_trusts_initiates_the_model_and_logs_positions(session: Session) -> None:
    world = build_world(session)
    model_id, job_id = queue_model(session, world)
    job = _job(session, job_id)
    assert job.status == JobStatus.QUEUED and job.started is None
    trusts = session.exec(select(FLJobTrust.trust_id).where(FLJobTrust.fl_job_id == job_id)).all()
    assert sorted(trusts) == sorted(world.trust_ids)
    assert _model(session, model_id).status == ModelStatus.INITIATED
    assert _audit(session, model_id) == [], "FLIP audits only PREPARED, RUNNING and RESULTS_UPLOADED"
    logs = session.exec(select(FLLogs).where(FLLogs.model_id == model_id)).all()
    assert {(row.log, row.event_type) for row in logs} == {
        ("Selected trusts for training: Trust_1, Trust_2", None), (None, FLLogEvent.QUEUE_POSITION.value)}
    position = next(row for row in logs if row.event_type)
    assert position.details == {"position": 1, "job_id": str(job_id)} and position.success


@pytest.mark.parametrize(
    ("trusts", "error", "message"),
    [
        ("none", InvalidInputError, "at least one trust"),
        ("duplicate", InvalidInputError, "more than once"),
        ("unknown", NotFoundError, "unknown trust id"),
        ("unsuitable", InvalidInputError, "cannot be queued: its files suit no registered backend"),
        ("unapproved", InvalidInputError, "not approved for model m: Trust_2 .approve them"),
        ("deployment-mode", DeploymentModeError, "deployment mode: queueing a training refused"),
    ],
)
def test_enqueue_refuses_and_writes_nothing(session: Session, trusts: str, error: type, message: str) -> None:
    world = build_world(session, backend=FLBackend.FLOWER)
    model = registry.add_model(session, "m", "proj", trust_ids=world.trust_ids[:1] if trusts == "unapproved" else None)
    if trusts == "deployment-mode":
        site_config.set_deployment_mode(session, True)
    trust_ids = {"none": [], "duplicate": [world.trust_ids[0]] * 2,
                 "unknown": [world.trust_ids[0], uuid.uuid4()]}.get(trusts, world.trust_ids)
    check = fits(FLBackend.NVFLARE) if trusts == "unsuitable" else fits()
    with pytest.raises(error, match=message):
        lifecycle.enqueue_training(session, model.id, trust_ids, check)
    assert session.exec(select(FLJob)).all() == []
    assert _model(session, model.id).status == ModelStatus.PENDING
    with pytest.raises(NotFoundError, match="model"):
        lifecycle.enqueue_training(session, uuid.uuid4(), world.trust_ids, fits())
    assert session.exec(select(FLLogs)).all() == []


def test_record_submission_is_single_valued_and_sets_the_model_running(session: Session) -> None:
    model_id, job_id = _claimed(session)
    assert lifecycle.record_submission(session, job_id, "abc-123", "net-1") is True
    assert lifecycle.record_submission(session, job_id, "abc-123", "net-1") is False, "a retried submit"
    assert _job(session, job_id).fl_backend_job_id == "abc-123"
    assert _model(session, model_id).status == ModelStatus.RUNNING
    with pytest.raises(ConflictError, match="already has backend job"):
        lifecycle.record_submission(session, job_id, "other", "net-1")
    with pytest.raises(NotFoundError):
        lifecycle.record_submission(session, uuid.uuid4(), "x", "net-1")


def test_record_submission_of_an_aborted_job_is_refused(session: Session) -> None:
    model_id, job_id = _claimed(session)
    lifecycle.abort_model(session, model_id, "stop")
    with pytest.raises(lifecycle.JobNotRunningError):
        lifecycle.record_submission(session, job_id, "late", "net-1")
    assert _job(session, job_id).fl_backend_job_id is None


@pytest.mark.parametrize(("outcome", "job_status", "model_status"), [
    (Outcome.FINISHED, JobStatus.COMPLETED, ModelStatus.RESULTS_UPLOADED),
    (Outcome.FAILED, JobStatus.COMPLETED, ModelStatus.ERROR),
    (Outcome.STOPPED, JobStatus.COMPLETED, ModelStatus.ERROR),
    (Outcome.ABORTED, JobStatus.DELETED, ModelStatus.STOPPED),
])
def test_end_training_once_frees_the_net(session: Session, outcome: Outcome, job_status: JobStatus,
                                         model_status: ModelStatus) -> None:
    model_id, job_id = _claimed(session)
    lifecycle.record_submission(session, job_id, "b-1", "net-1")
    assert lifecycle.end_training(session, job_id, outcome, "the reason") is True
    job = _job(session, job_id)
    assert job.status == job_status and job.completed is not None
    assert _net_status(session) == NetStatus.AVAILABLE
    assert _model(session, model_id).status == model_status
    audited = ["RUNNING", "RESULTS_UPLOADED"] if model_status == ModelStatus.RESULTS_UPLOADED else ["RUNNING"]
    assert _audit(session, model_id) == audited, "FLIP audits no ERROR or STOPPED"
    assert lifecycle.end_training(session, job_id, Outcome.FINISHED, "again") is False, "ended exactly once"
    assert _model(session, model_id).status == model_status
    assert len(session.exec(select(FLLogs).where(FLLogs.log == "the reason")).all()) == 1


def test_end_training_of_a_queued_job_is_refused(session: Session) -> None:
    world = build_world(session)
    _, job_id = queue_model(session, world)
    with pytest.raises(ConflictError, match="QUEUED"):
        lifecycle.end_training(session, job_id, Outcome.FAILED, "x")


def test_fail_before_submission_deletes_the_job_and_frees_the_net(session: Session) -> None:
    model_id, job_id = _claimed(session)
    assert lifecycle.fail_before_submission(session, job_id, "bundle failed: validator.py") is True
    job = _job(session, job_id)
    assert job.status == JobStatus.DELETED and job.started is None
    assert _net_status(session) == NetStatus.AVAILABLE and _model(session, model_id).status == ModelStatus.ERROR
    reason = session.exec(select(FLLogs.log).where(FLLogs.success.is_(False))).one()
    assert reason == "Training failed before submission: bundle failed: validator.py"
    assert lifecycle.fail_before_submission(session, job_id, "again") is False


def test_fail_before_submission_refuses_a_submitted_job(session: Session) -> None:
    _, job_id = _claimed(session)
    lifecycle.record_submission(session, job_id, "b-1", "net-1")
    with pytest.raises(ConflictError, match="was submitted"):
        lifecycle.fail_before_submission(session, job_id, "x")
    assert _net_status(session) == NetStatus.BUSY


def test_requeue_puts_the_job_back_in_its_place_and_frees_the_net(session: Session) -> None:
    model_id, job_id = _claimed(session)
    lifecycle.requeue(session, job_id, "no run picked it up")
    assert _job(session, job_id).status == JobStatus.QUEUED and _job(session, job_id).started is None
    assert _net_status(session) == NetStatus.AVAILABLE
    claim = claim_next(session)
    assert claim is not None and claim.fl_job_id == job_id
    lifecycle.record_submission(session, job_id, "submitted", "net-1")
    with pytest.raises(ConflictError, match="cannot be requeued"):
        lifecycle.requeue(session, job_id, "x")


def test_abort_model_dequeues_ends_claimed_jobs_and_names_fl_jobs_to_stop(session: Session) -> None:
    world = build_world(session, nets=1)
    model_id, first = queue_model(session, world, "a")
    second = lifecycle.enqueue_training(session, model_id, world.trust_ids, fits()).id
    claim_next(session)
    lifecycle.record_submission(session, first, "backend-1", "net-1")
    aborted = lifecycle.abort_model(session, model_id, "Training aborted by request")
    assert aborted.dequeued == 1 and aborted.stopped_jobs == (first,)
    assert [(net.name, job) for net, job in aborted.backend_jobs] == [("net-1", "backend-1")]
    assert {_job(session, j).status for j in (first, second)} == {JobStatus.DELETED}
    assert _net_status(session) == NetStatus.AVAILABLE and _model(session, model_id).status == ModelStatus.STOPPED
    nothing = lifecycle.abort_model(session, model_id, "again")
    assert (nothing.dequeued, nothing.stopped_jobs, nothing.backend_jobs) == (0, (), ())
    with pytest.raises(NotFoundError):
        lifecycle.abort_model(session, uuid.uuid4(), "x")


def test_retire_model_jobs_takes_its_queued_jobs_out_with_a_reason(session: Session) -> None:
    world = build_world(session, nets=1)
    model_id, job_id = queue_model(session, world)
    assert lifecycle.retire_model_jobs(session, model_id, "its files changed") == 1
    assert _job(session, job_id).status == JobStatus.DELETED and _model(session, model_id).status == ModelStatus.ERROR
    row = session.exec(select(FLLogs).where(FLLogs.success.is_(False))).one()
    assert row.log == "Training could not start: its files changed" and row.event_type is None
    assert lifecycle.retire_model_jobs(session, model_id, "again") == 0


@pytest.mark.parametrize("job_state", ["COMPLETED", "DELETED", "missing"])
def test_watchdog_recovers_stale_busy_nets(session: Session, job_state: str) -> None:
    """Without FLIP's #615 bug: a net whose job COMPLETED or was DELETED is freed, not only a missing one."""
    world = build_world(session, nets=2)
    _, stale = queue_model(session, world, "stale")
    _, live = queue_model(session, world, "live")
    claim_next(session)
    claim_next(session)
    if job_state == "missing":
        session.execute(sa.update(FLScheduler).where(FLScheduler.job_id == stale).values(job_id=None))
    else:
        session.execute(sa.update(FLJob).where(FLJob.id == stale).values(status=JobStatus(job_state)))
    session.commit()
    recovered = lifecycle.recover_stale_busy_nets(session)
    assert [r.stale_fl_job_id for r in recovered] == [None if job_state == "missing" else stale]
    nets = {n.fl_job_id: n.status for n in registry.list_nets(session)}
    assert nets[live] == NetStatus.BUSY, "a net running a live job is never freed"
    assert sorted(s.value for s in nets.values()) == ["AVAILABLE", "BUSY"]
    assert lifecycle.recover_stale_busy_nets(session) == []


def test_queue_positions_and_emit_on_change(session: Session) -> None:
    world = build_world(session, nets=1)
    _, a = queue_model(session, world, "a")
    _, b = queue_model(session, world, "b")
    _, c = queue_model(session, world, "c")
    assert [(p.position, p.fl_job_id) for p in lifecycle.queue_positions(session)] == [(1, a), (2, b), (3, c)]
    assert lifecycle.log_queue_positions(session) == 0, "each enqueue logged the positions already"
    claim_next(session)
    assert lifecycle.log_queue_positions(session) == 2, "b and c moved up"
    rows = session.exec(select(FLLogs).where(FLLogs.event_type == FLLogEvent.QUEUE_POSITION.value)).all()
    assert sorted((r.details or {})["position"] for r in rows) == [1, 1, 2, 2, 3]


def test_in_progress_jobs_name_their_net_and_model(session: Session) -> None:
    model_id, job_id = _claimed(session)
    [active] = lifecycle.in_progress_jobs(session)
    assert (active.fl_job_id, active.model_id, active.model_name) == (job_id, model_id, "model")
    assert active.net is not None and active.net.name == "net-1" and active.backend_job_id is None


def test_two_sensors_failing_one_job_at_once_end_it_once(engine: sa.Engine) -> None:
    """The failure and reconcile sensors run in threads: both may end the same job in the same instant. The job
    row is locked by the first, so the second sees it ended and writes nothing (one reason logged per job)."""
    import threading

    from flip_pipelines.db.engine import new_session

    with new_session(engine) as session:
        world = build_world(session, nets=5)
        jobs = []
        for i in range(5):
            queue_model(session, world, f"model-{i}")
            jobs.append(claim_next(session).fl_job_id)
    for fl_job_id in jobs:
        start = threading.Barrier(2)
        results: list[bool] = []

        def fail(job: uuid.UUID = fl_job_id, barrier: threading.Barrier = start,
                 results: list[bool] = results) -> None:
            with new_session(engine) as own:
                barrier.wait(timeout=10)
                results.append(lifecycle.fail_before_submission(own, job, "clients missing"))

        threads = [threading.Thread(target=fail) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(results) == [False, True]
    with new_session(engine) as session:
        reasons = session.exec(select(FLLogs.log).where(FLLogs.success.is_(False))).all()
    assert sorted(reasons) == ["Training failed before submission: clients missing"] * 5
