"""Small builders for queue rows, through the same functions users call."""

import uuid
from dataclasses import dataclass

from sqlmodel import Session

from flip_pipelines.db import lifecycle, registry
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.domain.model_check import BackendFit, ModelCheck


@dataclass
class World:
    project_id: uuid.UUID
    trust_ids: list[uuid.UUID]
    net_names: list[str]


def build_world(
    session: Session, *, nets: int = 1, trusts: int = 2, backend: FLBackend = FLBackend.NVFLARE
) -> World:
    project = registry.add_project(session, "proj", "SELECT * FROM patients")
    trust_ids = [registry.add_trust(session, f"Trust_{i}", f"site-{i}").id for i in range(1, trusts + 1)]
    names = []
    for i in range(1, nets + 1):
        registry.add_net(session, f"net-{i}", f"http://127.0.0.1:{18000 + i}", backend)
        names.append(f"net-{i}")
    return World(project_id=project.id, trust_ids=trust_ids, net_names=names)


def fits(*backends: FLBackend, model_id: str = "m") -> ModelCheck:
    """A model check whose model suits exactly ``backends`` (every backend when none are given)."""
    suited = set(backends or FLBackend)
    return ModelCheck(model_id, tuple(
        BackendFit(b, None, () if b in suited else (f"Missing required files on {b.value}",)) for b in FLBackend
    ))


def queue_model(session: Session, world: World, name: str = "model",
                check: ModelCheck | None = None) -> tuple[uuid.UUID, uuid.UUID]:
    """Create a model and queue one job for it on every trust; return (model_id, fl_job_id)."""
    model = registry.add_model(session, name, "proj")
    job = lifecycle.enqueue_training(session, model.id, world.trust_ids, check or fits())
    return model.id, job.id


def every_model_suits_all(session: Session) -> dict[uuid.UUID, frozenset[FLBackend]]:
    """``backends_of`` for a claim: every model with a queued job suits every backend."""
    from flip_pipelines.db import claims

    return {m: frozenset(FLBackend) for m in claims.queued_models(session)}


def claim_next(session: Session):  # type: ignore[no-untyped-def]
    """Claim as the queue sensor does, for models whose files suit every backend."""
    from flip_pipelines.db import claims

    return claims.claim_next_job(session, every_model_suits_all(session))
