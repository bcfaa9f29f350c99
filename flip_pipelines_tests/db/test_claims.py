"""Claims on SQLite and PostgreSQL: a queued job and a free net of a backend its model suits, taken together."""

import uuid

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from flip_pipelines.db import claims, lifecycle, registry
from flip_pipelines.db.models import FLJob, FLKitSlot, FLLogs, FLScheduler, Model, ModelTrustIntersect
from flip_pipelines.domain.enums import FLBackend, JobStatus, ModelStatus, NetStatus
from flip_pipelines.domain.errors import InvalidInputError, NotFoundError
from flip_pipelines.domain.queue import Claim, QueuedBehind
from flip_pipelines_tests.factories import build_world, claim_next, fits, queue_model

NVFLARE, FLOWER = frozenset({FLBackend.NVFLARE}), frozenset({FLBackend.FLOWER})


def _job(session: Session, job_id: uuid.UUID) -> FLJob:
    session.expire_all()
    return session.get(FLJob, job_id)  # type: ignore[return-value]


def _two_backend_world(session: Session):  # type: ignore[no-untyped-def]
    world = build_world(session, nets=0)
    registry.add_net(session, "net-flower", "http://127.0.0.1:18101", FLBackend.FLOWER)
    registry.add_net(session, "net-nvflare", "http://127.0.0.1:18102", FLBackend.NVFLARE)
    return world


def test_claim_takes_free_net_and_oldest_job_together_with_names(session: Session) -> None:
    world = build_world(session, nets=1)
    _, first = queue_model(session, world, "a")
    _, second = queue_model(session, world, "b")
    claim = claim_next(session)
    assert claim is not None
    assert claim.fl_job_id == first and claim.net_name == "net-1" and claim.fl_backend == FLBackend.NVFLARE
    assert claim.model_name == "a" and claim.trust_names == ("Trust_1", "Trust_2")
    assert claim.slot_names == ("site-1", "site-2") and claim.backend_job_id is None
    assert _job(session, first).status == JobStatus.IN_PROGRESS and _job(session, first).started is not None
    slot = session.exec(select(FLScheduler)).one()
    assert slot.status == NetStatus.BUSY and slot.job_id == first
    assert claim_next(session) is None, "the only net is busy"
    assert _job(session, second).status == JobStatus.QUEUED
    assert session.exec(select(FLLogs.log).where(FLLogs.log.like("Training assigned to net%"))).all() == [
        "Training assigned to net 'net-1' (nvflare)"]


def test_claim_with_no_queued_job_leaves_nets_available(session: Session) -> None:
    build_world(session, nets=2)
    assert claim_next(session) is None
    assert {n.status for n in registry.list_nets(session)} == {NetStatus.AVAILABLE}


def test_a_model_is_claimed_only_onto_a_net_its_files_suit(session: Session) -> None:
    """The user report: NVFlare files claimed onto net-flower (first by name) and failed there."""
    world = _two_backend_world(session)
    model_id, job_id = queue_model(session, world, "nvflare-only")
    claim = claims.claim_next_job(session, {model_id: NVFLARE})
    assert claim is not None and claim.net_name == "net-nvflare" and claim.fl_job_id == job_id
    assert claims.free_net_count(session) == {FLBackend.FLOWER: 1}


def test_an_old_job_waiting_for_a_busy_backend_never_blocks_a_younger_one(session: Session) -> None:
    world = _two_backend_world(session)
    running, _ = queue_model(session, world, "running")
    assert claims.claim_next_job(session, {running: NVFLARE}).net_name == "net-nvflare"
    old, old_job = queue_model(session, world, "old-nvflare")
    young, young_job = queue_model(session, world, "young-flower")
    claim = claims.claim_next_job(session, {old: NVFLARE, young: FLOWER})
    assert claim is not None and claim.fl_job_id == young_job and claim.net_name == "net-flower"
    assert _job(session, old_job).status == JobStatus.QUEUED, "it waits for the NVFlare net"
    assert claims.claim_next_job(session, {old: NVFLARE, young: FLOWER}) is None


def test_a_model_that_suits_both_takes_either_and_unchecked_models_wait(session: Session) -> None:
    world = _two_backend_world(session)
    both_a, _ = queue_model(session, world, "both-a")
    unchecked, unchecked_job = queue_model(session, world, "unchecked")
    both_b, _ = queue_model(session, world, "both-b")
    suits = {both_a: frozenset(FLBackend), both_b: frozenset(FLBackend)}
    taken = claims.claim_available_nets(session, suits, limit=5)
    assert [c.model_name for c in taken] == ["both-a", "both-b"]
    assert {c.net_name for c in taken} == {"net-flower", "net-nvflare"}
    assert _job(session, unchecked_job).status == JobStatus.QUEUED
    assert claims.queued_models(session) == [unchecked]


def test_deregistered_trust_does_not_wedge_the_queue(session: Session) -> None:
    """FLIP #894: a job naming a trust the FL server cannot address is retired; the next job proceeds."""
    world = build_world(session, nets=1)
    bad_model, bad_job = queue_model(session, world, "bad")
    good_model = registry.add_model(session, "good", "proj")
    good_job = lifecycle.enqueue_training(session, good_model.id, [world.trust_ids[0]], fits()).id
    slot = session.exec(select(FLKitSlot).where(FLKitSlot.assigned_to_trust_id == world.trust_ids[1])).one()
    slot.assigned_to_trust_id = None  # trust 2 is deregistered after the job was queued
    session.add(slot)
    session.commit()

    claim = claim_next(session)
    assert claim is not None and claim.fl_job_id == good_job
    assert _job(session, bad_job).status == JobStatus.DELETED
    assert session.get(Model, bad_model).status == ModelStatus.ERROR
    row = session.exec(select(FLLogs).where(FLLogs.model_id == bad_model, FLLogs.success.is_(False))).one()
    assert row.event_type is None and row.log.startswith("Training could not start: ")
    assert str(world.trust_ids[1]) in row.log


def test_a_job_whose_trusts_are_no_longer_approved_is_retired_as_flip_does(session: Session) -> None:
    """FLIP's check_for_queued_jobs: a job naming a trust not in model_trust_intersect is retired (job DELETED,
    model ERROR, FLIP's sentence logged) and the next job is claimed."""
    world = build_world(session, nets=1)
    revoked_model, revoked_job = queue_model(session, world, "revoked")
    session.execute(sa.delete(ModelTrustIntersect).where(ModelTrustIntersect.model_id == revoked_model,
                                                         ModelTrustIntersect.trust_id == world.trust_ids[1]))
    session.commit()
    _, good_job = queue_model(session, world, "good")
    claim = claim_next(session)
    assert claim is not None and claim.fl_job_id == good_job
    assert _job(session, revoked_job).status == JobStatus.DELETED
    session.expire_all()
    assert session.get(Model, revoked_model).status == ModelStatus.ERROR
    log = session.exec(select(FLLogs).where(FLLogs.model_id == revoked_model, FLLogs.success.is_(False))).one()
    assert log.log == "Training could not start: the selected trusts are not approved for this model."
    assert log.event_type is None


def test_enqueue_and_claim_picks_a_suitable_net_or_writes_nothing(session: Session) -> None:
    world = _two_backend_world(session)
    model = registry.add_model(session, "launch", "proj")
    claim = claims.enqueue_and_claim(session, model.id, world.trust_ids, FLOWER)
    assert claim.net_name == "net-flower" and claim.model_name == "launch"
    other = registry.add_model(session, "other", "proj")
    with pytest.raises(claims.NoNetAvailableError, match="no flower net is free right now"):
        claims.enqueue_and_claim(session, other.id, world.trust_ids, FLOWER)
    with pytest.raises(InvalidInputError, match="do not suit net 'net-nvflare'"):
        claims.enqueue_and_claim(session, other.id, world.trust_ids, FLOWER, net_name="net-nvflare")
    with pytest.raises(InvalidInputError, match="suit no backend"):
        claims.enqueue_and_claim(session, other.id, world.trust_ids, frozenset())
    assert session.exec(select(FLJob).where(FLJob.model_id == other.id)).all() == []


def test_claim_queued_job_of_model_and_claim_for_job(session: Session) -> None:
    world = _two_backend_world(session)
    model_id, job_id = queue_model(session, world, "queued")
    with pytest.raises(NotFoundError, match="holds no net"):
        claims.claim_for_job(session, job_id)
    claim = claims.claim_queued_job_of_model(session, model_id, NVFLARE)
    assert claim.fl_job_id == job_id and claim.net_name == "net-nvflare"
    assert claims.claim_for_job(session, job_id) == claim
    with pytest.raises(NotFoundError, match="no queued job"):
        claims.claim_queued_job_of_model(session, model_id, NVFLARE)


def test_enqueue_and_claim_free_net_takes_a_suitable_free_net_at_once(session: Session) -> None:
    """`flip-pipelines enqueue` with a free net: the job is queued and claimed in one transaction."""
    world = _two_backend_world(session)
    model = registry.add_model(session, "flower-only", "proj")
    job, claim = claims.enqueue_and_claim_free_net(session, model.id, world.trust_ids, fits(FLBackend.FLOWER))
    assert claim is not None and claim.fl_job_id == job.id and claim.net_name == "net-flower"
    assert claim.trust_names == ("Trust_1", "Trust_2") and claim.slot_names == ("site-1", "site-2")
    assert _job(session, job.id).status == JobStatus.IN_PROGRESS
    assert claims.free_net_count(session) == {FLBackend.NVFLARE: 1}
    assert session.get(Model, model.id).status == ModelStatus.INITIATED  # type: ignore[union-attr]
    logs = session.exec(select(FLLogs.log).where(FLLogs.model_id == model.id, FLLogs.log.is_not(None))).all()
    assert logs == ["Selected trusts for training: Trust_1, Trust_2", "Training assigned to net 'net-flower' (flower)"]


def test_enqueue_and_claim_free_net_leaves_the_job_queued_for_the_sensor(session: Session) -> None:
    """No suitable net free, or an older job queued (the sensor keeps FIFO): queued only, every net untouched."""
    world = _two_backend_world(session)
    busy, _ = queue_model(session, world, "busy", fits(FLBackend.FLOWER))
    assert claims.claim_next_job(session, {busy: FLOWER}) is not None  # net-flower is busy from here on
    flower = registry.add_model(session, "flower-only", "proj")
    job, claim = claims.enqueue_and_claim_free_net(session, flower.id, world.trust_ids, fits(FLBackend.FLOWER))
    assert claim is None and _job(session, job.id).status == JobStatus.QUEUED
    assert claims.free_net_count(session) == {FLBackend.NVFLARE: 1}
    nvflare = registry.add_model(session, "nvflare-only", "proj")
    younger, claim = claims.enqueue_and_claim_free_net(session, nvflare.id, world.trust_ids, fits(FLBackend.NVFLARE))
    assert claim is None, "the flower job queued before it is the sensor's to place first"
    assert _job(session, younger.id).status == JobStatus.QUEUED
    assert claims.free_net_count(session) == {FLBackend.NVFLARE: 1}
    assert [p.fl_job_id for p in lifecycle.queue_positions(session)] == [job.id, younger.id]


def test_enqueue_and_claim_free_net_refuses_as_enqueue_does_and_writes_nothing(session: Session) -> None:
    world = _two_backend_world(session)
    model = registry.add_model(session, "m", "proj", trust_ids=world.trust_ids[:1])
    with pytest.raises(InvalidInputError, match="not approved for model m: Trust_2"):
        claims.enqueue_and_claim_free_net(session, model.id, world.trust_ids, fits())
    assert session.exec(select(FLJob)).all() == []
    assert claims.free_net_count(session) == {FLBackend.NVFLARE: 1, FLBackend.FLOWER: 1}


def test_a_claim_given_back_by_requeue_waits_in_its_place_for_the_sensor(session: Session) -> None:
    """What `enqueue` does when Dagster could not start the run: the job QUEUED again, its net AVAILABLE."""
    world = _two_backend_world(session)
    model = registry.add_model(session, "m", "proj")
    job, claim = claims.enqueue_and_claim_free_net(session, model.id, world.trust_ids, fits(FLBackend.NVFLARE))
    assert claim is not None
    lifecycle.requeue(session, job.id, "its run could not be started at once (Dagster is not reachable)")
    assert _job(session, job.id).status == JobStatus.QUEUED and _job(session, job.id).started is None
    assert claims.free_net_count(session) == {FLBackend.NVFLARE: 1, FLBackend.FLOWER: 1}
    again = claims.claim_next_job(session, {model.id: NVFLARE})
    assert again is not None and again.fl_job_id == job.id


def test_a_launch_does_not_take_the_net_an_older_job_of_another_model_waits_for(session: Session) -> None:
    """The Launchpad path keeps FIFO as the queue sensor does: a free NVFlare net an older NVFlare job waits for
    (the sensor has not ticked since the net was freed) is not taken; the launched job waits QUEUED in its place."""
    world = _two_backend_world(session)
    older, older_job = queue_model(session, world, "older", fits(FLBackend.NVFLARE))
    queued, queued_job = queue_model(session, world, "queued", fits(FLBackend.NVFLARE))
    waiting = {older: NVFLARE, queued: NVFLARE}
    behind = claims.claim_queued_job_of_model(session, queued, NVFLARE, backends_of=waiting)
    assert isinstance(behind, QueuedBehind) and behind.fl_job_id == queued_job
    assert behind.reason() == "1 older job waits for an nvflare net; the queue sensor starts this one in turn"
    launched = registry.add_model(session, "launched", "proj")
    behind = claims.enqueue_and_claim(session, launched.id, world.trust_ids, NVFLARE, backends_of=waiting)
    assert isinstance(behind, QueuedBehind)
    assert behind.reason() == "2 older jobs wait for an nvflare net; the queue sensor starts this one in turn"
    assert [p.fl_job_id for p in lifecycle.queue_positions(session)] == [older_job, queued_job, behind.fl_job_id]
    assert claims.free_net_count(session) == {FLBackend.NVFLARE: 1, FLBackend.FLOWER: 1}
    assert session.get(Model, launched.id).status == ModelStatus.INITIATED  # type: ignore[union-attr]
    claim = claims.claim_next_job(session, {**waiting, launched.id: NVFLARE})
    assert claim is not None and claim.fl_job_id == older_job, "the sensor starts them in their order"


def test_an_older_job_that_only_suits_a_busy_backend_does_not_block_a_launch(session: Session) -> None:
    world = _two_backend_world(session)
    running, _ = queue_model(session, world, "running", fits(FLBackend.NVFLARE))
    assert claims.claim_next_job(session, {running: NVFLARE}).net_name == "net-nvflare"
    older, older_job = queue_model(session, world, "older-nvflare", fits(FLBackend.NVFLARE))
    launched, launched_job = queue_model(session, world, "launched", fits())
    claim = claims.claim_queued_job_of_model(session, launched, frozenset(FLBackend),
                                             backends_of={older: NVFLARE, launched: frozenset(FLBackend)})
    assert isinstance(claim, Claim) and claim.fl_job_id == launched_job and claim.net_name == "net-flower"
    assert _job(session, older_job).status == JobStatus.QUEUED, "it waits for the NVFlare net"
