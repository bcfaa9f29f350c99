"""The result a net's FL server uploads itself (FLIP's), and what the hub concludes when its final status is missing.

FLIP's FL server (the ``flip`` package's ``PersistToS3AndCleanup``, at the end of the NVFlare run) zips the run
folder to ``<UPLOADED_FEDERATED_DATA_BUCKET>/<model_id>/<YYYYmmdd_HHMMSS>.zip``, named by its local clock, and only
then pushes RESULTS_UPLOADED. The push is best effort; the object is the evidence. An FL job listed FINISHED is
none: it says the run ended, not that its result was stored.

Both are components of the NVFlare job, declared in its ``config_fed_server.json`` by FLIP's own job templates:
``ServerEventHandler`` pushes the statuses and, at the end of the run, calls the ``PersistToS3AndCleanup`` its
``persist_and_cleanup_id`` names (default ``persist_and_cleanup``). A job whose server config declares them not
hands nothing back.
"""

import json
import re
import uuid
from collections.abc import Iterable, Mapping
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


SERVER_EVENT_HANDLER, PERSIST_TO_S3 = "ServerEventHandler", "PersistToS3AndCleanup"
FLIP_SERVER_COMPONENTS = (SERVER_EVENT_HANDLER, PERSIST_TO_S3)
DEFAULT_PERSIST_ID = "persist_and_cleanup"


def _class_name(component: object) -> str:
    """A component's class as NVFlare finds it: the last part of its ``path``, else its ``name``."""
    if not isinstance(component, dict):
        return ""
    return str(component.get("path") or component.get("name") or "").rsplit(".", 1)[-1]


def _declared(server_config: bytes) -> set[str]:
    try:
        components = json.loads(server_config).get("components", [])
    except (ValueError, AttributeError):
        return set()
    components = components if isinstance(components, list) else []
    handlers = [c for c in components if _class_name(c) == SERVER_EVENT_HANDLER]
    if not handlers:
        return set()
    args = handlers[0].get("args") if isinstance(handlers[0].get("args"), dict) else {}
    persist_id = args.get("persist_and_cleanup_id", DEFAULT_PERSIST_ID)
    persists = any(_class_name(c) == PERSIST_TO_S3 and c.get("id") == persist_id for c in components)
    return {SERVER_EVENT_HANDLER, *([PERSIST_TO_S3] if persists else [])}


def missing_flip_components(server_configs: Mapping[str, bytes]) -> tuple[str, ...]:
    """Which of FLIP's two server components the job would lack for its FL server to hand the result back, given
    its server configs (``app*/config/config_fed_server.json`` path → content; NVFlare runs one server app): none
    when one declares ``ServerEventHandler`` and the ``PersistToS3AndCleanup`` it calls."""
    declared = max((_declared(body) for body in server_configs.values()), key=len, default=set())
    return tuple(c for c in FLIP_SERVER_COMPONENTS if c not in declared)


def flip_components_warning(net: str, source: str, missing: tuple[str, ...]) -> str:
    """Why nothing will come back from a net whose FL server hands results back itself (FLIP's)."""
    lacks = "neither " + " nor ".join(missing) if len(missing) > 1 else f"no {missing[0]}"
    return (f"the base application from {source} declares {lacks} (FLIP's flip package) in its server config: net "
            f"{net}'s FL server, which hands results back through them, will upload no result and push no status, "
            "and the training will end as an ERROR once FLIP_PUSHED_STATUS_GRACE_SECONDS have passed after its FL "
            "job; point the net at FLIP's job templates (FLIP_NET_OPTIONS base_app_source)")
