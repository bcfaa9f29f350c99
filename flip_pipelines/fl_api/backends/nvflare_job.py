"""Turn a downloaded NVFlare bundle into a job folder for one training run.

The bundle already has the job layout (``meta.json``, ``app*/config``, ``app*/custom``). This fills in what only
the run knows: rounds from the model's ``config.json``, the participating clients, ``min_clients`` and
``mandatory_clients``, the project and cohort query; and it validates ``config.json`` first (FLIP's rules).
The rounds go to the server config's ``global_rounds``, the key FLIP's own upload writes, which the base
application's workflow reads (``"num_rounds": "{global_rounds}"``), so a bundle runs the model's rounds behind
either FL API.
"""

import json
import re
from pathlib import Path
from typing import Any

from flip_pipelines.fl_api.errors import BadRequestError
from flip_pipelines.fl_api.model_config import validate_model_config
from flip_pipelines.fl_api.schemas import UploadAppRequest

APP_FOLDER = re.compile(r"^app(_[A-Za-z0-9][A-Za-z0-9_-]*)?$")
SERVER_CONFIG = "config/config_fed_server.json"
CLIENT_CONFIG = "config/config_fed_client.json"


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequestError(f"{what} is not valid JSON: {exc}") from None


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2))


def prepare_job_folder(folder: Path, model_id: str, request: UploadAppRequest, *, default_rounds: int = 1) -> int:
    """Validate and rewrite the bundle in ``folder`` in place; returns the number of files in the job.

    Raises:
        BadRequestError: no app folder, no config.json, invalid config, or a missing meta.json where one is needed.
    """
    apps = sorted(p for p in folder.iterdir() if p.is_dir() and APP_FOLDER.match(p.name))
    if not apps:
        raise BadRequestError("the bundle has no NVFlare app folder (app/ or app_*/)")
    configs = [app / "custom" / "config.json" for app in apps if (app / "custom" / "config.json").exists()]
    if not configs:
        raise BadRequestError("the bundle has no config.json in any app*/custom/")
    config = validate_model_config(_read_json(configs[0], "config.json"), default_rounds=default_rounds)
    trusts = list(request.trusts)
    deploy_map: dict[str, list[str]] = {}
    for app in apps:
        targets: list[str] = []
        server_file, client_file = app / SERVER_CONFIG, app / CLIENT_CONFIG
        if server_file.exists():
            server = _read_json(server_file, f"{app.name}/{SERVER_CONFIG}")
            server.update(
                model_id=model_id,
                global_rounds=config["GLOBAL_ROUNDS"],
                min_clients=len(trusts),
                participating_clients=trusts,
                ignore_result_error=bool(config.get("IGNORE_RESULT_ERROR", False)),
            )
            _write_json(server_file, server)
            targets.append("server")
        if client_file.exists():
            client = _read_json(client_file, f"{app.name}/{CLIENT_CONFIG}")
            client.update(
                project_id=request.project_id, query=request.cohort_query, local_rounds=config["LOCAL_ROUNDS"]
            )
            _write_json(client_file, client)
            targets.extend(trusts)
        if not targets:
            raise BadRequestError(f"{app.name}/ has neither {SERVER_CONFIG} nor {CLIENT_CONFIG}")
        deploy_map[app.name] = targets
    meta_file = folder / "meta.json"
    if len(apps) > 1 and not meta_file.exists():
        raise BadRequestError("a bundle with several app folders needs meta.json")
    meta = _read_json(meta_file, "meta.json") if meta_file.exists() else {}
    if not isinstance(meta, dict):
        raise BadRequestError("meta.json must hold a JSON object")
    meta.update(
        name=model_id,
        deploy_map=deploy_map,
        min_clients=len(trusts),
        mandatory_clients=trusts,
        resource_spec=meta.get("resource_spec", {}),
    )
    _write_json(meta_file, meta)
    return sum(1 for p in folder.rglob("*") if p.is_file())
