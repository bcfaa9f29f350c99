"""Small builders for queue rows, through the same functions users call."""

import uuid
from dataclasses import dataclass

from sqlmodel import Session

from flip_pipelines.db import queue
from flip_pipelines.domain.enums import FLBackend


@dataclass
class World:
    project_id: uuid.UUID
    trust_ids: list[uuid.UUID]
    net_names: list[str]


def build_world(
    session: Session, *, nets: int = 1, trusts: int = 2, backend: FLBackend = FLBackend.NVFLARE
) -> World:
    project = queue.add_project(session, "proj", "SELECT * FROM patients")
    trust_ids = [queue.add_trust(session, f"Trust_{i}", f"site-{i}").id for i in range(1, trusts + 1)]
    names = []
    for i in range(1, nets + 1):
        queue.add_net(session, f"net-{i}", f"http://127.0.0.1:{18000 + i}", backend)
        names.append(f"net-{i}")
    return World(project_id=project.id, trust_ids=trust_ids, net_names=names)


def queue_model(session: Session, world: World, name: str = "model") -> tuple[uuid.UUID, uuid.UUID]:
    """Create a model and queue one job for it on every trust; return (model_id, fl_job_id)."""
    model = queue.add_model(session, name, "proj")
    job = queue.add_fl_job(session, model.id, world.trust_ids)
    return model.id, job.id
