"""Readable partition keys for models: what a person picks in the Dagster UI instead of a UUID.

A model's key is its name. FLIP does not make names unique, so the oldest model of a name keeps the plain name
and every later namesake gets its id's first eight characters appended; a key never changes once given, as long
as the oldest namesake stays registered (FLIP deletes models softly, so it does).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

MODEL_PARTITIONS_NAME = "flip_models"  # the training assets' dynamic partitions: one per registered model

# Dagster refuses these inside partition keys
_REFUSED = {"...": "…", "\a": " ", "\b": " ", "\f": " ", "\n": " ", "\r": " ", "\t": " ", "\v": " ", "\0": " "}


@dataclass(frozen=True)
class NamedModel:
    id: uuid.UUID
    name: str
    created: datetime


def _clean(name: str) -> str:
    for refused, replacement in _REFUSED.items():
        name = name.replace(refused, replacement)
    return " ".join(name.split())


def model_partition_keys(models: list[NamedModel]) -> dict[uuid.UUID, str]:
    """Each model's partition key: its (cleaned) name, the oldest namesake first, later ones ``name (1a2b3c4d)``.
    A model with a blank name is keyed by its id."""
    keys: dict[uuid.UUID, str] = {}
    taken: set[str] = set()
    for model in sorted(models, key=lambda m: (m.created, str(m.id))):
        name = _clean(model.name) or str(model.id)
        key = name if name not in taken else f"{name} ({str(model.id)[:8]})"
        taken.add(key)
        keys[model.id] = key
    return keys
