"""The result a net's FL server uploads itself (FLIP's), and what the hub concludes when its final status is missing.

FLIP's FL server (the ``flip`` package's ``PersistToS3AndCleanup``, at the end of the NVFlare run) zips the run
folder to ``<UPLOADED_FEDERATED_DATA_BUCKET>/<model_id>/<YYYYmmdd_HHMMSS>.zip``, named by its local clock, and only
then pushes RESULTS_UPLOADED. The push is best effort; the object is the evidence. An FL job listed FINISHED is
none: it says the run ended, not that its result was stored.
"""

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

RESULT_NAME = re.compile(r"^\d{8}_\d{6}\.zip$")
CLOCK_SKEW = timedelta(seconds=10)
"""How far the S3 server's clock may lag the hub's: an object written this much before the training started
still counts as its result."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime  # the S3 server's LastModified, timezone-aware


def results_prefix(model_id: uuid.UUID) -> str:
    return f"{model_id}/"


def uploaded_result(objects: Iterable[StoredObject], model_id: uuid.UUID, started: datetime) -> StoredObject | None:
    """The result the FL server uploaded for the training that started at ``started``: the newest
    ``<model_id>/<YYYYmmdd_HHMMSS>.zip`` written since (an earlier training of the same model left older ones)."""
    prefix = results_prefix(model_id)
    mine = [o for o in objects if o.key.startswith(prefix) and RESULT_NAME.match(o.key[len(prefix):])
            and o.modified >= started - CLOCK_SKEW]
    return max(mine, key=lambda o: (o.modified, o.key), default=None)


def no_pushed_status_nor_result(backend_job_id: str, grace_seconds: float, results_uri: str) -> str:
    """Why a training whose FL job finished ends as an ERROR: ``results_uri`` is where its result was looked for."""
    return (f"FL job {backend_job_id} finished but its FL server pushed no final status within {grace_seconds:g} s "
            f"and no result is in {results_uri}")


def finished_without_pushed_status(result_uri: str, grace_seconds: float) -> str:
    return (f"Training finished; results at {result_uri} (its FL server pushed no final status within "
            f"{grace_seconds:g} s)")
