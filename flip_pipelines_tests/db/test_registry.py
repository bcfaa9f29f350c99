"""The registry (nets, trusts, projects, models) and its lookups, on SQLite and PostgreSQL."""

import uuid

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from flip_pipelines import settings
from flip_pipelines.db import registry
from flip_pipelines.db.models import FLKitSlot, ModelsAudit, Query, Trust
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.errors import ConflictError, NotFoundError
from flip_pipelines_tests.factories import build_world, queue_model


def test_net_lookups_and_registered_backends(session: Session) -> None:
    build_world(session, nets=1, backend=FLBackend.FLOWER)
    net = registry.get_net_by_name(session, "net-1")
    assert net.name == "net-1" and net.fl_backend == FLBackend.FLOWER
    assert registry.registered_backends(session) == {FLBackend.FLOWER}
    with pytest.raises(NotFoundError, match="net 'nope' not found"):
        registry.get_net_by_name(session, "nope")


def test_backend_is_stored_by_member_name(session: Session) -> None:
    build_world(session, nets=1, backend=FLBackend.FLOWER)
    raw = session.execute(sa.text("SELECT fl_backend FROM fl_nets")).scalar_one()
    assert raw == "FLOWER"


def test_upsert_net_updates_by_name_and_refuses_a_taken_endpoint(session: Session) -> None:
    registry.upsert_net(session, "net-a", "http://127.0.0.1:1/", FLBackend.NVFLARE)
    registry.upsert_net(session, "net-a", "http://127.0.0.1:2", FLBackend.FLOWER)
    assert [(n.name, n.endpoint, n.fl_backend) for n in registry.list_nets(session)] == [
        ("net-a", "http://127.0.0.1:2", FLBackend.FLOWER)]
    with pytest.raises(ConflictError, match="net-a already uses endpoint"):
        registry.upsert_net(session, "net-b", "http://127.0.0.1:2", FLBackend.FLOWER)
    assert len(registry.list_nets(session)) == 1


def test_slot_names_for_trust_ids(session: Session) -> None:
    world = build_world(session, trusts=2)
    names = registry.get_slot_names_by_trust_ids(session, world.trust_ids)
    assert list(names.values()) == ["site-1", "site-2"]
    stranger = registry.add_trust(session, "Trust_x", "site-x").id
    slot = session.get(FLKitSlot, "site-x")
    slot.assigned_to_trust_id = None
    session.add(slot)
    session.commit()
    with pytest.raises(NotFoundError, match=str(stranger)):
        registry.get_slot_names_by_trust_ids(session, [*world.trust_ids, stranger])


def test_required_training_details_use_newest_query(session: Session) -> None:
    world = build_world(session)
    model_id, _ = queue_model(session, world)
    session.add(Query(project_id=world.project_id, name="newer", query="SELECT newest", created_by=uuid.uuid4()))
    session.commit()
    details = registry.get_required_training_details(session, model_id)
    assert details.project_id == world.project_id and details.cohort_query == "SELECT newest"
    session.execute(sa.delete(Query))
    session.commit()
    with pytest.raises(NotFoundError, match="No cohort query found for this project"):
        registry.get_required_training_details(session, model_id)


def test_registry_conflicts_write_nothing(session: Session) -> None:
    build_world(session, nets=1)
    with pytest.raises(ConflictError, match="name"):
        registry.add_net(session, "net-1", "http://elsewhere", FLBackend.FLOWER)
    with pytest.raises(ConflictError, match="endpoint"):
        registry.add_net(session, "net-9", "http://127.0.0.1:18001", FLBackend.FLOWER)
    with pytest.raises(ConflictError):
        registry.add_trust(session, "Trust_1")
    with pytest.raises(ConflictError, match="already assigned"):
        registry.add_trust(session, "Trust_9", "site-1")
    assert session.exec(select(Trust).where(Trust.name == "Trust_9")).first() is None
    with pytest.raises(NotFoundError, match="project 'nope'"):
        registry.add_model(session, "m", "nope")
    assert len(registry.list_nets(session)) == 1


def test_new_model_is_pending_owned_and_approved_for_its_trusts(session: Session) -> None:
    """FLIP requires an owner and a description; it writes no audit row for a new model (it has no CREATE action)
    and approves the trusts the model may train on in model_trust_intersect."""
    world = build_world(session)
    model = registry.add_model(session, "m", "proj")
    stored = registry.get_model(session, model.id)
    assert stored.status.value == "PENDING" and stored.description == ""
    assert str(stored.owner_id) == settings.HUB_SERVICE_USER_ID
    assert session.exec(select(ModelsAudit).where(ModelsAudit.model_id == model.id)).all() == []
    assert registry.approved_trust_names(session, model.id) == ["Trust_1", "Trust_2"]
    only_one = registry.add_model(session, "m1", "proj", trust_ids=world.trust_ids[:1])
    assert registry.approved_trust_names(session, only_one.id) == ["Trust_1"]
    assert registry.approve_trusts(session, only_one.id, world.trust_ids) == [world.trust_ids[1]]
    assert registry.approve_trusts(session, only_one.id, world.trust_ids) == [], "approving twice changes nothing"
    assert registry.approved_trust_names(session, only_one.id) == ["Trust_1", "Trust_2"]
    with pytest.raises(NotFoundError, match="unknown trust id"):
        registry.add_model(session, "m2", "proj", trust_ids=[uuid.uuid4()])
    with pytest.raises(NotFoundError):
        registry.get_model(session, uuid.uuid4())
