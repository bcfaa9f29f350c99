"""A status an FL server pushes (FLIP's ``PUT /model/{id}/status/{status}``) ends the training running on a net
through the lifecycle's one ending transition, on SQLite, PostgreSQL and a FLIP hub database."""

import threading
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlmodel import Session, col, select

from flip_pipelines.db import lifecycle, pushes
from flip_pipelines.db.engine import new_session
from flip_pipelines.db.models import FLJob, FLLogs, FLScheduler, Model, ModelsAudit
from flip_pipelines.domain.enums import JobStatus, ModelStatus, NetStatus
from flip_pipelines.domain.lifecycle import Outcome
from flip_pipelines.domain.pushes import MESSAGES
from flip_pipelines_tests.factories import build_world, claim_next, fits, queue_model

UPLOADED = MESSAGES[ModelStatus.RESULTS_UPLOADED]


def _submitted(session: Session, world, name: str) -> tuple[uuid.UUID, uuid.UUID]:  # type: ignore[no-untyped-def]
    model_id, job_id = queue_model(session, world, name)
    claim = claim_next(session)
    assert claim is not None and claim.fl_job_id == job_id
    lifecycle.record_submission(session, job_id, f"backend-{name}", claim.net_name)
    return model_id, job_id


def _at_once(engine: sa.Engine, *calls: Callable[[Session], object]) -> list[object]:
    """Run each call in its own thread and session, released together by a barrier."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = []
    errors: list[BaseException] = []

    def run(call: Callable[[Session], object]) -> None:
        try:
            with new_session(engine) as own:
                barrier.wait(timeout=10)
                results.append(call(own))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return results


def test_a_push_racing_end_training_ends_the_job_once(engine: sa.Engine) -> None:
    """The monitor ends a training FINISHED at the instant its FL server pushes RESULTS_UPLOADED: the job row is
    locked by whichever comes first, and the other changes nothing — one ending logged, one audit row, net free."""
    with new_session(engine) as session:
        world = build_world(session, nets=5)
        trainings = [_submitted(session, world, f"model-{i}") for i in range(5)]
    for model_id, job_id in trainings:
        _at_once(engine,
                 lambda own, j=job_id: lifecycle.end_training(own, j, Outcome.FINISHED, "Training finished"),
                 lambda own, m=model_id: pushes.record_pushed_status(own, m, ModelStatus.RESULTS_UPLOADED))
    with new_session(engine) as session:
        for model_id, job_id in trainings:
            endings = session.exec(select(FLLogs.log).where(
                FLLogs.model_id == model_id, col(FLLogs.log).in_(["Training finished", UPLOADED]))).all()
            assert len(endings) == 1, endings
            assert session.get(FLJob, job_id).status == JobStatus.COMPLETED  # type: ignore[union-attr]
            assert session.get(Model, model_id).status == ModelStatus.RESULTS_UPLOADED  # type: ignore[union-attr]
            audit = session.exec(select(ModelsAudit.action).where(ModelsAudit.model_id == model_id)).all()
            assert sorted(a.value for a in audit) == ["RESULTS_UPLOADED", "RUNNING"]
        assert {s.status for s in session.exec(select(FLScheduler))} == {NetStatus.AVAILABLE}


def test_a_push_ends_the_running_job_not_a_newer_queued_one(session: Session) -> None:
    """FLIP ends the model's newest job; a model queued again while it trains has a QUEUED job newer than the
    IN_PROGRESS one. The push ends the job running on a net, frees that net at once, and the queued job waits."""
    world = build_world(session, nets=1)
    model_id, running = _submitted(session, world, "retrained")
    queued = lifecycle.enqueue_training(session, model_id, world.trust_ids, fits()).id
    assert pushes.record_pushed_status(session, model_id, ModelStatus.RESULTS_UPLOAD_FAILED) is True
    session.expire_all()
    assert session.get(FLJob, running).status == JobStatus.COMPLETED  # type: ignore[union-attr]
    assert session.get(FLJob, queued).status == JobStatus.QUEUED  # type: ignore[union-attr]
    assert session.exec(select(FLScheduler)).one().status == NetStatus.AVAILABLE
    assert session.get(Model, model_id).status == ModelStatus.RESULTS_UPLOAD_FAILED  # type: ignore[union-attr]
    ending = session.exec(select(FLLogs).where(FLLogs.log == MESSAGES[ModelStatus.RESULTS_UPLOAD_FAILED])).one()
    assert not ending.success and (ending.details or {}).get("fl_job_id") == str(running)
    assert claim_next(session).fl_job_id == queued, "the freed net takes the queued job"


def test_a_final_status_with_no_training_running_is_a_late_report(session: Session) -> None:
    """Pushed again, or after the hub ended the training itself: nothing is ended twice, nothing written."""
    world = build_world(session, nets=1)
    model_id, job_id = _submitted(session, world, "done")
    assert pushes.record_pushed_status(session, model_id, ModelStatus.RESULTS_UPLOADED) is True
    rows = len(session.exec(select(FLLogs)).all()), len(session.exec(select(ModelsAudit)).all())
    assert pushes.record_pushed_status(session, model_id, ModelStatus.RESULTS_UPLOADED) is False
    assert pushes.record_pushed_status(session, model_id, ModelStatus.ERROR) is False
    session.expire_all()
    assert (len(session.exec(select(FLLogs)).all()), len(session.exec(select(ModelsAudit)).all())) == rows
    assert session.get(Model, model_id).status == ModelStatus.RESULTS_UPLOADED  # type: ignore[union-attr]
    assert session.get(FLJob, job_id).status == JobStatus.COMPLETED  # type: ignore[union-attr]
    assert pushes.record_pushed_status(session, model_id, ModelStatus.RUNNING) is True, "FLIP applies the rest"
    assert session.get(Model, model_id).status == ModelStatus.RUNNING  # type: ignore[union-attr]


def test_a_push_racing_an_abort_ends_the_job_once(engine: sa.Engine) -> None:
    """A user stops a model at the instant its FL server pushes RESULTS_UPLOADED: one of them ends the job."""
    with new_session(engine) as session:
        world = build_world(session, nets=5)
        trainings = [_submitted(session, world, f"model-{i}") for i in range(5)]
    for model_id, _ in trainings:
        _at_once(engine,
                 lambda own, m=model_id: lifecycle.abort_model(own, m, "Stopped by the user"),
                 lambda own, m=model_id: pushes.record_pushed_status(own, m, ModelStatus.RESULTS_UPLOADED))
    with new_session(engine) as session:
        for model_id, job_id in trainings:
            endings = session.exec(select(FLLogs.log).where(
                FLLogs.model_id == model_id, col(FLLogs.log).in_(["Stopped by the user", UPLOADED]))).all()
            assert len(endings) == 1, endings
            ended = session.get(FLJob, job_id).status  # type: ignore[union-attr]
            assert (ended, session.get(Model, model_id).status) in {  # type: ignore[union-attr]
                (JobStatus.DELETED, ModelStatus.STOPPED), (JobStatus.COMPLETED, ModelStatus.RESULTS_UPLOADED)}
        assert {s.status for s in session.exec(select(FLScheduler))} == {NetStatus.AVAILABLE}
