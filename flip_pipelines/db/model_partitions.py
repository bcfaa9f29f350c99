"""Models as Dagster partitions: each registered model's readable key (``domain.partitions``), both ways."""

import uuid

from sqlmodel import Session, select

from flip_pipelines.db.models import Model
from flip_pipelines.db.transaction import transaction
from flip_pipelines.domain.errors import NotFoundError
from flip_pipelines.domain.partitions import NamedModel, model_partition_keys


def _all_keys(session: Session) -> tuple[dict[uuid.UUID, str], set[uuid.UUID]]:
    rows = session.exec(select(Model.id, Model.name, Model.creation_timestamp, Model.deleted)).all()
    keys = model_partition_keys([NamedModel(id=r[0], name=r[1], created=r[2]) for r in rows])
    return keys, {r[0] for r in rows if r[3]}


def partition_keys_of_models(session: Session) -> dict[uuid.UUID, str]:
    """The partition key of every model not deleted (keys of deleted models stay reserved)."""
    with transaction(session):
        keys, deleted = _all_keys(session)
    return {model_id: key for model_id, key in keys.items() if model_id not in deleted}


def partition_key_of_model(session: Session, model_id: uuid.UUID) -> str:
    """Raises: NotFoundError: unknown model."""
    with transaction(session):
        keys, _ = _all_keys(session)
    if model_id not in keys:
        raise NotFoundError(f"model {model_id} not found")
    return keys[model_id]


def model_of_partition(session: Session, key: str) -> uuid.UUID:
    """Raises: NotFoundError: no model not deleted has this partition key."""
    for model_id, model_key in partition_keys_of_models(session).items():
        if model_key == key:
            return model_id
    raise NotFoundError(f"no model is called {key!r}")
