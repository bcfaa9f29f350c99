"""Job templates in the shape FLIP keeps its own, written here for the FLIP-net tests.

FLIP's hub bundles each model with a template from its ``FL_APP_BASE_DIR``: ``<backend>/<job_type>/`` holding, for
NVFlare, one ``app/`` folder (``app/config/config_fed_{client,server}.json``, ``app/custom/``), beside the
manifest ``<backend>/required_files.json``. Each job's server config declares two components of FLIP's ``flip``
package, and they alone make FLIP's FL server hand a result back: ``ServerEventHandler`` (``model_id``; it finds
the other through ``persist_and_cleanup_id``, default ``persist_and_cleanup``) pushes the model's statuses to the
hub and, at the end of the run, calls ``PersistToS3AndCleanup`` (``model_id``, ``persistor_id``), which zips the
run into the results bucket. These templates are this project's NVFlare base applications in that shape, with
those two declarations added; the test double of FLIP's FL server (``flip_fl_server``) acts on them.
"""

import json
from pathlib import Path
from typing import Any

from flip_pipelines.domain.bundle import REQUIRED_FILES, SUPPORTED_JOB_TYPES
from flip_pipelines.domain.enums import FLBackend
from flip_pipelines.fl_api.base_apps import template_sources

SERVER_EVENT_HANDLER = {"id": "flip_server_event_handler", "path": "flip.nvflare.components.ServerEventHandler",
                        "args": {"model_id": "{model_id}"}}
PERSIST_TO_S3 = {"id": "persist_and_cleanup", "path": "flip.nvflare.components.PersistToS3AndCleanup",
                 "args": {"model_id": "{model_id}", "persistor_id": "persistor"}}
FLIP_SERVER_COMPONENTS = (SERVER_EVENT_HANDLER, PERSIST_TO_S3)


def with_components(server_config: bytes, components: tuple[dict[str, Any], ...]) -> bytes:
    config = json.loads(server_config)
    config["components"] = [*config["components"], *components]
    return json.dumps(config, indent=2).encode()


def flip_shaped_templates(components: tuple[dict[str, Any], ...] = FLIP_SERVER_COMPONENTS) -> dict[str, bytes]:
    """``nvflare/<job_type>/app/...`` for every NVFlare job type this project bundles (its ``app_server/`` and
    ``app_client/`` merged into ``app/``, no ``meta.json``: FLIP's FL API writes it), each server config declaring
    ``components``, and ``nvflare/required_files.json``: relative path → content."""
    backend = FLBackend.NVFLARE
    files: dict[str, bytes] = {}
    for job_type in sorted(SUPPORTED_JOB_TYPES[backend]):
        for rel, path in template_sources(backend.value, job_type.value).items():
            folder, _, rest = rel.partition("/")
            if not rest:
                continue  # meta.json
            body = path.read_bytes()
            if rest == "config/config_fed_server.json":
                body = with_components(body, components)
            files[f"{backend.value}/{job_type.value}/app/{rest}"] = body
    manifest = {job_type.value: list(required) for job_type, required in REQUIRED_FILES[backend].items()}
    files[f"{backend.value}/required_files.json"] = json.dumps(manifest, indent=2).encode()
    return files


def upload_templates(client: Any, bucket: str, prefix: str, files: dict[str, bytes]) -> str:
    """The templates under ``s3://bucket/prefix/``; that URI (a ``base_app_source``)."""
    for rel, body in files.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=body)
    return f"s3://{bucket}/{prefix}"


def write_templates(folder: Path, files: dict[str, bytes]) -> Path:
    """The templates under a local ``folder`` (FLIP's ``FL_APP_BASE_DIR`` is one); the folder."""
    for rel, body in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(body)
    return folder
