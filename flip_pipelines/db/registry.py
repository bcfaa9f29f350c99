"""The hub's registry: nets (each with its one training slot), trusts and their FL kit slots, projects and their
cohort queries, models — and the lookups a training run needs from them."""

import uuid
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlmodel import Session, col, select

from flip_pipelines import settings
from flip_pipelines.db.models import (
    FLJob,
    FLKitSlot,
    FLNets,
    FLScheduler,
    Model,
    ModelTrustIntersect,
    Project,
    Query,
    Trust,
    utcnow,
)
from flip_pipelines.db.transaction import get_row, transaction
from flip_pipelines.domain.enums import FLBackend, ModelStatus, ProjectStatus, TrustIntersectStatus
from flip_pipelines.domain.errors import ConflictError, InvalidInputError, NotFoundError
from flip_pipelines.domain.queue import NetDetails, NetState, TrainingDetails

# --- nets ---------------------------------------------------------------------------------------------------


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
        return _new_net(session, name, endpoint, fl_backend)


def _new_net(session: Session, name: str, endpoint: str, fl_backend: FLBackend) -> FLNets:
    net = FLNets(name=name, endpoint=endpoint, fl_backend=fl_backend)
    session.add(net)
    session.flush()
    session.add(FLScheduler(net_id=net.id))
    return net


def upsert_net(session: Session, name: str, endpoint: str, fl_backend: FLBackend) -> FLNets:
    """Register a net, or update an existing one's endpoint and backend (FLIP seeds nets this way, by name).

    Raises:
        ConflictError: another net already uses the endpoint.
    """
    endpoint = endpoint.strip().rstrip("/")
    with transaction(session):
        net = session.exec(select(FLNets).where(FLNets.name == name)).first()
        clash = session.exec(
            select(FLNets).where(FLNets.endpoint == endpoint, FLNets.name != name)
        ).first()
        if clash is not None:
            raise ConflictError(f"net {clash.name} already uses endpoint {endpoint}")
        if net is None:
            return _new_net(session, name, endpoint, fl_backend)
        net.endpoint, net.fl_backend = endpoint, fl_backend
        session.add(net)
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
        NetState(net_id=net.id, name=net.name, endpoint=net.endpoint, fl_backend=net.fl_backend,
                 status=slot.status, fl_job_id=slot.job_id, model_id=job.model_id if job is not None else None)
        for net, slot, job in rows
    ]


def net_backends(session: Session) -> dict[str, FLBackend]:
    """Every registered net's backend, by name."""
    with transaction(session):
        return {name: backend for name, backend in session.exec(select(FLNets.name, FLNets.fl_backend)).all()}


def registered_backends(session: Session) -> frozenset[FLBackend]:
    """The backends at least one registered net runs."""
    with transaction(session):
        return frozenset(session.exec(select(FLNets.fl_backend).distinct()).all())


def get_net_by_name(session: Session, name: str) -> NetDetails:
    """Raises: NotFoundError: unknown net."""
    with transaction(session):
        net = session.exec(select(FLNets).where(FLNets.name == name)).first()
    if net is None:
        raise NotFoundError(f"net {name!r} not found")
    return NetDetails(name=net.name, endpoint=net.endpoint, fl_backend=net.fl_backend)


# --- trusts ---------------------------------------------------------------------------------------------------


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


def get_slot_names_by_trust_ids(session: Session, trust_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The FL client names (kit slot names) the FL server knows these trusts by.

    Raises:
        NotFoundError: naming every trust without a slot.
    """
    wanted = list(trust_ids)
    with transaction(session):
        rows = session.exec(select(FLKitSlot).where(col(FLKitSlot.assigned_to_trust_id).in_(wanted))).all()
    slots = {row.assigned_to_trust_id: row.slot_name for row in rows if row.assigned_to_trust_id is not None}
    missing = [str(t) for t in wanted if t not in slots]
    if missing:
        raise NotFoundError(f"no FL kit slot assigned to trust id(s): {', '.join(missing)}")
    return {t: slots[t] for t in wanted}


# --- projects and models -------------------------------------------------------------------------------------


def _owner(owner_id: uuid.UUID | None) -> uuid.UUID:
    """Raises: InvalidInputError: FLIP_OWNER_ID is not a UUID."""
    if owner_id is not None:
        return owner_id
    try:
        return uuid.UUID(settings.owner_id())
    except ValueError as exc:
        raise InvalidInputError(f"{settings.OWNER_ID_ENV} is not a UUID: {settings.owner_id()!r}") from exc


def add_project(session: Session, name: str, cohort_query: str, *, description: str = "",
                owner_id: uuid.UUID | None = None) -> Project:
    """Create a project, APPROVED for training, with its first cohort query; both owned by ``owner_id``
    (default: ``settings.owner_id``), as FLIP requires.

    Raises:
        InvalidInputError: empty name or query, or a malformed FLIP_OWNER_ID.
        ConflictError: a project with this name exists.
    """
    name, cohort_query = name.strip(), cohort_query.strip()
    if not name or not cohort_query:
        raise InvalidInputError("a project needs a name and a cohort query")
    owner = _owner(owner_id)
    with transaction(session):
        if session.exec(select(Project).where(Project.name == name, col(Project.deleted).is_(False))).first():
            raise ConflictError(f"project {name!r} already exists")
        project = Project(name=name, description=description, owner_id=owner, status=ProjectStatus.APPROVED)
        session.add(project)
        session.flush()
        session.add(Query(project_id=project.id, name=f"{name} cohort", query=cohort_query, created_by=owner))
    return project


def add_model(session: Session, name: str, project_name: str, *, trust_ids: Sequence[uuid.UUID] | None = None,
              description: str = "", owner_id: uuid.UUID | None = None) -> Model:
    """Create a model (PENDING) in a project, with the trusts approved to train it (``model_trust_intersect``;
    default: every registered trust, as FLIP approves a new model for its project's approved trusts).

    Raises:
        InvalidInputError: empty name, or a malformed FLIP_OWNER_ID.
        NotFoundError: unknown project, or unknown trust ids (all named).
    """
    name = name.strip()
    if not name:
        raise InvalidInputError("a model needs a name")
    owner = _owner(owner_id)
    with transaction(session):
        project = session.exec(select(Project).where(Project.name == project_name,
                                                     col(Project.deleted).is_(False))).first()
        if project is None:
            raise NotFoundError(f"project {project_name!r} not found")
        model = Model(name=name, description=description, status=ModelStatus.PENDING, project_id=project.id,
                      owner_id=owner)
        session.add(model)
        session.flush()
        approved = list(session.exec(select(Trust.id)).all()) if trust_ids is None else _known(session, trust_ids)
        _approve(session, model.id, approved)
    return model


def trust_names_in_transaction(session: Session, trust_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Trust id → name, in the open transaction.

    Raises:
        NotFoundError: naming every unknown trust id.
    """
    names = dict(session.exec(select(Trust.id, Trust.name).where(col(Trust.id).in_(list(trust_ids)))).all())
    unknown = [str(t) for t in trust_ids if t not in names]
    if unknown:
        raise NotFoundError(f"unknown trust id(s): {', '.join(unknown)}")
    return names


def _known(session: Session, trust_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    trust_names_in_transaction(session, trust_ids)
    return list(dict.fromkeys(trust_ids))


def _approve(session: Session, model_id: uuid.UUID, trust_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    already = set(session.exec(select(ModelTrustIntersect.trust_id)
                               .where(ModelTrustIntersect.model_id == model_id)).all())
    added = [t for t in trust_ids if t not in already]
    session.add_all([ModelTrustIntersect(model_id=model_id, trust_id=t, status=TrustIntersectStatus.PENDING)
                     for t in added])
    return added


def approve_trusts(session: Session, model_id: uuid.UUID, trust_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Approve trusts to train a model; returns those newly approved (approving twice changes nothing).

    Raises:
        NotFoundError: unknown model or trust ids.
    """
    with transaction(session):
        get_row(session, Model, model_id, "model")
        return _approve(session, model_id, _known(session, trust_ids))


def unapproved_in_transaction(session: Session, model_id: uuid.UUID,
                              trust_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """The trusts not approved for the model (FLIP's ``validate_trust_ids``: approval is a row's existence)."""
    approved = set(session.exec(select(ModelTrustIntersect.trust_id)
                                .where(ModelTrustIntersect.model_id == model_id)).all())
    return [t for t in trust_ids if t not in approved]


def approved_trust_names(session: Session, model_id: uuid.UUID) -> list[str]:
    """Names of the trusts approved to train a model, sorted.

    Raises:
        NotFoundError: unknown model.
    """
    with transaction(session):
        get_row(session, Model, model_id, "model")
        return sorted(session.exec(
            select(Trust.name).join(ModelTrustIntersect, col(ModelTrustIntersect.trust_id) == Trust.id)
            .where(ModelTrustIntersect.model_id == model_id)
        ).all())


def get_model(session: Session, model_id: uuid.UUID) -> Model:
    """Raises: NotFoundError: unknown model."""
    with transaction(session):
        return get_row(session, Model, model_id, "model")


def get_required_training_details(session: Session, model_id: uuid.UUID) -> TrainingDetails:
    """The model's project and that project's newest cohort query.

    Raises:
        NotFoundError: unknown model, or "No cohort query found for this project".
    """
    with transaction(session):
        model = get_row(session, Model, model_id, "model")
        if model.project_id is None:
            raise NotFoundError(f"model {model.name} belongs to no project: it has no cohort query")
        newest = session.exec(
            select(Query).where(Query.project_id == model.project_id).order_by(col(Query.created).desc())
        ).first()
    if newest is None:
        raise NotFoundError(f"No cohort query found for this project ({model.project_id})")
    return TrainingDetails(project_id=model.project_id, cohort_query=newest.query)
